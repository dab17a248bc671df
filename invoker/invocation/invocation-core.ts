/**
 * One activation, end to end: decrypt, fetch the action, get a container,
 * /init and /run, collect logs, build the record, store it, and answer with
 * the completion. Both transports call `handle()`; it never rejects.
 *
 * The record starts as a system error and is overwritten as the activation
 * progresses, so an unexpected exception anywhere still yields a truthful
 * record and a completion rather than a controller left waiting.
 */
import type { Tracer } from '@opentelemetry/api';
import {
  ACTION_NOT_FETCHED,
  ACTION_NOT_FOUND,
  actionDocId,
  activationDocument,
  applicationError,
  combinedAck,
  developerError,
  FAILED_TO_PROVISION,
  forcedCompletionDelayMs,
  imagePullFailed,
  initBody,
  runBody,
  serializeAcknowledgement,
  shrinkAck,
  storesActivations,
  whiskError,
  type ActivationDocument,
  type ActivationMessage,
  type ActivationResponse,
  type InvokerInstanceId,
  type RawJson,
  type ParameterDecryptor,
  type RuntimeAction,
} from '../../protocol/index.js';
import type { AcquireRequest, Lease, PoolContainer } from '../pool/types.js';
import type { Logger } from '../telemetry/logger.js';
import type { InvokerMetrics } from '../telemetry/metrics.js';
import { ActivationTrace, parentContext } from '../telemetry/tracing.js';
import type { ActivationHandler, ActivationOutcome, ActivationRequest } from './activation-handler.js';
import { ActivationRecord } from './activation-record.js';
import { brokenContainer, classifyInit, classifyRun, containerSuspect, type RuntimeResult } from './classify.js';

/** An action as the core needs it; the store's documents are adapted to this in wiring/action-source.ts. */
export interface ExecutableAction {
  namespace: string;
  name: string;
  version: string;
  kind: string;
  /** Set for blackbox actions: the user's image. */
  image?: string;
  code?: string;
  binary: boolean;
  main?: string;
  limits: { timeoutMs: number; memoryMb: number; logsMb: number; concurrency: number };
  annotations: RuntimeAction['annotations'];
  /** Sequences are composed by the controller; an invoker cannot run one. */
  isSequence: boolean;
}

export interface ActionSource {
  /** 'not-found' for a missing or deleted action; rejects when the store cannot answer. */
  get(action: { path: string; name: string }, revision: string | null): Promise<ExecutableAction | 'not-found'>;
}

export interface RecordSink {
  /** Resolves once the record is durable (journaled); CouchDB confirms later. */
  store(document: ActivationDocument): Promise<void>;
}

/** The container operations the core drives, beyond what the pool needs. */
export interface RunnableContainer extends PoolContainer {
  init(body: string, timeoutMs: number): Promise<RuntimeResult>;
  run(body: string, timeoutMs: number): Promise<RuntimeResult>;
  /** `activationId` names the log in a container that runs several activations at once. */
  beginActivation(options?: { limitBytes?: number; activationId?: string }): void;
  collectLogs(options?: { limitBytes?: number; activationId?: string }): Promise<{ lines: string[]; complete: boolean }>;
  inspectExit(): Promise<{ oomKilled: boolean }>;
}

export interface ContainerSource<C extends RunnableContainer> {
  acquire(request: AcquireRequest): Promise<Lease<C>>;
}

export interface ImageSource {
  /** The image of a managed kind; undefined when this invoker does not know the kind. */
  imageFor(kind: string): string | undefined;
  /** Makes a blackbox image present locally (pull). */
  ensureImage(image: string): Promise<void>;
}

export interface InvocationCoreDeps<C extends RunnableContainer> {
  instance: InvokerInstanceId;
  actions: ActionSource;
  containers: ContainerSource<C>;
  images: ImageSource;
  records: RecordSink;
  decryptor: ParameterDecryptor | undefined;
  payloadLimitBytes: number;
  metrics: InvokerMetrics;
  tracer: Tracer;
  logger: Logger;
  clock?: () => number;
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

export class InvocationCore<C extends RunnableContainer> implements ActivationHandler {
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

