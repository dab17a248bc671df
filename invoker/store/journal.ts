/**
 * The one book of activation records that are not yet in CouchDB. Every
 * record is on local disk before `append()` resolves and stays there until
 * `acknowledge()` (CouchDB confirmed it) or `deadLetter()`, so a crash or
 * kill -9 of the invoker loses nothing it had accepted.
 *
 * The journal is a cursor over its unconfirmed records: `take()` hands out
 * the oldest records nobody holds, `acknowledge()` ends them, `giveBack()`
 * returns them for a later `take()`. It alone knows which records are
 * unconfirmed, which are in memory and which exist only on disk ("spilled").
 * Memory is bounded: at most `maxHeldRecords` / `maxHeldBytes` of records
 * are held (ready in memory or taken); a record appended beyond the bound,
 * or while anything is spilled (oldest first, no starvation), lives only in
 * its segment file and is read back once what is held drops to half the
 * bound. Replay after a restart is the same path: every record found at
 * open() is spilled.
 *
 * Files: segment files appended to, never rewritten, and a dead-letter
 * file; the format is described in segment-file.ts, the set of
 * them (rotation, sealing, deletion) is segments.ts.
 *
 * Writes are group commits: all records appended while the previous write
 * runs (or within one event-loop turn) go out in one write() call. One
 * serial queue runs every file operation, so a read of a segment never sees
 * a half-written batch.
 *
 * Durability: a write() that returned is in the OS page cache, which
 * survives a kill -9 of the process; only a machine or kernel crash loses it.
 * `sync: true` adds an fdatasync per batch (and per new segment, a sync of
 * the directory) for that case, at a cost in throughput. Failed writes and
 * lost confirmation lines: see segment-file.ts.
 */
