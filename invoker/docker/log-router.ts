/**
 * Log collection for a container that runs several activations at once
 * (intra-container concurrency), by per-activation tags (log-tags.ts).
 *
 * Protocol with the invocation core, per activation and concurrently:
 *   `beginActivation({ activationId })` before its first request, then
 *   `collect({ activationId })` once the runtime has answered.
 *
 * Choices, and why:
 * - A tagged line goes to the open activation it names; a piece of a line
 *   cut at the line cap (log-lines.ts) goes where the line's first piece went.
 * - Each activation's log ends, per stream, on its own tagged sentinel; the
 *   byte limit and the truncation and issue lines are those of a sequential
 *   container (activation-log.ts), per activation.
 * - The wait for missing sentinels is `waitMs` (500 ms) as in a sequential
 *   container, extended by further `waitMs` while the container's output is
 *   still moving, up to `maxWaitMs` (5 s): an activation's sentinel may be
 *   queued behind megabytes that its neighbours wrote, which a sequential
 *   container never sees. Without any line for `waitMs`, it gives up.
 * - Untagged lines were written outside any activation (the runtime's own
 *   start-up, a child process writing to the inherited descriptors): they are
 *   dropped and counted (`untagged`), never given to some activation.
 * - A tagged line of an activation that is not open, or of a stream whose
 *   sentinel has passed, was written after that activation ended (a timer, a
 *   promise it left behind): dropped and counted (`late`). It cannot reach
 *   another activation, since it names its own.
 * - Runtimes that do not tag (upstream's) announce nothing and write no tags:
 *   then, as upstream does for concurrent containers, activations carry no
 *   logs and `collect()` resolves at once. A runtime counts as tagging once
 *   its `/init` answer said so (`announce()`) or one tagged line arrived.
 */

import { ActivationLog, DEFAULT_LOG_LIMIT_BYTES, DEFAULT_SENTINEL_WAIT_MS, type LogCollection } from './activation-log.js';

/** Longest wait for an activation's sentinels while the container's output keeps moving. */
export const DEFAULT_MAX_SENTINEL_WAIT_MS = 5000;
import type { ActivationLogs, BeginActivationOptions, CollectOptions } from './log-collector.js';
import { LOG_SENTINEL, type LogClock, type StreamName } from './log-lines.js';
import { tagEnd, tagPrefix } from './log-tags.js';

/** Why a line of a concurrent container reached no activation. */
export type DroppedLogLineReason = 'untagged' | 'late';
/** Told of every dropped line (metrics). */
export type DroppedLogLines = (reason: DroppedLogLineReason) => void;

interface OpenActivation {
  log: ActivationLog;
  limit: number;
  /** UTF-8 bytes of the tag before the text (`\x1e<key>:<id>\x1f`). */
  tagBytes: number;
  collecting: boolean;
}

export class TaggedLogRouter implements ActivationLogs {
  private readonly prefix: string | undefined;
  private readonly activations = new Map<string, OpenActivation>();
  private tags = false;
  private endReason: string | undefined;
  /** Where the current line of each stream went, for its continued pieces. */
  private stdoutOwner: ActivationLog | undefined;
  private stderrOwner: ActivationLog | undefined;
  /** Lines seen so far (any stream, any activation): whether the output is moving. */
  private lines = 0;

  /**
   * @param clock stamps the lines the router adds itself.
   * @param key the container's tag key; undefined when tags were not asked for (nothing is attributed).
   * @param dropped told of every line that reached no activation.
   */
  constructor(
    private readonly clock: LogClock,
    key: string | undefined,
    private readonly dropped: DroppedLogLines = () => undefined,
  ) {
    this.prefix = key === undefined ? undefined : tagPrefix(key);
  }

  /** The runtime said it tags (its `/init` answer). */
  announce(): void {
    if (this.prefix !== undefined) this.tags = true;
  }

  /** Lines can be attributed: the runtime announced tags or sent one. */
  get tagging(): boolean {
    return this.tags;
  }

