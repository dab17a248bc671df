/**
 * Writes activation records to CouchDB's `activations` database, losing none
 * that `store()` accepted, whatever CouchDB or the process does.
 *
 * Design (simplest that holds up):
 * - Write-ahead: `store()` appends the record to the journal (journal.ts)
 *   and resolves once it is written there, in one write per event-loop turn
 *   for all records of that turn. Only then does the record take part in a
 *   batch. The journal forgets a record once CouchDB confirmed it.
 * - Batches: records wait in memory until a batch is due - `batchMaxDocs`
 *   records, `batchMaxBytes` bytes, or `batchDelayMs` after its oldest
 *   record - and go out as one `_bulk_docs` call, at most
 *   `maxConcurrentBatches` at a time. Documents are serialised once, in
 *   store(); the bulk body is spliced from those strings, not re-encoded.
 * - Answers: `ok` and `conflict` confirm a record (ids are deterministic,
 *   `<namespace>/<activationId>`, so a conflict means an earlier attempt -
 *   before a crash, or whose answer was lost - stored it; this makes every
 *   replay idempotent: exactly one document per record). The one exception:
 *   with `replaceable`, a conflicting document it accepts (the controller's
 *   forced record of an activation this invoker did run) is read for its
 *   `_rev` and overwritten; a document written without `replaceable` never
 *   overwrites anything. `forbidden`,
 *   `unauthorized`, `bad_request`, `illegal_docid`, `doc_validation`,
 *   `invalid` are permanent: the record goes to the dead-letter file, logged
 *   by id. Any other per-document error is retried. A whole request
 *   answered 400 or 413 is split in halves until the document the server
 *   cannot take stands alone (pouchdb-server answers 400 for the whole call
 *   when one `_id` starts with `_`; CouchDB 413 for an oversized body); that
 *   one is dead-lettered. Other failures (refused, reset, timeout, 5xx, 401,
 *   403) put the batch back and pause all sending for an exponential
 *   backoff with jitter (`backoffMinMs`..`backoffMaxMs`). A 404 (database
 *   gone) re-creates the database first.
 * - Bounded memory: at most `maxInMemoryRecords` / `maxInMemoryBytes` of
 *   records are held. A record that does not fit is "spilled": it exists
 *   only in the journal. While anything is spilled, new records spill too
 *   (oldest first, no starvation), and whenever what is held drops below
 *   half the bound, spilled records are read back from the journal, oldest
 *   segment first. Replay after a restart is the same path: every record the
 *   journal holds at start counts as spilled.
 * - flush() waits until every record stored before the call is confirmed;
 *   close() flushes within a timeout, then stops; what is unconfirmed stays
 *   in the journal for the next start().
 *
 * Logs carry ids and counts only, never document contents (user results).
 * One journal directory belongs to one writer at a time (one per invoker).
 */
import type { ServerScope } from 'nano';
import type { Logger } from '../telemetry/logger.js';
import { Journal, type CorruptRecord, type DeadLetter, type JournalRecord, type RecordRef } from './journal.js';
import {
  couchFailure,
  couchRequest,
  createCouchClient,
  deadline,
  describeFailure,
  redactUrl,
  type CouchFailure,
} from './couch.js';

/** An activation record as built by the invoker; stored as is. */
export type ActivationRecord = { _id: string } & Record<string, unknown>;

export type WriteFailureKind = 'request' | 'document' | 'rejected';

/** What the writer reports to metrics; InvokerMetrics adapts to it in main.ts. */
export interface ActivationWriterMetrics {
  /** A `_bulk_docs` call was answered; it carried `docs` records. */
  batchWritten(docs: number): void;
  /**
   * `request`: a whole call failed and will be retried; `document`: one record
   * failed and will be retried; `rejected`: one record went to the dead-letter file.
   */
  failure(kind: WriteFailureKind): void;
}

