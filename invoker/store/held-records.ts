/**
 * The journal's memory: which of its unconfirmed records are in memory,
 * ready to hand out or taken by the scheduler, within a bound on count and
 * bytes. Owned by the journal alone (journal.ts decides what goes in and
 * when); kept apart only so each file does one job.
 */
import type { CorruptRecord, JournalRecord, RecordRef } from './records.js';

interface Entry {
  bytes: number;
  taken: boolean;
}

interface Ready {
  record: JournalRecord;
  /** When it became ready (ms since epoch): the batch delay counts from the oldest. */
  since: number;
}

export class HeldRecords {
  /** By segment, by ordinal. */
  private readonly bySegment = new Map<number, Map<number, Entry>>();
  /** Held and not taken, oldest first. */
  private ready: Ready[] = [];
  private readyBytesTotal = 0;
  private countTotal = 0;
  private bytesTotal = 0;

  constructor(
    private readonly maxRecords: number,
    private readonly maxBytes: number,
  ) {}

  get count(): number {
    return this.countTotal;
  }

  get readyCount(): number {
    return this.ready.length;
  }

  get readyBytes(): number {
    return this.readyBytesTotal;
  }

  get oldestReady(): number | undefined {
    return this.ready[0]?.since;
  }

  /** Records of one segment in memory. */
  inSegment(segment: number): number {
    return this.bySegment.get(segment)?.size ?? 0;
  }

  has(ref: RecordRef): boolean {
    return this.bySegment.get(ref.segment)?.has(ref.ordinal) ?? false;
  }

  hasRoom(bytes: number): boolean {
    if (this.countTotal === 0) return true; // a record larger than the byte bound still has to go somewhere
    return this.countTotal < this.maxRecords && this.bytesTotal + bytes <= this.maxBytes;
  }

  /** Drained to half the bound: time to read spilled records back. */
  atMostHalf(): boolean {
    return this.countTotal <= this.maxRecords / 2 && this.bytesTotal <= this.maxBytes / 2;
  }

  /** Adds a record at the end of the ready list. */
  hold(record: JournalRecord, since: number): void {
    this.entries(record.segment).set(record.ordinal, { bytes: record.bytes, taken: false });
    this.countTotal++;
    this.bytesTotal += record.bytes;
    this.ready.push({ record, since });
    this.readyBytesTotal += record.bytes;
  }

  /** A damaged record read from disk: held (so it is not read again) and taken at once. */
  holdTaken(ref: CorruptRecord): void {
    this.entries(ref.segment).set(ref.ordinal, { bytes: 0, taken: true });
    this.countTotal++;
  }

  /** Takes the oldest ready records up to the limits (at least one). */
  take(limits: { records: number; bytes: number }): JournalRecord[] {
    let count = 0;
    let bytes = 0;
    while (count < this.ready.length && count < limits.records) {
      const next = (this.ready[count] as Ready).record.bytes;
      if (count > 0 && bytes + next > limits.bytes) break;
      bytes += next;
      count++;
    }
    const records = this.ready.splice(0, count).map((item) => item.record);
    this.readyBytesTotal -= bytes;
    for (const record of records) {
      const entry = this.bySegment.get(record.segment)?.get(record.ordinal);
      if (entry !== undefined) entry.taken = true;
    }
    return records;
  }

  /** Taken records back to the front of the ready list, due at once; damaged ones are released (read again later). */
  giveBack(records: readonly (JournalRecord | CorruptRecord)[]): void {
    const back: Ready[] = [];
    for (const record of records) {
      const entry = this.bySegment.get(record.segment)?.get(record.ordinal);
      if (entry === undefined || !entry.taken) continue;
      if ('json' in record) {
        entry.taken = false;
        back.push({ record, since: 0 });
        this.readyBytesTotal += record.bytes;
      } else {
        this.release(record);
      }
    }
    this.ready.unshift(...back);
  }

  /** Forgets a record (confirmed); returns whether it was ready rather than taken. */
  release(ref: RecordRef): boolean {
    const entries = this.bySegment.get(ref.segment);
    const entry = entries?.get(ref.ordinal);
    if (entries === undefined || entry === undefined) return false;
    entries.delete(ref.ordinal);
    if (entries.size === 0) this.bySegment.delete(ref.segment);
    this.countTotal--;
    this.bytesTotal -= entry.bytes;
    return !entry.taken;
  }

  /** Drops released records from the ready list (confirmed without being taken). */
  pruneReady(): void {
    this.ready = this.ready.filter((item) => {
      const keep = this.has(item.record);
      if (!keep) this.readyBytesTotal -= item.record.bytes;
      return keep;
    });
  }

  private entries(segment: number): Map<number, Entry> {
    let entries = this.bySegment.get(segment);
    if (entries === undefined) {
      entries = new Map();
      this.bySegment.set(segment, entries);
    }
    return entries;
  }
}