  async handle(request: ActivationRequest): Promise<ActivationOutcome> {
    this.inFlightCount++;
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
    const event: Record<string, unknown> = {
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
    this.executing.add(abort);
    try {
      await untilAborted(this.execute(request, record, trace, event, abort.signal), abort.signal);
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
    try {
      return await this.finish(request, record, trace, event);
    } finally {
      // Even if building the completion failed, capacity and drain bookkeeping must not leak.
      this.inFlightCount--;
      for (const listener of this.finishListeners) listener();
      if (this.inFlightCount === 0) for (const waiter of [...this.idleWaiters]) waiter();
    }
  }

  private async execute(
    request: ActivationRequest,
    record: ActivationRecord,
    trace: ActivationTrace,
    event: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<void> {
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
      const retry = await this.runOn(lease, message, action, content, record, trace, event, signal);
      if (!retry) return;
      // A warm container that refused the run is broken, not the action: once, on a fresh one.
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
        namespace: message.user.namespace.name,
        actionName: `${message.action.path}/${message.action.name}`,
      });
    } catch (error) {
      // Queue full, action larger than the invoker, create failure: the platform could not run it.
      throw new ActivationEnded(whiskError(FAILED_TO_PROVISION), `acquiring a container: ${(error as Error).message}`);
    }
  }

  /** Returns true when the activation should be retried on a fresh container. */
  private async runOn(
    lease: Lease<C>,
    message: ActivationMessage,
    action: ExecutableAction,
    content: RawJson | undefined,
    record: ActivationRecord,
    trace: ActivationTrace,
    event: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<boolean> {
    const container = lease.container;
    const timeoutMs = action.limits.timeoutMs;
    const logLimitBytes = action.limits.logsMb * 1024 * 1024;
    const runtimeAction: RuntimeAction = {
      name: action.name,
      binary: action.binary,
      ...(action.main !== undefined ? { main: action.main } : {}),
      ...(action.code !== undefined ? { code: action.code } : {}),
      annotations: action.annotations,
      version: action.version,
    };
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
          record.setLogs((await this.collectLogs(container, activationId, logLimitBytes, trace)).lines);
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
      if (lease.origin === 'warm' && !event.retriedOnFreshContainer && brokenContainer(runResult)) {
        event.brokenWarmContainer = container.name;
        return true;
      }
      const exit = runResult.kind === 'connection-failed' ? await container.inspectExit().catch(() => undefined) : undefined;
      const response = classifyRun(runResult, timeoutMs, this.deps.payloadLimitBytes, exit);
      record.ran(runEnd, response, runResult.kind === 'timeout');
      const logs = await this.collectLogs(container, activationId, logLimitBytes, trace);
      record.setLogs(logs.lines);
      keep = logs.complete && !containerSuspect(response) && !signal.aborted;
      event.logsComplete = logs.complete;
      return false;
    } finally {
      lease.release(keep ? 'reuse' : 'destroy');
    }
  }

  private async collectLogs(
    container: C,
    activationId: string,
    limitBytes: number,
    trace: ActivationTrace,
  ): Promise<{ lines: string[]; complete: boolean }> {
    const start = this.now();
    const logs = await trace.phase('logs', () => container.collectLogs({ limitBytes, activationId }));
    this.deps.metrics.logCollectionSeconds.observe((this.now() - start) / 1000);
    return logs;
  }

  private async finish(
    request: ActivationRequest,
    record: ActivationRecord,
    trace: ActivationTrace,
    event: Record<string, unknown>,
  ): Promise<ActivationOutcome> {
    const { message } = request;
    const activation = record.build();
    if (storesActivations(message.user)) {
      try {
        await trace.phase('store', () => this.deps.records.store(activationDocument(activation, this.now())));
      } catch (error) {
        event.storeError = (error as Error).message;
      }
    }
    const ack = combinedAck(message.transid, activation, this.deps.instance);
    const shrunk = serializeAcknowledgement(shrinkAck(ack));
    const statusCode = activation.response.statusCode;
    this.deps.metrics.countActivation(request.transport, statusCode);
    trace.end(statusCode);
    Object.assign(event, {
      statusCode,
      durationMs: activation.duration,
      waitMs: record.waitMs(),
      initMs: record.initMs(),
      totalMs: this.now() - request.receivedAt,
    });
    const level = statusCode === 3 ? 'warn' : 'info';
    this.deps.logger[level](event, 'activation finished');
    return {
      activationId: message.activationId,
      controller: message.rootControllerIndex,
      statusCode,
      completion: message.blocking ? serializeAcknowledgement(ack) : shrunk,
      shrunkCompletion: shrunk,
      // The controller gives up on the activation this long after it sent it (upstream's formula).
      retryUntil: message.transid.start + forcedCompletionDelayMs(record.timeLimitMs() ?? 0),
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
