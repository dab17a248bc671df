/**
 * The journal's on-disk format and the pieces that read it: segment lines,
 * recovering a segment at start, the bit set that says which records of a
 * segment are unconfirmed. journal.ts owns the state; this file only knows
 * bytes.
 *
 * Layout: a directory of segment files `seg-<12 digits>.jnl`, appended to,
 * never rewritten, plus `dead-letter.jsonl` for records CouchDB rejects for
 * good. Segment lines:
 *
 *   R <ordinal> <document JSON>\n     a record; ordinals count up within a segment
 *   A <ordinal> <ordinal> ...\n       those records are confirmed (or dead-lettered)
 *
 * JSON.stringify never emits a raw newline, so a line is a record. Only the
 * newest ("active") segment receives records; it is sealed once it reaches
 * `segmentMaxBytes`. Confirmations go into the segment holding the record,
 * so a segment explains itself: at start, a segment's unconfirmed records
 * are its R ordinals minus its A ordinals. A sealed segment is deleted as
 * soon as all its records are confirmed; the active one when the journal
 * closes with nothing unconfirmed in it.
 *
 * A write that fails (disk full) may leave part of a line behind: the
 * segment is sealed, its next line starts on a fresh line, and at start a
 * segment's unterminated last line is cut off (its append() had failed).
 * Confirmation lines are written without fsync: losing one only means the
 * record is written to CouchDB again, where it conflicts and counts as done.
 */
import { writeSync } from 'node:fs';
import { mkdir, open, readdir, readFile, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/logger.js';
import type { DeadLetter } from './records.js';

const SEGMENT_NAME = /^seg-(\d{12})\.jnl$/;
const NEWLINE = 0x0a;
const R = 0x52;
const A = 0x41;
const SPACE = 0x20;
/** Ordinals per confirmation line, to keep lines short. */
const ACK_LINE_MAX = 512;

/** What a segment file says at start: its unconfirmed records and where the next ordinal starts. */
export interface RecoveredSegment {
  nextOrdinal: number;
  bytes: number;
  unconfirmed: Bits;
}

export function segmentFileName(seq: number): string {
  return `seg-${String(seq).padStart(12, '0')}.jnl`;
}

/**
 * Opens a journal directory (creating it if needed): recovers every segment,
 * deletes the fully confirmed ones, returns the others, oldest first, and
 * the highest sequence number seen.
 */
export async function recoverDirectory(dir: string, logger: Logger): Promise<{ segments: Array<RecoveredSegment & { seq: number; path: string }>; maxSeq: number }> {
  await mkdir(dir, { recursive: true }).catch((err: unknown) => {
    throw new Error(`creating the journal directory ${dir}: ${(err as Error).message}`, { cause: err });
  });
  const names = (await readdir(dir)).filter((name) => SEGMENT_NAME.test(name)).sort();
  const segments: Array<RecoveredSegment & { seq: number; path: string }> = [];
  let maxSeq = 0;
  for (const name of names) {
    const seq = Number(SEGMENT_NAME.exec(name)?.[1]);
    maxSeq = Math.max(maxSeq, seq);
    const path = join(dir, name);
    const recovered = await recoverSegment(path, logger);
    if (recovered.unconfirmed.count === 0) await unlink(path);
    else segments.push({ seq, path, ...recovered });
  }
  return { segments, maxSeq };
}

/** Reads a segment at start: cuts off a torn last line and works out which records are unconfirmed. */
async function recoverSegment(path: string, logger: Logger): Promise<RecoveredSegment> {
  let data = await readFile(path);
  if (data.length > 0 && data[data.length - 1] !== NEWLINE) {
    const end = data.lastIndexOf(NEWLINE) + 1;
    logger.warn({ segment: path, droppedBytes: data.length - end }, 'journal segment ends in a partial line (a write interrupted by a crash); cutting it off');
    await truncate(path, end);
    data = data.subarray(0, end);
  }
  const unconfirmed = new Bits();
  let nextOrdinal = 0;
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(NEWLINE, start);
    if (end < 0) end = data.length;
    const kind = data[start];
    if (kind === R && data[start + 1] === SPACE) {
      const ordinal = readNumber(data, start + 2);
      if (ordinal !== undefined) {
        unconfirmed.set(ordinal.value);
        nextOrdinal = Math.max(nextOrdinal, ordinal.value + 1);
      }
    } else if (kind === A && data[start + 1] === SPACE) {
      let at = start + 2;
      while (at < end) {
        const ordinal = readNumber(data, at);
        if (ordinal === undefined) break;
        unconfirmed.clear(ordinal.value);
        at = ordinal.next + 1;
      }
    }
    start = end + 1;
  }
  return { nextOrdinal, bytes: data.length, unconfirmed };
}

