/**
 * Writes activation records to CouchDB's `activations` database, losing none
 * that `store()` accepted, whatever CouchDB or the process does. The design
 * is in README.md next to this file; in short, three parts with one job each:
 *
 * - the journal (journal.ts), the one book of records not yet in CouchDB:
 *   `store()` resolves once the record is in its file, and it alone knows
 *   which records are unconfirmed, held in memory (bounded) or only on disk;
 *   a cursor the scheduler takes batches from;
 * - the bulk writer (bulk-writer.ts): one batch to `_bulk_docs`, one verdict
 *   per record, no state;
 * - the batch scheduler (batch-scheduler.ts): when batches go out, what a verdict does
 *   to the journal, backoff, health, the database, flush().
 *
 * This class wires them and keeps the surface the invoker uses. Logs carry
 * ids and counts only, never document contents (user results). One journal
 * directory belongs to one writer at a time (one per invoker).
 */
import type { Logger } from '../telemetry/logger.js';
import { BulkWriter } from './bulk-writer.js';
import { BulkDocsClient, createCouchClient, redactUrl } from './couch.js';
import { Journal } from './journal.js';
import { BatchScheduler, zeroCounters, type ActivationWriterHealth, type BatchSchedulerCounters, type ActivationWriterMetrics, type FlushResult } from './batch-scheduler.js';

export type { ActivationWriterHealth, ActivationWriterMetrics, FlushResult, WriteFailureKind } from './batch-scheduler.js';

/** An activation record as the store receives it (a CouchDB document built by the invoker); stored as is. */
export type StoredRecord = { _id: string } & Record<string, unknown>;

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

export interface ActivationWriterStats extends BatchSchedulerCounters {
  /** store() calls accepted since start. */
  accepted: number;
  /** Accepted (or left by an earlier run) and not yet confirmed. */
  pending: number;
  inMemory: number;
  /** Pending records that are only in the journal right now. */
  spilled: number;
  journalSegments: number;
  journalBytes: number;
}

export class ActivationWriter {
  private readonly options: ActivationWriterOptions;
  private readonly database: string;
  private readonly logger: Logger;
  private readonly writer: BulkWriter;
  private readonly bulk: BulkDocsClient;
  private journal: Journal | undefined;
  private scheduler: BatchScheduler | undefined;
  private starting = false;
  private closing: Promise<FlushResult> | undefined;
  private accepted = 0;

  constructor(options: ActivationWriterOptions) {
    for (const name of ['batchMaxDocs', 'batchMaxBytes', 'maxConcurrentBatches', 'maxInMemoryRecords', 'maxInMemoryBytes', 'segmentMaxBytes', 'requestTimeoutMs', 'backoffMinMs'] as const) {
      const value = options[name];
      if (value !== undefined && (!Number.isFinite(value) || value <= 0)) throw new RangeError(`activation writer option ${name} must be > 0, got ${value}`);
    }
    const delay = options.batchDelayMs;
    if (delay !== undefined && (!Number.isFinite(delay) || delay < 0)) throw new RangeError(`activation writer option batchDelayMs must be >= 0, got ${delay}`);
    this.options = options;
    this.database = options.database ?? 'activations';
    this.logger = options.logger.child({ component: 'activation-writer', db: this.database, couchdb: redactUrl(options.url) });
    this.bulk = new BulkDocsClient(options.url, this.database);
    this.writer = new BulkWriter({
      server: createCouchClient(options.url),
      bulk: this.bulk,
      database: this.database,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      replaceable: options.replaceable,
      logger: this.logger,
    });
  }

