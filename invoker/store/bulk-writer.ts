/**
 * One batch of journaled records to CouchDB's `_bulk_docs`, and one verdict
 * per record. Holds no state between calls: what happens next to a record
 * (acknowledge, give back, dead-letter, back off) is the scheduler's call.
 *
 * - `stored`: CouchDB took it.
 * - `conflict-resolved`: its id was taken. Ids are deterministic,
 *   `<namespace>/<activationId>`, so a conflict means an earlier attempt
 *   (before a crash, or whose answer was lost) stored it: every replay is
 *   idempotent, exactly one document per record. The one exception: with
 *   `replaceable`, a conflicting document it accepts (the controller's forced
 *   record of an activation this invoker did run) is read for its `_rev` and
 *   overwritten in the same call (`replaced: true`); a document written
 *   without `replaceable` never overwrites anything.
 * - `dead-letter`: `forbidden`, `unauthorized`, `bad_request`,
 *   `illegal_docid`, `doc_validation`, `invalid` are permanent. A whole
 *   request answered 400 or 413 is split in halves until the document the
 *   server cannot take stands alone (pouchdb-server answers 400 for the whole
 *   call when one `_id` starts with `_`; CouchDB 413 for an oversized body);
 *   that one is dead-lettered.
 * - `retry`: any other per-document error (`cause: 'document'`), or a
 *   request that failed as a whole (refused, reset, timeout, 5xx, 401, 403,
 *   404, a malformed answer: `cause: 'request'`, the failure in `failure`).
 *   Once one request failed, the rest of the batch is not sent.
 */
import type { ServerScope } from 'nano';
import type { Logger } from '../telemetry/logger.js';
import { couchFailure, couchRequest, deadline, describeFailure, type BulkDocsClient, type CouchFailure } from './couch.js';
import type { JournalRecord } from './records.js';

export type Verdict =
  | { readonly kind: 'stored' }
  | { readonly kind: 'conflict-resolved'; readonly replaced: boolean }
  | { readonly kind: 'retry'; readonly cause: 'request' | 'document' }
  | { readonly kind: 'dead-letter'; readonly error: string; readonly reason: string };

export interface WriteOutcome {
  /** One per record, in the order given. */
  readonly verdicts: readonly Verdict[];
  /** The records in each `_bulk_docs` call CouchDB answered. */
  readonly answered: readonly number[];
  /** The request that failed as a whole, if one did, and how many records it carried. */
  readonly failure: { readonly failure: CouchFailure; readonly records: number } | undefined;
}

export interface BulkWriterOptions {
  /** For creating the database and reading conflicting documents. */
  server: ServerScope;
  /** For the `_bulk_docs` calls themselves. */
  bulk: BulkDocsClient;
  database: string;
  /** Deadline of each CouchDB request. */
  requestTimeoutMs: number;
  /** A stored document (as read back) that a record with the same id replaces; see the module comment. */
  replaceable: ((stored: unknown) => boolean) | undefined;
  logger: Logger;
}

/** Per-document errors that no retry can fix. */
const PERMANENT_ERRORS = new Set(['forbidden', 'unauthorized', 'bad_request', 'illegal_docid', 'doc_validation', 'invalid']);

interface BulkResult {
  error: string | undefined;
  reason: string | undefined;
}

/** The state of one write() call. */
interface Call {
  readonly records: readonly JournalRecord[];
  readonly verdicts: Verdict[];
  readonly answered: number[];
  failure: { failure: CouchFailure; records: number } | undefined;
  readonly signal: AbortSignal;
}

export class BulkWriter {
  constructor(private readonly options: BulkWriterOptions) {}

  async write(records: readonly JournalRecord[], signal: AbortSignal): Promise<WriteOutcome> {
    const call: Call = { records, verdicts: [], answered: [], failure: undefined, signal };
    await this.send(call, records.map((_, i) => i), undefined);
    const verdicts = records.map((_, i): Verdict => call.verdicts[i] ?? { kind: 'retry', cause: 'request' });
    return { verdicts, answered: call.answered, failure: call.failure };
  }

