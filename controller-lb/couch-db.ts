/**
 * A small CouchDB client for the controller's databases (`whisks`,
 * `activations`, `subjects`): documents, views and design documents, over
 * undici with a deadline per request. Credentials in the URL become a basic
 * Authorization header and never appear in an error message.
 */
import { request, Agent } from 'undici';
import type { JsonObject, JsonValue } from '../protocol/index.js';

export class CouchError extends Error {
  override readonly name = 'CouchError';
  constructor(
    message: string,
    /** HTTP status; undefined when no answer came. */
    readonly statusCode: number | undefined,
    /** CouchDB's `error` field, e.g. `not_found`, `conflict`. */
    readonly error?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const isNotFound = (error: unknown): boolean => error instanceof CouchError && error.statusCode === 404;
export const isConflict = (error: unknown): boolean => error instanceof CouchError && error.statusCode === 409;

export interface CouchServerOptions {
  url: string;
  /** Per request; default 10 s. */
  timeoutMs?: number;
}

export interface ViewQuery {
  startkey?: JsonValue;
  endkey?: JsonValue;
  key?: JsonValue;
  descending?: boolean;
  skip?: number;
  limit?: number;
  reduce?: boolean;
  include_docs?: boolean;
}

export interface ViewRow {
  id?: string;
  key: JsonValue;
  value: JsonValue;
  doc?: JsonObject | null;
}

export class CouchServer {
  readonly #base: string;
  readonly #authorization: string | undefined;
  readonly #timeoutMs: number;
  readonly #agent = new Agent({ keepAliveTimeout: 10_000, connections: 64 });

  constructor(options: CouchServerOptions) {
    const url = new URL(options.url);
    this.#authorization =
      url.username !== '' ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}` : undefined;
    url.username = '';
    url.password = '';
    this.#base = url.toString().replace(/\/+$/, '');
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  db(name: string): CouchDatabase {
    return new CouchDatabase(this, name);
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  /** One request; JSON in, JSON out. Rejects with CouchError for non-2xx answers and transport failures. */
  async call(method: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'HEAD', path: string, body?: unknown, what = `${method} ${path}`): Promise<JsonValue> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#authorization !== undefined) headers['authorization'] = this.#authorization;
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    let res;
    try {
      res = await request(`${this.#base}${path}`, {
        method,
        headers,
        body: payload,
        dispatcher: this.#agent,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      throw new CouchError(`${what}: ${(error as Error).message}`, undefined, undefined, { cause: error });
    }
    const text = method === 'HEAD' ? '' : await res.body.text();
    let json: JsonValue = null;
    if (text !== '') {
      try {
        json = JSON.parse(text) as JsonValue;
      } catch {
        throw new CouchError(`${what}: the server answered ${res.statusCode} with something that is not JSON`, res.statusCode);
      }
    }
    if (res.statusCode >= 300) {
      const o = typeof json === 'object' && json !== null && !Array.isArray(json) ? json : {};
      const error = typeof o['error'] === 'string' ? o['error'] : undefined;
      const reason = typeof o['reason'] === 'string' ? o['reason'] : undefined;
      throw new CouchError(`${what}: HTTP ${res.statusCode}${error !== undefined ? ` ${error}` : ''}${reason !== undefined ? ` (${reason})` : ''}`, res.statusCode, error);
    }
    return json;
  }
}

function docPath(id: string): string {
  // `_design/x` keeps its slash; every other id is one path segment.
  return id.startsWith('_design/') ? `_design/${encodeURIComponent(id.slice(8))}` : encodeURIComponent(id);
}

function query(params: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    const text = typeof value === 'string' && (key === 'rev' || key === 'attachments') ? value : JSON.stringify(value);
    parts.push(`${key}=${encodeURIComponent(text)}`);
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

export class CouchDatabase {
  constructor(
    readonly server: CouchServer,
    readonly name: string,
  ) {}

  #path(rest: string): string {
    return `/${encodeURIComponent(this.name)}${rest}`;
  }

  /** The document, or undefined when there is none (or it was deleted). */
  async get(id: string, options: { attachments?: boolean } = {}): Promise<JsonObject | undefined> {
    try {
      const doc = await this.server.call('GET', this.#path(`/${docPath(id)}${options.attachments === true ? '?attachments=true' : ''}`), undefined, `reading ${this.name}/${id}`);
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new CouchError(`reading ${this.name}/${id}: not a JSON object`, 200);
      return doc;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Creates or updates (with `_rev`) a document; rejects with a 409 CouchError on a conflict. */
  async put(doc: JsonObject): Promise<{ id: string; rev: string }> {
    const id = doc['_id'];
    if (typeof id !== 'string') throw new Error('document without a string _id');
    const answer = (await this.server.call('PUT', this.#path(`/${docPath(id)}`), doc, `writing ${this.name}/${id}`)) as JsonObject;
    return { id, rev: String(answer['rev']) };
  }

  async delete(id: string, rev: string): Promise<void> {
    await this.server.call('DELETE', this.#path(`/${docPath(id)}${query({ rev })}`), undefined, `deleting ${this.name}/${id}`);
  }

  async view(designDoc: string, view: string, params: ViewQuery): Promise<{ rows: ViewRow[]; total_rows?: number }> {
    const path = this.#path(`/_design/${encodeURIComponent(designDoc)}/_view/${encodeURIComponent(view)}${query(params as Record<string, unknown>)}`);
    const answer = (await this.server.call('GET', path, undefined, `querying ${this.name} view ${designDoc}/${view}`)) as JsonObject;
    const rows = Array.isArray(answer['rows']) ? (answer['rows'] as unknown as ViewRow[]) : [];
    return { rows, ...(typeof answer['total_rows'] === 'number' ? { total_rows: answer['total_rows'] } : {}) };
  }

  /** Creates the database if missing. */
  async ensureExists(): Promise<void> {
    try {
      await this.server.call('PUT', this.#path(''), undefined, `creating database ${this.name}`);
    } catch (error) {
      if (error instanceof CouchError && error.statusCode === 412) return;
      throw error;
    }
  }

  /**
   * Stores a design document, or adds the views it lacks to an existing one
   * (an upstream-initialised database keeps its own definitions).
   */
  async ensureDesignDoc(doc: JsonObject): Promise<void> {
    const id = String(doc['_id']);
    const existing = await this.get(id);
    const wanted = (doc['views'] ?? {}) as JsonObject;
    let next: JsonObject = doc;
    if (existing !== undefined) {
      const views = { ...((existing['views'] ?? {}) as JsonObject) };
      const missing = Object.keys(wanted).filter((name) => views[name] === undefined);
      if (missing.length === 0) return;
      for (const name of missing) views[name] = wanted[name] as JsonValue;
      next = { ...existing, views };
    }
    try {
      await this.put(next);
    } catch (error) {
      if (isConflict(error)) return; // Another controller wrote it at the same moment.
      throw error;
    }
  }
}
