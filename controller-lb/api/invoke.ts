/**
 * Invoking one action (upstream PrimitiveActions.invokeSimpleAction): merge
 * the action's parameters under the request's, build the ActivationMessage,
 * hand it to the balancer, and, when the caller waits, wait up to the
 * blocking timeout for the activation record. The answer is either the
 * record or, when nothing came in time, only the activation id (upstream's
 * `Left(activationId)`, a 202).
 */
import {
  generateActivationId,
  isTruthy,
  RawJson,
  type ActivationMessage,
  type ControllerInstanceId,
  type Identity,
  type JsonObject,
  type JsonValue,
  type TransactionId,
  type WhiskActivation,
} from '../../protocol/index.js';
import type { Logger } from '../../invoker/telemetry/logger.js';
import type { ActionRecord } from '../action-store.js';
import type { ActivationReader } from '../activation-store.js';
import { KafkaUnavailableError, LoadBalancerClosedError, type ActionSpec, type ActivationCompletion, type Published } from '../load-balancer.js';
import { NoInvokersAvailableError } from '../scheduler.js';
import { ApiError } from './errors.js';

export interface Balancer {
  publish(action: ActionSpec, msg: ActivationMessage): Published;
}

export interface InvokeDeps {
  balancer: Balancer;
  controller: ControllerInstanceId;
  logger: Logger;
  /** To read the record when the completion carried only the id. */
  activations?: ActivationReader;
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

export type InvokeOutcome =
  | { kind: 'accepted'; activationId: string }
  | { kind: 'activation'; activationId: string; activation: WhiskActivation }
  | { kind: 'failed'; activationId: string; error: string };

export interface InvokeOptions {
  transid: TransactionId;
  /** Milliseconds to wait for the record; undefined: non-blocking. */
  waitMs?: number;
  /** The enclosing sequence's activation id. */
  cause?: string;
  /** The message's `blocking` flag when it differs from "waiting" (sequence components always block). */
  blocking?: boolean;
}

const FORCED_REASONS = {
  timeout: 'no completion came back in time',
  failed: 'the invoker could not be reached or failed to answer',
  shutdown: 'the controller shut down',
} as const;

/** How long to look for a record in the database after a completion without one. */
const RECORD_POLL_MS = 5_000;

/**
 * Invokes `action` for `identity`. Throws ApiError 400 (final parameters),
 * 503 (no invokers, shutting down). `payload` undefined: no parameters.
 */
export async function invokeAction(deps: InvokeDeps, identity: Identity, action: ActionRecord, payload: JsonValue | undefined, options: InvokeOptions): Promise<InvokeOutcome> {
  // An array (a sequence component's result) is passed on as the input, unmerged.
  const args: MergedArguments | undefined = Array.isArray(payload)
    ? { content: payload as unknown as JsonObject, initArgs: [], lockedArgs: {} }
    : mergeArguments(action, (payload ?? {}) as JsonObject);
  if (args === undefined) throw new ApiError(400, 'Request defines parameters that are not allowed (e.g., reserved properties).');
  const waiting = options.waitMs !== undefined;
  const msg: ActivationMessage = {
    transid: options.transid,
    action: { path: action.path, name: action.name, version: action.version },
    revision: action.revision,
    user: identity,
    activationId: generateActivationId(),
    rootControllerIndex: deps.controller,
    blocking: options.blocking ?? waiting,
    content: RawJson.of(args.content),
    initArgs: args.initArgs,
    lockedArgs: args.lockedArgs,
    ...(options.cause !== undefined ? { cause: options.cause } : {}),
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
    published = deps.balancer.publish(spec, msg);
  } catch (error) {
    if (error instanceof KafkaUnavailableError) {
      // Would overflow to Kafka, which is down: upstream's overload text, and when to come back.
      deps.logger.warn({ transid: options.transid.id, error: error.message }, 'activation refused');
      throw new ApiError(503, 'System is overloaded, try again later.', { 'retry-after': String(error.retryAfterSeconds) });
    }
    if (error instanceof NoInvokersAvailableError || error instanceof LoadBalancerClosedError) {
      deps.logger.warn({ transid: options.transid.id, error: error.message }, 'activation refused');
      // Upstream: LoadBalancerException -> terminate(ServiceUnavailable).
      throw new ApiError(503);
    }
    throw error;
  }
  const { activationId } = published;

  if (!waiting) {
    try {
      await published.acknowledged;
    } catch (error) {
      deps.logger.warn({ transid: options.transid.id, activationId, error: (error as Error).message }, 'activation was not acknowledged');
      throw new ApiError(503, undefined, { 'x-openwhisk-activation-id': activationId });
    }
    return { kind: 'accepted', activationId };
  }

  const deadline = Date.now() + (options.waitMs as number);
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    published.completion,
    new Promise<'waiting'>((resolve) => (timer = setTimeout(() => resolve('waiting'), options.waitMs))),
  ]);
  clearTimeout(timer);
  if (outcome === 'waiting') return { kind: 'accepted', activationId };
  if (outcome.status === 'completed' && outcome.activation !== undefined) return { kind: 'activation', activationId, activation: outcome.activation };

  // No record came with the completion (shrunk, or forced): it may be in the database.
  const record = await pollRecord(deps, identity.namespace.name, activationId, Math.min(RECORD_POLL_MS, deadline - Date.now()));
  if (record !== undefined) return { kind: 'activation', activationId, activation: record };
  if (outcome.status === 'forced') return { kind: 'failed', activationId, error: `The activation did not complete: ${FORCED_REASONS[outcome.reason]}.` };
  return { kind: 'accepted', activationId };
}

