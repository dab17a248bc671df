/**
 * One activation, end to end: decrypt, fetch the action, get a container,
 * /init and /run, collect logs, build the record, store it, and answer with
 * the completion. Both transports call `handle()`; it never rejects. The Kafka
 * feed calls `reject()` for a message it cannot read: that activation ends
 * through the same `finish()` (record, completion, metrics, wide event) as
 * every other.
 *
 * The record starts as a system error and is overwritten as the activation
 * progresses, so an unexpected exception anywhere still yields a truthful
 * record and a completion rather than a controller left waiting.
 */
import {
  ACTION_NOT_FETCHED,
  ACTION_NOT_FOUND,
  actionDocId,
  activationDocument,
  applicationError,
  developerError,
  FAILED_TO_PROVISION,
  forcedCompletionDelayMs,
  imagePullFailed,
  initBody,
  runBody,
  storesActivations,
  whiskError,
  type ActivationMessage,
  type ActivationResponse,
  type ControllerInstanceId,
  type RawJson,
  type TransactionId,
  type WhiskActivation,
} from '../../protocol/index.js';
import type { Lease } from '../pool/types.js';
import { ActivationTrace, parentContext } from '../telemetry/tracing.js';
import type {
  ActivationOutcome,
  ActivationRejection,
  ActivationRequest,
  RejectingActivationHandler,
} from './activation-handler.js';
import { ActivationRecord } from './activation-record.js';
import type { ExecutableAction, InvocationCoreDeps, RunnableContainer } from './core-ports.js';
import { brokenContainer, classifyInit, classifyRun, containerSuspect } from './classify.js';
import { answersInFull, answerTransid, completionBytes, systemErrorActivation, unreadableMessageError } from './system-error.js';

export type { ActionSource, ContainerSource, ExecutableAction, ImageSource, InvocationCoreDeps, RecordSink, RunnableContainer } from './core-ports.js';

/** An ended activation, however it came to end, as `finish` stores and answers it. */
interface EndedActivation {
  activation: WhiskActivation;
  controller: ControllerInstanceId;
  transid: TransactionId;
  /** Whether a record is written. */
  stored: boolean;
  /** Whether the completion carries the whole activation (a blocking caller waits for it), else only its id. */
  full: boolean;
  /** See ActivationOutcome.retryUntil. */
  retryUntil?: number;
}

/** The wide event: one `activation finished` line per activation, filled in as it runs. */
type WideEvent = Record<string, unknown>;

/** What one activation carries through the core, from receipt to `finish`. */
interface Activation {
  readonly request: ActivationRequest;
  readonly record: ActivationRecord;
  readonly trace: ActivationTrace;
  readonly event: WideEvent;
  /** Fires when the invoker ends the activation early (`abortInFlight`). */
  readonly signal: AbortSignal;
  /** Moved once to a fresh container after a warm one refused the run. */
  retriedOnFreshContainer: boolean;
}

/** Raised inside the core to end the activation early with a given response. */
class ActivationEnded extends Error {
  constructor(readonly response: ActivationResponse, reason: string) {
    super(reason);
  }
}

/**
 * The system error of an activation still running when the invoker stops
 * after its drain timeout (`abortInFlight`).
 */
export const INVOKER_STOPPED = 'The invoker shut down before the action completed.';

export class InvocationCore<C extends RunnableContainer> implements RejectingActivationHandler {
  private readonly now: () => number;
  private inFlightCount = 0;
  /** One per activation still executing (not yet finishing): `abortInFlight` fires them. */
  private readonly executing = new Set<AbortController>();
  private readonly idleWaiters = new Set<() => void>();
  private readonly finishListeners = new Set<() => void>();

  constructor(private readonly deps: InvocationCoreDeps<C>) {
    this.now = deps.clock ?? Date.now;
  }

  /** Activations between receipt and completion. */
  inFlight(): number {
    return this.inFlightCount;
  }

  /** Called after every activation, when capacity may have freed. */
  onFinish(listener: () => void): () => void {
    this.finishListeners.add(listener);
    return () => this.finishListeners.delete(listener);
  }

  /**
   * Ends every activation still executing as a system error (INVOKER_STOPPED):
   * each one's record is stored and its completion returned to its transport
   * at once, without waiting for its container. The work already started
   * unwinds in the background (a queued request leaves the pool queue, a
   * running container is left to the pool's teardown) and changes nothing
   * any more. For the shutdown after a drain timeout. Returns how many.
   */
  abortInFlight(reason: string): number {
    const controllers = [...this.executing];
    for (const controller of controllers) controller.abort(new Error(reason));
    return controllers.length;
  }