export interface ActivationWriterOptions {
  /** CouchDB server URL, credentials in it if needed. */
  url: string;
  /** Default `activations`. */
  database?: string;
  journalDir: string;
  /** Default `<journalDir>/dead-letter.jsonl`. */
  deadLetterFile?: string;
  logger: Logger;
  metrics?: ActivationWriterMetrics;
  /** Records per `_bulk_docs` call. Default 200 (100 measured ~30% slower, 500 no faster; smaller halves to bisect). */
  batchMaxDocs?: number;
  /** Bytes of documents per call. Default 1 MiB. */
  batchMaxBytes?: number;
  /**
   * How long a batch may wait for more records after its first. Default 20 ms:
   * measured at ~400 records/s (test/bench/store.bench.ts), 20 ms cuts the
   * `_bulk_docs` calls ninefold against 0 ms (each costs CouchDB a commit)
   * for ~13 ms more median latency; under load batches fill before it matters.
   */
  batchDelayMs?: number;
  /** `_bulk_docs` calls in flight at once. Default 2: one fills while one is answered; 4 measured slower. */
  maxConcurrentBatches?: number;
  /** Records held in memory; beyond, they live only in the journal. Default 10 000. */
  maxInMemoryRecords?: number;
  /** Bytes of records held in memory. Default 32 MiB. */
  maxInMemoryBytes?: number;
  /** Journal segment size. Default 8 MiB. */
  segmentMaxBytes?: number;
  /** fdatasync the journal per append batch (survives a machine crash, not only a process kill). Default false. */
  syncJournal?: boolean;
  /** Deadline of each CouchDB request. Default 30 000 ms. */
  requestTimeoutMs?: number;
  /** Backoff after a failure starts here and doubles. Default 100 ms. */
  backoffMinMs?: number;
  /** ...up to this. Default 10 000 ms. */
  backoffMaxMs?: number;
  /**
   * A stored document (as read back) that a record with the same id replaces
   * instead of yielding to it, e.g. `isForcedRecord`. Default: none (a
   * conflict always means the record is stored).
   */
  replaceable?: (stored: unknown) => boolean;
}

export interface ActivationWriterStats {
  /** store() calls accepted since start. */
  accepted: number;
  /** Records CouchDB confirmed (conflicts included). */
  confirmed: number;
  /** Of those, already stored (a replay or a retried batch). */
  conflicts: number;
  /** Records that replaced a `replaceable` document (a controller's forced record). */
  replaced: number;
  deadLettered: number;
  /** `_bulk_docs` calls answered, and the records in them. */
  batches: number;
  batchedRecords: number;
  lastBatchSize: number;
  requestFailures: number;
  documentRetries: number;
  /** Accepted (or left by an earlier run) and not yet confirmed. */
  pending: number;
  inMemory: number;
  /** Pending records that are only in the journal right now. */
  spilled: number;
  journalSegments: number;
  journalBytes: number;
}

export interface ActivationWriterHealth {
  /** Database known to exist and the last CouchDB call succeeded. */
  healthy: boolean;
  databaseReady: boolean;
  consecutiveFailures: number;
  lastError?: string;
  lastErrorAt?: string;
  lastSuccessAt?: string;
}

export interface FlushResult {
  /** Everything stored before the call is confirmed. */
  complete: boolean;
  /** Records still unconfirmed now (including ones stored after the call). */
  pending: number;
}

/** Per-document errors that no retry can fix. */
const PERMANENT_ERRORS = new Set(['forbidden', 'unauthorized', 'bad_request', 'illegal_docid', 'doc_validation', 'invalid']);

interface Queued {
  record: JournalRecord;
  /** When it became ready to send: the batch delay counts from the oldest. */
  since: number;
}

interface Rejection {
  record: JournalRecord;
  error: string;
  reason: string;
}

type BulkAnswer = { ok: true; results: Array<{ item: Queued; result: BulkResult }> } | { ok: false; failure: CouchFailure };

interface BulkResult {
  id: string | undefined;
  error: string | undefined;
  reason: string | undefined;
}

interface FlushWaiter {
  marks: ReadonlyMap<number, number>;
  done: (complete: boolean) => void;
}

export class ActivationWriter {
  private readonly server: ServerScope;
  private readonly database: string;
  private readonly journalDir: string;
  private readonly deadLetterFile: string | undefined;
  private readonly logger: Logger;
  private readonly metrics: ActivationWriterMetrics | undefined;
  private readonly batchMaxDocs: number;
  private readonly batchMaxBytes: number;
  private readonly batchDelayMs: number;
  private readonly maxConcurrentBatches: number;
  private readonly maxInMemoryRecords: number;
  private readonly maxInMemoryBytes: number;
  private readonly segmentMaxBytes: number;
  private readonly syncJournal: boolean;
  private readonly requestTimeoutMs: number;
  private readonly backoffMinMs: number;
  private readonly backoffMaxMs: number;
  private readonly replaceable: ((stored: unknown) => boolean) | undefined;
  /** `_rev` of a replaceable document a held record is to overwrite, by id. */
  private readonly replaceRevs = new Map<string, string>();

  private journal: Journal | undefined;
  private starting = false;
  private stopped = false;
  private closing: Promise<FlushResult> | undefined;
  private readonly stopSignal = new AbortController();

  /** Held records ready to send, oldest first. */
  private queue: Queued[] = [];
  private queueBytes = 0;
  /** Every record held in memory (queued, in flight, being dead-lettered), by segment. */
  private readonly held = new Map<number, Set<number>>();
  private heldCount = 0;
  private heldBytes = 0;
  private awaitingJournal = 0;
  private inFlight = 0;
  private readonly requests = new Set<Promise<void>>();
  private refilling = false;
  /** flush() calls waiting: batches go out at once instead of waiting for the delay. */
  private urgent = 0;
  private readonly flushWaiters = new Set<FlushWaiter>();

