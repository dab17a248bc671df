/**
 * `POST /invoke`: the controller pushes an ActivationMessage (the same bytes
 * it would put on Kafka) and gets the completion message back as the body.
 *
 * The acknowledgement is the `200` status line and headers, flushed before
 * any work starts; the body follows when the activation has ended. So every
 * refusal (auth, admission, size, media type, parse, names, a duplicate id)
 * must happen before that flush: once 200 is out, the activation runs to its
 * end.
 *
 * When a push counts as accepted, exactly: when the invoker writes the `200`
 * to a connection that is still open at that moment, after the whole body
 * was read, parsed, its names validated, and its activation id claimed (not
 * running here, not finished recently). A connection that is already gone
 * at that point runs nothing: the client's reset arrived first, or bytes
 * after the body made node answer `400` and close the connection. A client
 * that only half-closed (FIN) after a complete request still reads the
 * `200`; one that dropped the socket looks the same until its reset comes,
 * so it may have its activation run without seeing the acknowledgement.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { parseActivationMessage, ProtocolParseError, validateActivationMessageNames, type ActivationMessage } from '../../protocol/index.js';
import type { ActivationHandler, Admission } from '../invocation/activation-handler.js';
import type { ActivationIds } from '../invocation/activation-ids.js';
import type { Logger } from '../telemetry/logger.js';
import type { InvokerMetrics } from '../telemetry/metrics.js';
import { bearerMatches } from './auth.js';
import { methodNotAllowed, sendError } from './replies.js';

/** Seconds a refused caller is told to wait (`Retry-After`); the balancer may pick another invoker sooner. */
export const RETRY_AFTER_SECONDS = 5;

/**
 * Media types `/invoke` takes. `application/json` is what the message is.
 * `text/plain` is accepted too because upstream's controller (Akka HTTP)
 * labels a `String` entity `text/plain; charset=UTF-8`, and a push balancer
 * built on it would send the serialized message that way. Anything else is
 * refused (415) rather than guessed at; the bytes are validated by protocol/
 * in either case.
 */
export const INVOKE_MEDIA_TYPES = ['application/json', 'text/plain'] as const;

/** The controller's headers, only used for logging (and handed to the core as requestTags). */
export const FUNCTIONS_HEADERS = [
  'Functions-Activation-Id',
  'Functions-Transaction-Id',
  'Functions-Account',
  'Functions-Namespace',
  'Functions-Function',
] as const;

/** Longest header value kept as a tag: they are log fields, not data. */
const MAX_TAG_LENGTH = 256;

export interface InvokeRouteDeps {
  handler: ActivationHandler;
  admission: Admission;
  /** Ids running or finished recently: a second push of one is refused (409). */
  ids: ActivationIds;
  metrics: InvokerMetrics;
  logger: Logger;
  invokeBodyLimitBytes: number;
  invokeToken?: string | undefined;
  /** With mTLS: refuses a connection without a valid client certificate (runs first). */
  requireClientCertificate?: ((request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) | undefined;
  /** Called after each /invoke response has been handed to the socket. */
  afterResponse: () => void;
}

export function requestTagsOf(headers: IncomingHttpHeaders): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const name of FUNCTIONS_HEADERS) {
    const raw = headers[name.toLowerCase()];
    const value = Array.isArray(raw) ? raw.join(',') : raw;
    if (value !== undefined && value !== '') tags[name] = value.slice(0, MAX_TAG_LENGTH);
  }
  return tags;
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Registers `/invoke` in an encapsulated scope, so that its content-type
 * parsers (raw bytes, size-limited) do not replace fastify's defaults on the
 * other routes.
 */
