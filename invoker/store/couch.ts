/**
 * What the action store and the activation writer share about talking to
 * CouchDB through nano: requests with a deadline, and reading nano's errors
 * without ever touching the request it attaches (that object carries the
 * request body, i.e. user documents, and must never reach a log line).
 */
import nano, { type RequestOptions, type ServerScope } from 'nano';
import { Pool } from 'undici';

export function createCouchClient(url: string): ServerScope {
  return nano({ url });
}

/** nano's generic request options, plus the ones its typings leave out. */
export interface CouchRequest extends RequestOptions {
  /** nano hands it to fetch; aborts the request (and fails it) when it fires. */
  signal?: AbortSignal;
}

/**
 * One request through nano's `relax`, which is typed as returning `any`; the
 * caller states what it expects and must validate it.
 *
 * Only for requests whose response body nano reads inside its own try/catch
 * (JSON answers): aborting an attachment download mid-body makes nano reject
 * a promise nobody awaits. See ActionStore for how attachments are bounded.
 */
export function couchRequest(server: ServerScope, request: CouchRequest): Promise<unknown> {
  return server.relax(request) as Promise<unknown>;
}

/** The parts of a failed nano call that are safe and useful to report. */
export interface CouchFailure {
  /** HTTP status; undefined when no answer came (refused, reset, timed out). */
  statusCode: number | undefined;
  /** CouchDB's `error` field, e.g. `not_found`, `conflict`, `file_exists`. */
  error: string | undefined;
  /** CouchDB's `reason` field, e.g. `missing`, `deleted`. */
  reason: string | undefined;
  message: string;
}

export function couchFailure(err: unknown): CouchFailure {
  if (typeof err !== 'object' || err === null) {
    return { statusCode: undefined, error: undefined, reason: undefined, message: String(err) };
  }
  const record = err as Record<string, unknown>;
  const statusCode = typeof record.statusCode === 'number' ? record.statusCode : undefined;
  const error = typeof record.error === 'string' ? record.error : undefined;
  const reason = typeof record.reason === 'string' ? record.reason : undefined;
  const message = typeof record.message === 'string' && record.message !== '' ? record.message : String(err);
  return { statusCode, error, reason, message };
}

/** A one-line description of a failure, for error messages and logs. */
export function describeFailure(failure: CouchFailure): string {
  if (failure.statusCode === undefined) return failure.message;
  const what = [failure.error, failure.reason].filter((part) => part !== undefined && part !== '').join(': ');
  return `HTTP ${failure.statusCode}${what === '' ? '' : ` ${what}`}`;
}

/** The server's URL with any credentials removed, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username !== '' || parsed.password !== '') {
      parsed.username = '***';
      parsed.password = '';
    }
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return '<unparsable CouchDB URL>';
  }
}

/** A timeout signal combined with an optional caller signal (shutdown). */
export function deadline(timeoutMs: number, also?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return also === undefined ? timeout : AbortSignal.any([timeout, also]);
}

/**
 * `POST /<db>/_bulk_docs` with a body that is already JSON, over a
 * kept-alive undici pool. This is the activation writer's hot path: nano
 * goes through fetch, whose WHATWG streams and per-request objects cost
 * several hundred microseconds of CPU a call, and the writer makes tens of
 * these calls a second under load. Everything else about CouchDB stays with
 * nano. Failures are thrown in the shape `couchFailure()` reads (HTTP
 * status, CouchDB's `error` and `reason`), so callers handle both alike.
 */
export class BulkDocsClient {
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;

  constructor(url: string, database: string) {
    const parsed = new URL(url);
    const base = parsed.pathname.replace(/\/$/, '');
    this.path = `${base}/${encodeURIComponent(database)}/_bulk_docs`;
    this.headers = { 'content-type': 'application/json', accept: 'application/json' };
    if (parsed.username !== '' || parsed.password !== '') {
      const credentials = `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`;
      this.headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
    }
    this.pool = new Pool(parsed.origin, { connections: 4 });
  }

  /** The answer's JSON (an array for `_bulk_docs`); throws a CouchFailure-shaped error otherwise. */
  async post(body: string, signal: AbortSignal): Promise<unknown> {
    const res = await this.pool.request({ path: this.path, method: 'POST', headers: this.headers, body, signal });
    const text = await res.body.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return json;
    const fields = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
    throw Object.assign(new Error(`_bulk_docs answered HTTP ${res.statusCode}`), {
      statusCode: res.statusCode,
      error: typeof fields.error === 'string' ? fields.error : undefined,
      reason: typeof fields.reason === 'string' ? fields.reason : undefined,
    });
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => undefined);
  }
}