import { appendFile, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/logger.js';
import { HeldRecords } from './held-records.js';
import type { Available, CorruptRecord, DeadLetter, JournalRecord, JournalStats, RecordRef } from './records.js';
import { ackLines, appendDeadLetters, documentId, recordLines, recoverDirectory, writeAll } from './segment-file.js';
import { Segments, type Segment } from './segments.js';

export { Bits } from './segment-file.js';
export type { Available, CorruptRecord, DeadLetter, JournalRecord, JournalStats, RecordRef } from './records.js';

export interface JournalOptions {
  dir: string;
  /** A segment is sealed once it holds this many bytes. Default 8 MiB. */
  segmentMaxBytes?: number;
  /** fdatasync every append batch. Default false (see the module comment). */
  sync?: boolean;
  /** Default `<dir>/dead-letter.jsonl`. */
  deadLetterFile?: string;
  /** Records held in memory (ready or taken); beyond, they live only on disk. Default 10 000. */
  maxHeldRecords?: number;
  /** Bytes of records held in memory. Default 32 MiB. */
  maxHeldBytes?: number;
  logger: Logger;
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
  private readonly sync: boolean;
  private readonly logger: Logger;
  private readonly segments: Segments;
  private unconfirmedTotal = 0;
  private closed = false;

  private readonly held: HeldRecords;
  /** Damaged records read from disk, held until taken. */
  private corrupt: CorruptRecord[] = [];
  private refilling: Promise<void> | undefined;

  /** Every file operation runs on this chain, one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private appendBuffer: PendingAppend[] = [];
  private appendJob: Promise<void> | undefined;
  private appending = 0;
  private appendWrites = 0;
  private ackBuffer = new Map<number, number[]>();
  private ackJob: Promise<void> | undefined;

  private constructor(options: JournalOptions, nextSeq: number) {
    this.dir = options.dir;
    this.deadLetterFile = options.deadLetterFile ?? join(options.dir, 'dead-letter.jsonl');
    this.sync = options.sync ?? false;
    this.held = new HeldRecords(options.maxHeldRecords ?? 10_000, options.maxHeldBytes ?? 32 * 1024 * 1024);
    this.logger = options.logger;
    this.segments = new Segments(
      {
        dir: options.dir,
        maxBytes: options.segmentMaxBytes ?? 8 * 1024 * 1024,
        sync: this.sync,
        logger: options.logger,
        dropped: (seq) => this.ackBuffer.delete(seq),
      },
      nextSeq,
    );
  }

  /**
   * Opens (creating it if needed) the journal in `options.dir`: reads every
   * segment, cuts off a torn last line, deletes fully confirmed segments and
   * keeps the others, sealed; their records are handed out by take().
   */
  static async open(options: JournalOptions): Promise<Journal> {
    const { segments, maxSeq } = await recoverDirectory(options.dir, options.logger);
    const found: Segment[] = segments.map((segment) => ({ ...segment, sealed: true, tainted: false, handle: undefined }));
    const journal = new Journal(options, maxSeq + 1);
    for (const segment of found) {
      journal.segments.add(segment);
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

  /** Records appended or being appended, not yet confirmed: the pending gauge. */
  get pending(): number {
    return this.unconfirmedTotal + this.appending;
  }

  /** Unconfirmed records not in memory. */
  get spilled(): number {
    return Math.max(0, this.unconfirmedTotal - this.held.count);
  }

  /**
   * Writes one record; resolves once it is in the journal file (in the same
   * write as every other record appended meanwhile).
   */
  append(id: string, json: string): Promise<JournalRecord> {
    if (this.closed) return Promise.reject(new Error(`appending activation record ${id}: the journal in ${this.dir} is closed`));
    this.appending++;
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

  available(): Available {
    return {
      records: this.held.readyCount,
      bytes: this.held.readyBytes,
      since: this.held.oldestReady,
      onDisk: (this.held.hasRoom(0) ? this.spilled : 0) + this.corrupt.length,
    };
  }

  /**
   * Hands out the oldest records nobody holds, up to the limits (at least
   * one), reading spilled ones back from disk when none is in memory.
   * Damaged records found on disk come back in `corrupt`, for the dead-letter
   * file. Each record stays taken until acknowledged or given back.
   */
  async take(limits: { records: number; bytes: number }): Promise<{ records: JournalRecord[]; corrupt: CorruptRecord[] }> {
    if (this.held.readyCount === 0 && this.corrupt.length === 0 && this.spilled > 0 && !this.closed) {
      await (this.refilling ?? this.refill());
    }
    const corrupt = this.corrupt;
    this.corrupt = [];
    const records = this.held.take(limits);
    return { records, corrupt };
  }

  /**
   * Returns taken records for a later take(), in front of everything else:
   * they are the oldest. A damaged record given back is read from disk again.
   */
  giveBack(records: readonly (JournalRecord | CorruptRecord)[]): void {
    this.held.giveBack(records);
  }

  /**
   * Marks records as confirmed. Takes effect in memory at once (they are
   * never handed out again); the confirmation lines follow in one write.
   */
  acknowledge(refs: Iterable<RecordRef>): void {
    const emptied: Segment[] = [];
    let untaken = false;
    for (const ref of refs) {
      const segment = this.segments.get(ref.segment);
      if (segment === undefined || !segment.unconfirmed.clear(ref.ordinal)) continue;
      this.unconfirmedTotal--;
      if (this.held.release(ref)) untaken = true;
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
    if (untaken) this.held.pruneReady();
    for (const segment of emptied) {
      void this.enqueue(() => this.segments.remove(segment));
    }
    if (this.ackBuffer.size > 0 && !this.closed) {
      this.ackJob ??= new Promise<void>((ready) => setImmediate(ready)).then(() => this.enqueue(() => this.writeAcks()));
    }
    this.prefetch();
  }

  /**
   * Appends the entries to the dead-letter file, with fdatasync (it becomes
   * their only copy), then acknowledges them. Rejects, leaving them
   * unconfirmed and taken, if the file cannot be written.
   */
  async deadLetter(entries: readonly DeadLetter[]): Promise<void> {
    if (entries.length === 0) return;
    await this.enqueue(() => appendDeadLetters(this.deadLetterFile, entries));
    this.acknowledge(entries.map((e) => e.ref));
  }

  /** Per live segment, the ordinals handed out so far: what "everything until now" means for a flush. */
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
    return { segments: this.segments.size, bytes, unconfirmed: this.unconfirmedTotal, held: this.held.count, spilled: this.spilled, appendWrites: this.appendWrites };
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
    await this.enqueue(() => this.segments.closeActive());
  }

  // ---------------------------------------------------------------- memory

  /** Reads spilled records back in the background once what is held has drained to half the bound. */
  private prefetch(): void {
    if (this.refilling !== undefined || this.closed || this.spilled === 0) return;
    if (!this.held.atMostHalf()) return;
    this.refill().catch(() => undefined);
  }

  /** Reads spilled records back from disk, oldest segment first, up to the memory bound. */
  private refill(): Promise<void> {
    const run = this.enqueue(async () => {
      let records = 0;
      let full = false;
      for (const segment of [...this.segments.values()]) {
        if (!this.segments.has(segment.seq) || segment.unconfirmed.count <= this.held.inSegment(segment.seq)) continue;
        // Stops at the first record that does not fit, so none from a later segment overtakes it.
        if (full || !this.held.hasRoom(0)) break;
        const data = await readFile(segment.path);
        if (!this.segments.has(segment.seq)) continue;
        const now = Date.now();
        for (const line of recordLines(data)) {
          if (!segment.unconfirmed.has(line.ordinal) || this.held.has({ segment: segment.seq, ordinal: line.ordinal })) continue;
          const size = line.end - line.start;
          if (!this.held.hasRoom(size)) {
            full = true;
            break;
          }
          const json = data.toString('utf8', line.start, line.end);
          const id = documentId(json);
          if (typeof id !== 'string') {
            const damaged = { segment: segment.seq, ordinal: line.ordinal, raw: json, problem: id.problem };
            this.held.holdTaken(damaged);
            this.corrupt.push(damaged);
            continue;
          }
          this.held.hold({ segment: segment.seq, ordinal: line.ordinal, id, json, bytes: size }, now);
          records++;
        }
      }
      if (records > 0) this.logger.debug({ records, spilled: this.spilled }, 'read records back from the journal');
    });
    this.refilling = run.then(
      () => {
        this.refilling = undefined;
      },
      (err: unknown) => {
        this.refilling = undefined;
        this.logger.error({ dir: this.dir, err: (err as Error).message }, 'reading records back from the journal failed');
        throw new Error(`reading activation records back from the journal in ${this.dir}: ${(err as Error).message}`, { cause: err });
      },
    );
    return this.refilling;
  }

  // ---------------------------------------------------------------- files

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
      const target = await this.segments.appendTarget();
      segment = target;
      const first = target.nextOrdinal;
      let text = target.tainted ? '\n' : '';
      let end = from;
      // Sizes in UTF-16 units: close enough to bytes for a rotation threshold.
      while (end < batch.length && (end === from || target.bytes + text.length < this.segments.maxBytes)) {
        text += `R ${first + end - from} ${(batch[end] as PendingAppend).json}\n`;
        end++;
      }
      // Ordinals are spent even if the write fails, so a partial line can never share one with a later record.
      target.nextOrdinal += end - from;
      const data = Buffer.from(text, 'utf8');
      this.appendWrites++;
      await writeAll(target.handle as FileHandle, data);
      if (this.sync) await (target.handle as FileHandle).datasync();
      target.bytes += data.length;
      target.tainted = false;
      // Held in memory only while nothing older is spilled, so records go out oldest first.
      let spilled = this.spilled > 0;
      const now = Date.now();
      const records: JournalRecord[] = [];
      for (let i = from; i < end; i++) {
        const pending = batch[i] as PendingAppend;
        const record: JournalRecord = {
          segment: target.seq,
          ordinal: first + i - from,
          id: pending.id,
          json: pending.json,
          bytes: Buffer.byteLength(pending.json, 'utf8'),
        };
        target.unconfirmed.set(record.ordinal);
        this.unconfirmedTotal++;
        if (!spilled && !this.closed && this.held.hasRoom(record.bytes)) this.held.hold(record, now);
        else spilled = true;
        records.push(record);
      }
      this.appending -= records.length;
      records.forEach((record, i) => (batch[from + i] as PendingAppend).resolve(record));
      return end;
    } catch (err) {
      if (segment !== undefined) {
        segment.tainted = true;
        await this.segments.sealActive().catch(() => undefined);
      }
      const failed = batch.length - from;
      this.appending -= failed;
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
      const data = ackLines(ordinals, segment.tainted);
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
}