  private databaseReady = false;
  private ensuringDatabase = false;
  private consecutiveFailures = 0;
  /** Batches in a row in which CouchDB took no record although it answered. */
  private retryStreak = 0;
  private lastError: string | undefined;
  private lastErrorAt: number | undefined;
  private lastSuccessAt: number | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  private backoffTimer: NodeJS.Timeout | undefined;
  private retryTimers = new Set<NodeJS.Timeout>();

  private readonly counters = {
    accepted: 0,
    confirmed: 0,
    conflicts: 0,
    replaced: 0,
    deadLettered: 0,
    batches: 0,
    batchedRecords: 0,
    lastBatchSize: 0,
    requestFailures: 0,
    documentRetries: 0,
  };

  constructor(options: ActivationWriterOptions) {
    this.server = createCouchClient(options.url);
    this.database = options.database ?? 'activations';
    this.journalDir = options.journalDir;
    this.deadLetterFile = options.deadLetterFile;
    this.metrics = options.metrics;
    this.batchMaxDocs = positive('batchMaxDocs', options.batchMaxDocs ?? 200);
    this.batchMaxBytes = positive('batchMaxBytes', options.batchMaxBytes ?? 1024 * 1024);
    this.batchDelayMs = nonNegative('batchDelayMs', options.batchDelayMs ?? 20);
    this.maxConcurrentBatches = positive('maxConcurrentBatches', options.maxConcurrentBatches ?? 2);
    this.maxInMemoryRecords = positive('maxInMemoryRecords', options.maxInMemoryRecords ?? 10_000);
    this.maxInMemoryBytes = positive('maxInMemoryBytes', options.maxInMemoryBytes ?? 32 * 1024 * 1024);
    this.segmentMaxBytes = positive('segmentMaxBytes', options.segmentMaxBytes ?? 8 * 1024 * 1024);
    this.syncJournal = options.syncJournal ?? false;
    this.requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs ?? 30_000);
    this.backoffMinMs = positive('backoffMinMs', options.backoffMinMs ?? 100);
    this.backoffMaxMs = Math.max(this.backoffMinMs, options.backoffMaxMs ?? 10_000);
    this.replaceable = options.replaceable;
    this.logger = options.logger.child({ component: 'activation-writer', db: this.database, couchdb: redactUrl(options.url) });
  }

  /**
   * Opens the journal (records left by an earlier run are replayed from it)
   * and starts creating the database in the background: an unreachable
   * CouchDB delays writing, never startup. Rejects only if the journal
   * cannot be opened.
   */
  async start(): Promise<void> {
    if (this.starting || this.journal !== undefined) throw new Error(`starting the activation writer for ${this.journalDir}: already started`);
    this.starting = true;
    try {
      this.journal = await Journal.open({
        dir: this.journalDir,
        segmentMaxBytes: this.segmentMaxBytes,
        sync: this.syncJournal,
        ...(this.deadLetterFile === undefined ? {} : { deadLetterFile: this.deadLetterFile }),
        logger: this.logger,
        onAppended: (records) => this.onAppended(records),
      });
    } catch (err) {
      throw new Error(`starting the activation writer: opening the journal in ${this.journalDir}: ${(err as Error).message}`, { cause: err });
    } finally {
      this.starting = false;
    }
    this.logger.info({ journalDir: this.journalDir, replaying: this.journal.unconfirmed }, 'activation writer started');
    this.ensureDatabase(1);
    this.maybeRefill();
  }

  /**
   * Accepts a record: resolves once it is in the journal (it will reach
   * CouchDB eventually, across restarts), rejects if it could not be
   * journaled (not started, closed, not serialisable, disk failure).
   */
  store(record: ActivationRecord): Promise<void> {
    const id: unknown = record._id;
    if (typeof id !== 'string' || id === '') {
      return Promise.reject(new Error('storing an activation record: it has no string _id'));
    }
    let json: string;
    try {
      json = JSON.stringify(record);
    } catch (err) {
      return Promise.reject(new Error(`storing activation record ${id}: it cannot be serialised: ${(err as Error).message}`, { cause: err }));
    }
    return this.storeSerialized(id, json);
  }

  /**
   * `store()` for a record already serialized (by protocol's serializer, in
   * upstream's field order): the hot path then serializes each record once.
   * `json` must be a JSON object whose `_id` is `id`.
   */
  storeSerialized(id: string, json: string): Promise<void> {
    const journal = this.journal;
    if (journal === undefined) return Promise.reject(new Error(`storing activation record ${id}: the activation writer is not started`));
    this.counters.accepted++;
    this.awaitingJournal++;
    return journal.append(id, json).then(
      () => undefined,
      (err: unknown) => {
        this.awaitingJournal--;
        throw err;
      },
    );
  }

  /**
   * Resolves once every record stored before the call is confirmed by
   * CouchDB (or dead-lettered), or when `timeoutMs` (default 30 s) passes;
   * `complete` says which. Sends waiting batches at once.
   */
  async flush(options: { timeoutMs?: number } = {}): Promise<FlushResult> {
    const journal = this.journal;
    if (journal === undefined) return { complete: this.awaitingJournal === 0, pending: this.pending() };
    const timeoutMs = options.timeoutMs ?? 30_000;
    const started = Date.now();
    this.urgent++;
    this.schedule();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timedOut = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      const appended = await Promise.race([journal.whenAppended().then(() => true as const), timedOut]);
      if (!appended) return { complete: false, pending: this.pending() };
      const marks = journal.marks();
      this.schedule();
      if (journal.confirmedBelow(marks)) return { complete: true, pending: this.pending() };
      let waiter: FlushWaiter | undefined;
      const confirmed = new Promise<boolean>((resolve) => {
        waiter = { marks, done: resolve };
        this.flushWaiters.add(waiter);
      });
      const complete = await Promise.race([confirmed, timedOut]);
      if (waiter !== undefined) this.flushWaiters.delete(waiter);
      if (!complete) {
        this.logger.warn({ timeoutMs, pending: this.pending(), ms: Date.now() - started }, 'flush timed out with records unconfirmed');
      }
      return { complete, pending: this.pending() };
    } finally {
      clearTimeout(timer);
      this.urgent--;
    }
  }

  /**
   * Flushes for up to `timeoutMs` (default 10 s), then stops: requests still
   * running are aborted, and unconfirmed records stay in the journal for the
   * next start(). Records stored while it flushes are still journaled; once
   * the journal is closed, store() rejects.
   */
  close(options: { timeoutMs?: number } = {}): Promise<FlushResult> {
    this.closing ??= this.shutdown(options.timeoutMs ?? 10_000);
    return this.closing;
  }

  /** For the readiness endpoint: the database exists and the last CouchDB call worked. */
  isHealthy(): boolean {
    return this.journal !== undefined && !this.stopped && this.databaseReady && this.consecutiveFailures === 0;
  }

  health(): ActivationWriterHealth {
    const health: ActivationWriterHealth = {
      healthy: this.isHealthy(),
      databaseReady: this.databaseReady,
      consecutiveFailures: this.consecutiveFailures,
    };
    if (this.lastError !== undefined) health.lastError = this.lastError;
    if (this.lastErrorAt !== undefined) health.lastErrorAt = new Date(this.lastErrorAt).toISOString();
    if (this.lastSuccessAt !== undefined) health.lastSuccessAt = new Date(this.lastSuccessAt).toISOString();
    return health;
  }

  stats(): ActivationWriterStats {
    const journal = this.journal?.stats() ?? { segments: 0, bytes: 0, unconfirmed: 0 };
    return {
      ...this.counters,
      pending: this.pending(),
      inMemory: this.heldCount,
      spilled: this.spilled(),
      journalSegments: journal.segments,
      journalBytes: journal.bytes,
    };
  }

  /** Accepted and not yet confirmed: the `invoker_store_pending_records` gauge. */
  pending(): number {
    return (this.journal?.unconfirmed ?? 0) + this.awaitingJournal;
  }

  // ---------------------------------------------------------------- memory

  private spilled(): number {
    return Math.max(0, (this.journal?.unconfirmed ?? 0) - this.heldCount);
  }

  private onAppended(records: readonly JournalRecord[]): void {
    this.awaitingJournal -= records.length;
    // The journal already counts this batch as unconfirmed: what it holds beyond memory and this batch is spilled.
    let spilled = this.spilled() - records.length;
    const now = Date.now();
    for (const record of records) {
      if (spilled === 0 && !this.stopped && this.hasRoom(record.bytes)) {
        this.hold(record, now);
      } else {
        spilled++;
      }
    }
    this.schedule();
    if (spilled > 0) this.maybeRefill();
  }

  private hasRoom(bytes: number): boolean {
    if (this.heldCount === 0) return true; // a record larger than the byte bound still has to go somewhere
    return this.heldCount < this.maxInMemoryRecords && this.heldBytes + bytes <= this.maxInMemoryBytes;
  }

  private hold(record: JournalRecord, now: number): void {
    this.markHeld(record, record.bytes);
    this.queue.push({ record, since: now });
    this.queueBytes += record.bytes;
  }

  private markHeld(ref: RecordRef, bytes: number): void {
    let ordinals = this.held.get(ref.segment);
    if (ordinals === undefined) {
      ordinals = new Set();
      this.held.set(ref.segment, ordinals);
    }
    ordinals.add(ref.ordinal);
    this.heldCount++;
    this.heldBytes += bytes;
  }

  private release(ref: RecordRef, bytes: number): void {
    const ordinals = this.held.get(ref.segment);
    if (ordinals === undefined || !ordinals.delete(ref.ordinal)) return;
    if (ordinals.size === 0) this.held.delete(ref.segment);
    this.heldCount--;
    this.heldBytes -= bytes;
  }

  private isHeld(ref: RecordRef): boolean {
    return this.held.get(ref.segment)?.has(ref.ordinal) ?? false;
  }

  /** Reads spilled records back from the journal once memory has drained to half. */
  private maybeRefill(): void {
    const journal = this.journal;
    if (journal === undefined || this.refilling || this.stopped || this.spilled() === 0) return;
    if (this.heldCount > this.maxInMemoryRecords / 2 || this.heldBytes > this.maxInMemoryBytes / 2) return;
    this.refilling = true;
    journal
      .readUnconfirmed(
        { records: this.maxInMemoryRecords - this.heldCount, bytes: this.maxInMemoryBytes - this.heldBytes },
        (ref) => this.isHeld(ref),
        (segment) => this.held.get(segment)?.size ?? 0,
      )
      .then(
        ({ records, corrupt }) => {
          this.refilling = false;
          const now = Date.now();
          for (const record of records) if (!this.isHeld(record)) this.hold(record, now);
          if (corrupt.length > 0) this.rejectCorrupt(corrupt);
          if (records.length > 0) this.logger.debug({ records: records.length, spilled: this.spilled() }, 'read records back from the journal');
          this.schedule();
          if (records.length === 0 && corrupt.length === 0 && this.spilled() > 0) {
            // Nothing readable although the journal counts records: do not spin, look again later.
            this.retryLater(() => this.maybeRefill(), this.backoffMaxMs);
          }
        },
        (err: unknown) => {
          this.refilling = false;
          this.logger.error({ dir: this.journalDir, err: (err as Error).message }, 'reading records back from the journal failed; retrying');
          this.retryLater(() => this.maybeRefill(), this.backoffMaxMs);
        },
      );
  }

  private rejectCorrupt(corrupt: readonly CorruptRecord[]): void {
    for (const entry of corrupt) this.markHeld(entry, 0);
    const letters: DeadLetter[] = corrupt.map((entry) => ({
      ref: entry,
      id: undefined,
      json: entry.raw,
      raw: true,
      error: 'corrupt',
      reason: entry.problem,
    }));
    void this.deadLetter(letters, () => corrupt.forEach((entry) => this.release(entry, 0)));
  }

  // ---------------------------------------------------------------- sending

  private schedule(): void {
    if (this.stopped || !this.databaseReady || this.backoffTimer !== undefined) return;
    while (this.inFlight < this.maxConcurrentBatches && this.queue.length > 0) {
      const oldest = (this.queue[0] as Queued).since;
      const now = Date.now();
      const due =
        this.urgent > 0 ||
        this.queue.length >= this.batchMaxDocs ||
        this.queueBytes >= this.batchMaxBytes ||
        now - oldest >= this.batchDelayMs;
      if (!due) {
        this.batchTimer ??= setTimeout(() => {
          this.batchTimer = undefined;
          this.schedule();
        }, oldest + this.batchDelayMs - now);
        return;
      }
      this.send(this.takeBatch());
    }
  }

  private takeBatch(): Queued[] {
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && count < this.batchMaxDocs) {
      const next = (this.queue[count] as Queued).record.bytes;
      if (count > 0 && bytes + next > this.batchMaxBytes) break;
      bytes += next;
      count++;
    }
    this.queueBytes -= bytes;
    return this.queue.splice(0, count);
  }

  /** Puts records back at the front, keeping their age so they go out first. */
  private requeue(batch: readonly Queued[]): void {
    if (batch.length === 0) return;
    this.queue.unshift(...batch);
    for (const item of batch) this.queueBytes += item.record.bytes;
  }

  private send(batch: Queued[]): void {
    this.inFlight++;
    const request = this.writeBatch(batch)
      .catch((err: unknown) => {
        // writeBatch handles CouchDB's answers itself; this is a bug guard, not a path.
        this.logger.error({ records: batch.length, err: (err as Error).message }, 'activation batch failed unexpectedly; retrying');
        this.requeue(batch.filter((item) => this.isHeld(item.record)));
      })
      .finally(() => {
        this.inFlight--;
        this.requests.delete(request);
        this.schedule();
        this.maybeRefill();
      });
    this.requests.add(request);
  }

  /** `split`: a half of a batch the server refused as a whole (see the module comment). */
  private async writeBatch(batch: Queued[], split = false): Promise<void> {
    if (this.stopped) return;
    if (split && this.backoffTimer !== undefined) {
      this.requeue(batch); // the other half failed for good reason: wait like everything else
      return;
    }
    const answer = await this.postBulk(batch);
    if (!answer.ok) {
      const failure = answer.failure;
      const refused = failure.statusCode === 400 || failure.statusCode === 413;
      if (refused && batch.length > 1) {
        const half = batch.length >> 1;
        await this.writeBatch(batch.slice(0, half), true);
        await this.writeBatch(batch.slice(half), true);
        return;
      }
      if (refused && !this.stopped) {
        const only = batch[0] as Queued;
        await this.reject([{ record: only.record, error: failure.error ?? `http_${failure.statusCode}`, reason: failure.reason ?? failure.message }]);
        return;
      }
      this.requeue(batch);
      if (failure.statusCode === 404 && !this.stopped) {
        this.databaseReady = false;
        this.ensureDatabase(1);
      }
      this.requestFailed(failure, batch.length);
      return;
    }
    this.requestSucceeded(batch.length);

    const confirmed: JournalRecord[] = [];
    const retry: Queued[] = [];
    const rejected: Rejection[] = [];
    const conflicts: Queued[] = [];
    answer.results.forEach(({ item, result }) => {
      if (result.error === undefined) {
        if (this.replaceRevs.delete(item.record.id)) this.counters.replaced++;
        confirmed.push(item.record);
      } else if (result.error === 'conflict') {
        if (this.replaceable !== undefined) conflicts.push(item);
        else {
          this.counters.conflicts++;
          confirmed.push(item.record);
        }
      } else if (PERMANENT_ERRORS.has(result.error)) {
        rejected.push({ record: item.record, error: result.error, reason: result.reason ?? '' });
      } else {
        retry.push(item);
      }
    });
    if (conflicts.length > 0) {
      const { stored, replace, unreadable } = await this.sortConflicts(conflicts);
      confirmed.push(...stored);
      // Sent again at once, with the `_rev` of the document they replace.
      this.requeue(replace);
      retry.push(...unreadable);
    }
    this.confirm(confirmed);
    if (retry.length > 0) {
      this.counters.documentRetries += retry.length;
      for (let i = 0; i < retry.length; i++) this.metrics?.failure('document');
      this.logger.warn(
        { records: retry.length, ids: retry.slice(0, 5).map((item) => item.record.id) },
        'CouchDB refused some activation records for now; retrying',
      );
      this.requeue(retry);
      // Only pause when nothing got through, so one stubborn record does not slow the rest.
      if (confirmed.length === 0 && rejected.length === 0) this.armBackoff(++this.retryStreak);
    }
    if (confirmed.length > 0) this.retryStreak = 0;
    if (rejected.length > 0) await this.reject(rejected);
  }

  /**
   * Records whose id was taken: each is stored already (the document is not
   * replaceable: this record or an earlier attempt of it) or is to replace
   * the document (its `_rev` is remembered for the next send). When the
   * documents cannot be read, all of them are retried (and conflict again).
   */
  private async sortConflicts(conflicts: readonly Queued[]): Promise<{ stored: JournalRecord[]; replace: Queued[]; unreadable: Queued[] }> {
    let rows: unknown;
    try {
      rows = await couchRequest(this.server, {
        db: this.database,
        path: '_all_docs',
        method: 'POST',
        qs: { include_docs: true },
        body: { keys: conflicts.map((item) => item.record.id) },
        signal: deadline(this.requestTimeoutMs, this.stopSignal.signal),
      });
    } catch (err) {
      this.logger.warn({ records: conflicts.length, reason: describeFailure(couchFailure(err)) }, 'reading conflicting activation records failed; retrying them');
      return { stored: [], replace: [], unreadable: [...conflicts] };
    }
    const docs = new Map<string, { _rev?: unknown }>();
    const list = (rows as { rows?: unknown } | null)?.rows;
    if (Array.isArray(list)) {
      for (const row of list as Array<{ id?: unknown; doc?: unknown }>) {
        if (typeof row?.id === 'string' && typeof row.doc === 'object' && row.doc !== null) docs.set(row.id, row.doc as { _rev?: unknown });
      }
    }
    const stored: JournalRecord[] = [];
    const replace: Queued[] = [];
    for (const item of conflicts) {
      const doc = docs.get(item.record.id);
      if (doc !== undefined && typeof doc._rev === 'string' && this.replaceable?.(doc) === true) {
        this.replaceRevs.set(item.record.id, doc._rev);
        this.logger.info({ id: item.record.id }, 'replacing the forced record the controller wrote with the invoker\'s record');
        replace.push(item);
      } else if (doc === undefined) {
        // Deleted or unreadable in between: send it again, without a revision.
        this.replaceRevs.delete(item.record.id);
        replace.push(item);
      } else {
        this.replaceRevs.delete(item.record.id);
        this.counters.conflicts++;
        stored.push(item.record);
      }
    }
    return { stored, replace, unreadable: [] };
  }

  private async postBulk(batch: readonly Queued[]): Promise<BulkAnswer> {
    let body = '{"docs":[';
    for (let i = 0; i < batch.length; i++) {
      const record = (batch[i] as Queued).record;
      const rev = this.replaceRevs.get(record.id);
      // The journaled JSON is an object: the revision goes in front of its first field.
      const json = rev === undefined ? record.json : `{"_rev":${JSON.stringify(rev)},${record.json.slice(1)}`;
      body += (i === 0 ? '' : ',') + json;
    }
    body += ']}';
    let raw: unknown;
    try {
      raw = await couchRequest(this.server, {
        db: this.database,
        path: '_bulk_docs',
        method: 'POST',
        body,
        dontStringify: true,
        signal: deadline(this.requestTimeoutMs, this.stopSignal.signal),
      });
    } catch (err) {
      return { ok: false, failure: couchFailure(err) };
    }
    const results = pairBulkResults(raw, batch);
    if (typeof results === 'string') {
      return { ok: false, failure: { statusCode: undefined, error: undefined, reason: undefined, message: `malformed _bulk_docs answer: ${results}` } };
    }
    return { ok: true, results };
  }

  private confirm(records: readonly JournalRecord[]): void {
    if (records.length === 0) return;
    this.journal?.acknowledge(records);
    for (const record of records) this.release(record, record.bytes);
    this.counters.confirmed += records.length;
    this.checkFlushWaiters();
  }

  private async reject(rejections: readonly Rejection[]): Promise<void> {
    for (const rejection of rejections) {
      this.logger.error(
        { id: rejection.record.id, error: rejection.error, reason: rejection.reason, deadLetterFile: this.journal?.deadLetterFile },
        'CouchDB rejected an activation record permanently; moved it to the dead-letter file',
      );
      this.metrics?.failure('rejected');
    }
    const letters: DeadLetter[] = rejections.map((r) => ({
      ref: r.record,
      id: r.record.id,
      json: r.record.json,
      error: r.error,
      reason: r.reason,
    }));
    await this.deadLetter(letters, () => rejections.forEach((r) => this.release(r.record, r.record.bytes)));
  }

  /**
   * Once the letters are safely in the dead-letter file, they count as done:
   * confirmed in the journal and released from memory together, so the
   * journal's count and the held count never disagree.
   */
  private async deadLetter(letters: readonly DeadLetter[], release: () => void): Promise<void> {
    const journal = this.journal;
    if (journal === undefined) return;
    try {
      await journal.writeDeadLetters(letters);
      journal.acknowledge(letters.map((letter) => letter.ref));
      release();
      this.counters.deadLettered += letters.length;
      this.checkFlushWaiters();
    } catch (err) {
      // Still unconfirmed in the journal: released from memory they count as spilled and come back later.
      this.logger.error({ records: letters.length, err: (err as Error).message }, 'writing the dead-letter file failed; the records stay in the journal');
      release();
      this.consecutiveFailures++;
      this.armBackoff();
    }
  }

  private checkFlushWaiters(): void {
    const journal = this.journal;
    if (journal === undefined || this.flushWaiters.size === 0) return;
    for (const waiter of this.flushWaiters) {
      if (journal.confirmedBelow(waiter.marks)) {
        this.flushWaiters.delete(waiter);
        waiter.done(true);
      }
    }
  }

  // ---------------------------------------------------------------- health, backoff

  private requestSucceeded(records: number): void {
    if (this.consecutiveFailures > 0) {
      this.logger.info({ after: this.consecutiveFailures }, 'CouchDB accepts activation records again');
    }
    this.consecutiveFailures = 0;
    this.lastSuccessAt = Date.now();
    this.counters.batches++;
    this.counters.batchedRecords += records;
    this.counters.lastBatchSize = records;
    this.metrics?.batchWritten(records);
  }

  private requestFailed(failure: CouchFailure, records: number): void {
    if (this.stopped) return; // aborted by close(): the records stay in the journal
    this.consecutiveFailures++;
    this.counters.requestFailures++;
    this.lastError = `writing ${records} activation record(s) to ${this.database}: ${describeFailure(failure)}`;
    this.lastErrorAt = Date.now();
    this.metrics?.failure('request');
    const delayMs = this.armBackoff();
    this.logger.warn(
      { records, statusCode: failure.statusCode, error: failure.error, reason: failure.message, attempt: this.consecutiveFailures, retryInMs: delayMs, pending: this.pending() },
      'writing activation records to CouchDB failed; retrying',
    );
  }

  /** Pauses all sending; returns the pause, or 0 if one was already running. */
  private armBackoff(attempt = this.consecutiveFailures): number {
    if (this.stopped || this.backoffTimer !== undefined) return 0;
    const delayMs = this.backoffDelay(Math.max(1, attempt));
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = undefined;
      this.schedule();
      this.maybeRefill();
    }, delayMs);
    return delayMs;
  }

  /** Exponential, capped, with "equal jitter": half fixed, half random, so invokers do not retry in step. */
  private backoffDelay(attempt: number): number {
    const ceiling = Math.min(this.backoffMaxMs, this.backoffMinMs * 2 ** Math.min(attempt - 1, 30));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  private retryLater(action: () => void, delayMs: number): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      action();
    }, delayMs);
    this.retryTimers.add(timer);
  }

  /** Creates the database (an existing one is fine), retrying with backoff until it works. */
  private ensureDatabase(attempt: number): void {
    if (this.stopped || (this.ensuringDatabase && attempt === 1)) return;
    this.ensuringDatabase = true;
    void this.createDatabase().then((failure) => {
      if (this.stopped) return;
      if (failure === undefined) {
        this.ensuringDatabase = false;
        this.databaseReady = true;
        this.lastSuccessAt = Date.now();
        this.schedule();
        this.maybeRefill();
        return;
      }
      this.lastError = `creating database ${this.database}: ${describeFailure(failure)}`;
      this.lastErrorAt = Date.now();
      const delayMs = this.backoffDelay(attempt);
      // Every attempt while short, then only every tenth: a long outage should not flood the log.
      if (attempt <= 3 || attempt % 10 === 0) {
        this.logger.warn({ attempt, retryInMs: delayMs, statusCode: failure.statusCode, reason: failure.message }, 'cannot create the activations database yet; retrying');
      }
      this.retryLater(() => this.ensureDatabase(attempt + 1), delayMs);
    });
  }

  private async createDatabase(): Promise<CouchFailure | undefined> {
    try {
      await couchRequest(this.server, { db: this.database, method: 'PUT', signal: deadline(this.requestTimeoutMs, this.stopSignal.signal) });
      this.logger.info({}, 'created the activations database');
      return undefined;
    } catch (err) {
      const failure = couchFailure(err);
      if (failure.statusCode === 412 || failure.error === 'file_exists') return undefined;
      if (failure.statusCode === 401 || failure.statusCode === 403) {
        // Credentials that may write documents but not create databases: fine if it exists.
        try {
          await couchRequest(this.server, { db: this.database, signal: deadline(this.requestTimeoutMs, this.stopSignal.signal) });
          return undefined;
        } catch {
          return failure;
        }
      }
      return failure;
    }
  }

  private async shutdown(timeoutMs: number): Promise<FlushResult> {
    const journal = this.journal;
    if (journal === undefined) {
      this.stopped = true;
      return { complete: true, pending: 0 };
    }
    const result = await this.flush({ timeoutMs });
    this.stopped = true;
    clearTimeout(this.batchTimer);
    clearTimeout(this.backoffTimer);
    this.batchTimer = undefined;
    this.backoffTimer = undefined;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    this.stopSignal.abort(new Error('activation writer closing'));
    await Promise.allSettled([...this.requests]);
    for (const waiter of this.flushWaiters) waiter.done(false);
    this.flushWaiters.clear();
    await journal.close();
    const pending = this.pending();
    this.logger.info({ complete: result.complete, pending, confirmed: this.counters.confirmed }, 'activation writer closed');
    return { complete: result.complete, pending };
  }
}

