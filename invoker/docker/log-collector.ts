/**
 * Per-container log collection from the attach stream, in process, with no
 * Docker log driver.
 *
 * Protocol with the invocation core (one activation at a time):
 *   1. `beginActivation()` before the first request of the activation (the
 *      `/init` of a cold start, else the `/run`).
 *   2. send `/init` and/or `/run`.
 *   3. `collect()` once the runtime has answered (or failed).
 *
 * Choices, and why:
 * - Lines written *between* activations (after the previous activation's
 *   sentinels, or while no activation is open: timers left running by the
 *   action) are discarded, never buffered and never attributed to the next
 *   activation. Upstream leaks them into the next activation's logs, which is
 *   both confusing and a privacy hazard when a container is reused.
 * - A stream's lines are taken until that stream's sentinel; what comes later
 *   on the same stream was written after the run ended and is discarded.
 * - `collect()` always waits for both sentinels (bounded by `waitMs`), even
 *   with a log limit of 0: this keeps the stream aligned so a late sentinel of
 *   one activation can never close the next one early.
 * - Default wait for missing sentinels: 500 ms after `collect()` is called,
 *   as the Go invoker does. Runtimes print the sentinels before or together
 *   with the HTTP response, so in practice they are already there.
 * - Byte limit: each kept line counts its formatted size in UTF-8 (time,
 *   stream and text; this is what the activation record stores, close to
 *   upstream's counting of the json-file line). Lines are kept in order until
 *   the next one would pass the limit; the rest are dropped.
 * - Lines the invoker adds (`logsTruncated(limit)`, `LOG_COLLECTION_ISSUE`)
 *   are formatted as `stderr` lines stamped at collection time, as upstream
 *   does, and are not counted in `bytes`.
 * - A missing sentinel (timeout, or the container's output ended) yields
 *   `complete: false`: the core should treat the container as suspect and
 *   destroy it.
 * - Intra-container concurrency (several runs in flight): output of
 *   concurrent runs interleaves and the sentinels cannot be matched to runs,
 *   so lines cannot be attributed to an activation. Rather than hand one
 *   activation another's output, concurrent mode collects nothing: every
 *   line is discarded and `collect()` resolves at once with no lines and
 *   `complete: true`.
 */

import { LOG_COLLECTION_ISSUE, logsTruncated } from '../../protocol/error-texts.js';
import { LOG_LINE_OVERHEAD_BYTES, LOG_SENTINEL, formatLogLine, type LogClock, type StreamName } from './log-lines.js';

/** Upstream's maximum log limit (10 MB); the default bound on what one activation buffers. */
export const DEFAULT_LOG_LIMIT_BYTES = 10 * 1024 * 1024;
/** How long `collect()` waits for sentinels that have not arrived yet. */
export const DEFAULT_SENTINEL_WAIT_MS = 500;

export interface CollectOptions {
  /** Log limit of the action in bytes (default: the limit given to `beginActivation`, else 10 MiB). */
  limitBytes?: number;
  /** How long to wait for sentinels not yet seen, from the call (default 500 ms). */
  waitMs?: number;
}

export interface BeginActivationOptions {
  /**
   * The action's log limit in bytes. Giving it here bounds what is buffered
   * while the activation runs (otherwise up to 10 MiB is buffered and the
   * limit is applied in `collect()`).
   */
  limitBytes?: number;
}

export interface LogCollection {
  /** Formatted log lines, ready for the activation record. */
  lines: string[];
  /** Both sentinels arrived: the output of this activation is whole. */
  complete: boolean;
  /** Lines were dropped because of the byte limit. */
  truncated: boolean;
  /** Bytes of the user lines kept (formatted, UTF-8). */
  bytes: number;
}

type State = 'idle' | 'active' | 'ended';

export class LogCollector {
  private state: State = 'idle';
  private lines: string[] = [];
  private lineBytes: number[] = [];
  private bytes = 0;
  private bufferLimit = DEFAULT_LOG_LIMIT_BYTES;
  private dropped = false;
  private stdoutDone = false;
  private stderrDone = false;
  private waiter: (() => void) | undefined;
  private collecting = false;
  private endReason: string | undefined;

  /**
   * @param clock stamps the lines the collector adds itself.
   * @param concurrent the container runs several activations at once: collect nothing (see above).
   */
  constructor(
    private readonly clock: LogClock,
    private readonly concurrent = false,
  ) {}

