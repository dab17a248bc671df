/**
 * HTTP push of an activation to an invoker (the seed's transport): `POST
 * <invoker>/invoke` with the serialized ActivationMessage. The `200` status
 * line and headers are the acknowledgement (the invoker flushes them on
 * receipt, before running anything); the body, written when the activation
 * has ended, is the completion message, exactly as it would appear on
 * `completed<C>`.
 *
 * A push is never retried: once the bytes may have reached the invoker, a
 * second send could run the activation twice.
 */
import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import {
  parseAcknowledgement,
  serializeActivationMessage,
  type AcknowledgementMessage,
  type ActivationMessage,
} from '../protocol/index.js';

export interface PushTlsOptions {
  /** PEM client certificate and key, when the invoker requires mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** PEM CA bundle the invoker's certificate must chain to (default: Node's). */
  ca?: string | Buffer;
}

export interface PushClientOptions {
  /** Sent as `Authorization: Bearer <token>` (the invoker's INVOKER_INVOKE_TOKEN). */
  token?: string | undefined;
  tls?: PushTlsOptions | undefined;
  /**
   * How long to wait for the acknowledgement (status and headers). The
   * invoker answers on receipt, so this can be short.
   */
  ackTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Idle keep-alive sockets are closed after this. */
  keepAliveTimeoutMs?: number;
  /** A completion body larger than this is refused (a system error). */
  maxCompletionBytes?: number;
}

/** How a push ended. Never a rejection: every failure is a value. */
export type PushCompletion =
  | { ok: true; ack: AcknowledgementMessage }
  | {
      ok: false;
      /** Whether the invoker had acknowledged (then the activation may have run). */
      acknowledged: boolean;
      /** What went wrong, for logs; never contains the message. */
      error: string;
    };

export interface Push {
  /** Resolves on `200` headers; rejects (PushRejectedError) otherwise. */
  acknowledged: Promise<void>;
  /** Resolves once the body was read and parsed, or the push failed. */
  completion: Promise<PushCompletion>;
}

/** The invoker did not acknowledge: refused, unreachable, or answered non-200. */
export class PushRejectedError extends Error {
  override readonly name = 'PushRejectedError';
  readonly statusCode: number | undefined;
  constructor(message: string, statusCode: number | undefined, options?: { cause?: unknown }) {
    super(message, options);
    this.statusCode = statusCode;
  }
}

/** Upstream's Kafka limit on completions is ~1 MiB, but an HTTP completion may carry logs in full. */
const DEFAULT_MAX_COMPLETION_BYTES = 32 * 1024 * 1024;
/** How much of a refusal's body goes into the error message. */
const ERROR_BODY_BYTES = 512;

export class PushClient {
  readonly #options: PushClientOptions;
  /** One connection pool per invoker origin, kept alive across pushes. */
  readonly #pools = new Map<string, Pool>();
  #closed = false;

  constructor(options: PushClientOptions = {}) {
    this.#options = options;
  }

  /**
   * Pushes `msg` to the invoker at `baseUrl` (e.g. `http://10.0.0.5:8080`).
   * `signal` aborts the request (e.g. on a forced completion), which fails
   * the completion if it is still outstanding.
   */
  push(baseUrl: string, msg: ActivationMessage, signal?: AbortSignal): Push {
    let resolveAck!: () => void;
    let rejectAck!: (error: Error) => void;
    const acknowledged = new Promise<void>((resolve, reject) => {
      resolveAck = resolve;
      rejectAck = reject;
    });
    // Callers that only wait for the completion must not trip Node's
    // unhandled-rejection handler; awaiting `acknowledged` still sees it.
    acknowledged.catch(() => undefined);

    const completion = this.#run(baseUrl, msg, signal, resolveAck, rejectAck);
    return { acknowledged, completion };
  }

