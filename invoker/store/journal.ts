/**
 * The activation writer's write-ahead journal: every activation record is on
 * local disk before `store()` resolves, and stays there until CouchDB has
 * confirmed it, so a crash or kill -9 of the invoker loses nothing it had
 * accepted.
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
 * Writes are group commits: all records appended while the previous write
 * runs (or within one event-loop turn) go out in one write() call. One
 * serial queue runs every file operation, so a read of a segment never sees
 * a half-written batch. In memory the journal keeps, per live segment, one
 * bit per record (unconfirmed or not) - not the documents.
 *
 * Durability: a write() that returned is in the OS page cache, which
 * survives a kill -9 of the process; only a machine or kernel crash loses it.
 * `sync: true` adds an fdatasync per batch (and per new segment, a sync of
 * the directory) for that case, at a cost in throughput; see the writer.
 *
 * A write that fails (disk full) may leave part of a line behind: the
 * segment is sealed, its next line starts on a fresh line, and at start a
 * segment's unterminated last line is cut off (its store() had failed).
 * Confirmation lines are written without fsync: losing one only means the
 * record is written to CouchDB again, where it conflicts and counts as done.
 */
import { mkdir, open, readdir, readFile, truncate, unlink, appendFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/logger.js';

const SEGMENT_NAME = /^seg-(\d{12})\.jnl$/;
const NEWLINE = 0x0a;
const R = 0x52;
const A = 0x41;
const SPACE = 0x20;
/** Ordinals per confirmation line, to keep lines short. */
const ACK_LINE_MAX = 512;

/** Where a record sits in the journal. */
export interface RecordRef {
  readonly segment: number;
  readonly ordinal: number;
}

export interface JournalRecord extends RecordRef {
  /** The document's `_id`. */
  readonly id: string;
  /** The document, serialised once, exactly as it goes to CouchDB. */
  readonly json: string;
  /** UTF-8 length of `json`. */
  readonly bytes: number;
}

/** A record line that cannot be turned back into a document (only after disk damage). */
export interface CorruptRecord extends RecordRef {
  readonly raw: string;
  readonly problem: string;
}

export interface DeadLetter {
  readonly ref: RecordRef;
  readonly id: string | undefined;
  /** The document JSON, or with `raw` the text of a line that is not a document. */
  readonly json: string;
  readonly raw?: boolean;
  readonly error: string;
  readonly reason: string;
}

export interface JournalOptions {
  dir: string;
  /** A segment is sealed once it holds this many bytes. Default 8 MiB. */
  segmentMaxBytes?: number;
  /** fdatasync every append batch. Default false (see the module comment). */
  sync?: boolean;
  /** Default `<dir>/dead-letter.jsonl`. */
  deadLetterFile?: string;
  logger: Logger;
  /**
   * Called synchronously once a batch is written and before the appenders'
   * promises resolve, so the owner can decide what to keep in memory before
   * anything else runs.
   */
  onAppended?: (records: readonly JournalRecord[]) => void;
}

export interface JournalStats {
  segments: number;
  bytes: number;
  unconfirmed: number;
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  nextOrdinal: number;
  bytes: number;
  readonly unconfirmed: Bits;
  sealed: boolean;
  /** A write failed: the file may end in a partial line. */
  tainted: boolean;
  handle: FileHandle | undefined;
}

interface PendingAppend {
  id: string;
  json: string;
  resolve: (record: JournalRecord) => void;
  reject: (err: Error) => void;
}

export class Journal {
  readonly dir: string;
  readonly deadLetterFile: string;
  private readonly segmentMaxBytes: number;
  private readonly sync: boolean;
  private readonly logger: Logger;
  private readonly onAppended: ((records: readonly JournalRecord[]) => void) | undefined;
  /** Insertion order is segment order: oldest first. */
  private readonly segments = new Map<number, Segment>();
  private active: Segment | undefined;
  private nextSeq: number;
  private unconfirmedTotal = 0;
  private closed = false;

  /** Every file operation runs on this chain, one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private appendBuffer: PendingAppend[] = [];
  private appendJob: Promise<void> | undefined;
  private ackBuffer = new Map<number, number[]>();
  private ackJob: Promise<void> | undefined;

  private constructor(options: JournalOptions, nextSeq: number) {
    this.dir = options.dir;
    this.deadLetterFile = options.deadLetterFile ?? join(options.dir, 'dead-letter.jsonl');
    this.segmentMaxBytes = options.segmentMaxBytes ?? 8 * 1024 * 1024;
    this.sync = options.sync ?? false;
    this.logger = options.logger;
    this.onAppended = options.onAppended;
    this.nextSeq = nextSeq;
  }

  /**
   * Opens (creating it if needed) the journal in `options.dir`: reads every
   * segment, cuts off a torn last line, deletes fully confirmed segments and
   * keeps the others, sealed, for the owner to replay.
   */
  static async open(options: JournalOptions): Promise<Journal> {
    await mkdir(options.dir, { recursive: true }).catch((err: unknown) => {
      throw new Error(`creating the journal directory ${options.dir}: ${(err as Error).message}`, { cause: err });
    });
    const names = (await readdir(options.dir)).filter((name) => SEGMENT_NAME.test(name)).sort();
    const found: Segment[] = [];
    let maxSeq = 0;
    for (const name of names) {
      const seq = Number(SEGMENT_NAME.exec(name)?.[1]);
      maxSeq = Math.max(maxSeq, seq);
      const path = join(options.dir, name);
      const segment = await recoverSegment(path, seq, options.logger);
      if (segment.unconfirmed.count === 0) {
        await unlink(path);
      } else {
        found.push(segment);
      }
    }
    const journal = new Journal(options, maxSeq + 1);
    for (const segment of found) {
      journal.segments.set(segment.seq, segment);
      journal.unconfirmedTotal += segment.unconfirmed.count;
    }
    if (found.length > 0) {
      options.logger.info(
        { dir: options.dir, segments: found.length, unconfirmed: journal.unconfirmedTotal },
        'journal holds unconfirmed activation records from an earlier run',
      );
    }
    return journal;
  }

  /** Records written and not yet confirmed. */
  get unconfirmed(): number {
    return this.unconfirmedTotal;
  }

  /**
   * Writes one record; resolves once it is in the journal file (in the same
   * write as every other record appended meanwhile).
   */
  append(id: string, json: string): Promise<JournalRecord> {
    if (this.closed) return Promise.reject(new Error(`appending activation record ${id}: the journal in ${this.dir} is closed`));
    return new Promise<JournalRecord>((resolve, reject) => {
      this.appendBuffer.push({ id, json, resolve, reject });
      // setImmediate, not a microtask: gathers every record of this event-loop turn.
      this.appendJob ??= new Promise<void>((ready) => setImmediate(ready)).then(() =>
        this.enqueue(() => this.writeAppends()),
      );
    });
  }

  /** Resolves when every append requested before the call has been written (or has failed). */
  async whenAppended(): Promise<void> {
    await this.appendJob;
    await this.enqueue(async () => undefined);
  }

  /**
   * Marks records as confirmed. Takes effect in memory at once (they are
   * never read back again); the confirmation lines follow in one write.
   */
  acknowledge(refs: Iterable<RecordRef>): void {
    const emptied: Segment[] = [];
    for (const ref of refs) {
      const segment = this.segments.get(ref.segment);
      if (segment === undefined || !segment.unconfirmed.clear(ref.ordinal)) continue;
      this.unconfirmedTotal--;
      if (segment.sealed && segment.unconfirmed.count === 0) {
        this.segments.delete(segment.seq);
        this.ackBuffer.delete(segment.seq);
        emptied.push(segment);
        continue;
      }
      let pending = this.ackBuffer.get(segment.seq);
      if (pending === undefined) {
        pending = [];
        this.ackBuffer.set(segment.seq, pending);
      }
      pending.push(ref.ordinal);
    }
    for (const segment of emptied) {
      void this.enqueue(() => this.deleteSegment(segment));
    }
    if (this.ackBuffer.size > 0 && !this.closed) {
      this.ackJob ??= new Promise<void>((ready) => setImmediate(ready)).then(() => this.enqueue(() => this.writeAcks()));
    }
  }

  /**
   * Appends the entries to the dead-letter file, with fdatasync: once the
   * owner confirms them in the journal, this is their only copy.
   */
  async writeDeadLetters(entries: readonly DeadLetter[]): Promise<void> {
    if (entries.length === 0) return;
    const at = new Date().toISOString();
    const lines = entries
      .map((e) => {
        const body = e.raw === true ? `"raw":${JSON.stringify(e.json)}` : `"doc":${e.json}`;
        return `{"at":${JSON.stringify(at)},"id":${JSON.stringify(e.id ?? null)},"error":${JSON.stringify(e.error)},"reason":${JSON.stringify(e.reason)},${body}}\n`;
      })
      .join('');
    await this.enqueue(async () => {
      const handle = await open(this.deadLetterFile, 'a');
      try {
        await writeAll(handle, Buffer.from(lines, 'utf8'));
        await handle.datasync();
      } finally {
        await handle.close();
      }
    }).catch((err: unknown) => {
      throw new Error(`writing ${entries.length} record(s) to the dead-letter file ${this.deadLetterFile}: ${(err as Error).message}`, { cause: err });
    });
  }

  /**
   * Reads back unconfirmed records that the owner does not hold in memory
   * (spilled, or left by an earlier run), oldest segment first, up to the
   * limits. `held(segment)` is how many records of that segment the owner
   * holds, to skip segments with nothing to read.
   */
  readUnconfirmed(
    limits: { records: number; bytes: number },
    isHeld: (ref: RecordRef) => boolean,
    held: (segment: number) => number,
  ): Promise<{ records: JournalRecord[]; corrupt: CorruptRecord[] }> {
    return this.enqueue(async () => {
      const records: JournalRecord[] = [];
      const corrupt: CorruptRecord[] = [];
      let bytes = 0;
      for (const segment of [...this.segments.values()]) {
        if (records.length >= limits.records || bytes >= limits.bytes) break;
        if (segment.unconfirmed.count <= held(segment.seq)) continue;
        const data = await readFile(segment.path);
        if (!this.segments.has(segment.seq)) continue;
        for (const line of recordLines(data)) {
          if (!segment.unconfirmed.has(line.ordinal) || isHeld({ segment: segment.seq, ordinal: line.ordinal })) continue;
          const json = data.toString('utf8', line.start, line.end);
          const id = documentId(json);
          if (typeof id !== 'string') {
            corrupt.push({ segment: segment.seq, ordinal: line.ordinal, raw: json, problem: id.problem });
            continue;
          }
          const size = line.end - line.start;
          records.push({ segment: segment.seq, ordinal: line.ordinal, id, json, bytes: size });
          bytes += size;
          if (records.length >= limits.records || bytes >= limits.bytes) break;
        }
      }
      return { records, corrupt };
    });
  }

  /** Per live segment, the ordinals handed out so far: what "everything until now" means for flush(). */
  marks(): Map<number, number> {
    const marks = new Map<number, number>();
    for (const segment of this.segments.values()) marks.set(segment.seq, segment.nextOrdinal);
    return marks;
  }

  /** Whether every record below the marks is confirmed. */
  confirmedBelow(marks: ReadonlyMap<number, number>): boolean {
    for (const [seq, mark] of marks) {
      const segment = this.segments.get(seq);
      if (segment !== undefined && segment.unconfirmed.lowest() < mark) return false;
    }
    return true;
  }

  stats(): JournalStats {
    let bytes = 0;
    for (const segment of this.segments.values()) bytes += segment.bytes;
    return { segments: this.segments.size, bytes, unconfirmed: this.unconfirmedTotal };
  }

  /**
   * Writes what is buffered, then closes. The active segment is deleted if
   * everything in it is confirmed; unconfirmed records stay for the next open().
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.appendJob;
    await this.enqueue(() => this.writeAcks());
    await this.enqueue(async () => {
      const active = this.active;
      this.active = undefined;
      if (active === undefined) return;
      await active.handle?.close();
      active.handle = undefined;
      active.sealed = true;
      if (active.unconfirmed.count === 0) {
        this.segments.delete(active.seq);
        await this.deleteSegment(active);
      }
    });
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.chain.then(job);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async writeAppends(): Promise<void> {
    this.appendJob = undefined;
    const batch = this.appendBuffer;
    this.appendBuffer = [];
    // One write per segment: a burst larger than a segment is cut at segment
    // boundaries, so no segment (and no read-back of one) grows without bound.
    let index = 0;
    while (index < batch.length) {
      const end = await this.writeChunk(batch, index);
      if (end < 0) return;
      index = end;
    }
  }

  /** Writes batch[from..] into the active segment, up to its size; returns where it stopped, or -1 after a failure. */
  private async writeChunk(batch: readonly PendingAppend[], from: number): Promise<number> {
    let segment: Segment | undefined;
    try {
      const target = await this.activeSegment();
      segment = target;
      const first = target.nextOrdinal;
      let text = target.tainted ? '\n' : '';
      let end = from;
      // Sizes in UTF-16 units: close enough to bytes for a rotation threshold.
      while (end < batch.length && (end === from || target.bytes + text.length < this.segmentMaxBytes)) {
        text += `R ${first + end - from} ${(batch[end] as PendingAppend).json}\n`;
        end++;
      }
      // Ordinals are spent even if the write fails, so a partial line can never share one with a later record.
      target.nextOrdinal += end - from;
      const data = Buffer.from(text, 'utf8');
      await writeAll(target.handle as FileHandle, data);
      if (this.sync) await (target.handle as FileHandle).datasync();
      target.bytes += data.length;
      target.tainted = false;
      const records: JournalRecord[] = [];
      for (let i = from; i < end; i++) {
        const pending = batch[i] as PendingAppend;
        records.push({
          segment: target.seq,
          ordinal: first + i - from,
          id: pending.id,
          json: pending.json,
          bytes: Buffer.byteLength(pending.json, 'utf8'),
        });
        target.unconfirmed.set(first + i - from);
      }
      this.unconfirmedTotal += records.length;
      this.onAppended?.(records);
      records.forEach((record, i) => (batch[from + i] as PendingAppend).resolve(record));
      return end;
    } catch (err) {
      if (segment !== undefined) {
        segment.tainted = true;
        await this.sealActive().catch(() => undefined);
      }
      const failed = batch.length - from;
      const error = new Error(`appending ${failed} activation record(s) to the journal in ${this.dir}: ${(err as Error).message}`, { cause: err });
      this.logger.error({ dir: this.dir, records: failed, err: (err as Error).message }, 'journal append failed');
      for (let i = from; i < batch.length; i++) (batch[i] as PendingAppend).reject(error);
      return -1;
    }
  }

  private async writeAcks(): Promise<void> {
    this.ackJob = undefined;
    const acks = this.ackBuffer;
    this.ackBuffer = new Map();
    for (const [seq, ordinals] of acks) {
      const segment = this.segments.get(seq);
      if (segment === undefined) continue;
      let text = segment.tainted ? '\n' : '';
      for (let i = 0; i < ordinals.length; i += ACK_LINE_MAX) {
        text += `A ${ordinals.slice(i, i + ACK_LINE_MAX).join(' ')}\n`;
      }
      const data = Buffer.from(text, 'latin1');
      try {
        if (segment.handle !== undefined) await writeAll(segment.handle, data);
        else await appendFile(segment.path, data);
        segment.bytes += data.length;
        segment.tainted = false;
      } catch (err) {
        // Harmless for correctness: those records are written again after a restart and conflict.
        this.logger.warn({ segment: segment.path, records: ordinals.length, err: (err as Error).message }, 'writing journal confirmations failed');
      }
    }
  }

  private async activeSegment(): Promise<Segment> {
    if (this.active !== undefined && this.active.bytes >= this.segmentMaxBytes) await this.sealActive();
    if (this.active !== undefined) return this.active;
    const seq = this.nextSeq++;
    const path = join(this.dir, `seg-${String(seq).padStart(12, '0')}.jnl`);
    const handle = await open(path, 'ax').catch((err: unknown) => {
      throw new Error(`creating journal segment ${path}: ${(err as Error).message}`, { cause: err });
    });
    if (this.sync) await syncDirectory(this.dir);
    const segment: Segment = {
      seq,
      path,
      nextOrdinal: 0,
      bytes: 0,
      unconfirmed: new Bits(),
      sealed: false,
      tainted: false,
      handle,
    };
    this.segments.set(seq, segment);
    this.active = segment;
    return segment;
  }

  private async sealActive(): Promise<void> {
    const segment = this.active;
    if (segment === undefined) return;
    this.active = undefined;
    segment.sealed = true;
    const handle = segment.handle;
    segment.handle = undefined;
    await handle?.close();
    if (segment.unconfirmed.count === 0) {
      this.segments.delete(segment.seq);
      this.ackBuffer.delete(segment.seq);
      await this.deleteSegment(segment);
    }
  }

  private async deleteSegment(segment: Segment): Promise<void> {
    try {
      await segment.handle?.close();
      segment.handle = undefined;
      await unlink(segment.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      // Left behind, it is re-read at the next start and its records (all confirmed) conflict.
      this.logger.warn({ segment: segment.path, err: (err as Error).message }, 'deleting a confirmed journal segment failed');
    }
  }
}

/** Reads a segment at start: cuts off a torn last line and works out which records are unconfirmed. */
async function recoverSegment(path: string, seq: number, logger: Logger): Promise<Segment> {
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
  return { seq, path, nextOrdinal, bytes: data.length, unconfirmed, sealed: true, tainted: false, handle: undefined };
}

/** The record lines of a segment: ordinal and the byte range of the document JSON. */
function* recordLines(data: Buffer): Generator<{ ordinal: number; start: number; end: number }> {
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

function documentId(json: string): string | { problem: string } {
  try {
    const doc: unknown = JSON.parse(json);
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { problem: 'not a JSON object' };
    const id = (doc as Record<string, unknown>)._id;
    return typeof id === 'string' ? id : { problem: 'no string _id' };
  } catch (err) {
    return { problem: `not JSON: ${(err as Error).message}` };
  }
}

async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}

async function syncDirectory(dir: string): Promise<void> {
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