  /**
   * Opens the journal (records left by an earlier run are replayed from it)
   * and starts creating the database in the background: an unreachable
   * CouchDB delays writing, never startup. Rejects only if the journal
   * cannot be opened.
   */
  async start(): Promise<void> {
    const options = this.options;
    if (this.starting || this.journal !== undefined) throw new Error(`starting the activation writer for ${options.journalDir}: already started`);
    this.starting = true;
    let journal: Journal;
    try {
      journal = await Journal.open({
        dir: options.journalDir,
        segmentMaxBytes: options.segmentMaxBytes ?? 8 * 1024 * 1024,
        sync: options.syncJournal ?? false,
        maxHeldRecords: options.maxInMemoryRecords ?? 10_000,
        maxHeldBytes: options.maxInMemoryBytes ?? 32 * 1024 * 1024,
        ...(options.deadLetterFile === undefined ? {} : { deadLetterFile: options.deadLetterFile }),
        logger: this.logger,
      });
    } catch (err) {
      throw new Error(`starting the activation writer: opening the journal in ${options.journalDir}: ${(err as Error).message}`, { cause: err });
    } finally {
      this.starting = false;
    }
    const backoffMinMs = options.backoffMinMs ?? 100;
    const scheduler = new BatchScheduler({
      journal,
      writer: this.writer,
      database: this.database,
      logger: this.logger,
      metrics: options.metrics,
      batchMaxDocs: options.batchMaxDocs ?? 200,
      batchMaxBytes: options.batchMaxBytes ?? 1024 * 1024,
      batchDelayMs: options.batchDelayMs ?? 20,
      maxConcurrentBatches: options.maxConcurrentBatches ?? 2,
      backoffMinMs,
      backoffMaxMs: Math.max(backoffMinMs, options.backoffMaxMs ?? 10_000),
    });
    this.journal = journal;
    this.scheduler = scheduler;
    this.logger.info({ journalDir: options.journalDir, replaying: journal.unconfirmed }, 'activation writer started');
    scheduler.start();
  }

  /**
   * Accepts a record: resolves once it is in the journal (it will reach
   * CouchDB eventually, across restarts), rejects if it could not be
   * journaled (not started, closed, not serialisable, disk failure).
   */
  store(record: { readonly _id: string }): Promise<void> {
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
    const scheduler = this.scheduler;
    if (journal === undefined || scheduler === undefined) {
      return Promise.reject(new Error(`storing activation record ${id}: the activation writer is not started`));
    }
    this.accepted++;
    return journal.append(id, json).then(() => scheduler.schedule());
  }

  /**
   * Resolves once every record stored before the call is confirmed by
   * CouchDB (or dead-lettered), or when `timeoutMs` (default 30 s) passes;
   * `complete` says which. Sends waiting batches at once.
   */
  async flush(options: { timeoutMs?: number } = {}): Promise<FlushResult> {
    if (this.scheduler === undefined) return { complete: true, pending: 0 };
    return this.scheduler.flush(options.timeoutMs ?? 30_000);
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
    return this.scheduler?.isHealthy() ?? false;
  }

  health(): ActivationWriterHealth {
    return this.scheduler?.health() ?? { healthy: false, databaseReady: false, consecutiveFailures: 0 };
  }

  stats(): ActivationWriterStats {
    const journal = this.journal?.stats() ?? { segments: 0, bytes: 0, unconfirmed: 0, held: 0, spilled: 0, appendWrites: 0 };
    const counters = this.scheduler?.counters ?? zeroCounters();
    return {
      accepted: this.accepted,
      ...counters,
      pending: this.pending(),
      inMemory: journal.held,
      spilled: journal.spilled,
      journalSegments: journal.segments,
      journalBytes: journal.bytes,
    };
  }

  /** Accepted and not yet confirmed: the `invoker_store_pending_records` gauge. */
  pending(): number {
    return this.journal?.pending ?? 0;
  }

  private async shutdown(timeoutMs: number): Promise<FlushResult> {
    const journal = this.journal;
    const scheduler = this.scheduler;
    if (journal === undefined || scheduler === undefined) return { complete: true, pending: 0 };
    const result = await scheduler.flush(timeoutMs);
    await scheduler.stop();
    await journal.close();
    await this.bulk.close();
    const pending = this.pending();
    this.logger.info({ complete: result.complete, pending, confirmed: scheduler.counters.confirmed }, 'activation writer closed');
    return { complete: result.complete, pending };
  }
}
