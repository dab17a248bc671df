/**
 * `/api/v1/namespaces/{namespace}/actions[/{name}]` (upstream ActionsApi):
 * list (`limit`, `skip`, `count`), create/update (`PUT`, `?overwrite=true`),
 * get (`?code=false`), delete, and invoke (`POST`, `blocking`, `result`,
 * `timeout`). Packaged names (`{namespace}/actions/{package}/{name}`) are
 * refused: this controller has no packages.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Identity, JsonObject, WhiskActivation } from '../../protocol/index.js';
import type { RuntimeManifest } from '../../invoker/runtime-manifest.js';
import { actionView, newActionDocument, storedAction, updatedActionDocument } from '../action-document.js';
import { ActionRequestError, readActionPut, type ActionLimitsConfig, type ActionPut } from '../action-put.js';
import { InvalidActionDocumentError, type ActionDocuments, type ActionRecord } from '../action-store.js';
import { isConflict } from '../couch-db.js';
import { checkEntityName, ownNamespace } from './auth.js';
import { AkkaTexts, ApiError, Messages } from './errors.js';
import { extendedActivation, httpStatusOf, invokeAction, type InvokeDeps, type InvokeOutcome } from './invoke.js';
import { bodyObject } from './json-body.js';
import { boolParam, listLimit, listSkip, timeoutParam, type Query } from './query.js';
import { checkSequence, invokeSequence, type SequenceDeps } from './sequences.js';
import type { Throttle } from './throttles.js';

export interface ActionsRouteDeps extends InvokeDeps {
  actions: ActionDocuments;
  manifest: RuntimeManifest;
  limits: ActionLimitsConfig;
  /** Upstream whisk.activation.payload.max: largest invoke body (1 MiB). */
  payloadMaxBytes: number;
  /** Upstream maxWaitForBlockingActivation (60 s); `?timeout` may only shorten it. */
  maxWaitMs: number;
  sequences: SequenceDeps;
  throttle: Throttle;
  now: () => number;
}

type Params = { namespace: string; name: string };
type Req = FastifyRequest<{ Params: Params; Querystring: Query }>;

function rethrowPutError(error: unknown): never {
  if (error instanceof ActionRequestError) {
    throw new ApiError(error.status, error.malformed ? AkkaTexts.malformedContent(error.message) : error.message);
  }
  throw error;
}

function checkAllowedKind(identity: Identity, put: ActionPut): void {
  const allowed = identity.limits['allowedKinds'];
  const kind = put.exec?.kind;
  if (kind === undefined || !Array.isArray(allowed)) return;
  if (!allowed.includes(kind)) throw new ApiError(403, Messages.notAuthorizedToActionKind(kind));
}

export function answerOutcome(reply: FastifyReply, outcome: InvokeOutcome, resultOnly: boolean, transid: { id: string }): FastifyReply {
  void reply.header('x-openwhisk-activation-id', outcome.activationId);
  if (outcome.kind === 'accepted') return reply.code(202).send({ activationId: outcome.activationId });
  if (outcome.kind === 'failed') return reply.code(500).send({ error: outcome.error, code: transid.id });
  const activation: WhiskActivation = outcome.activation;
  const status = httpStatusOf(activation.response.statusCode);
  if (resultOnly) return reply.code(status).send(activation.response.result ?? {});
  return reply.code(status).send(extendedActivation(activation));
}