async function pollRecord(deps: InvokeDeps, namespace: string, activationId: string, forMs: number): Promise<WhiskActivation | undefined> {
  if (deps.activations === undefined || forMs <= 0) return undefined;
  const until = Date.now() + forMs;
  for (;;) {
    try {
      const doc = await deps.activations.get(namespace, activationId);
      if (doc !== undefined) return doc as unknown as WhiskActivation;
    } catch {
      // Database trouble: treat as not there yet.
    }
    if (Date.now() + 200 > until) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Upstream's status for a blocking answer: success 200, application and developer errors 502, system error 500. */
export function httpStatusOf(statusCode: number): number {
  if (statusCode === 0) return 200;
  return statusCode === 3 ? 500 : 502;
}

const STATUS_TEXT = ['success', 'application error', 'action developer error', 'whisk internal error'] as const;

/** ActivationResponse.toExtendedJson: `statusCode` replaced by `success` and `status`. */
export function extendedResponse(response: JsonValue | undefined): JsonObject {
  const r = (typeof response === 'object' && response !== null && !Array.isArray(response) ? response : {}) as JsonObject;
  const code = typeof r['statusCode'] === 'number' ? r['statusCode'] : 3;
  const out: JsonObject = {};
  if (r['result'] !== undefined) out['result'] = r['result'];
  if (r['size'] !== undefined) out['size'] = r['size'];
  out['success'] = code === 0;
  out['status'] = STATUS_TEXT[code] ?? STATUS_TEXT[3];
  return out;
}

/** WhiskActivation.toExtendedJson: the record as the API shows it. */
export function extendedActivation(activation: WhiskActivation | JsonObject): JsonObject {
  const a = { ...(activation as unknown as JsonObject) };
  delete a['_id'];
  delete a['_rev'];
  delete a['entityType'];
  delete a['updated'];
  a['response'] = extendedResponse(a['response']);
  const start = typeof a['start'] === 'number' ? a['start'] : 0;
  const end = typeof a['end'] === 'number' ? a['end'] : 0;
  if (end !== 0) {
    if (typeof a['duration'] !== 'number') a['duration'] = end - start;
  } else {
    delete a['end'];
  }
  return a;
}

export type { ActivationCompletion };