/** Confirmation lines for ordinals of one segment; after a failed write, starting on a fresh line. */
export function ackLines(ordinals: readonly number[], tainted: boolean): Buffer {
  let text = tainted ? '\n' : '';
  for (let i = 0; i < ordinals.length; i += ACK_LINE_MAX) {
    text += `A ${ordinals.slice(i, i + ACK_LINE_MAX).join(' ')}\n`;
  }
  return Buffer.from(text, 'latin1');
}

/**
 * Appends entries to the dead-letter file, one JSON line each, with
 * fdatasync: once they are acknowledged in the journal, this is their only copy.
 */
export async function appendDeadLetters(file: string, entries: readonly DeadLetter[]): Promise<void> {
  const at = new Date().toISOString();
  const lines = entries
    .map((e) => {
      const body = e.raw === true ? `"raw":${JSON.stringify(e.json)}` : `"doc":${e.json}`;
      return `{"at":${JSON.stringify(at)},"id":${JSON.stringify(e.id ?? null)},"error":${JSON.stringify(e.error)},"reason":${JSON.stringify(e.reason)},${body}}\n`;
    })
    .join('');
  await (async () => {
    const handle = await open(file, 'a');
    try {
      await writeAll(handle, Buffer.from(lines, 'utf8'));
      await handle.datasync();
    } finally {
      await handle.close();
    }
  })().catch((err: unknown) => {
    throw new Error(`writing ${entries.length} record(s) to the dead-letter file ${file}: ${(err as Error).message}`, { cause: err });
  });
}

/** The record lines of a segment: ordinal and the byte range of the document JSON. */
export function* recordLines(data: Buffer): Generator<{ ordinal: number; start: number; end: number }> {
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(NEWLINE, start);
    if (end < 0) break; // unterminated: still being written, or torn
    if (data[start] === R && data[start + 1] === SPACE) {
      const ordinal = readNumber(data, start + 2);
      if (ordinal !== undefined && data[ordinal.next] === SPACE) {
        yield { ordinal: ordinal.value, start: ordinal.next + 1, end };
      }
    }
    start = end + 1;
  }
}

/** Decimal digits at `at`; `next` is the index after them. */
function readNumber(data: Buffer, at: number): { value: number; next: number } | undefined {
  let value = 0;
  let i = at;
  while (i < data.length) {
    const c = data[i] as number;
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
    i++;
  }
  return i === at ? undefined : { value, next: i };
}

export function documentId(json: string): string | { problem: string } {
  try {
    const doc: unknown = JSON.parse(json);
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { problem: 'not a JSON object' };
    const id = (doc as Record<string, unknown>)._id;
    return typeof id === 'string' ? id : { problem: 'no string _id' };
  } catch (err) {
    return { problem: `not JSON: ${(err as Error).message}` };
  }
}

/**
 * Up to this size a segment write is synchronous. A write() into the page
 * cache takes a few microseconds on the event loop; the same write through
 * libuv's thread pool (FileHandle.write) costs 40-120 us of CPU in thread
 * hand-offs, and the journal writes once or twice per activation. A larger
 * batch (a burst, a backlog) goes through the pool so that the event loop is
 * never held for long. fdatasync, where asked for, stays asynchronous.
 */
export const SYNC_WRITE_MAX_BYTES = 64 * 1024;

export async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  if (data.length <= SYNC_WRITE_MAX_BYTES) {
    while (offset < data.length) offset += writeSync(handle.fd, data, offset, data.length - offset);
    return;
  }
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}

export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A growable bit set with a population count and a cursor to the lowest set bit. */
export class Bits {
  private words = new Uint32Array(32);
  private size = 0;
  /** No bit below this index is set. */
  private low = 0;

  get count(): number {
    return this.size;
  }

  has(index: number): boolean {
    const word = index >>> 5;
    return word < this.words.length && ((this.words[word] as number) & (1 << (index & 31))) !== 0;
  }

  set(index: number): void {
    const word = index >>> 5;
    if (word >= this.words.length) {
      const grown = new Uint32Array(Math.max(word + 1, this.words.length * 2));
      grown.set(this.words);
      this.words = grown;
    }
    const mask = 1 << (index & 31);
    if (((this.words[word] as number) & mask) !== 0) return;
    this.words[word] = (this.words[word] as number) | mask;
    this.size++;
    if (index < this.low) this.low = index;
  }

  /** Returns whether the bit was set. */
  clear(index: number): boolean {
    if (!this.has(index)) return false;
    const word = index >>> 5;
    this.words[word] = (this.words[word] as number) & ~(1 << (index & 31));
    this.size--;
    return true;
  }

  /** The lowest set index, or Infinity when none is set. */
  lowest(): number {
    if (this.size === 0) return Infinity;
    while (this.low < this.words.length * 32) {
      const bits = (this.words[this.low >>> 5] as number) >>> (this.low & 31);
      if (bits === 0) {
        this.low = (this.low | 31) + 1;
        continue;
      }
      this.low += 31 - Math.clz32(bits & -bits);
      return this.low;
    }
    return Infinity;
  }
}