export function registerInvokeRoute(app: FastifyInstance, deps: InvokeRouteDeps): void {
  const { handler, admission, ids, metrics, logger, invokeBodyLimitBytes, invokeToken, afterResponse, requireClientCertificate } = deps;
  // Receipt time per request, without decorating fastify's global Request type.
  const receivedAt = new WeakMap<FastifyRequest, number>();

  void app.register(async (scope) => {
    // The body is read once as bytes and parsed once, by protocol/ (which
    // names the offending field); fastify's JSON parser would parse it twice
    // and answer with its own texts.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      [...INVOKE_MEDIA_TYPES],
      { parseAs: 'buffer', bodyLimit: invokeBodyLimitBytes },
      (_request, body, done) => done(null, body),
    );

    const authenticate = async (request: FastifyRequest, reply: FastifyReply) => {
      if (invokeToken === undefined) return;
      if (bearerMatches(singleHeader(request.headers.authorization), invokeToken)) return;
      logger.warn({ remoteAddress: request.ip, requestTags: requestTagsOf(request.headers) }, 'refused POST /invoke: missing or wrong bearer token');
      return sendError(reply, 401, 'POST /invoke requires a valid bearer token', { 'www-authenticate': 'Bearer' });
    };

    const admit = async (request: FastifyRequest, reply: FastifyReply) => {
      // Checked before the body is read, so a draining invoker does not
      // accept uploads it will refuse anyway; checked again before the ack.
      if (admission.accepting()) return;
      return refuse(request, reply);
    };

    const refuse = (request: FastifyRequest, reply: FastifyReply) => {
      const reason = admission.refusalReason() ?? 'not accepting activations';
      logger.info({ reason, requestTags: requestTagsOf(request.headers) }, 'refused POST /invoke: invoker not accepting');
      return sendError(reply, 503, `invoker is not accepting activations: ${reason}`, {
        'retry-after': String(RETRY_AFTER_SECONDS),
      });
    };

    methodNotAllowed(scope, '/invoke', ['POST']);

    scope.route({
      method: 'POST',
      url: '/invoke',
      bodyLimit: invokeBodyLimitBytes,
      onRequest: [
        async (request) => {
          receivedAt.set(request, Date.now());
        },
        ...(requireClientCertificate ? [requireClientCertificate] : []),
        authenticate,
        admit,
      ],
      handler: async (request, reply) => {
        const requestTags = requestTagsOf(request.headers);
        const body = request.body;
        if (!Buffer.isBuffer(body)) {
          return sendError(reply, 400, 'POST /invoke needs a body: an ActivationMessage as JSON');
        }
        let message: ActivationMessage;
        try {
          message = parseActivationMessage(body);
          validateActivationMessageNames(message);
        } catch (error) {
          if (!(error instanceof ProtocolParseError)) throw error;
          // The message names the field, never its value (the body may hold secrets).
          logger.warn({ error: error.message, requestTags }, 'refused POST /invoke: invalid ActivationMessage');
          return sendError(reply, 400, error.message);
        }
        if (!admission.accepting()) return refuse(request, reply);
        const activationId = message.activationId;
        if (!ids.claim(activationId)) {
          const state = ids.state(activationId) ?? 'running';
          logger.warn({ activationId, state, requestTags }, 'refused POST /invoke: activation id already taken');
          return sendError(reply, 409, `activation ${activationId} is ${state === 'running' ? 'already running' : 'finished'} on this invoker`);
        }
        const socket = request.raw.socket;
        if (request.raw.destroyed || socket.destroyed || !socket.writable) {
          // Nobody can receive the acknowledgement: not accepted, nothing runs.
          ids.unclaim(activationId);
          logger.warn({ activationId, requestTags }, 'POST /invoke: the connection closed before the acknowledgement; not running the activation');
          return reply.hijack();
        }

        reply.hijack();
        await acknowledgeAndRun(reply.raw, {
          message,
          receivedAt: receivedAt.get(request) ?? Date.now(),
          traceparent: singleHeader(request.headers.traceparent),
          requestTags,
        });
      },
    });
  });

  async function acknowledgeAndRun(
    res: ServerResponse,
    request: { message: ActivationMessage; receivedAt: number; traceparent: string | undefined; requestTags: Record<string, string> },
  ): Promise<void> {
    const { message, requestTags } = request;
    const activationId = message.activationId;
    let clientGone = false;
    res.once('close', () => {
      if (!res.writableFinished) clientGone = true;
    });
    // A write racing a disconnect must not become an unhandled 'error' event.
    res.on('error', (error) => {
      logger.debug({ activationId, error: error.message }, 'writing the /invoke response failed');
    });

    // The acknowledgement: status and headers on the wire now; no
    // Content-Length, so the completion follows as a chunked body.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    logger.debug({ activationId, requestTags }, 'acknowledged activation over HTTP');

    let completion: string;
    try {
      const outcome = await handler.handle({
        message,
        transport: 'http',
        receivedAt: request.receivedAt,
        ...(request.traceparent !== undefined ? { traceparent: request.traceparent } : {}),
        requestTags,
      });
      completion = outcome.completion;
    } catch (error) {
      ids.finish(activationId);
      // The handler promises never to reject. If it does anyway, the 200 is
      // already out: cut the response off so the caller sees a truncated
      // chunked body (a failure), never an empty "success".
      logger.error({ activationId, requestTags, err: error }, 'activation handler rejected after the HTTP acknowledgement');
      res.destroy();
      return;
    }

    ids.finish(activationId);
    if (clientGone || res.destroyed) {
      // The activation ran and its record is stored; only this copy of the
      // completion is lost. The controller learns the result from the record.
      logger.warn({ activationId, requestTags }, 'HTTP client disconnected before the completion was written; activation completed');
    } else {
      // setImmediate: the connection counts as idle only after node's own
      // 'finish' handling has run.
      res.once('finish', () => setImmediate(afterResponse));
      res.end(completion);
    }
    // From receipt to the completion handed to the socket: only the
    // transport knows when that is. Counting activations stays with the core.
    metrics.activationSeconds.observe({ transport: 'http' }, (Date.now() - request.receivedAt) / 1000);
  }
}
