/**
 * From demultiplexed attach-stream bytes to activation log lines
 * (wire spec section 6): `2024-05-31T15:28:37.251871463Z stdout: hello`.
 *
 * - Lines are split per stream on `\n`; a partial line is kept until its
 *   newline arrives (or the stream ends).
 * - A line longer than `maxLineBytes` (default 16 KiB, the size at which the
 *   Docker engine itself splits log messages for its log drivers) is cut into
 *   several lines, at UTF-8 character boundaries, so nothing is lost and one
 *   runaway write cannot make us hold an unbounded line.
 * - Each line is stamped with the time it was read (the read that completed
 *   it), RFC 3339 with nanoseconds.
 * - The pieces of a cut line after the first are flagged `continued`, so that
 *   a consumer that routes lines by a tag at their start (log-router.ts) can
 *   send them where the first piece went.
 */

import { STDERR, type StreamId } from './attach-demuxer.js';

/** What a runtime prints on stdout and on stderr after every run (wire spec section 7). */
export const LOG_SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX';

export type StreamName = 'stdout' | 'stderr';

/** Default cap for one log line, in bytes of UTF-8. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;

/** Width the timestamp is padded to, as upstream does. */
const TIME_COLUMNS = 30;
/**
 * Bytes a formatted line adds to its text: 30 columns of time, a space,
 * `stdout`/`stderr` (both 6), `: `. Every part is ASCII, so this is exact.
 */
export const LOG_LINE_OVERHEAD_BYTES = TIME_COLUMNS + 1 + 6 + 2;

/** Formats one activation log line: time padded to 30 columns, space, stream, `: `, text. */
export function formatLogLine(time: string, stream: StreamName, text: string): string {
  return `${time.length >= TIME_COLUMNS ? time : time.padEnd(TIME_COLUMNS)} ${stream}: ${text}`;
}

/**
 * Wall-clock time with nanosecond resolution: the wall clock is read once
 * (milliseconds) and monotonic `process.hrtime.bigint()` offsets are added,
 * so stamps are ordered and fine-grained. The base is re-read from the wall
 * clock every `resyncMs` so an NTP-corrected host clock is followed, without
 * ever going back in time.
 */
export class LogClock {
  private baseSec = 0;
  private baseNs = 0;
  private hrBase = 0n;
  private lastSec = 0;
  private lastNs = 0;
  private cachedSec = -1;
  private cachedPrefix = '';

  constructor(private readonly resyncMs = 60_000) {
    this.resync();
  }

  /** Now, as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (always 9 fraction digits, 30 characters). */
  now(): string {
    let elapsed = Number(process.hrtime.bigint() - this.hrBase);
    if (elapsed > this.resyncMs * 1e6) {
      this.resync();
      elapsed = 0;
    }
    let ns = this.baseNs + elapsed;
    let sec = this.baseSec;
    if (ns >= 1e9) {
      const whole = Math.floor(ns / 1e9);
      sec += whole;
      ns -= whole * 1e9;
    }
    if (sec < this.lastSec || (sec === this.lastSec && ns < this.lastNs)) {
      sec = this.lastSec;
      ns = this.lastNs;
    }
    this.lastSec = sec;
    this.lastNs = ns;
    if (sec !== this.cachedSec) {
      this.cachedSec = sec;
      // "2024-05-31T15:28:37." from "2024-05-31T15:28:37.000Z"
      this.cachedPrefix = new Date(sec * 1000).toISOString().slice(0, 20);
    }
    return `${this.cachedPrefix}${String(ns).padStart(9, '0')}Z`;
  }

  private resync(): void {
    const wallMs = Date.now();
    this.hrBase = process.hrtime.bigint();
    this.baseSec = Math.floor(wallMs / 1000);
    this.baseNs = (wallMs - this.baseSec * 1000) * 1e6;
  }
}

/**
 * Receives one complete line (without its `\n`) and its length in bytes;
 * `continued` when it is a later piece of a line cut at the cap.
 */
export type LineSink = (text: string, bytes: number, continued: boolean) => void;