export function registerActionRoutes(app: FastifyInstance, deps: ActionsRouteDeps): void {
  const { actions, manifest, limits } = deps;
  const putBodyLimit = limits.execSizeBytes + 2 * limits.parametersSizeBytes + 1024 * 1024;

  const target = (request: Req): { namespace: string; name: string; docId: string } => {
    const name = request.params.name;
    const namespace = ownNamespace(request.identity, request.params.namespace, name);
    checkEntityName(name);
    return { namespace, name, docId: `${namespace}/${name}` };
  };

  const readDocument = async (docId: string, attachments: boolean): Promise<JsonObject | undefined> => {
    const doc = await actions.getDocument(docId, { attachments });
    if (doc !== undefined && (doc['entityType'] !== undefined && doc['entityType'] !== 'action' || doc['exec'] === undefined)) {
      throw new ApiError(409, Messages.conformance);
    }
    return doc;
  };

  app.get<{ Params: { namespace: string }; Querystring: Query }>('/namespaces/:namespace/actions', async (request, reply) => {
    const namespace = ownNamespace(request.identity, request.params.namespace);
    const skip = listSkip(request.query, 'actions');
    const limit = listLimit(request.query, 'actions');
    if (boolParam(request.query, 'count', false)) return reply.send({ actions: await actions.count(namespace, skip) });
    return reply.send(await actions.list(namespace, skip, limit));
  });

  app.get<{ Params: Params; Querystring: Query }>('/namespaces/:namespace/actions/:name', async (request, reply) => {
    const { docId } = target(request);
    const code = boolParam(request.query, 'code', true);
    const doc = await readDocument(docId, code);
    if (doc === undefined) throw new ApiError(404);
    return reply.send(actionView(doc, code));
  });

  app.put<{ Params: Params; Querystring: Query }>('/namespaces/:namespace/actions/:name', { bodyLimit: putBodyLimit }, async (request, reply) => {
    const { namespace, name, docId } = target(request);
    const overwrite = boolParam(request.query, 'overwrite', false);
    let put: ActionPut;
    try {
      put = readActionPut(bodyObject(request.body) ?? {}, manifest, limits, namespace);
    } catch (error) {
      rethrowPutError(error);
    }
    checkAllowedKind(request.identity, put);
    const existing = await readDocument(docId, true);
    if (existing !== undefined && !overwrite) throw new ApiError(409, Messages.resourceExists);
    if (put.exec !== undefined && 'components' in put.exec) {
      await checkSequence(deps.sequences, request.identity, docId, put.exec.components);
    }
    let built;
    try {
      built =
        existing === undefined
          ? newActionDocument(namespace, name, put, limits, deps.now())
          : updatedActionDocument(namespace, name, put, storedAction(existing, limits), limits, deps.now());
    } catch (error) {
      rethrowPutError(error);
    }
    try {
      await actions.putDocument(built.doc);
    } catch (error) {
      if (isConflict(error)) throw new ApiError(409, Messages.conflict);
      throw error;
    }
    return reply.send(built.view);
  });

  app.delete<{ Params: Params; Querystring: Query }>('/namespaces/:namespace/actions/:name', async (request, reply) => {
    const { docId } = target(request);
    const doc = await readDocument(docId, true);
    if (doc === undefined) throw new ApiError(404);
    try {
      await actions.deleteDocument(docId, String(doc['_rev']));
    } catch (error) {
      if (isConflict(error)) throw new ApiError(409, Messages.conflict);
      throw error;
    }
    return reply.send(actionView(doc, true));
  });

  app.post<{ Params: Params; Querystring: Query }>(
    '/namespaces/:namespace/actions/:name',
    {
      bodyLimit: deps.payloadMaxBytes,
      // Upstream ValidateRequestSize: by the declared length, before reading the body.
      preParsing: async (request) => {
        const length = Number(request.headers['content-length']);
        if (Number.isFinite(length) && length > deps.payloadMaxBytes) {
          throw new ApiError(413, Messages.entityTooBig('Request', length, deps.payloadMaxBytes));
        }
      },
    },
    async (request, reply) => {
      const { namespace, name } = target(request);
      const blocking = boolParam(request.query, 'blocking', false);
      const resultOnly = boolParam(request.query, 'result', false);
      const waitMs = timeoutParam(request.query, deps.maxWaitMs);
      const payload = bodyObject(request.body);

      let action: ActionRecord | undefined;
      try {
        action = await actions.get(namespace, name);
      } catch (error) {
        if (error instanceof InvalidActionDocumentError) {
          deps.logger.warn({ transid: request.transid.id, action: `${namespace}/${name}`, error: error.message }, 'unreadable action document');
          throw new ApiError(/exec.kind/.test(error.message) ? 409 : 500, /exec.kind/.test(error.message) ? Messages.conformance : Messages.corruptedEntity);
        }
        deps.logger.error({ transid: request.transid.id, action: `${namespace}/${name}`, error: (error as Error).message }, 'fetching the action failed');
        throw new ApiError(500);
      }
      if (action === undefined) throw new ApiError(404);
      const runtime = action.kind === 'sequence' || action.kind === 'blackbox' ? undefined : [...manifest.kinds.values()].find((k) => k.kind === action.kind);
      if (runtime?.deprecated === true) throw new ApiError(400, Messages.runtimeDeprecated(action.kind));

      const release = deps.throttle.admit(request.identity);
      try {
        const options = { transid: request.transid, ...(blocking ? { waitMs } : {}) };
        const outcome =
          action.kind === 'sequence'
            ? await invokeSequence(deps.sequences, request.identity, action, payload, options)
            : await invokeAction(deps, request.identity, action, payload, options);
        return answerOutcome(reply, outcome, resultOnly, request.transid);
      } finally {
        release();
      }
    },
  );

  // Packaged entities: there are no packages here.
  app.all<{ Params: { namespace: string; pkg: string; name: string } }>('/namespaces/:namespace/actions/:pkg/:name', async (request) => {
    const namespace = ownNamespace(request.identity, request.params.namespace);
    throw new ApiError(400, Messages.packagesNotSupported(`${namespace}/${request.params.pkg}/${request.params.name}`));
  });
}