  /** Creates the database (an existing one is fine); the failure if that did not work. */
  async createDatabase(signal: AbortSignal): Promise<CouchFailure | undefined> {
    const { server, database, requestTimeoutMs } = this.options;
    try {
      await couchRequest(server, { db: database, method: 'PUT', signal: deadline(requestTimeoutMs, signal) });
      this.options.logger.info({}, 'created the activations database');
      return undefined;
    } catch (err) {
      const failure = couchFailure(err);
      if (failure.statusCode === 412 || failure.error === 'file_exists') return undefined;
      if (failure.statusCode === 401 || failure.statusCode === 403) {
        // Credentials that may write documents but not create databases: fine if it exists.
        try {
          await couchRequest(server, { db: database, signal: deadline(requestTimeoutMs, signal) });
          return undefined;
        } catch {
          return failure;
        }
      }
      return failure;
    }
  }

  /**
   * Sends the records at `indices`. `revs`: the second pass, replacing the
   * documents these revisions name (a conflict then is retried, not resolved).
   */
  private async send(call: Call, indices: readonly number[], revs: ReadonlyMap<number, string | undefined> | undefined): Promise<void> {
    if (indices.length === 0) return;
    const retry = (cause: 'request' | 'document') => indices.forEach((i) => (call.verdicts[i] = { kind: 'retry', cause }));
    if (call.failure !== undefined || call.signal.aborted) return retry('request');
    const answer = await this.postBulk(call, indices, revs);
    if (!('results' in answer)) {
      const failure = answer.failure;
      const refused = failure.statusCode === 400 || failure.statusCode === 413;
      if (refused && indices.length > 1) {
        const half = indices.length >> 1;
        await this.send(call, indices.slice(0, half), revs);
        await this.send(call, indices.slice(half), revs);
        return;
      }
      if (refused && !call.signal.aborted) {
        call.verdicts[indices[0] as number] = { kind: 'dead-letter', error: failure.error ?? `http_${failure.statusCode}`, reason: failure.reason ?? failure.message };
        return;
      }
      call.failure ??= { failure, records: indices.length };
      return retry('request');
    }
    call.answered.push(indices.length);
    const conflicts: number[] = [];
    answer.results.forEach(({ index, result }) => {
      if (result.error === undefined) {
        call.verdicts[index] = revs?.get(index) !== undefined ? { kind: 'conflict-resolved', replaced: true } : { kind: 'stored' };
      } else if (result.error === 'conflict') {
        if (this.options.replaceable === undefined) call.verdicts[index] = { kind: 'conflict-resolved', replaced: false };
        else if (revs !== undefined) call.verdicts[index] = { kind: 'retry', cause: 'document' }; // changed again meanwhile: read it next time
        else conflicts.push(index);
      } else if (PERMANENT_ERRORS.has(result.error)) {
        call.verdicts[index] = { kind: 'dead-letter', error: result.error, reason: result.reason ?? '' };
      } else {
        call.verdicts[index] = { kind: 'retry', cause: 'document' };
      }
    });
    if (conflicts.length > 0) await this.resolveConflicts(call, conflicts);
  }

