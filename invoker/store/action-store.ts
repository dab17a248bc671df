/**
 * Reads actions from the `whisks` database: the document `<path>/<name>` at
 * the revision the controller put into the ActivationMessage (an older
 * revision is read as it was, as upstream reads it), validated into an
 * ActionDocument, in every form an upstream controller writes (see
 * upstream-action-doc.ts): code inline as a string, inlined into its
 * attachment reference (`mem:<base64url>`, the common case for code under
 * 16 KiB, no second request), or in a CouchDB attachment (`couch:<uuid>`, or
 * a bare name in older documents), read at the document's revision. Binary
 * code (zip) is handed on as standard base64, text as UTF-8 text.
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
import type { JsonValue } from '../../protocol/json.js';
import { couchFailure, couchRequest, createCouchClient, deadline, describeFailure, redactUrl } from './couch.js';
import { COUCH_SCHEME, MEM_SCHEME, decodeInlineAttachment, isBinaryCode } from './upstream-action-doc.js';

/** Upstream ActionLimits defaults (wire spec section 9). */
export const DEFAULT_ACTION_LIMITS: Readonly<ActionLimits> = Object.freeze({
  timeoutMs: 60_000,
  memoryMb: 256,
  logsMb: 10,
  concurrency: 1,
});

export interface ActionLimits {
  timeoutMs: number;
  memoryMb: number;
  logsMb: number;
  concurrency: number;
}

export interface KeyValue {
  key: string;
  value: JsonValue;
  /** Upstream marks parameters that go to `/init` as environment with `init: true`. */
  init?: boolean;
}

/** An action whose code runs in the runtime image of its kind (`nodejs:20`, ...). */
export interface CodeExec {
  type: 'code';
  kind: string;
  /** Source text, or base64 of the bytes (a zip) when `binary`. */
  code: string;
  binary: boolean;
  main?: string;
}

/** An action that runs in an image the user names; code, if any, goes to its `/init`. */
export interface BlackboxExec {
  type: 'blackbox';
  kind: 'blackbox';
  image: string;
  code?: string;
  binary: boolean;
  main?: string;
}

/** Sequences are run by the controller, never by an invoker; returned so the caller can say so. */
export interface SequenceExec {
  type: 'sequence';
  kind: 'sequence';
  /** Fully qualified names of the component actions. */
  components: string[];
}

export type ActionExec = CodeExec | BlackboxExec | SequenceExec;

export interface ActionDocument {
  /** Document id, `<path>/<name>`. */
  id: string;
  rev: string;
  namespace: string;
  name: string;
  version: string;
  publish: boolean;
  exec: ActionExec;
  limits: ActionLimits;
  parameters: KeyValue[];
  annotations: KeyValue[];
}

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

/** A validated action document whose code attachment, if any, is not read yet. */
export interface ParsedAction {
  doc: Omit<ActionDocument, 'exec'>;
  exec: ActionExec;
  /** Set when the code lives in `_attachments` and still has to be read. */
  attachment?: CodeAttachment;
}

export interface CodeAttachment {
  name: string;
  contentType: string | undefined;
  /**
   * False when `_attachments` does not list it: reading it would answer 404,
   * which upstream reports as a missing action (NoDocumentException), so the
   * store says not found without asking.
   */
  inDocument: boolean;
}

/**
 * Validates the upstream WhiskAction JSON. Throws an Error naming the field;
 * the caller wraps it into ActionFetchError.
 */
export function parseActionDocument(doc: Record<string, unknown>, docId: string, revision: string | null): ParsedAction {
  const rev = requireString(doc, '_rev');
  if (typeof doc._id === 'string' && doc._id !== docId) throw new Error(`_id is ${doc._id}, expected ${docId}`);
  if (revision !== null && rev !== revision) throw new Error(`_rev is ${rev}, expected ${revision}`);
  if (doc.entityType !== undefined && doc.entityType !== 'action') {
    throw new Error(`entityType is ${JSON.stringify(doc.entityType)}, not "action"`);
  }
  const namespace = requireString(doc, 'namespace');
  const name = requireString(doc, 'name');
  const version = optionalString(doc, 'version') ?? '0.0.1';
  const publish = doc.publish === undefined ? false : requireBoolean(doc, 'publish');
  const limits = parseLimits(doc.limits);
  const parameters = parseKeyValues(doc.parameters, 'parameters');
  const annotations = parseKeyValues(doc.annotations, 'annotations');
  const { exec, attachment } = parseExec(doc.exec, doc._attachments);
  const result: ParsedAction = {
    doc: { id: docId, rev, namespace, name, version, publish, limits, parameters, annotations },
    exec,
  };
  if (attachment !== undefined) result.attachment = attachment;
  return result;
}

