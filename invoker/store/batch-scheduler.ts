/**
 * Between the journal and the bulk writer: decides when a batch goes out,
 * acts on the writer's verdicts, backs off, creates the database, reports
 * health and answers flush().
 *
 * - Batches: a batch is due once the journal has `batchMaxDocs` records or
 *   `batchMaxBytes` bytes ready, once its oldest ready record has waited
 *   `batchDelayMs`, at once while records wait on disk (a backlog, or a
 *   replay after a restart) or a flush() waits. At most
 *   `maxConcurrentBatches` are in flight.
 * - Verdicts: `stored` and `conflict-resolved` acknowledge the record in the
 *   journal; `dead-letter` moves it to the journal's dead-letter file
 *   (logged by id); `retry` gives it back to the journal, to go out again
 *   first. A request failure pauses all sending for an exponential backoff
 *   with jitter (`backoffMinMs`..`backoffMaxMs`); so do per-document retries
 *   when nothing in the batch got through, so one stubborn record does not
 *   slow the rest. A 404 (database gone) re-creates the database first.
 *
 * The scheduler holds no record between batches: what is unconfirmed, in
 * memory or on disk, is the journal's to know.
 */
import type { Logger } from '../telemetry/logger.js';
import { describeFailure, type CouchFailure } from './couch.js';
import type { BulkWriter, WriteOutcome } from './bulk-writer.js';
import type { Journal } from './journal.js';
import type { CorruptRecord, DeadLetter, JournalRecord, RecordRef } from './records.js';

export type WriteFailureKind = 'request' | 'document' | 'rejected';

/** What the writer reports to metrics; InvokerMetrics is adapted to it in invoker/invoker.ts. */
export interface ActivationWriterMetrics {
  /** A `_bulk_docs` call was answered; it carried `docs` records. */
  batchWritten(docs: number): void;
  /**
   * `request`: a whole call failed and will be retried; `document`: one record
   * failed and will be retried; `rejected`: one record went to the dead-letter file.
   */
  failure(kind: WriteFailureKind): void;
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

export interface BatchSchedulerOptions {
  journal: Journal;
  writer: BulkWriter;
  database: string;
  logger: Logger;
  metrics: ActivationWriterMetrics | undefined;
  batchMaxDocs: number;
  batchMaxBytes: number;
  batchDelayMs: number;
  maxConcurrentBatches: number;
  backoffMinMs: number;
  backoffMaxMs: number;
}

export interface BatchSchedulerCounters {
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
}

interface FlushWaiter {
  marks: ReadonlyMap<number, number>;
  done: (complete: boolean) => void;
}

export function zeroCounters(): BatchSchedulerCounters {
  return { confirmed: 0, conflicts: 0, replaced: 0, deadLettered: 0, batches: 0, batchedRecords: 0, lastBatchSize: 0, requestFailures: 0, documentRetries: 0 };
}

export class BatchScheduler {
  readonly counters: BatchSchedulerCounters = zeroCounters();
  private readonly journal: Journal;
  private readonly writer: BulkWriter;
  private readonly logger: Logger;
  private stopped = false;
  private readonly stopSignal = new AbortController();
  private inFlight = 0;
  private readonly requests = new Set<Promise<void>>();
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
  private recheckTimer: NodeJS.Timeout | undefined;
  private readonly retryTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly options: BatchSchedulerOptions) {
    this.journal = options.journal;
    this.writer = options.writer;
    this.logger = options.logger;
  }

  /** Starts creating the database in the background: an unreachable CouchDB delays writing, never startup. */
  start(): void {
    this.ensureDatabase(1);
  }

  /** Records were appended (or anything else changed): send what is due. */
  schedule(): void {
    if (this.stopped || !this.databaseReady || this.backoffTimer !== undefined) return;
    while (this.inFlight < this.options.maxConcurrentBatches) {
      const ready = this.journal.available();
      if (ready.records === 0 && ready.onDisk === 0) return;
      const now = Date.now();
      const oldest = ready.since ?? now;
      const due =
        this.urgent > 0 ||
        ready.onDisk > 0 ||
        ready.records >= this.options.batchMaxDocs ||
        ready.bytes >= this.options.batchMaxBytes ||
        now - oldest >= this.options.batchDelayMs;
      if (!due) {
        this.batchTimer ??= setTimeout(() => {
          this.batchTimer = undefined;
          this.schedule();
        }, oldest + this.options.batchDelayMs - now);
        return;
      }
      this.send();
    }
  }

