/**
 * Actions in the CouchDB `whisks` database (document id `<namespace>/<name>`,
 * upstream WhiskAction; see action-document.ts for the shape written): the
 * reads an invocation needs, behind an entity cache (upstream's: by id, the
 * record carrying its revision; invalidated by this controller's own writes
 * and deletes, and bounded by a TTL so other controllers' changes show up;
 * while CouchDB fails, a known action keeps being invocable for a bounded
 * time), the reads and writes of the actions API, the listing view, and the
 * health test action every controller keeps there (upstream InvokerPool.prepare).
 *
 * The action document is a database entity, not one of the wire messages in
 * protocol/, so only the fields the controller uses are read here; their
 * key/value lists go through protocol's reader.
 */
import {
  annotationsFromJson,
  ProtocolParseError,
  type Annotation,
  type ControllerInstanceId,
  type JsonObject,
  type JsonValue,
} from '../protocol/index.js';
import { isConflict, type CouchDatabase } from './couch-db.js';
import { healthTestActionName } from './health-tests.js';

/** Upstream action limit defaults. */
export const DEFAULT_LIMITS = { timeoutMs: 60_000, memoryMb: 256, concurrency: 1 } as const;

export interface ActionParameter {
  key: string;
  value: JsonValue;
  /** Sent to /init as environment rather than to /run. */
  init: boolean;
  /** Scheme or key name when the stored value is encrypted (a locked argument). */
  encryption?: string;
}

export interface ActionRecord {
  /** Package path: `guest` or `guest/pkg`. */
  path: string;
  name: string;
  version: string;
  /** The document's `_rev`: the message's `revision`, which keys the invoker's caches. */
  revision: string;
  kind: string;
  /** Sequences: the components, `/ns/name` (or `/ns/pkg/name`). */
  components?: string[];
  limits: { timeoutMs: number; memoryMb: number; concurrency: number };
  parameters: ActionParameter[];
  annotations: Annotation[];
}

/** What invocations read: one action, by path and name. */
export interface ActionLookup {
  /** The action (cached), or undefined if there is none; rejects if the store failed. */
  get(path: string, name: string): Promise<ActionRecord | undefined>;
}

/** The actions API's view of the store. */
export interface ActionDocuments extends ActionLookup {
  /** The stored document, fresh from CouchDB (`attachments`: with `_attachments` data). */
  getDocument(docId: string, options?: { attachments?: boolean }): Promise<JsonObject | undefined>;
  /** Creates (no `_rev`) or updates a document; rejects with a CouchError 409 on a conflict. */
  putDocument(doc: JsonObject): Promise<string>;
  deleteDocument(docId: string, rev: string): Promise<void>;
  /** Action summaries of a namespace, most recently updated first (upstream's actions view). */
  list(namespace: string, skip: number, limit: number): Promise<JsonObject[]>;
  count(namespace: string, skip: number): Promise<number>;
}

export class InvalidActionDocumentError extends Error {
  override readonly name = 'InvalidActionDocumentError';
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function positiveInteger(value: unknown, fallback: number, field: string, docId: string): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw new InvalidActionDocumentError(`action ${docId}: ${field} must be a positive integer`);
}

