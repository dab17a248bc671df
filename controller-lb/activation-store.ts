/**
 * Activation records in the `activations` database (upstream shape: `_id`
 * `<namespace>/<activationId>`, entityType `activation`, the WhiskActivation
 * fields), as the activations API reads them, and the records the controller
 * writes itself (sequences). Listing goes through upstream's views, with our
 * own map functions: `whisks.v2.1.0/activations` keyed
 * `[namespace, start]` and `whisks-filters.v2.1.1/activations` keyed
 * `[namespace/<[package/]name>, start]`, both with summaries as values and
 * `_count` reductions. Installed at startup when missing.
 */
import type { JsonObject } from '../protocol/index.js';
import type { CouchDatabase } from './couch-db.js';

const SUMMARY = [
  '  var end = doc.end !== 0 ? doc.end : undefined;',
  '  var summary = { namespace: doc.namespace, name: doc.name, version: doc.version, publish: doc.publish,',
  '    annotations: doc.annotations, activationId: doc.activationId, start: doc.start, end: end,',
  '    duration: end !== undefined ? end - doc.start : undefined, cause: doc.cause,',
  '    statusCode: end !== undefined && doc.response !== undefined ? doc.response.statusCode : undefined };',
];

export const ACTIVATIONS_DESIGN_DOC: JsonObject = {
  _id: '_design/whisks.v2.1.0',
  language: 'javascript',
  views: {
    activations: {
      map: ['function (doc) {', '  if (doc.activationId === undefined) return;', ...SUMMARY, '  emit([doc.namespace, doc.start], summary);', '}'].join('\n'),
      reduce: '_count',
    },
  },
};

export const ACTIVATION_FILTERS_DESIGN_DOC: JsonObject = {
  _id: '_design/whisks-filters.v2.1.1',
  language: 'javascript',
  views: {
    activations: {
      map: [
        'function (doc) {',
        '  if (doc.activationId === undefined) return;',
        ...SUMMARY,
        '  var name = doc.name;',
        '  var annotations = Array.isArray(doc.annotations) ? doc.annotations : [];',
        '  var path, binding;',
        '  for (var i = 0; i < annotations.length; i++) {',
        '    if (annotations[i].key === "path") path = annotations[i].value;',
        '    if (annotations[i].key === "binding") binding = annotations[i].value;',
        '  }',
        '  if (typeof binding === "string") name = binding.split("/")[1] + "/" + doc.name;',
        '  else if (typeof path === "string" && path.split("/").length === 3) name = path.split("/")[1] + "/" + doc.name;',
        '  emit([doc.namespace + "/" + name, doc.start], summary);',
        '}',
      ].join('\n'),
      reduce: '_count',
    },
  },
};

export interface ActivationQuery {
  namespace: string;
  /** `name` or `package/name`. */
  name?: string;
  skip: number;
  limit: number;
  /** Epoch ms bounds on `start`, inclusive. */
  since?: number;
  upto?: number;
  docs: boolean;
}

export interface ActivationReader {
  get(namespace: string, activationId: string): Promise<JsonObject | undefined>;
  /** Newest first: summaries, or whole records with `docs`. */
  list(query: ActivationQuery): Promise<JsonObject[]>;
  count(query: Omit<ActivationQuery, 'limit' | 'docs'>): Promise<number>;
}

export interface ActivationRecordWriter {
  /** Stores a record the controller made (`_id` `<namespace>/<activationId>`). */
  put(doc: JsonObject): Promise<void>;
}

/** Beyond any epoch-ms timestamp, for open-ended view ranges. */
const TOP = '\ufff0';

export class CouchActivationStore implements ActivationReader, ActivationRecordWriter {
  constructor(readonly db: CouchDatabase) {}

  async prepare(): Promise<void> {
    await this.db.ensureExists();
    await this.db.ensureDesignDoc(ACTIVATIONS_DESIGN_DOC);
    await this.db.ensureDesignDoc(ACTIVATION_FILTERS_DESIGN_DOC);
  }

  async get(namespace: string, activationId: string): Promise<JsonObject | undefined> {
    const doc = await this.db.get(`${namespace}/${activationId}`);
    if (doc === undefined || doc['entityType'] !== 'activation') return undefined;
    return doc;
  }

  #range(query: Omit<ActivationQuery, 'limit' | 'docs'>): { view: [string, string]; start: unknown[]; end: unknown[] } {
    const key = query.name === undefined ? query.namespace : `${query.namespace}/${query.name}`;
    const view: [string, string] = query.name === undefined ? ['whisks.v2.1.0', 'activations'] : ['whisks-filters.v2.1.1', 'activations'];
    return { view, start: [key, query.since ?? 0], end: [key, query.upto ?? TOP] };
  }

  async list(query: ActivationQuery): Promise<JsonObject[]> {
    const { view, start, end } = this.#range(query);
    const { rows } = await this.db.view(view[0], view[1], {
      startkey: end as never,
      endkey: start as never,
      descending: true,
      reduce: false,
      skip: query.skip,
      limit: query.limit,
      include_docs: query.docs,
    });
    return rows.map((row) => (query.docs ? stripDoc(row.doc ?? {}) : dropUndefined(row.value as JsonObject)));
  }

  async count(query: Omit<ActivationQuery, 'limit' | 'docs'>): Promise<number> {
    const { view, start, end } = this.#range(query);
    const { rows } = await this.db.view(view[0], view[1], { startkey: start as never, endkey: end as never, reduce: true });
    const total = typeof rows[0]?.value === 'number' ? rows[0].value : 0;
    return Math.max(0, total - query.skip);
  }

  async put(doc: JsonObject): Promise<void> {
    await this.db.put(doc);
  }
}

function dropUndefined(o: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null) out[k] = v;
  return out;
}

/** A stored record without the database's own fields. */
export function stripDoc(doc: JsonObject): JsonObject {
  const { _id, _rev, entityType, updated, ...rest } = doc;
  void _id;
  void _rev;
  void entityType;
  void updated;
  return rest;
}
