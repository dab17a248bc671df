/**
 * The log of one activation while it is collected: its lines in arrival
 * order, the byte limit, which of its two sentinels have been seen, and the
 * wait for the missing ones. Shared by the sequential collector
 * (log-collector.ts, one activation at a time) and the tagged router
 * (log-router.ts, several at once).
 *
 * - Byte limit: each kept line counts its formatted size in UTF-8 (time,
 *   stream and text; this is what the activation record stores, close to
 *   upstream's counting of the json-file line). Lines are kept in order until
 *   the next one would pass the limit; the rest are dropped.
 * - Lines the invoker adds (`logsTruncated(limit)`, `LOG_COLLECTION_ISSUE`)
 *   are formatted as `stderr` lines stamped at collection time, as upstream
 *   does, and are not counted in `bytes`.
 */

import { LOG_COLLECTION_ISSUE, logsTruncated } from '../../protocol/error-texts.js';
import { LOG_LINE_OVERHEAD_BYTES, formatLogLine, type LogClock, type StreamName } from './log-lines.js';

/** Upstream's maximum log limit (10 MB); the default bound on what one activation buffers. */
export const DEFAULT_LOG_LIMIT_BYTES = 10 * 1024 * 1024;
/** How long `collect()` waits for sentinels that have not arrived yet. */
export const DEFAULT_SENTINEL_WAIT_MS = 500;

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

export class ActivationLog {
  private lines: string[] = [];
  private lineBytes: number[] = [];
  private bytes = 0;
  private dropped = false;
  private stdoutDone = false;
  private stderrDone = false;
  private waiter: (() => void) | undefined;

  /** @param bufferLimit bytes kept at most while lines arrive (the action's limit when known). */
  constructor(private readonly bufferLimit = DEFAULT_LOG_LIMIT_BYTES) {}

  /** False once the stream's sentinel has been seen: later lines of it are not this activation's. */
  open(stream: StreamName): boolean {
    return stream === 'stdout' ? !this.stdoutDone : !this.stderrDone;
  }

  /** Both sentinels seen. */
  get complete(): boolean {
    return this.stdoutDone && this.stderrDone;
  }

  /** Keeps one line of an open stream, within the byte limit. */
  keep(stream: StreamName, time: string, text: string, textBytes: number): void {
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

  /** The stream's sentinel arrived. */
  sentinel(stream: StreamName): void {
    if (stream === 'stdout') this.stdoutDone = true;
    else this.stderrDone = true;
    if (this.stdoutDone && this.stderrDone) this.wake();
  }

  /** Ends a pending `waitForSentinels()` early (the container's output ended). */
  wake(): void {
    this.waiter?.();
  }

  /** Resolves once both sentinels are in, or after `waitMs`, or on `wake()`. */
  async waitForSentinels(waitMs: number): Promise<void> {
    if (this.complete || waitMs <= 0) return;
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
  }

  /** The collection under `limit`, with the truncation and issue lines the invoker adds. */
  take(limit: number, clock: LogClock): LogCollection {
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
    const complete = this.complete;
    if (truncated) lines.push(formatLogLine(clock.now(), 'stderr', logsTruncated(limit)));
    if (!complete) lines.push(formatLogLine(clock.now(), 'stderr', LOG_COLLECTION_ISSUE));
    this.lines = [];
    this.lineBytes = [];
    this.bytes = 0;
    this.dropped = false;
    return { lines, complete, truncated, bytes };
  }
}