  /** Opens an activation: drops anything buffered and starts keeping lines. */
  beginActivation(options: BeginActivationOptions = {}): void {
    if (this.collecting) throw new Error('beginActivation() called while collect() is pending');
    this.lines = [];
    this.lineBytes = [];
    this.bytes = 0;
    this.dropped = false;
    this.stdoutDone = false;
    this.stderrDone = false;
    this.bufferLimit = options.limitBytes ?? DEFAULT_LOG_LIMIT_BYTES;
    if (this.state !== 'ended') this.state = 'active';
  }

  /**
   * Closes the activation opened by `beginActivation()` and returns its logs
   * once both sentinels are in, or after `waitMs`, or at once if the
   * container's output has ended.
   */
  async collect(options: CollectOptions = {}): Promise<LogCollection> {
    if (this.concurrent) return { lines: [], complete: true, truncated: false, bytes: 0 };
    if (this.collecting) throw new Error('collect() called while another collect() is pending');
    if (this.state === 'idle') throw new Error('collect() called without beginActivation()');
    const limit = options.limitBytes ?? this.bufferLimit;
    const waitMs = options.waitMs ?? DEFAULT_SENTINEL_WAIT_MS;
    if (this.state === 'active' && !(this.stdoutDone && this.stderrDone) && waitMs > 0) {
      this.collecting = true;
      try {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.waiter = undefined;
            resolve();
          }, waitMs);
          this.waiter = () => {
            clearTimeout(timer);
            this.waiter = undefined;
            resolve();
          };
        });
      } finally {
        this.collecting = false;
      }
    }
    return this.take(limit);
  }

  /**
   * The container's output ended (it exited or the attach stream broke).
   * Partial lines must have been flushed into `onLine` before this call.
   */
  end(reason: string): void {
    if (this.state === 'ended') return;
    this.endReason = reason;
    this.state = 'ended';
    this.waiter?.();
  }

  /** Why the output ended, once it has. */
  get ended(): string | undefined {
    return this.endReason;
  }

  /** Matches StampedLineSink: the line reader feeds every line here. */
  readonly onLine = (stream: StreamName, time: string, text: string, bytes: number): void => {
    // Lines are dropped unless an activation is open (or the stream ended during one).
    if (this.concurrent || this.state === 'idle') return;
    const isStdout = stream === 'stdout';
    if (isStdout ? this.stdoutDone : this.stderrDone) return;
    if (text.endsWith(LOG_SENTINEL)) {
      // An unterminated last write is glued to the sentinel: keep its text.
      if (text.length > LOG_SENTINEL.length) {
        const rest = text.slice(0, text.length - LOG_SENTINEL.length);
        this.keep(stream, time, rest, bytes - LOG_SENTINEL.length);
      }
      if (isStdout) this.stdoutDone = true;
      else this.stderrDone = true;
      if (this.stdoutDone && this.stderrDone) this.waiter?.();
      return;
    }
    this.keep(stream, time, text, bytes);
  };

  private keep(stream: StreamName, time: string, text: string, textBytes: number): void {
    if (this.dropped) return;
    const size = LOG_LINE_OVERHEAD_BYTES + textBytes;
    if (this.bytes + size > this.bufferLimit) {
      this.dropped = true;
      return;
    }
    this.bytes += size;
    this.lines.push(formatLogLine(time, stream, text));
    this.lineBytes.push(size);
  }

  private take(limit: number): LogCollection {
    let lines = this.lines;
    let bytes = this.bytes;
    let truncated = this.dropped;
    if (bytes > limit) {
      // The limit given to collect() is lower than the one lines were buffered under.
      let kept = 0;
      let n = 0;
      for (const size of this.lineBytes) {
        if (kept + size > limit) break;
        kept += size;
        n++;
      }
      lines = lines.slice(0, n);
      bytes = kept;
      truncated = true;
    }
    const complete = this.stdoutDone && this.stderrDone;
    if (truncated) lines.push(formatLogLine(this.clock.now(), 'stderr', logsTruncated(limit)));
    if (!complete) lines.push(formatLogLine(this.clock.now(), 'stderr', LOG_COLLECTION_ISSUE));
    this.lines = [];
    this.lineBytes = [];
    this.bytes = 0;
    this.dropped = false;
    if (this.state === 'active') this.state = 'idle';
    return { lines, complete, truncated, bytes };
  }
}
