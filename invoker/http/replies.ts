/**
 * The one shape of every error answer: `{"error": "<what went wrong>"}`.
 * Messages are written here or come from protocol/ (which names fields, never
 * values), so no body, header value or secret is ever echoed back.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../telemetry/logger.js';

export interface ErrorBody {
  error: string;
}

/** Every method fastify routes; the 405 routes answer the ones a path does not take. */
export const ROUTED_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;
export type RoutedMethod = (typeof ROUTED_METHODS)[number];

export function sendError(
  reply: FastifyReply,
  status: number,
  error: string,
  headers: Readonly<Record<string, string>> = {},
): FastifyReply {
  return reply.code(status).headers(headers).type('application/json; charset=utf-8').send({ error } satisfies ErrorBody);
}

/** The path without its query string: query strings may carry anything, so they are never echoed. */
export function pathOf(request: FastifyRequest): string {
  const url = request.url;
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/**
 * Maps fastify's own errors (body too large, media type, malformed content
 * length, ...) to our texts; anything else that escapes a route is a 500
 * whose details go to the log only.
 */
export function errorHandler(logger: Logger, invokeBodyLimitBytes: number) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const path = pathOf(request);
    switch (error.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendError(reply, 413, `request body is larger than the limit of ${invokeBodyLimitBytes} bytes`);
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return sendError(reply, 415, `unsupported Content-Type on ${request.method} ${path}: expected application/json (or text/plain)`);
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return sendError(reply, 400, 'request body length does not match Content-Length');
    }
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    if (status >= 500) {
      logger.error({ err: error, method: request.method, path }, 'unexpected error handling an HTTP request');
      return sendError(reply, status, `internal error handling ${request.method} ${path}`);
    }
    // Client errors raised by fastify itself (e.g. an aborted body) carry a
    // fixed, value-free message.
    return sendError(reply, status, error.message);
  };
}

/** Registers a route on `url` that answers 405 with `Allow` for every method the path does not take. */
export function methodNotAllowed(
  app: FastifyInstance,
  url: string,
  allowed: readonly RoutedMethod[],
): void {
  // A GET route gets HEAD from fastify automatically.
  const taken = new Set<RoutedMethod>(allowed.includes('GET') ? [...allowed, 'HEAD'] : allowed);
  const others = ROUTED_METHODS.filter((m) => !taken.has(m));
  const allow = [...taken].join(', ');
  app.route({
    method: others,
    url,
    // Answer before any body is read: a wrong method must not cost a body upload.
    onRequest: async (request: FastifyRequest, reply: FastifyReply) =>
      sendError(reply, 405, `method ${request.method} not allowed on ${url}: use ${allow}`, { allow }),
    handler: async () => undefined,
  });
}