  isHealthy(): boolean {
    return !this.stopped && this.databaseReady && this.consecutiveFailures === 0;
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

  /**
   * Resolves once every record appended before the call is confirmed (or
   * dead-lettered), or when `timeoutMs` passes; `complete` says which.
   */
  async flush(timeoutMs: number): Promise<FlushResult> {
    const journal = this.journal;
    const started = Date.now();
    this.urgent++;
    this.schedule();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timedOut = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      const appended = await Promise.race([journal.whenAppended().then(() => true as const), timedOut]);
      if (!appended) return { complete: false, pending: journal.pending };
      const marks = journal.marks();
      this.schedule();
      if (journal.confirmedBelow(marks)) return { complete: true, pending: journal.pending };
      let waiter: FlushWaiter | undefined;
      const confirmed = new Promise<boolean>((resolve) => {
        waiter = { marks, done: resolve };
        this.flushWaiters.add(waiter);
      });
      const complete = await Promise.race([confirmed, timedOut]);
      if (waiter !== undefined) this.flushWaiters.delete(waiter);
      if (!complete) {
        this.logger.warn({ timeoutMs, pending: journal.pending, ms: Date.now() - started }, 'flush timed out with records unconfirmed');
      }
      return { complete, pending: journal.pending };
    } finally {
      clearTimeout(timer);
      this.urgent--;
    }
  }

  /** Stops sending: timers cleared, requests aborted and awaited, waiting flushes answered incomplete. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.batchTimer);
    clearTimeout(this.backoffTimer);
    clearTimeout(this.recheckTimer);
    this.batchTimer = undefined;
    this.backoffTimer = undefined;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    this.stopSignal.abort(new Error('activation writer closing'));
    await Promise.allSettled([...this.requests]);
    for (const waiter of this.flushWaiters) waiter.done(false);
    this.flushWaiters.clear();
  }

  // ---------------------------------------------------------------- one batch

  private send(): void {
    this.inFlight++;
    let taken: readonly JournalRecord[] = [];
    const request = (async (): Promise<boolean> => {
      const { records, corrupt } = await this.journal.take({ records: this.options.batchMaxDocs, bytes: this.options.batchMaxBytes });
      taken = records;
      if (corrupt.length > 0) void this.deadLetterCorrupt(corrupt);
      if (records.length === 0) {
        // Nothing readable although records wait on disk (lines the journal cannot read back): look again later.
        if (corrupt.length === 0) this.recheckLater();
        return corrupt.length > 0;
      }
      if (this.stopped) {
        this.journal.giveBack(records);
        return false;
      }
      await this.apply(records, await this.writer.write(records, this.stopSignal.signal));
      return true;
    })()
      .catch((err: unknown) => {
        // The writer answers every CouchDB outcome with verdicts; this is a disk failure or a bug guard.
        this.logger.error({ records: taken.length, err: (err as Error).message }, 'activation batch failed unexpectedly; retrying');
        this.journal.giveBack(taken);
        this.recheckLater();
        return false;
      })
      .then((more) => {
        this.inFlight--;
        this.requests.delete(request);
        if (more) this.schedule();
      });
    this.requests.add(request);
  }

  private async apply(records: readonly JournalRecord[], outcome: WriteOutcome): Promise<void> {
    for (const docs of outcome.answered) this.requestSucceeded(docs);
    const confirmed: RecordRef[] = [];
    const retry: JournalRecord[] = [];
    const letters: DeadLetter[] = [];
    let documentRetries = 0;
    outcome.verdicts.forEach((verdict, i) => {
      const record = records[i] as JournalRecord;
      switch (verdict.kind) {
        case 'stored':
          confirmed.push(record);
          break;
        case 'conflict-resolved':
          if (verdict.replaced) this.counters.replaced++;
          else this.counters.conflicts++;
          confirmed.push(record);
          break;
        case 'retry':
          retry.push(record);
          if (verdict.cause === 'document') documentRetries++;
          break;
        case 'dead-letter':
          letters.push({ ref: record, id: record.id, json: record.json, error: verdict.error, reason: verdict.reason });
          break;
      }
    });
    if (confirmed.length > 0) {
      this.journal.acknowledge(confirmed);
      this.counters.confirmed += confirmed.length;
      this.retryStreak = 0;
      this.checkFlushWaiters();
    }
    this.journal.giveBack(retry);
    if (outcome.failure !== undefined) this.requestFailed(outcome.failure.failure, outcome.failure.records);
    if (documentRetries > 0) {
      this.counters.documentRetries += documentRetries;
      for (let i = 0; i < documentRetries; i++) this.options.metrics?.failure('document');
      this.logger.warn(
        { records: documentRetries, ids: retry.slice(0, 5).map((record) => record.id) },
        'CouchDB refused some activation records for now; retrying',
      );
      if (confirmed.length === 0 && letters.length === 0) this.armBackoff(++this.retryStreak);
    }
    if (letters.length > 0) {
      for (const letter of letters) {
        this.logger.error(
          { id: letter.id, error: letter.error, reason: letter.reason, deadLetterFile: this.journal.deadLetterFile },
          'CouchDB rejected an activation record permanently; moved it to the dead-letter file',
        );
        this.options.metrics?.failure('rejected');
      }
      await this.deadLetter(letters, records.filter((_, i) => outcome.verdicts[i]?.kind === 'dead-letter'));
    }
  }

  private deadLetterCorrupt(corrupt: readonly CorruptRecord[]): Promise<void> {
    const letters: DeadLetter[] = corrupt.map((entry) => ({ ref: entry, id: undefined, json: entry.raw, raw: true, error: 'corrupt', reason: entry.problem }));
    return this.deadLetter(letters, corrupt);
  }

  /** Once in the dead-letter file, the records count as done; if it cannot be written they go back to the journal. */
  private async deadLetter(letters: readonly DeadLetter[], records: readonly (JournalRecord | CorruptRecord)[]): Promise<void> {
    try {
      await this.journal.deadLetter(letters);
      this.counters.deadLettered += letters.length;
      this.checkFlushWaiters();
      this.schedule();
    } catch (err) {
      this.logger.error({ records: letters.length, err: (err as Error).message }, 'writing the dead-letter file failed; the records stay in the journal');
      this.journal.giveBack(records);
      this.consecutiveFailures++;
      this.armBackoff();
    }
  }

