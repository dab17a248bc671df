/**
 * The shapes of journaled activation records, shared by the journal, its
 * memory (held-records.ts), the bulk writer and the scheduler.
 */

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

/** What `take()` would hand out now, for deciding when a batch is due. */
export interface Available {
  /** Records ready in memory. */
  records: number;
  bytes: number;
  /** When the oldest ready record became ready (ms since epoch); undefined when none is. */
  since: number | undefined;
  /**
   * Unconfirmed records only on disk that take() can read back now (there is
   * room in memory), plus damaged ones waiting to be handed out.
   */
  onDisk: number;
}

export interface JournalStats {
  segments: number;
  bytes: number;
  unconfirmed: number;
  /** Records in memory: ready or taken. */
  held: number;
  /** Unconfirmed records that exist only on disk right now. */
  spilled: number;
  /** write() calls that appended records since open (one per group commit and segment). */
  appendWrites: number;
}
