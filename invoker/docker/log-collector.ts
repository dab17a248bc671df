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
 * - Byte limit, and the lines the invoker adds: see activation-log.ts.
 * - A missing sentinel (timeout, or the container's output ended) yields
 *   `complete: false`: the core should treat the container as suspect and
 *   destroy it.
 * - Intra-container concurrency (several runs in flight): output of
 *   concurrent runs interleaves and the bare sentinels cannot be matched to
 *   runs. Such containers use the tagged router (log-router.ts) instead.
 */

import { ActivationLog, DEFAULT_LOG_LIMIT_BYTES, DEFAULT_SENTINEL_WAIT_MS, type LogCollection } from './activation-log.js';
import { LOG_SENTINEL, type LogClock, type StampedLineSink, type StreamName } from './log-lines.js';

export { DEFAULT_LOG_LIMIT_BYTES, DEFAULT_SENTINEL_WAIT_MS, type LogCollection } from './activation-log.js';

export interface CollectOptions {
  /** Log limit of the action in bytes (default: the limit given to `beginActivation`, else 10 MiB). */
  limitBytes?: number;
  /** How long to wait for sentinels not yet seen, from the call (default 500 ms). */
  waitMs?: number;
  /**
   * Concurrent containers only: the wait is extended by further `waitMs`
   * while the container's output keeps moving, up to this (default 5 s).
   */
  maxWaitMs?: number;
  /** The activation whose log this is: required with intra-container concurrency, ignored otherwise. */
  activationId?: string;
}

export interface BeginActivationOptions {
  /**
   * The action's log limit in bytes. Giving it here bounds what is buffered
   * while the activation runs (otherwise up to 10 MiB is buffered and the
   * limit is applied in `collect()`).
   */
  limitBytes?: number;
  /** The activation whose log opens: required with intra-container concurrency, ignored otherwise. */
  activationId?: string;
}

/** What ActionContainer needs from either collector. */
export interface ActivationLogs {
  beginActivation(options?: BeginActivationOptions): void;
  collect(options?: CollectOptions): Promise<LogCollection>;
  end(reason: string): void;
  readonly ended: string | undefined;
  readonly onLine: StampedLineSink;
}

type State = 'idle' | 'active' | 'ended';

/** One activation at a time (concurrency 1), framed by the bare sentinels. */
export class LogCollector implements ActivationLogs {
  private state: State = 'idle';
  private log = new ActivationLog();
  private bufferLimit = DEFAULT_LOG_LIMIT_BYTES;
  private collecting = false;
  private endReason: string | undefined;

  /** @param clock stamps the lines the collector adds itself. */
  constructor(private readonly clock: LogClock) {}

  /** Opens an activation: drops anything buffered and starts keeping lines. */
  beginActivation(options: BeginActivationOptions = {}): void {
    if (this.collecting) throw new Error('beginActivation() called while collect() is pending');
    this.bufferLimit = options.limitBytes ?? DEFAULT_LOG_LIMIT_BYTES;
    this.log = new ActivationLog(this.bufferLimit);
    if (this.state !== 'ended') this.state = 'active';
  }

  /**
   * Closes the activation opened by `beginActivation()` and returns its logs
   * once both sentinels are in, or after `waitMs`, or at once if the
   * container's output has ended.
   */
  async collect(options: CollectOptions = {}): Promise<LogCollection> {
    if (this.collecting) throw new Error('collect() called while another collect() is pending');
    if (this.state === 'idle') throw new Error('collect() called without beginActivation()');
    const limit = options.limitBytes ?? this.bufferLimit;
    const waitMs = options.waitMs ?? DEFAULT_SENTINEL_WAIT_MS;
    const log = this.log;
    if (this.state === 'active') {
      this.collecting = true;
      try {
        await log.waitForSentinels(waitMs);
      } finally {
        this.collecting = false;
      }
    }
    const result = log.take(limit, this.clock);
    if (this.state === 'active') this.state = 'idle';
    return result;
  }

  /**
   * The container's output ended (it exited or the attach stream broke).
   * Partial lines must have been flushed into `onLine` before this call.
   */
  end(reason: string): void {
    if (this.state === 'ended') return;
    this.endReason = reason;
    this.state = 'ended';
    this.log.wake();
  }

  /** Why the output ended, once it has. */
  get ended(): string | undefined {
    return this.endReason;
  }

  /** Matches StampedLineSink: the line reader feeds every line here. */
  readonly onLine = (stream: StreamName, time: string, text: string, bytes: number): void => {
    // Lines are dropped unless an activation is open (or the stream ended during one).
    if (this.state === 'idle') return;
    const log = this.log;
    if (!log.open(stream)) return;
    if (text.endsWith(LOG_SENTINEL)) {
      // An unterminated last write is glued to the sentinel: keep its text.
      if (text.length > LOG_SENTINEL.length) {
        const rest = text.slice(0, text.length - LOG_SENTINEL.length);
        log.keep(stream, time, rest, bytes - LOG_SENTINEL.length);
      }
      log.sentinel(stream);
      return;
    }
    log.keep(stream, time, text, bytes);
  };
}