  /**
   * Records whose id was taken: each is stored already (the document is not
   * replaceable: this record or an earlier attempt of it) or replaces the
   * document, sent again at once with its `_rev`. When the documents cannot
   * be read, all of them are retried (and conflict again).
   */
  private async resolveConflicts(call: Call, indices: readonly number[]): Promise<void> {
    const { server, database, requestTimeoutMs, logger } = this.options;
    let rows: unknown;
    try {
      rows = await couchRequest(server, {
        db: database,
        path: '_all_docs',
        method: 'POST',
        qs: { include_docs: true },
        body: { keys: indices.map((i) => (call.records[i] as JournalRecord).id) },
        signal: deadline(requestTimeoutMs, call.signal),
      });
    } catch (err) {
      logger.warn({ records: indices.length, reason: describeFailure(couchFailure(err)) }, 'reading conflicting activation records failed; retrying them');
      indices.forEach((i) => (call.verdicts[i] = { kind: 'retry', cause: 'document' }));
      return;
    }
    const docs = new Map<string, { _rev?: unknown }>();
    const list = (rows as { rows?: unknown } | null)?.rows;
    if (Array.isArray(list)) {
      for (const row of list as Array<{ id?: unknown; doc?: unknown }>) {
        if (typeof row?.id === 'string' && typeof row.doc === 'object' && row.doc !== null) docs.set(row.id, row.doc as { _rev?: unknown });
      }
    }
    const replace = new Map<number, string | undefined>();
    for (const index of indices) {
      const id = (call.records[index] as JournalRecord).id;
      const doc = docs.get(id);
      if (doc !== undefined && typeof doc._rev === 'string' && this.options.replaceable?.(doc) === true) {
        logger.info({ id }, "replacing the forced record the controller wrote with the invoker's record");
        replace.set(index, doc._rev);
      } else if (doc === undefined) {
        // Deleted or unreadable in between: send it again, without a revision.
        replace.set(index, undefined);
      } else {
        call.verdicts[index] = { kind: 'conflict-resolved', replaced: false };
      }
    }
    await this.send(call, [...replace.keys()], replace);
  }

  private async postBulk(
    call: Call,
    indices: readonly number[],
    revs: ReadonlyMap<number, string | undefined> | undefined,
  ): Promise<{ results: Array<{ index: number; result: BulkResult }> } | { failure: CouchFailure }> {
    let body = '{"docs":[';
    indices.forEach((index, i) => {
      const record = call.records[index] as JournalRecord;
      const rev = revs?.get(index);
      // The journaled JSON is an object: the revision goes in front of its first field.
      const json = rev === undefined ? record.json : `{"_rev":${JSON.stringify(rev)},${record.json.slice(1)}`;
      body += (i === 0 ? '' : ',') + json;
    });
    body += ']}';
    let raw: unknown;
    try {
      raw = await this.options.bulk.post(body, deadline(this.options.requestTimeoutMs, call.signal));
    } catch (err) {
      return { failure: couchFailure(err) };
    }
    const results = pairBulkResults(raw, indices.map((index) => ({ index, id: (call.records[index] as JournalRecord).id })));
    if (typeof results === 'string') {
      return { failure: { statusCode: undefined, error: undefined, reason: undefined, message: `malformed _bulk_docs answer: ${results}` } };
    }
    return { results };
  }
}

/**
 * Pairs the per-document answers of `_bulk_docs` with the batch. CouchDB
 * answers in request order, pouchdb-server does not, so answers are matched
 * by id (in order among equal ids). A string says what is wrong.
 */
function pairBulkResults(raw: unknown, sent: ReadonlyArray<{ index: number; id: string }>): Array<{ index: number; result: BulkResult }> | string {
  if (!Array.isArray(raw)) return 'not an array';
  if (raw.length !== sent.length) return `${raw.length} answers for ${sent.length} documents`;
  const byId = new Map<string, number[]>();
  for (const { index, id } of sent) {
    const same = byId.get(id);
    if (same === undefined) byId.set(id, [index]);
    else same.push(index);
  }
  const pairs: Array<{ index: number; result: BulkResult }> = [];
  for (let i = 0; i < raw.length; i++) {
    const entry: unknown = raw[i];
    if (typeof entry !== 'object' || entry === null) return `answer ${i} is not an object`;
    const fields = entry as Record<string, unknown>;
    if (typeof fields.id !== 'string') return `answer ${i} has no id`;
    const index = byId.get(fields.id)?.shift();
    if (index === undefined) return `answer ${i} is for a document not in the batch`;
    pairs.push({
      index,
      result: {
        error: typeof fields.error === 'string' ? fields.error : undefined,
        reason: typeof fields.reason === 'string' ? fields.reason : undefined,
      },
    });
  }
  return pairs;
}
