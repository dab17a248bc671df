/**
 * Reads actions from the `whisks` database: the document `<path>/<name>` at
 * the revision the controller put into the ActivationMessage (an older
 * revision is read as it was, as upstream reads it), validated into an
 * ActionDocument, in every form an upstream controller writes (see
 * upstream-action-doc.ts): code inline as a string, inlined into its
 * attachment reference (`mem:<base64url>`, the common case for code under
 * 16 KiB, no second request), or in a CouchDB attachment (`couch:<uuid>`, or
 * a bare name in older documents), read at the document's revision. Binary
 * code (zip) is handed on as standard base64, text as UTF-8 text. The
 * document's shape and its validation are in action-document.ts.
 *
 * A document at a given revision never changes, so (id, revision) pairs are
 * cached in a small LRU. A request without a revision (the controller's
 * health-test action) reads the latest document and is never cached: the
 * latest revision can change under the same key. Concurrent reads of one key
 * share one HTTP request; failures are never cached, so the next activation
 * tries again.
 *
 * The invoker maps ActionNotFoundError to "Action could not be found or may
 * have been deleted." (code 1) and ActionFetchError to "Action could not be
 * fetched." (code 3); both messages here are for logs, not for users.
 */
import type { ServerScope } from 'nano';
import type { Logger } from '../telemetry/logger.js';
import { parseActionDocument, type ActionDocument, type ActionExec, type ParsedAction } from './action-document.js';
import { couchFailure, couchRequest, createCouchClient, deadline, describeFailure, redactUrl } from './couch.js';

export * from './action-document.js';

/** The action (or that revision of it) does not exist or was deleted. */
export class ActionNotFoundError extends Error {
  override readonly name = 'ActionNotFoundError';
  constructor(
    readonly docId: string,
    readonly revision: string | null,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`fetching action ${describeTarget(docId, revision)}: not found (${detail})`, options);
  }
}

/** Anything else: the server unreachable or failing, a timeout, a malformed document. */
export class ActionFetchError extends Error {
  override readonly name = 'ActionFetchError';
  constructor(
    readonly docId: string,
    readonly revision: string | null,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`fetching action ${describeTarget(docId, revision)}: ${detail}`, options);
  }
}

function describeTarget(docId: string, revision: string | null): string {
  return `${docId} at ${revision === null ? 'the latest revision' : `revision ${revision}`}`;
}

export interface ActionStoreOptions {
  /** CouchDB server URL, credentials in it if needed. */
  url: string;
  /** Database holding the actions. Default `whisks`. */
  database?: string;
  /** (id, revision) pairs kept; 0 disables caching (concurrent reads are still joined). Default 128. */
  cacheSize?: number;
  /** Deadline per HTTP request (document, attachment). Default 10 000 ms. */
  requestTimeoutMs?: number;
  logger: Logger;
}

export interface ActionStoreStats {
  hits: number;
  misses: number;
  /** Requests that found an identical request already running and waited for it. */
  joined: number;
  evictions: number;
  size: number;
}

/** The fully qualified name of an action as the ActivationMessage carries it. */
export interface ActionName {
  /** Namespace, optionally with a package: `guest` or `guest/pkg`. */
  path: string;
  name: string;
}

export class ActionStore {
  private readonly server: ServerScope;
  private readonly database: string;
  private readonly cacheSize: number;
  private readonly requestTimeoutMs: number;
  private readonly logger: Logger;
  /** Map iteration order is insertion order: the first key is the least recently used. */
  private readonly cache = new Map<string, ActionDocument>();
  private readonly inFlight = new Map<string, Promise<ActionDocument>>();
  private readonly closing = new AbortController();
  private readonly counters = { hits: 0, misses: 0, joined: 0, evictions: 0 };

  constructor(options: ActionStoreOptions) {
    this.server = createCouchClient(options.url);
    this.database = options.database ?? 'whisks';
    this.cacheSize = options.cacheSize ?? 128;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.logger = options.logger.child({ component: 'action-store', db: this.database, couchdb: redactUrl(options.url) });
    if (!Number.isInteger(this.cacheSize) || this.cacheSize < 0) {
      throw new RangeError(`action cache size must be a non-negative integer, got ${this.cacheSize}`);
    }
  }

  /**
   * The action `<path>/<name>` at `revision`, or at the latest revision when
   * `revision` is null. Rejects with ActionNotFoundError or ActionFetchError.
   */
  get(action: ActionName, revision: string | null): Promise<ActionDocument> {
    const docId = `${action.path}/${action.name}`;
    const key = revision === null ? `${docId}\u0000latest` : `${docId}\u0000${revision}`;
    if (revision !== null) {
      const cached = this.cache.get(key);
      if (cached !== undefined) {
        this.cache.delete(key);
        this.cache.set(key, cached);
        this.counters.hits++;
        return Promise.resolve(cached);
      }
    }
    const running = this.inFlight.get(key);
    if (running !== undefined) {
      this.counters.joined++;
      return running;
    }
    this.counters.misses++;
    const fetching = this.fetch(docId, revision).then(
      (doc) => {
        this.inFlight.delete(key);
        if (revision !== null) this.remember(key, doc);
        return doc;
      },
      (err: unknown) => {
        this.inFlight.delete(key);
        throw err;
      },
    );
    this.inFlight.set(key, fetching);
    return fetching;
  }