/** Validates a `whisks` document as an action; throws InvalidActionDocumentError naming the field. */
export function actionFromDocument(doc: unknown, docId: string): ActionRecord {
  const bad = (field: string, expected: string): never => {
    throw new InvalidActionDocumentError(`action ${docId}: ${field}: expected ${expected}`);
  };
  if (!isObject(doc)) return bad('document', 'an object');
  const revision = doc['_rev'];
  if (typeof revision !== 'string') return bad('_rev', 'a string');
  const exec = doc['exec'];
  if (!isObject(exec) || typeof exec['kind'] !== 'string') return bad('exec.kind', 'a string (is this document an action?)');
  const version = doc['version'] ?? '0.0.1';
  if (typeof version !== 'string') return bad('version', 'a string');
  const limits = isObject(doc['limits']) ? doc['limits'] : {};

  const slash = docId.lastIndexOf('/');
  const path = typeof doc['namespace'] === 'string' ? doc['namespace'] : docId.slice(0, slash);
  const name = typeof doc['name'] === 'string' ? doc['name'] : docId.slice(slash + 1);

  let annotations: Annotation[];
  let pairs: Annotation[];
  try {
    annotations = doc['annotations'] === undefined ? [] : annotationsFromJson(doc['annotations'], 'annotations');
    pairs = doc['parameters'] === undefined ? [] : annotationsFromJson(doc['parameters'], 'parameters');
  } catch (error) {
    if (!(error instanceof ProtocolParseError)) throw error;
    throw new InvalidActionDocumentError(`action ${docId}: ${error.message}`, { cause: error });
  }
  const rawParameters = Array.isArray(doc['parameters']) ? doc['parameters'] : [];
  const parameters = pairs.map((pair, i): ActionParameter => {
    const raw = rawParameters[i];
    const parameter: ActionParameter = { key: pair.key, value: pair.value, init: isObject(raw) && raw['init'] === true };
    const encryption = isObject(raw) ? raw['encryption'] : undefined;
    if (typeof encryption === 'string' && encryption !== '') parameter.encryption = encryption;
    return parameter;
  });

  const components = exec['kind'] === 'sequence' && Array.isArray(exec['components']) ? { components: exec['components'].map(String) } : {};
  return {
    path,
    name,
    version,
    revision,
    kind: exec['kind'],
    ...components,
    limits: {
      timeoutMs: positiveInteger(limits['timeout'], DEFAULT_LIMITS.timeoutMs, 'limits.timeout', docId),
      memoryMb: positiveInteger(limits['memory'], DEFAULT_LIMITS.memoryMb, 'limits.memory', docId),
      concurrency: positiveInteger(limits['concurrency'], DEFAULT_LIMITS.concurrency, 'limits.concurrency', docId),
    },
    parameters,
    annotations,
  };
}

/** Upstream's `whisks.v2.1.0/actions` view (same name, keys and values; our own map function). */
export const WHISKS_DESIGN_DOC: JsonObject = {
  _id: '_design/whisks.v2.1.0',
  language: 'javascript',
  views: {
    actions: {
      map: [
        'function (doc) {',
        '  if (doc.exec === undefined || typeof doc.namespace !== "string") return;',
        '  var summary = { namespace: doc.namespace, name: doc.name, version: doc.version, publish: doc.publish,',
        '    annotations: doc.annotations, limits: doc.limits, exec: { binary: doc.exec.binary || false }, updated: doc.updated };',
        '  emit([doc.namespace, doc.updated], summary);',
        '  var root = doc.namespace.split("/")[0];',
        '  if (root !== doc.namespace) emit([root, doc.updated], summary);',
        '}',
      ].join('\n'),
      reduce: '_count',
    },
  },
};

export interface ActionCacheOptions {
  /** How long a cached action is used without reading CouchDB. Default 60 s. */
  ttlMs?: number;
  /** How long a cached action is still used while CouchDB fails. Default 10 min. */
  staleMs?: number;
  /** Actions kept. Default 10 000. */
  maxEntries?: number;
  now?: () => number;
}

interface CachedAction {
  record: ActionRecord;
  at: number;
}

export interface ActionCacheStats {
  hits: number;
  misses: number;
  stale: number;
  size: number;
}

/** Reads and writes actions through CouchDatabase, with the entity cache for invocations. */
export class CouchActionStore implements ActionDocuments {
  readonly #cache = new Map<string, CachedAction>();
  readonly #ttlMs: number;
  readonly #staleMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #counters = { hits: 0, misses: 0, stale: 0 };

