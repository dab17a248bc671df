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