/**
 * Pairs the per-document answers of `_bulk_docs` with the batch. CouchDB
 * answers in request order, pouchdb-server does not, so answers are matched
 * by id (in order among equal ids). A string says what is wrong.
 */
function pairBulkResults(raw: unknown, batch: readonly Queued[]): Array<{ item: Queued; result: BulkResult }> | string {
  if (!Array.isArray(raw)) return 'not an array';
  if (raw.length !== batch.length) return `${raw.length} answers for ${batch.length} documents`;
  const byId = new Map<string, Queued[]>();
  for (const item of batch) {
    const same = byId.get(item.record.id);
    if (same === undefined) byId.set(item.record.id, [item]);
    else same.push(item);
  }
  const pairs: Array<{ item: Queued; result: BulkResult }> = [];
  for (let i = 0; i < raw.length; i++) {
    const entry: unknown = raw[i];
    if (typeof entry !== 'object' || entry === null) return `answer ${i} is not an object`;
    const fields = entry as Record<string, unknown>;
    if (typeof fields.id !== 'string') return `answer ${i} has no id`;
    const item = byId.get(fields.id)?.shift();
    if (item === undefined) return `answer ${i} is for a document not in the batch`;
    pairs.push({
      item,
      result: {
        id: fields.id,
        error: typeof fields.error === 'string' ? fields.error : undefined,
        reason: typeof fields.reason === 'string' ? fields.reason : undefined,
      },
    });
  }
  return pairs;
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`activation writer option ${name} must be > 0, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`activation writer option ${name} must be >= 0, got ${value}`);
  return value;
}