  /** Resolves when no activation is in flight (or after `timeoutMs`, with false). */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.inFlightCount === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.idleWaiters.delete(onIdle);
        resolve(idle);
      };
      const onIdle = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.idleWaiters.add(onIdle);
    });
  }

  handle(request: ActivationRequest): Promise<ActivationOutcome> {
    // Counted synchronously: admission's freeSlots() sees it before handle() returns.
    return this.inFlightWhile(() => this.activate(request));
  }

  /**
   * Ends the activation of a message that could not be read as a system
   * error (see system-error.ts for the shapes). The record is stored when
   * the invoking namespace was readable (no user limits were), before the
   * completion is returned, as for every activation. No retryUntil: without
   * the action's time limit the transport's default window applies.
   */
  reject(rejection: ActivationRejection): Promise<ActivationOutcome | undefined> {
    const { salvaged, problem, transport } = rejection;
    const { reason, activationId, controller, ...identity } = salvaged;
    // Nobody to answer and no id to store a record under: nothing to end.
    if (activationId === undefined || controller === undefined) return Promise.resolve(undefined);
    return this.inFlightWhile(async () => {
      const now = this.now();
      const input = { ...identity, activationId, controller, instance: this.deps.instance, error: unreadableMessageError(problem), now };
      const action = identity.actionPath !== undefined && identity.actionName !== undefined ? `${identity.actionPath}/${identity.actionName}` : undefined;
      const trace = new ActivationTrace(this.deps.tracer, parentContext([]), {
        'whisk.activation_id': activationId,
        ...(action === undefined ? {} : { 'whisk.action': action }),
        ...(identity.namespace === undefined ? {} : { 'whisk.namespace': identity.namespace }),
        'whisk.transport': transport,
      });
      const event: WideEvent = {
        event: 'activation',
        activationId,
        ...(identity.transid === undefined ? {} : { transid: identity.transid.id }),
        ...(action === undefined ? {} : { action }),
        ...(identity.namespace === undefined ? {} : { namespace: identity.namespace }),
        transport,
        ...(identity.blocking === undefined ? {} : { blocking: identity.blocking }),
        reason: `unreadable message (${reason}): ${problem}`,
      };
      const ended: EndedActivation = {
        activation: systemErrorActivation(input),
        controller,
        transid: answerTransid(input, now),
        stored: identity.namespace !== undefined,
        full: answersInFull(input),
      };
      return this.finish(ended, rejection, { trace, event });
    });
  }

  /**
   * Runs `work` as one activation in flight: counted from the call (the
   * increment happens before the first await) until it settles.
   */
  private async inFlightWhile<T>(work: () => Promise<T>): Promise<T> {
    this.inFlightCount++;
    try {
      return await work();
    } finally {
      // Even if building the completion failed, capacity and drain bookkeeping must not leak.
      this.inFlightCount--;
      for (const listener of this.finishListeners) listener();
      if (this.inFlightCount === 0) for (const waiter of [...this.idleWaiters]) waiter();
    }
  }

  private async activate(request: ActivationRequest): Promise<ActivationOutcome> {
    const { message } = request;
    const record = new ActivationRecord(message, this.now);
    const trace = new ActivationTrace(
      this.deps.tracer,
      parentContext([message.traceContext, request.traceparent ? { traceparent: request.traceparent } : undefined]),
      {
        'whisk.activation_id': message.activationId,
        'whisk.action': `${message.action.path}/${message.action.name}`,
        'whisk.namespace': message.user.namespace.name,
        'whisk.transport': request.transport,
      },
    );
    const event: WideEvent = {
      event: 'activation',
      activationId: message.activationId,
      transid: message.transid.id,
      action: `${message.action.path}/${message.action.name}`,
      namespace: message.user.namespace.name,
      transport: request.transport,
      blocking: message.blocking,
      ...(request.requestTags && Object.keys(request.requestTags).length > 0 ? { request: request.requestTags } : {}),
    };
    const abort = new AbortController();
    const activation: Activation = { request, record, trace, event, signal: abort.signal, retriedOnFreshContainer: false };
    this.executing.add(abort);
    try {
      await untilAborted(this.execute(activation), abort.signal);
    } catch (error) {
      if (abort.signal.aborted) {
        event.reason = `${(abort.signal.reason as Error).message}: ended as a system error during ${trace.currentPhase() ?? 'its preparation'}`;
        event.abortedByShutdown = true;
        record.endWith(whiskError(INVOKER_STOPPED));
      } else {
        const reason = error instanceof ActivationEnded ? error.message : `unexpected: ${(error as Error).stack ?? error}`;
        event.reason = reason;
        record.respond(error instanceof ActivationEnded ? error.response : whiskError(FAILED_TO_PROVISION));
      }
    } finally {
      this.executing.delete(abort);
    }
    const ended: EndedActivation = {
      activation: record.build(),
      controller: message.rootControllerIndex,
      transid: message.transid,
      stored: storesActivations(message.user),
      full: message.blocking,
      // The controller gives up on the activation this long after it sent it (upstream's formula).
      retryUntil: message.transid.start + forcedCompletionDelayMs(record.timeLimitMs() ?? 0),
    };
    return this.finish(ended, request, activation, { waitMs: record.waitMs(), initMs: record.initMs() });
  }

  private async execute(activation: Activation): Promise<void> {
    const { request, record, trace, event, signal } = activation;
    const { message } = request;
    const content = this.decrypt(message);
    const action = await trace.phase('fetch', () => this.fetchAction(message));
    record.describeAction(action);
    event.kind = action.kind;
    const image = await this.imageFor(action);

    let fresh = false;
    for (;;) {
      signal.throwIfAborted();
      const lease = await trace.phase('acquire', () => this.acquire(message, action, image, fresh));
      event.origin = lease.origin;
      event.container = lease.container.name;
      this.deps.metrics.containerStarts.inc({ origin: lease.origin });
      const retry = await this.runOn(activation, lease, action, content);
      if (!retry) return;
      // A warm container that refused the run is broken, not the action: once, on a fresh one.
      activation.retriedOnFreshContainer = true;
      event.retriedOnFreshContainer = true;
      fresh = true;
    }
  }

  private decrypt(message: ActivationMessage): RawJson | undefined {
    if (Object.keys(message.lockedArgs).length === 0) return message.content;
    if (!this.deps.decryptor) {
      throw new ActivationEnded(whiskError(FAILED_TO_PROVISION), 'locked arguments but no keys are configured');
    }
    try {
      return this.deps.decryptor.decryptContent(message.content, message.lockedArgs);
    } catch (error) {
      throw new ActivationEnded(whiskError(FAILED_TO_PROVISION), `decrypting locked arguments: ${(error as Error).message}`);
    }
  }

  private async fetchAction(message: ActivationMessage): Promise<ExecutableAction> {
    const docId = actionDocId(message.action);
    let action: ExecutableAction | 'not-found';
    try {
      action = await this.deps.actions.get(message.action, message.revision);
    } catch (error) {
      throw new ActivationEnded(whiskError(ACTION_NOT_FETCHED), `fetching action ${docId}: ${(error as Error).message}`);
    }
    if (action === 'not-found') {
      throw new ActivationEnded(applicationError(ACTION_NOT_FOUND), `action ${docId} not found`);
    }
    if (action.isSequence) {
      throw new ActivationEnded(
        whiskError(FAILED_TO_PROVISION),
        `action ${docId} is a sequence; sequences are composed by the controller`,
      );
    }
    return action;
  }

  private async imageFor(action: ExecutableAction): Promise<string> {
    if (action.image !== undefined) {
      try {
        await this.deps.images.ensureImage(action.image);
      } catch (error) {
        throw new ActivationEnded(developerError(imagePullFailed(action.image)), (error as Error).message);
      }
      return action.image;
    }
    const image = this.deps.images.imageFor(action.kind);
    if (image === undefined) {
      throw new ActivationEnded(whiskError(FAILED_TO_PROVISION), `kind ${action.kind} is not in the runtime manifest`);
    }
    return image;
  }

  private async acquire(
    message: ActivationMessage,
    action: ExecutableAction,
    image: string,
    fresh: boolean,
  ): Promise<Lease<C>> {
    // A request still queued when the activation is ended (shutdown) stays
    // queued until the pool's drain rejects it; a lease that arrives after
    // the end is released unused (runOn checks the signal first).
    try {
      return await this.deps.containers.acquire({
        warmKey: warmKey(message),
        kind: action.kind,
        image,
        memoryMb: action.limits.memoryMb,
        concurrency: action.limits.concurrency,
        fresh,
        action: { namespace: message.user.namespace.name, path: message.action.path, name: message.action.name },
      });
    } catch (error) {
      // Queue full, action larger than the invoker, create failure: the platform could not run it.
      throw new ActivationEnded(whiskError(FAILED_TO_PROVISION), `acquiring a container: ${(error as Error).message}`);
    }
  }

  /** Returns true when the activation should be retried on a fresh container. */
  private async runOn(activation: Activation, lease: Lease<C>, action: ExecutableAction, content: RawJson | undefined): Promise<boolean> {
    const { record, trace, event, signal } = activation;
    const { message } = activation.request;
    const container = lease.container;
    const timeoutMs = action.limits.timeoutMs;
    const logLimitBytes = action.limits.logsMb * 1024 * 1024;
    const runtimeAction = action.runtime;
    let keep = false;
    try {
      // Aborted (shutdown) while acquiring: the activation has been answered, do not start it.
      signal.throwIfAborted();
      const activationId = message.activationId;
      container.beginActivation({ limitBytes: logLimitBytes, activationId });
      if (lease.needsInit) {
        const initStart = this.now();
        const initResult = await trace.phase('init', () =>
          container.init(initBody({ msg: message, content, action: runtimeAction, deadline: initStart + timeoutMs }), timeoutMs),
        );
        const initEnd = this.now();
        record.initialized(initStart, initEnd);
        this.deps.metrics.initSeconds.observe((initEnd - initStart) / 1000);
        // Only a dropped connection can mean an OOM kill (upstream checks only then); after a
        // timeout the container is still running and inspectExit() would wait its full second.
        const exit = initResult.kind === 'connection-failed' ? await container.inspectExit().catch(() => undefined) : undefined;
        const failure = classifyInit(initResult, timeoutMs, exit);
        if (failure) {
          record.respond(failure, initResult.kind === 'timeout');
          record.setLogs((await this.collectLogs(activation, container, logLimitBytes)).lines);
          event.phase = 'init';
          return false;
        }
        lease.markInitialized();
      }

      signal.throwIfAborted();
      const runStart = this.now();
      record.running(runStart);
      this.deps.metrics.waitSeconds.observe(record.waitMs() / 1000);
      const runResult = await trace.phase('run', () =>
        container.run(runBody({ msg: message, content, action: runtimeAction, deadline: runStart + timeoutMs }), timeoutMs),
      );
      const runEnd = this.now();
      this.deps.metrics.runSeconds.observe((runEnd - runStart) / 1000);
      if (lease.origin === 'warm' && !activation.retriedOnFreshContainer && brokenContainer(runResult)) {
        event.brokenWarmContainer = container.name;
        return true;
      }
      const exit = runResult.kind === 'connection-failed' ? await container.inspectExit().catch(() => undefined) : undefined;
      const response = classifyRun(runResult, timeoutMs, this.deps.payloadLimitBytes, exit);
      record.ran(runEnd, response, runResult.kind === 'timeout');
      const logs = await this.collectLogs(activation, container, logLimitBytes);
      record.setLogs(logs.lines);
      keep = logs.complete && !containerSuspect(response) && !signal.aborted;
      event.logsComplete = logs.complete;
      return false;
    } finally {
      lease.release(keep ? 'reuse' : 'destroy');
    }
  }

  private async collectLogs(activation: Activation, container: C, limitBytes: number): Promise<{ lines: string[]; complete: boolean }> {
    const start = this.now();
    const activationId = activation.request.message.activationId;
    const logs = await activation.trace.phase('logs', () => container.collectLogs({ limitBytes, activationId }));
    this.deps.metrics.logCollectionSeconds.observe((this.now() - start) / 1000);
    return logs;
  }

  /**
   * The one way an activation ends: its record stored (durable before the
   * completion goes out), counted, traced, logged as the wide event, and
   * answered with its completion.
   */
  private async finish(
    ended: EndedActivation,
    request: Pick<ActivationRequest, 'transport' | 'receivedAt'>,
    { trace, event }: Pick<Activation, 'trace' | 'event'>,
    timing: { waitMs?: number; initMs?: number | undefined } = {},
  ): Promise<ActivationOutcome> {
    const { activation } = ended;
    if (ended.stored) {
      try {
        await trace.phase('store', () => this.deps.records.store(activationDocument(activation, this.now())));
      } catch (error) {
        event.storeError = (error as Error).message;
      }
    }
    const statusCode = activation.response.statusCode;
    this.deps.metrics.countActivation(request.transport, statusCode);
    trace.end(statusCode);
    Object.assign(event, {
      statusCode,
      durationMs: activation.duration,
      waitMs: timing.waitMs,
      initMs: timing.initMs,
      totalMs: this.now() - request.receivedAt,
    });
    const level = statusCode === 3 ? 'warn' : 'info';
    this.deps.logger[level](event, 'activation finished');
    return {
      activationId: activation.activationId,
      controller: ended.controller,
      statusCode,
      ...completionBytes(ended.transid, activation, this.deps.instance, ended.full),
      ...(ended.retryUntil === undefined ? {} : { retryUntil: ended.retryUntil }),
    };
  }
}

/**
 * `work`, or a rejection as soon as `signal` fires. `work` goes on; a later
 * failure of it is dropped (the activation has been answered by then).
 */
function untilAborted(work: Promise<void>, signal: AbortSignal): Promise<void> {
  work.catch(() => undefined);
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => signal.removeEventListener('abort', onAbort!));
}

/** Containers are reused only for the same invoking namespace, action (with version) and revision. */
export function warmKey(message: ActivationMessage): string {
  const a = message.action;
  return `${message.user.namespace.name}|${a.path}/${a.name}@${a.version ?? ''}|${message.revision ?? ''}`;
}
