/**
 * Error answers as upstream's controller writes them: `{"error": "<text>",
 * "code": "<transaction id>"}` (ErrorResponse), with the texts of upstream's
 * Messages and of the Akka HTTP rejection handler it wraps
 * (BasicHttpService.customRejectionHandler). Every error body of the API,
 * including fastify's own (bad JSON, too large, unknown route), goes out
 * through `sendError` or the handlers installed by `installErrorHandlers`.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { generateTransactionId, type TransactionId } from '../../protocol/index.js';

/** Upstream Messages (common/scala/.../http/ErrorResponse.scala). */
export const Messages = {
  resourceDoesNotExist: 'The requested resource does not exist.',
  conflict: 'Concurrent modification to resource detected.',
  resourceExists: 'resource already exists',
  conformance: 'Resource by this name exists but is not in this collection.',
  corruptedEntity: 'Resource is corrupted and cannot be read.',
  notAuthorizedToOperateOnResource: 'The supplied authentication is not authorized to access this resource.',
  notAuthorizedToAccessResource: (value: string) => `The supplied authentication is not authorized to access '${value}'.`,
  notAuthorizedToActionKind: (kind: string) => `The supplied authentication is not authorized to access actions of kind '${kind}'.`,
  entityNameTooLong: (field: string, is: number, allowed: number) => `${field} longer than allowed: ${is} > ${allowed}.`,
  malformedFullyQualifiedEntityName:
    'The fully qualified name of the entity must contain at least the namespace and the name of the entity.',
  entityNameIllegal: 'The name of the entity contains illegal characters.',
  namespaceIllegal: 'The namespace contains illegal characters.',
  activationIdIllegal: 'The activation id is not valid.',
  activationIdLength: (is: number) => `ActivationId length is ${is} but must be 32.`,
  sequenceIsTooLong: 'Too many actions in the sequence.',
  sequenceNoComponent: 'No component specified for the sequence.',
  sequenceIsCyclic: 'Sequence may not refer to itself.',
  sequenceComponentNotFound: 'Sequence component does not exist.',
  sequenceRetrieveActivationTimeout: (id: string) => `Timeout reached when retrieving activation ${id} for sequence component.`,
  sequenceActivationFailure: 'Sequence failed.',
  parametersNotAllowed: 'Request defines parameters that are not allowed (e.g., reserved properties).',
  invalidTimeout: (maxMs: number) => `Timeout must be number of milliseconds up to ${maxMs}.`,
  docsNotAllowedWithCount: "The parameter 'docs' is not permitted with 'count'.",
  badNameFilter: (value: string) => `Parameter may be a 'simple' name or 'package-name/simple' name: ${value}`,
  badEpoch: (value: string) => `Parameter is not a valid value for epoch seconds: ${value}`,
  entityTooBig: (field: string, is: number, allowed: number) => `${field} larger than allowed: ${is} > ${allowed} bytes.`,
  listLimitOutOfRange: (collection: string, value: number, max: number) => `The value '${value}' is not in the range of 0 to ${max} for ${collection}.`,
  listSkipOutOfRange: (collection: string, value: number) => `The value '${value}' is not greater than or equal to 0 for ${collection}.`,
  argumentNotInteger: (collection: string, value: string) => `The value '${value}' is not an integer for ${collection}.`,
  invalidRuntime: (kind: string, runtimes: readonly string[]) =>
    `The specified runtime '${kind}' is not supported by this platform. Valid values are: '${runtimes.join("', '")}'.`,
  runtimeDeprecated: (kind: string) =>
    `The '${kind}' runtime is no longer supported. You may read and delete but not update or invoke this action.`,
  tooManyRequests: (count: number, allowed: number) => `Too many requests in the last minute (count: ${count}, allowed: ${allowed}).`,
  tooManyConcurrentRequests: (count: number, allowed: number) =>
    `Too many concurrent requests in flight (count: ${count}, allowed: ${allowed}).`,
  systemOverloaded: 'System is overloaded, try again later.',
  /** Not upstream: this controller has no packages. */
  packagesNotSupported: (path: string) =>
    `Packages are not supported by this controller: '${path}' names an entity inside a package; use '<namespace>/<name>'.`,
} as const;

/**
 * Akka HTTP's texts: StatusCode.defaultMessage (what upstream's `terminate(status)`
 * says without a message) and the default rejection handler's.
 */
