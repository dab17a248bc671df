/**
 * A small controller API to drive the balancer (development and tests, not
 * upstream's full REST API):
 *
 *   POST /api/v1/namespaces/:namespace/actions/:name?blocking=true&result=true
 *        body: JSON object of parameters
 *   GET  /invokers          {"invoker0":"up", ...}
 *   GET  /invokers/slots    per invoker: status and memory slots
 *
 * Every activation runs as one fixed identity from configuration; there is no
 * authentication, so bind it to a private address.
 */
import fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import {
  generateActivationId,
  generateTransactionId,
  isTruthy,
  serializeWhiskActivation,
  type ActivationMessage,
  type ControllerInstanceId,
  type Identity,
  type JsonObject,
  type JsonValue,
  type TransactionId,
} from '../protocol/index.js';
import type { Logger } from '../invoker/telemetry/logger.js';
import type { ActionRecord, ActionStore } from './action-store.js';
import type { InvokerPool } from './invoker-state.js';
import { KafkaUnavailableError, LoadBalancerClosedError, type ActionSpec, type ActivationCompletion, type Published } from './load-balancer.js';
import { NoInvokersAvailableError } from './scheduler.js';

export interface ApiDeps {
  balancer: { publish(action: ActionSpec, msg: ActivationMessage): Published };
  pool: InvokerPool;
  actions: ActionStore;
  /** Who every activation runs as. */
  identity: Identity;
  controller: ControllerInstanceId;
  logger: Logger;
  /** How long a blocking call waits before answering 202 with the id (upstream: 60 s). */
  blockingTimeoutMs?: number;
  /** Largest request body. Upstream's payload limit is 1 MB. */
  bodyLimitBytes?: number;
  now?: () => number;
}

/** Upstream Messages.parametersNotAllowed. */
const PARAMETERS_NOT_ALLOWED = 'Request defines parameters that are not allowed (e.g., reserved properties).';
const NOT_FOUND = 'The requested resource does not exist.';