  private checkFlushWaiters(): void {
    for (const waiter of this.flushWaiters) {
      if (this.journal.confirmedBelow(waiter.marks)) {
        this.flushWaiters.delete(waiter);
        waiter.done(true);
      }
    }
  }

  // ---------------------------------------------------------------- health, backoff, database

  private requestSucceeded(records: number): void {
    if (this.consecutiveFailures > 0) {
      this.logger.info({ after: this.consecutiveFailures }, 'CouchDB accepts activation records again');
    }
    this.consecutiveFailures = 0;
    this.lastSuccessAt = Date.now();
    this.counters.batches++;
    this.counters.batchedRecords += records;
    this.counters.lastBatchSize = records;
    this.options.metrics?.batchWritten(records);
  }

  private requestFailed(failure: CouchFailure, records: number): void {
    if (this.stopped) return; // aborted by close(): the records stay in the journal
    if (failure.statusCode === 404) {
      this.databaseReady = false;
      this.ensureDatabase(1);
    }
    this.consecutiveFailures++;
    this.counters.requestFailures++;
    this.lastError = `writing ${records} activation record(s) to ${this.options.database}: ${describeFailure(failure)}`;
    this.lastErrorAt = Date.now();
    this.options.metrics?.failure('request');
    const delayMs = this.armBackoff();
    this.logger.warn(
      { records, statusCode: failure.statusCode, error: failure.error, reason: failure.message, attempt: this.consecutiveFailures, retryInMs: delayMs, pending: this.journal.pending },
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
    }, delayMs);
    return delayMs;
  }

  /** Exponential, capped, with "equal jitter": half fixed, half random, so invokers do not retry in step. */
  private backoffDelay(attempt: number): number {
    const ceiling = Math.min(this.options.backoffMaxMs, this.options.backoffMinMs * 2 ** Math.min(attempt - 1, 30));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  /** One pending look at the journal after `backoffMaxMs`, however many batches found nothing. */
  private recheckLater(): void {
    if (this.recheckTimer !== undefined || this.stopped) return;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = undefined;
      this.schedule();
    }, this.options.backoffMaxMs);
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
    void this.writer.createDatabase(this.stopSignal.signal).then((failure) => {
      if (this.stopped) return;
      if (failure === undefined) {
        this.ensuringDatabase = false;
        this.databaseReady = true;
        this.lastSuccessAt = Date.now();
        this.schedule();
        return;
      }
      this.lastError = `creating database ${this.options.database}: ${describeFailure(failure)}`;
      this.lastErrorAt = Date.now();
      const delayMs = this.backoffDelay(attempt);
      // Every attempt while short, then only every tenth: a long outage should not flood the log.
      if (attempt <= 3 || attempt % 10 === 0) {
        this.logger.warn({ attempt, retryInMs: delayMs, statusCode: failure.statusCode, reason: failure.message }, 'cannot create the activations database yet; retrying');
      }
      this.retryLater(() => this.ensureDatabase(attempt + 1), delayMs);
    });
  }
}