export const AkkaTexts = {
  badRequest: 'The request contains bad syntax or cannot be fulfilled.',
  unauthorized: 'Authentication is possible but has failed or not yet been provided.',
  credentialsMissing: 'The resource requires authentication, which was not supplied with the request',
  credentialsRejected: 'The supplied authentication is invalid',
  notFound: 'The requested resource could not be found.',
  methodNotAllowed: (allowed: readonly string[]) => `HTTP method not allowed, supported methods: ${allowed.join(', ')}`,
  conflict: 'The request could not be processed because of conflict in the request, such as an edit conflict.',
  payloadTooLarge: 'The request is larger than the server is willing or able to process.',
  unsupportedMediaType: (contentType: string | undefined) =>
    `The request's Content-Type${contentType === undefined || contentType === '' ? '' : ` [${contentType}]`} is not supported. Expected:\napplication/json`,
  tooManyRequests: 'The user has sent too many requests in a given amount of time.',
  internalServerError: 'There was an internal server error.',
  badGateway: 'The server was acting as a gateway or proxy and received an invalid response from the upstream server.',
  serviceUnavailable: 'The server is currently unavailable (because it is overloaded or down for maintenance).',
  requestTimeout: 'The server was not able to produce a timely response to your request.\nPlease try again in a short while!',
  malformedContent: (detail: string) => `The request content was malformed:\n${detail}`,
  malformedQueryParam: (name: string, detail: string) => `The query parameter '${name}' was malformed:\n${detail}`,
} as const;

const DEFAULT_TEXT: Record<number, string> = {
  400: AkkaTexts.badRequest,
  401: AkkaTexts.unauthorized,
  403: Messages.notAuthorizedToOperateOnResource,
  404: Messages.resourceDoesNotExist,
  408: AkkaTexts.requestTimeout,
  409: AkkaTexts.conflict,
  413: AkkaTexts.payloadTooLarge,
  415: AkkaTexts.unsupportedMediaType(undefined),
  429: AkkaTexts.tooManyRequests,
  500: AkkaTexts.internalServerError,
  502: AkkaTexts.badGateway,
  503: AkkaTexts.serviceUnavailable,
};

/** What a handler throws to answer with an upstream error body. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    message: string = DEFAULT_TEXT[status] ?? AkkaTexts.internalServerError,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const malformed = (detail: string): ApiError => new ApiError(400, AkkaTexts.malformedContent(detail));
export const malformedQuery = (name: string, detail: string): ApiError => new ApiError(400, AkkaTexts.malformedQueryParam(name, detail));

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's transaction id (upstream: the `code` of every error body). */
    transid: TransactionId;
  }
}

/** The request's transaction id: `x-request-id` when a client or proxy sent one (not a system id), else a new one. */
export function requestTransid(request: FastifyRequest): TransactionId {
  return request.transid ?? generateTransactionId();
}

export function sendError(reply: FastifyReply, status: number, error: string | undefined, transid: TransactionId): FastifyReply {
  const text = error === undefined || error.trim() === '' ? (DEFAULT_TEXT[status] ?? AkkaTexts.internalServerError) : error.trim();
  return reply.code(status).type('application/json').send({ error: text, code: transid.id });
}

const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Transaction ids on every request, the `x-request-id` answer header
 * (upstream answers every request with its transid), and `{"error","code"}`
 * bodies for everything fastify itself refuses.
 */
export function installErrorHandlers(app: FastifyInstance, onUnexpected: (error: unknown, request: FastifyRequest) => void): void {
  app.decorateRequest('transid', null as unknown as TransactionId);
  app.addHook('onRequest', async (request, reply) => {
    const given = request.headers['x-request-id'];
    const id = typeof given === 'string' && REQUEST_ID.test(given) && !given.startsWith('sid_') ? given : undefined;
    const transid = generateTransactionId();
    request.transid = id === undefined ? transid : { id, start: transid.start };
    void reply.header('x-request-id', request.transid.id);
  });

  app.setNotFoundHandler((request, reply) => {
    void sendError(reply, 404, AkkaTexts.notFound, requestTransid(request));
  });

  app.setErrorHandler((error: FastifyError | ApiError | Error, request, reply) => {
    const transid = requestTransid(request);
    if (error instanceof ApiError) {
      for (const [name, value] of Object.entries(error.headers)) void reply.header(name, value);
      return sendError(reply, error.status, error.message, transid);
    }
    const code = (error as FastifyError).code;
    const status = (error as FastifyError).statusCode;
    switch (code) {
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return sendError(reply, 415, AkkaTexts.unsupportedMediaType(request.headers['content-type']), transid);
      case 'FST_ERR_CTP_BODY_TOO_LARGE': {
        const length = Number(request.headers['content-length']);
        const limit = request.routeOptions.bodyLimit ?? 0;
        return sendError(reply, 413, Number.isFinite(length) && length > 0 ? Messages.entityTooBig('Request', length, limit) : AkkaTexts.payloadTooLarge, transid);
      }
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return sendError(reply, 400, AkkaTexts.malformedContent('Unexpected end-of-input'), transid);
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return sendError(reply, 400, AkkaTexts.badRequest, transid);
      default:
        break;
    }
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return sendError(reply, status, DEFAULT_TEXT[status] ?? error.message, transid);
    }
    onUnexpected(error, request);
    return sendError(reply, 500, AkkaTexts.internalServerError, transid);
  });
}
