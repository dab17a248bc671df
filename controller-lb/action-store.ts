/**
 * Actions as the controller needs them, read from the CouchDB `whisks`
 * database (document id `<namespace>/<name>`, upstream WhiskAction), plus the
 * health test action every controller keeps there (upstream InvokerPool.prepare).
 *
 * The action document is a database entity, not one of the wire messages in
 * protocol/, so only the fields the controller uses are read here; their
 * key/value lists go through protocol's reader.
 */
import nano, { type DocumentScope, type ServerScope } from 'nano';
import {
  annotationsFromJson,
  ProtocolParseError,
  type Annotation,
  type ControllerInstanceId,
  type JsonObject,
  type JsonValue,
} from '../protocol/index.js';
import { healthTestActionName } from './load-balancer.js';

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
  limits: { timeoutMs: number; memoryMb: number; concurrency: number };
  parameters: ActionParameter[];
  annotations: Annotation[];
}

export interface ActionStore {
  /** The action, or undefined if there is none; rejects if the store failed. */
  get(path: string, name: string): Promise<ActionRecord | undefined>;
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

  return {
    path,
    name,
    version,
    revision,
    kind: exec['kind'],
    limits: {
      timeoutMs: positiveInteger(limits['timeout'], DEFAULT_LIMITS.timeoutMs, 'limits.timeout', docId),
      memoryMb: positiveInteger(limits['memory'], DEFAULT_LIMITS.memoryMb, 'limits.memory', docId),
      concurrency: positiveInteger(limits['concurrency'], DEFAULT_LIMITS.concurrency, 'limits.concurrency', docId),
    },
    parameters,
    annotations,
  };
}

function statusOf(error: unknown): number | undefined {
  const status = isObject(error) || error instanceof Error ? (error as { statusCode?: unknown }).statusCode : undefined;
  return typeof status === 'number' ? status : undefined;
}

/** Reads actions through nano. No cache: this is a development controller, and `_rev` must be current. */
export class CouchActionStore implements ActionStore {
  readonly #db: DocumentScope<JsonObject>;
  readonly #dbName: string;

  constructor(server: ServerScope, dbName: string) {
    this.#db = server.use<JsonObject>(dbName);
    this.#dbName = dbName;
  }

  static fromUrl(url: string, dbName: string): CouchActionStore {
    return new CouchActionStore(nano({ url }), dbName);
  }

  async get(path: string, name: string): Promise<ActionRecord | undefined> {
    const docId = `${path}/${name}`;
    let doc: unknown;
    try {
      doc = await this.#db.get(docId);
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw new Error(`reading action ${docId} from database ${this.#dbName}: ${(error as Error).message}`, { cause: error });
    }
    return actionFromDocument(doc, docId);
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
      updated: Date.now(),
    };
    try {
      await this.#db.insert(doc);
    } catch (error) {
      if (statusOf(error) === 409) return; // Already there (another controller, an earlier start).
      throw new Error(`creating the health test action ${docId} in database ${this.#dbName}: ${(error as Error).message}`, { cause: error });
    }
  }
}