  async close(): Promise<void> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    // destroy, not close: close would wait for activations still running.
    await Promise.all(pools.map((pool) => pool.destroy().catch(() => undefined)));
  }

  async #run(
    baseUrl: string,
    msg: ActivationMessage,
    signal: AbortSignal | undefined,
    resolveAck: () => void,
    rejectAck: (error: Error) => void,
  ): Promise<PushCompletion> {
    const notAcknowledged = (error: PushRejectedError): PushCompletion => {
      rejectAck(error);
      return { ok: false, acknowledged: false, error: error.message };
    };

    let target: { pool: Pool; path: string; url: string };
    let response: Awaited<ReturnType<Pool['request']>>;
    try {
      target = this.#target(baseUrl);
    } catch (error) {
      return notAcknowledged(new PushRejectedError(`pushing activation ${msg.activationId} to ${baseUrl}: ${(error as Error).message}`, undefined, { cause: error }));
    }
    try {
      response = await target.pool.request({
        method: 'POST',
        path: target.path,
        headers: this.#headers(msg),
        body: serializeActivationMessage(msg),
        signal: signal ?? null,
      });
    } catch (error) {
      return notAcknowledged(
        new PushRejectedError(`pushing activation ${msg.activationId} to ${target.url}: ${describe(error)}`, undefined, { cause: error }),
      );
    }

    if (response.statusCode !== 200) {
      const detail = await readText(response.body, ERROR_BODY_BYTES);
      return notAcknowledged(
        new PushRejectedError(
          `pushing activation ${msg.activationId} to ${target.url}: invoker answered HTTP ${response.statusCode}${detail === '' ? '' : `: ${detail}`}`,
          response.statusCode,
        ),
      );
    }
    resolveAck();

    let body: Buffer;
    try {
      body = await readAll(response.body, this.#options.maxCompletionBytes ?? DEFAULT_MAX_COMPLETION_BYTES);
    } catch (error) {
      return { ok: false, acknowledged: true, error: `reading the completion of activation ${msg.activationId} from ${target.url}: ${describe(error)}` };
    }
    try {
      return { ok: true, ack: parseAcknowledgement(body) };
    } catch (error) {
      // ProtocolParseError names the field, never the content.
      return {
        ok: false,
        acknowledged: true,
        error: `parsing the completion of activation ${msg.activationId} from ${target.url} (${body.length} bytes): ${describe(error)}`,
      };
    }
  }

  #target(baseUrl: string): { pool: Pool; path: string; url: string } {
    if (this.#closed) throw new Error('the push client is closed');
    const url = new URL(baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`expected an http(s) URL, got ${url.protocol}`);
    const path = `${url.pathname.replace(/\/+$/, '')}/invoke`;
    let pool = this.#pools.get(url.origin);
    if (pool === undefined) {
      const { tls, ackTimeoutMs, connectTimeoutMs, keepAliveTimeoutMs } = this.#options;
      pool = new Pool(url.origin, {
        // Each running activation holds its connection until the completion
        // is written, so connections are not capped here: the balancer's
        // memory slots already bound how many activations an invoker gets.
        connections: null,
        pipelining: 1,
        headersTimeout: ackTimeoutMs ?? 30_000,
        // The body comes when the activation ends (minutes, for long
        // actions); the forced-completion timer bounds it, not the socket.
        bodyTimeout: 0,
        keepAliveTimeout: keepAliveTimeoutMs ?? 30_000,
        connect: {
          timeout: connectTimeoutMs ?? 5_000,
          ...(tls?.cert !== undefined ? { cert: tls.cert } : {}),
          ...(tls?.key !== undefined ? { key: tls.key } : {}),
          ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
        },
      });
      this.#pools.set(url.origin, pool);
    }
    return { pool, path, url: `${url.origin}${path}` };
  }

  #headers(msg: ActivationMessage): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'Functions-Activation-Id': msg.activationId,
      'Functions-Transaction-Id': msg.transid.id,
      'Functions-Account': msg.user.subject,
      'Functions-Namespace': msg.user.namespace.name,
      'Functions-Function': msg.action.name,
    };
    const traceparent = msg.traceContext?.['traceparent'];
    if (traceparent !== undefined) headers['traceparent'] = traceparent;
    if (this.#options.token !== undefined) headers['authorization'] = `Bearer ${this.#options.token}`;
    return headers;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}

async function readAll(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    length += buf.length;
    if (length > limit) {
      body.destroy();
      throw new Error(`the body exceeds ${limit} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, length);
}

/** The start of a refusal's body, for the error message; never fails. */
async function readText(body: Readable, limit: number): Promise<string> {
  try {
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of body) {
      const buf = chunk as Buffer;
      chunks.push(buf);
      length += buf.length;
      if (length >= limit) {
        body.destroy();
        break;
      }
    }
    return Buffer.concat(chunks).subarray(0, limit).toString('utf8').replace(/\s+/g, ' ').trim();
  } catch {
    return '';
  }
}