function parseExec(
  value: unknown,
  attachments: unknown,
): { exec: ActionExec; attachment?: CodeAttachment } {
  if (!isObject(value)) throw new Error('exec is missing or not an object');
  // Upstream Exec.serdes.read: the kind is trimmed and lower-cased.
  const kind = requireString(value, 'kind', 'exec.kind').trim().toLowerCase();
  if (kind === 'sequence') {
    const components = value.components;
    if (!Array.isArray(components) || !components.every((c) => typeof c === 'string')) {
      throw new Error('exec.components must be an array of action names');
    }
    return { exec: { type: 'sequence', kind: 'sequence', components: components as string[] } };
  }
  const main = optionalString(value, 'main', 'exec.main');
  if (kind === 'blackbox') {
    const image = requireString(value, 'image', 'exec.image');
    // A blackbox's code is optional; absent or blank means none (and binary false).
    const blank = value.code === undefined || value.code === null || (typeof value.code === 'string' && value.code.trim() === '');
    const exec: BlackboxExec = { type: 'blackbox', kind: 'blackbox', image, binary: false };
    if (main !== undefined) exec.main = main;
    if (blank) return { exec };
    const code = readCode(value.code, value, attachments);
    exec.binary = code.binary;
    if (code.attachment !== undefined) return { exec: { ...exec, code: '' }, attachment: code.attachment };
    exec.code = code.text;
    return { exec };
  }
  // Java actions once stored their code under `jar` (upstream Exec.serdes.read).
  const raw = value.code ?? value.jar;
  if (raw === undefined || raw === null) throw new Error(`exec.code is missing for kind ${kind}`);
  const code = readCode(raw, value, attachments);
  const exec: CodeExec = { type: 'code', kind, code: code.text, binary: code.binary };
  if (main !== undefined) exec.main = main;
  return code.attachment === undefined ? { exec } : { exec, attachment: code.attachment };
}

/**
 * `exec.code` as upstream reads it (Exec.serdes.read, Attachments.serdes,
 * CouchDbRestStore.readAttachment):
 * - a string: the code itself (older documents, and kinds without `attached`);
 *   `binary` is computed from it (Exec.isBinaryCode), whatever the document says;
 * - `{attachmentName: "mem:<base64url>"}`: the bytes inlined in the reference;
 * - `{attachmentName: "couch:<name>"}` or a bare name (`codefile`, `jarfile`):
 *   a CouchDB attachment of the document, read afterwards;
 * and for references `binary` is the document's flag (default false). Binary
 * bytes become standard base64, text bytes UTF-8 text (WhiskAction.get).
 */
function readCode(
  code: unknown,
  exec: Record<string, unknown>,
  attachments: unknown,
): { text: string; binary: boolean; attachment?: CodeAttachment } {
  if (typeof code === 'string') return { text: code, binary: isBinaryCode(code) };
  if (!isObject(code)) throw new Error('exec.code must be a string or an attachment reference');
  const binary = exec.binary === undefined || exec.binary === null ? false : requireBoolean(exec, 'binary', 'exec.binary');
  const rawName = requireString(code, 'attachmentName', 'exec.code.attachmentName');
  const contentType = optionalString(code, 'attachmentType', 'exec.code.attachmentType');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rawName)?.[1];
  if (scheme === MEM_SCHEME) {
    let bytes: Buffer;
    try {
      bytes = decodeInlineAttachment(rawName);
    } catch (err) {
      throw new Error(`exec.code: ${(err as Error).message}`, { cause: err });
    }
    if (typeof code.length === 'number' && code.length !== bytes.length) {
      throw new Error(`exec.code: the inlined attachment has ${bytes.length} bytes, its length says ${code.length}`);
    }
    return { text: binary ? bytes.toString('base64') : bytes.toString('utf8'), binary };
  }
  if (scheme !== undefined && scheme !== COUCH_SCHEME) {
    throw new Error(`exec.code is in attachment store "${scheme}:", which this invoker cannot read (it reads CouchDB attachments and inlined ones)`);
  }
  // `couch:<uuid>`, or a relative name from before attachment URIs (upstream reads both from CouchDB).
  const name = scheme === COUCH_SCHEME ? rawName.slice(COUCH_SCHEME.length + 1) : rawName;
  const inDocument = isObject(attachments) && isObject(attachments[name]);
  return { text: '', binary, attachment: { name, contentType, inDocument } };
}

function parseLimits(value: unknown): ActionLimits {
  if (value === undefined || value === null) return { ...DEFAULT_ACTION_LIMITS };
  if (!isObject(value)) throw new Error('limits must be an object');
  return {
    timeoutMs: limit(value, 'timeout', DEFAULT_ACTION_LIMITS.timeoutMs),
    memoryMb: limit(value, 'memory', DEFAULT_ACTION_LIMITS.memoryMb),
    logsMb: limit(value, 'logs', DEFAULT_ACTION_LIMITS.logsMb, 0),
    concurrency: limit(value, 'concurrency', DEFAULT_ACTION_LIMITS.concurrency),
  };
}

function limit(limits: Record<string, unknown>, key: string, fallback: number, min = 1): number {
  const value = limits[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new Error(`limits.${key} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function parseKeyValues(value: unknown, field: string): KeyValue[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${field} must be an array`);
  return value.map((entry: unknown, index) => {
    if (!isObject(entry) || typeof entry.key !== 'string') throw new Error(`${field}[${index}] must be {key, value}`);
    const kv: KeyValue = { key: entry.key, value: (entry.value ?? null) as JsonValue };
    if (entry.init === true) kv.init = true;
    return kv;
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requireString(obj: Record<string, unknown>, key: string, path = key): string {
  const value = obj[key];
  if (typeof value !== 'string' || value === '') throw new Error(`${path} must be a non-empty string`);
  return value;
}

function optionalString(obj: Record<string, unknown>, key: string, path = key): string | undefined {
  const value = obj[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new Error(`${path} must be a string`);
  return value;
}

function requireBoolean(obj: Record<string, unknown>, key: string, path = key): boolean {
  const value = obj[key];
  if (typeof value !== 'boolean') throw new Error(`${path} must be a boolean`);
  return value;
}