  /** Activations opened and not yet collected. */
  get openActivations(): number {
    return this.activations.size;
  }

  beginActivation(options: BeginActivationOptions = {}): void {
    const id = options.activationId;
    if (id === undefined || id === '') throw new Error('beginActivation() needs the activation id in a concurrent container');
    if (this.activations.has(id)) throw new Error(`beginActivation(): activation ${id} is already open`);
    const limit = options.limitBytes ?? DEFAULT_LOG_LIMIT_BYTES;
    this.activations.set(id, {
      log: new ActivationLog(limit),
      limit,
      tagBytes: (this.prefix?.length ?? 0) + Buffer.byteLength(id) + 1,
      collecting: false,
    });
  }

  async collect(options: CollectOptions = {}): Promise<LogCollection> {
    const id = options.activationId;
    const entry = id === undefined ? undefined : this.activations.get(id);
    if (id === undefined || entry === undefined) throw new Error(`collect() called without beginActivation() for activation ${id}`);
    if (entry.collecting) throw new Error(`collect() called twice for activation ${id}`);
    if (!this.tags) {
      this.activations.delete(id);
      return { lines: [], complete: true, truncated: false, bytes: 0 };
    }
    if (this.endReason === undefined) {
      entry.collecting = true;
      try {
        await this.waitForSentinels(entry.log, options.waitMs ?? DEFAULT_SENTINEL_WAIT_MS, options.maxWaitMs ?? DEFAULT_MAX_SENTINEL_WAIT_MS);
      } finally {
        entry.collecting = false;
      }
    }
    // From here on, its lines are late.
    this.activations.delete(id);
    if (this.stdoutOwner === entry.log) this.stdoutOwner = undefined;
    if (this.stderrOwner === entry.log) this.stderrOwner = undefined;
    return entry.log.take(options.limitBytes ?? entry.limit, this.clock);
  }

  private async waitForSentinels(log: ActivationLog, waitMs: number, maxWaitMs: number): Promise<void> {
    const giveUpAt = performance.now() + Math.max(waitMs, maxWaitMs);
    for (;;) {
      const seen = this.lines;
      await log.waitForSentinels(Math.min(waitMs, giveUpAt - performance.now()));
      if (log.complete || this.endReason !== undefined || this.lines === seen || performance.now() >= giveUpAt) return;
    }
  }

  /** The container's output ended: pending collections resolve now. */
  end(reason: string): void {
    if (this.endReason !== undefined) return;
    this.endReason = reason;
    for (const entry of this.activations.values()) entry.log.wake();
  }

  get ended(): string | undefined {
    return this.endReason;
  }

  /** Matches StampedLineSink: the line reader feeds every line here. */
  readonly onLine = (stream: StreamName, time: string, text: string, bytes: number, continued: boolean): void => {
    const isStdout = stream === 'stdout';
    this.lines++;
    if (continued) {
      const owner = isStdout ? this.stdoutOwner : this.stderrOwner;
      if (owner !== undefined && owner.open(stream)) owner.keep(stream, time, text, bytes);
      return;
    }
    let owner: ActivationLog | undefined;
    const end = this.prefix === undefined ? -1 : tagEnd(this.prefix, text);
    if (end === -1) {
      // A runtime's bare sentinel is protocol, not output: not counted.
      if (text !== LOG_SENTINEL) this.dropped('untagged');
    } else {
      this.tags = true;
      const entry = this.activations.get(text.slice((this.prefix as string).length, end));
      if (entry === undefined || !entry.log.open(stream)) {
        if (!text.endsWith(LOG_SENTINEL) || text.length - end - 1 !== LOG_SENTINEL.length) this.dropped('late');
      } else if (text.length - end - 1 === LOG_SENTINEL.length && text.endsWith(LOG_SENTINEL)) {
        entry.log.sentinel(stream);
      } else {
        entry.log.keep(stream, time, text.slice(end + 1), bytes - entry.tagBytes);
        owner = entry.log;
      }
    }
    if (isStdout) this.stdoutOwner = owner;
    else this.stderrOwner = owner;
  };
}