  stats(): ActionStoreStats {
    return { ...this.counters, size: this.cache.size };
  }

  /** Aborts reads still running (they fail with ActionFetchError) and empties the cache. */
  close(): void {
    this.closing.abort(new Error('action store closed'));
    this.cache.clear();
  }

  private remember(key: string, doc: ActionDocument): void {
    if (this.cacheSize === 0) return;
    this.cache.delete(key);
    this.cache.set(key, doc);
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next();
      if (oldest.done === true) break;
      this.cache.delete(oldest.value);
      this.counters.evictions++;
    }
  }

  private async fetch(docId: string, revision: string | null): Promise<ActionDocument> {
    const started = Date.now();
    let raw: unknown;
    try {
      raw = await couchRequest(this.server, {
        db: this.database,
        doc: docId,
        qs: revision === null ? {} : { rev: revision },
        signal: deadline(this.requestTimeoutMs, this.closing.signal),
      });
    } catch (err) {
      throw this.failure(docId, revision, 'reading the document', err);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new ActionFetchError(docId, revision, 'the server did not answer with a JSON document');
    }
    const doc = raw as Record<string, unknown>;
    if (doc._deleted === true) {
      throw new ActionNotFoundError(docId, revision, 'the revision is a deletion');
    }
    let parsed: ParsedAction;
    try {
      parsed = parseActionDocument(doc, docId, revision);
    } catch (err) {
      throw new ActionFetchError(docId, revision, `malformed action document: ${(err as Error).message}`, { cause: err });
    }
    const exec = parsed.attachment === undefined ? parsed.exec : await this.withAttachment(parsed, docId, revision);
    this.logger.debug({ docId, rev: parsed.doc.rev, ms: Date.now() - started }, 'fetched action');
    return { ...parsed.doc, exec };
  }

  private async withAttachment(parsed: ParsedAction, docId: string, revision: string | null): Promise<ActionExec> {
    const attachment = parsed.attachment;
    const exec = parsed.exec;
    if (attachment === undefined || exec.type === 'sequence') return exec;
    if (!attachment.inDocument) {
      throw new ActionNotFoundError(docId, revision, `the code attachment ${attachment.name} is not in the document`);
    }
    let bytes: Buffer;
    try {
      bytes = await this.readAttachment(docId, parsed.doc.rev, attachment.name);
    } catch (err) {
      throw this.failure(docId, revision, `reading code attachment ${attachment.name}`, err);
    }
    const code = exec.binary ? bytes.toString('base64') : bytes.toString('utf8');
    return { ...exec, code };
  }

  /**
   * nano's attachment call, bounded by a timer instead of an abort signal:
   * aborting nano mid-body leaves a rejected promise nobody handles (see
   * couch.ts). A request that outlives its deadline is abandoned, not aborted;
   * undici's own body timeout ends it eventually.
   */
  private async readAttachment(docId: string, rev: string, name: string): Promise<Buffer> {
    const db = this.server.use(this.database);
    // nano does not encode attachment names; upstream names are plain, but be exact anyway.
    const reading = db.attachment.get(docId, encodeURIComponent(name), { rev }) as Promise<Buffer | string>;
    let timer: NodeJS.Timeout | undefined;
    let onClose: (() => void) | undefined;
    const stopped = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
      onClose = () => reject(new Error('action store closed'));
      if (this.closing.signal.aborted) onClose();
      else this.closing.signal.addEventListener('abort', onClose, { once: true });
    });
    reading.catch(() => undefined); // the race below may have settled already
    try {
      const body = await Promise.race([reading, stopped]);
      // nano decodes text/* answers as UTF-8 text and returns everything else as bytes.
      return typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    } finally {
      clearTimeout(timer);
      if (onClose !== undefined) this.closing.signal.removeEventListener('abort', onClose);
    }
  }

  private failure(docId: string, revision: string | null, attempt: string, err: unknown): Error {
    const failure = couchFailure(err);
    if (failure.statusCode === 404) {
      return new ActionNotFoundError(docId, revision, `${attempt}: ${describeFailure(failure)}`, { cause: err });
    }
    this.logger.warn({ docId, rev: revision, attempt, statusCode: failure.statusCode, error: failure.error, reason: failure.message }, 'action fetch failed');
    return new ActionFetchError(docId, revision, `${attempt}: ${describeFailure(failure)}`, { cause: err });
  }
}