const FORCED_REASONS = {
  timeout: 'no completion came back in time',
  failed: 'the invoker could not be reached or failed to answer',
  shutdown: 'the controller shut down',
} as const;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Own-property assignment: a parameter named `__proto__` is data, not a prototype. */
function setOwn(target: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

export interface MergedArguments {
  content: JsonObject;
  initArgs: string[];
  lockedArgs: Record<string, string>;
}

/**
 * The action's default parameters overlaid with the request's (upstream
 * `action.parameters.merge(payload)`). A request value replaces a locked
 * default, so that key is no longer locked. Returns undefined when the action
 * is annotated `final` and the request redefines one of its parameters.
 */
export function mergeArguments(action: ActionRecord, request: JsonObject): MergedArguments | undefined {
  const requestKeys = Object.keys(request);
  if (isTruthy(action.annotations, 'final')) {
    const defined = new Set(action.parameters.filter((p) => p.value !== null).map((p) => p.key));
    if (requestKeys.some((key) => defined.has(key))) return undefined;
  }
  const content: JsonObject = {};
  const initArgs: string[] = [];
  const lockedArgs: Record<string, string> = {};
  for (const p of action.parameters) {
    setOwn(content, p.key, p.value);
    if (p.init) initArgs.push(p.key);
    if (p.encryption !== undefined && !requestKeys.includes(p.key)) lockedArgs[p.key] = p.encryption;
  }
  for (const key of requestKeys) setOwn(content, key, request[key] as JsonValue);
  return { content, initArgs, lockedArgs };
}

/** Upstream's status for a blocking answer: success 200, system error 500, other errors 502. */
function httpStatusOf(statusCode: number): number {
  if (statusCode === 0) return 200;
  return statusCode === 3 ? 500 : 502;
}

function sendError(reply: FastifyReply, status: number, error: string, transid: TransactionId | undefined, extra: JsonObject = {}): FastifyReply {
  return reply.code(status).send({ error, ...(transid !== undefined ? { code: transid.id } : {}), ...extra });
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const { balancer, pool, actions, identity, controller, logger } = deps;
  const now = deps.now ?? Date.now;
  const blockingTimeoutMs = deps.blockingTimeoutMs ?? 60_000;
  const app = fastify({ logger: false, bodyLimit: deps.bodyLimitBytes ?? 1024 * 1024 });
  // No body (or an empty one) means no parameters, as upstream; fastify's
  // own JSON parser would refuse an empty body.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, text, done) => {
    const source = typeof text === 'string' ? text : text.toString('utf8');
    if (source.trim() === '') return done(null, {});
    try {
      done(null, JSON.parse(source));
    } catch {
      done(Object.assign(new Error('The request content was malformed: invalid JSON.'), { statusCode: 400 }), undefined);
    }
  });

  app.get('/invokers', async () => pool.statuses(now()));
  app.get('/invokers/slots', async () => pool.snapshot(now()));

  app.post<{
    Params: { namespace: string; name: string };
    Querystring: { blocking?: string; result?: string };
  }>('/api/v1/namespaces/:namespace/actions/:name', async (request, reply) => {
    const transid = generateTransactionId();
    const namespace = request.params.namespace === '_' ? identity.namespace.name : request.params.namespace;
    const { name } = request.params;
    const blocking = request.query.blocking === 'true';
    const resultOnly = request.query.result === 'true';
    const body: unknown = request.body ?? {};
    if (!isObject(body)) return sendError(reply, 400, 'The request content was malformed: expected a JSON object of parameters.', transid);

    let action: ActionRecord | undefined;
    try {
      action = await actions.get(namespace, name);
    } catch (error) {
      logger.error({ transid: transid.id, action: `${namespace}/${name}`, error: (error as Error).message }, 'fetching the action failed');
      return sendError(reply, 502, `Could not fetch action ${namespace}/${name}.`, transid);
    }
    if (action === undefined) return sendError(reply, 404, NOT_FOUND, transid);
    const args = mergeArguments(action, body);
    if (args === undefined) return sendError(reply, 400, PARAMETERS_NOT_ALLOWED, transid);

    const msg: ActivationMessage = {
      transid,
      action: { path: action.path, name: action.name, version: action.version },
      revision: action.revision,
      user: identity,
      activationId: generateActivationId(),
      rootControllerIndex: controller,
      blocking,
      content: args.content,
      initArgs: args.initArgs,
      lockedArgs: args.lockedArgs,
    };
    const spec: ActionSpec = {
      namespace: identity.namespace.name,
      path: action.path,
      name: action.name,
      version: action.version,
      memoryMb: action.limits.memoryMb,
      timeoutMs: action.limits.timeoutMs,
      concurrency: action.limits.concurrency,
      blackbox: action.kind === 'blackbox',
    };

    let published: Published;
    try {
      published = balancer.publish(spec, msg);
    } catch (error) {
      if (error instanceof KafkaUnavailableError) {
        // Would overflow to Kafka, which is down: upstream's overload text, and when to come back.
        logger.warn({ transid: transid.id, error: error.message }, 'activation refused');
        void reply.header('retry-after', String(error.retryAfterSeconds));
        return sendError(reply, 503, 'System is overloaded, try again later.', transid);
      }
      if (error instanceof NoInvokersAvailableError || error instanceof LoadBalancerClosedError) {
        logger.warn({ transid: transid.id, error: error.message }, 'activation refused');
        return sendError(reply, 503, error instanceof NoInvokersAvailableError ? 'No invokers available.' : 'The controller is shutting down.', transid);
      }
      throw error;
    }
    const { activationId } = published;
    void reply.header('x-openwhisk-activation-id', activationId);

    if (!blocking) {
      try {
        await published.acknowledged;
      } catch (error) {
        logger.warn({ transid: transid.id, activationId, error: (error as Error).message }, 'activation was not acknowledged');
        return sendError(reply, 502, 'The activation could not be handed to an invoker.', transid, { activationId });
      }
      return reply.code(202).send({ activationId });
    }

    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      published.completion,
      new Promise<'waiting'>((resolve) => (timer = setTimeout(() => resolve('waiting'), blockingTimeoutMs))),
    ]);
    clearTimeout(timer);
    return answerBlocking(reply, outcome, activationId, resultOnly, transid);
  });

  return app;
}

function answerBlocking(
  reply: FastifyReply,
  outcome: ActivationCompletion | 'waiting',
  activationId: string,
  resultOnly: boolean,
  transid: TransactionId,
): FastifyReply {
  // Still running: the caller can look the activation up later (upstream: 202 with the id).
  if (outcome === 'waiting') return reply.code(202).send({ activationId });
  if (outcome.status === 'forced') {
    return sendError(reply, 500, `The activation did not complete: ${FORCED_REASONS[outcome.reason]}.`, transid, { activationId });
  }
  const activation = outcome.activation;
  // Only the id came back (e.g. shrunk); the record is in the activations database.
  if (activation === undefined) return reply.code(202).send({ activationId });
  const status = httpStatusOf(activation.response.statusCode);
  if (resultOnly) return reply.code(status).send(activation.response.result ?? {});
  return reply.code(status).type('application/json; charset=utf-8').send(serializeWhiskActivation(activation));
}