/**
 * Splits one stream's bytes into lines. Pieces of a partial line are kept as
 * views of the incoming chunks and joined only when the line completes.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** A piece of the current line was already emitted (it was cut at the cap). */
  private cut = false;

  constructor(
    private readonly sink: LineSink,
    private readonly maxLineBytes = DEFAULT_MAX_LINE_BYTES,
  ) {
    if (!(maxLineBytes >= 4)) throw new RangeError(`maxLineBytes must be at least 4 (one UTF-8 character), got ${maxLineBytes}`);
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) {
        if (start < chunk.length) this.keep(chunk.subarray(start));
        return;
      }
      if (this.pendingBytes === 0) {
        this.emit(chunk.subarray(start, nl));
      } else {
        this.pending.push(chunk.subarray(start, nl));
        const line = Buffer.concat(this.pending, this.pendingBytes + (nl - start));
        this.pending = [];
        this.pendingBytes = 0;
        this.emit(line);
      }
      start = nl + 1;
    }
  }

  /** Emits a partial line, if any (the stream ended or the activation is being closed). */
  flush(): void {
    if (this.pendingBytes === 0) return;
    const line = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.emit(line);
  }

  /** True when a line has started but its newline has not arrived. */
  get hasPartial(): boolean {
    return this.pendingBytes > 0;
  }

  private keep(piece: Buffer): void {
    this.pending.push(piece);
    this.pendingBytes += piece.length;
    if (this.pendingBytes < this.maxLineBytes) return;
    // Too long without a newline: emit full-size lines now, keep the rest.
    let all = Buffer.concat(this.pending, this.pendingBytes);
    while (all.length >= this.maxLineBytes) {
      const cut = utf8Cut(all, this.maxLineBytes);
      this.sink(all.toString('utf8', 0, cut), cut, this.cut);
      this.cut = true;
      all = all.subarray(cut);
    }
    this.pending = all.length > 0 ? [all] : [];
    this.pendingBytes = all.length;
  }

  private emit(line: Buffer): void {
    while (line.length > this.maxLineBytes) {
      const cut = utf8Cut(line, this.maxLineBytes);
      this.sink(line.toString('utf8', 0, cut), cut, this.cut);
      this.cut = true;
      line = line.subarray(cut);
    }
    const continued = this.cut;
    this.cut = false;
    this.sink(line.toString('utf8'), line.length, continued);
  }
}

/**
 * Largest cut <= max that does not split a UTF-8 sequence. Looks only at
 * bytes before `max`, so it is right even when the rest of the character has
 * not arrived yet. Falls back to `max` on invalid input.
 */
export function utf8Cut(buf: Buffer, max: number): number {
  // Find the first byte of the character that holds byte max-1.
  let start = max - 1;
  while (start > 0 && max - 1 - start < 3 && ((buf[start] ?? 0) & 0xc0) === 0x80) start--;
  const lead = buf[start] ?? 0;
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (start + length <= max) return max; // that character ends within the cut
  return start > 0 ? start : max;
}

/** Receives one stamped line of one stream (`continued`: see LineSink). */
export type StampedLineSink = (stream: StreamName, time: string, text: string, bytes: number, continued: boolean) => void;

/**
 * Both streams of one container: payload bytes in (from the demuxer), stamped
 * lines out. The clock is read at most once per push, and only if the push
 * completes a line.
 */
export class StampedLineReader {
  private readonly stdout: LineSplitter;
  private readonly stderr: LineSplitter;
  private stamp: string | undefined;

  constructor(
    private readonly clock: LogClock,
    private readonly sink: StampedLineSink,
    maxLineBytes = DEFAULT_MAX_LINE_BYTES,
  ) {
    this.stdout = new LineSplitter((text, bytes, continued) => this.sink('stdout', this.time(), text, bytes, continued), maxLineBytes);
    this.stderr = new LineSplitter((text, bytes, continued) => this.sink('stderr', this.time(), text, bytes, continued), maxLineBytes);
  }

  /** Matches the demuxer's PayloadSink. */
  readonly push = (stream: StreamId, bytes: Buffer): void => {
    this.stamp = undefined;
    (stream === STDERR ? this.stderr : this.stdout).push(bytes);
  };

  /** Emits partial lines of both streams. */
  flush(): void {
    this.stamp = undefined;
    this.stdout.flush();
    this.stderr.flush();
  }

  private time(): string {
    return (this.stamp ??= this.clock.now());
  }
}