  constructor(
    readonly db: CouchDatabase,
    options: ActionCacheOptions = {},
  ) {
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#staleMs = options.staleMs ?? 600_000;
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Creates the database and the listing view if missing. */
  async prepare(): Promise<void> {
    await this.db.ensureExists();
    await this.db.ensureDesignDoc(WHISKS_DESIGN_DOC);
  }

  stats(): ActionCacheStats {
    return { ...this.#counters, size: this.#cache.size };
  }

  async get(path: string, name: string): Promise<ActionRecord | undefined> {
    const docId = `${path}/${name}`;
    const cached = this.#cache.get(docId);
    const now = this.#now();
    if (cached !== undefined && now - cached.at < this.#ttlMs) {
      this.#counters.hits++;
      return cached.record;
    }
    this.#counters.misses++;
    let doc: JsonObject | undefined;
    try {
      doc = await this.db.get(docId);
    } catch (error) {
      if (cached !== undefined && now - cached.at < this.#staleMs) {
        this.#counters.stale++;
        return cached.record;
      }
      throw new Error(`reading action ${docId} from database ${this.db.name}: ${(error as Error).message}`, { cause: error });
    }
    if (doc === undefined) {
      this.#cache.delete(docId);
      return undefined;
    }
    const record = actionFromDocument(doc, docId);
    this.#remember(docId, { record, at: now });
    return record;
  }

  #remember(docId: string, entry: CachedAction): void {
    this.#cache.delete(docId);
    this.#cache.set(docId, entry);
    while (this.#cache.size > this.#maxEntries) {
      const oldest = this.#cache.keys().next();
      if (oldest.done === true) break;
      this.#cache.delete(oldest.value);
    }
  }

  /** Forgets a cached action (this controller changed or deleted it). */
  invalidate(docId: string): void {
    this.#cache.delete(docId);
  }

  getDocument(docId: string, options: { attachments?: boolean } = {}): Promise<JsonObject | undefined> {
    return this.db.get(docId, options);
  }

  async putDocument(doc: JsonObject): Promise<string> {
    const id = String(doc['_id']);
    this.invalidate(id);
    try {
      const { rev } = await this.db.put(doc);
      return rev;
    } finally {
      this.invalidate(id);
    }
  }

  async deleteDocument(docId: string, rev: string): Promise<void> {
    this.invalidate(docId);
    try {
      await this.db.delete(docId, rev);
    } finally {
      this.invalidate(docId);
    }
  }

  async list(namespace: string, skip: number, limit: number): Promise<JsonObject[]> {
    const { rows } = await this.db.view('whisks.v2.1.0', 'actions', {
      startkey: [namespace, {}],
      endkey: [namespace],
      descending: true,
      reduce: false,
      skip,
      limit,
    });
    return rows.map((row) => row.value as JsonObject);
  }

  async count(namespace: string, skip: number): Promise<number> {
    const { rows } = await this.db.view('whisks.v2.1.0', 'actions', { startkey: [namespace], endkey: [namespace, {}], reduce: true });
    const total = rows.length > 0 && typeof rows[0]?.value === 'number' ? rows[0].value : 0;
    return Math.max(0, total - skip);
  }

  /**
   * Creates the health test action of this controller if missing
   * (`function main(params) { return params; }`, 128 MB), so that test
   * actions exercise a real container.
   */
  async ensureHealthTestAction(controller: ControllerInstanceId, kind: string): Promise<void> {
    const fqn = healthTestActionName(controller);
    const docId = `${fqn.path}/${fqn.name}`;
    const doc = {
      _id: docId,
      entityType: 'action',
      namespace: fqn.path,
      name: fqn.name,
      version: fqn.version ?? '0.0.1',
      publish: false,
      exec: { kind, code: 'function main(params) { return params; }', binary: false },
      parameters: [],
      limits: { timeout: 60_000, memory: 128, logs: 10, concurrency: 1 },
      annotations: [],
      updated: this.#now(),
    };
    try {
      await this.db.put(doc);
    } catch (error) {
      if (isConflict(error)) return; // Already there (another controller, an earlier start).
      throw new Error(`creating the health test action ${docId} in database ${this.db.name}: ${(error as Error).message}`, { cause: error });
    }
  }
}
