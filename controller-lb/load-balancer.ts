/**
 * The push balancer (upstream ShardingContainerPoolBalancer, with the seed's
 * transports): schedule, send, and account for every activation until it
 * completes, exactly once.
 *
 * - Not overloaded: HTTP push to the invoker; headers = ack, body = completion.
 * - Overloaded: Kafka `invoker<N>` (acks -1); the completion comes back on
 *   `completed<C>`. Without Kafka, overload is pushed over HTTP anyway.
 * - The slot is released by the completion (on the ack's `instance`), or by
 *   a forced completion: the push failed, or nothing came back in time.
 * - Health test actions are sent to invokers that are unhealthy or
 *   unresponsive, so that they can prove themselves healthy again
 *   (health-tests.ts).
 * - Every forced completion also writes a system-error activation record
 *   (forced-record.ts) through `records`, create-only: the invoker's own
 *   record, whenever it comes, is the one that stays.
 */
import {
  INVOKER_HEALTH_TRANSACTION,
  ackActivationId,
  forcedCompletionDelayMs as upstreamForcedCompletionDelayMs,
  storesActivations,
  type ActivationDocument,
  isSystemError as responseIsSystemError,
  type AcknowledgementMessage,
  type ActivationMessage,
  type ControllerInstanceId,
  type WhiskActivation,
} from '../protocol/index.js';
import type { Logger } from '../invoker/telemetry/logger.js';
import type { InvocationResult, InvokerPool, InvokerState } from './invoker-state.js';
import type { ActivationPublisher } from './kafka-path.js';
import type { Push } from './push-client.js';
import { forcedMessage, forcedRecord, type ForcedMessage } from './forced-record.js';
import { HealthTests, type HealthTestOptions } from './health-tests.js';
import { NoInvokersAvailableError, Scheduler, type SchedulerOptions } from './scheduler.js';

export { healthTestActionName, type HealthTestOptions } from './health-tests.js';

/** What the balancer needs to know about the action. */
export interface ActionSpec {
  /**
   * The invoking namespace, hashed with `path/name` to find the home invoker
   * (upstream hashes `msg.user.namespace.name`; pass that).
   */
  namespace: string;
  /** The action's package path, e.g. `guest` or `guest/pkg`. */
  path: string;
  name: string;
  version: string;
  memoryMb: number;
  timeoutMs: number;
  /** Activations a container may run at once; 1 for most actions. */
  concurrency: number;
  /** Docker-image actions run on the blackbox share of invokers. */
  blackbox?: boolean;
}

/** How an activation ended for the caller. */
export type ActivationCompletion =
  | {
      status: 'completed';
      activationId: string;
      /** The invoker that reported the completion. */
      invoker: number;
      isSystemError: boolean;
      /** The activation record; absent when the ack carried only its id (non-blocking or shrunk). */
      activation?: WhiskActivation;
    }
  | {
      status: 'forced';
      activationId: string;
      invoker: number;
      /** `timeout`: nothing came back in time; `failed`: the push or publish failed. */
      reason: 'timeout' | 'failed' | 'shutdown';
      isSystemError: true;
      error: string;
    };

export interface Published {
  activationId: string;
  invoker: number;
  overloaded: boolean;
  transport: 'http' | 'kafka';
  /** The invoker (HTTP) or Kafka (overload) has the activation; rejects if it could not be handed over. */
  acknowledged: Promise<void>;
  /** Resolves once; never rejects (a failure is a `forced` completion). */
  completion: Promise<ActivationCompletion>;
}

/** The HTTP transport as the balancer uses it (PushClient implements it). */
export interface Pusher {
  push(baseUrl: string, msg: ActivationMessage, signal?: AbortSignal): Push;
}

export interface ForcedCompletionOptions {
  /** The time limit used when the action's is shorter. Upstream: 60 s. */
  minTimeLimitMs: number;
  /** Added after doubling. Upstream: 1 min. */
  extraMs: number;
}

/** Where forced records go (an ActivationWriter: journaled, create-only, retried until CouchDB takes them). */
export interface ForcedRecordSink {
  store(document: ActivationDocument): Promise<void>;
}

export interface LoadBalancerOptions {
  controller: ControllerInstanceId;
  /** Absent: forced completions write no record (tests of the balancer alone). */
  records?: ForcedRecordSink | undefined;
  pool: InvokerPool;
  pusher: Pusher;
  /** Absent without Kafka: overload is then pushed over HTTP too. */
  kafka?: ActivationPublisher | undefined;
  /** The invoker's base URL for HTTP push; undefined when it is reachable only through Kafka. */
  invokerUrl: (index: number) => string | undefined;
  logger: Logger;
  scheduler?: SchedulerOptions;
  forcedCompletion?: Partial<ForcedCompletionOptions>;
  /** `false` turns health test actions off. */
  healthTests?: Partial<HealthTestOptions> | false;
  now?: () => number;
}

export class LoadBalancerClosedError extends Error {
  override readonly name = 'LoadBalancerClosedError';
}

/**
 * The activation would overflow to Kafka (no invoker has room, or its invoker
 * has no URL) while Kafka is unreachable: refused before anything is sent,
 * with the time after which to try again. A NoInvokersAvailableError, so that
 * callers that only know that one answer 503 too.
 */
export class KafkaUnavailableError extends NoInvokersAvailableError {
  override readonly name: string = 'KafkaUnavailableError';
  readonly retryAfterSeconds: number;
  constructor(detail: string, retryAfterSeconds = 5) {
    super(detail);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

interface Entry {
  activationId: string;
  /** What a forced record is built from. */
  message: ForcedMessage;
  timeoutMs: number;
  /** The invoker (HTTP) or Kafka has it: the activation may run. */
  acknowledged: boolean;
  invoker: number;
  /** The invoker's incarnation when it was sent: results for an earlier one do not count. */
  incarnation: number;
  /**
   * Whether it holds memory in the invoker's semaphore. Overflow to Kafka does
   * not: it waits in the topic until the invoker has room of its own, so it
   * must not keep HTTP push away from slots that free up meanwhile.
   */
  holdsSlot: boolean;
  /** Sent through Kafka: the Kafka path's outage count then (see #force). */
  kafkaOutages: number | undefined;
  actionKey: string;
  memoryMb: number;
  concurrency: number;
  timer: NodeJS.Timeout;
  abort: AbortController;
  resolve: (completion: ActivationCompletion) => void;
  /** The caller already has its answer (a result message came before the completion). */
  answered: boolean;
  /** `user.limits.storeActivations` is not false. */
  storeRecord: boolean;
}

/** The forced-completion delay: `max(timeLimit, min) * 2 + extra` (upstream; protocol/forced-completion.ts). */
export function forcedCompletionDelayMs(timeoutMs: number, options: ForcedCompletionOptions): number {
  return upstreamForcedCompletionDelayMs(timeoutMs, options);
}

export class LoadBalancer {
  readonly #options: LoadBalancerOptions;
  readonly #pool: InvokerPool;
  readonly #scheduler: Scheduler;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #forced: ForcedCompletionOptions;
  readonly #health: HealthTests | undefined;
  readonly #entries = new Map<string, Entry>();
  /** Forced records being journaled. */
  readonly #storing = new Set<Promise<void>>();
  #closed = false;
  #drained: (() => void) | undefined;

  constructor(options: LoadBalancerOptions) {
    this.#options = options;
    this.#pool = options.pool;
    this.#scheduler = new Scheduler(options.pool, options.scheduler);
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#forced = { minTimeLimitMs: 60_000, extraMs: 60_000, ...options.forcedCompletion };
    if (options.healthTests !== false) {
      const health: HealthTestOptions = { intervalMs: 60_000, checkIntervalMs: 1_000, ...options.healthTests };
      this.#health = new HealthTests({
        ...health,
        controller: options.controller,
        pool: options.pool,
        logger: this.#logger,
        now: this.#now,
        forgetAfterMs: forcedCompletionDelayMs(0, this.#forced),
        send: (invoker, msg) => this.#sendTo(invoker, msg),
        recordResult: (index, result, now, incarnation) => this.#recordResult(index, result, now, incarnation),
      });
    }
  }

  /** Activations waiting for their completion. */
  get inFlight(): number {
    return this.#entries.size;
  }

  /**
   * Schedules `msg` and hands it to the chosen invoker. Throws
   * NoInvokersAvailableError (nothing healthy) or LoadBalancerClosedError
   * synchronously, before anything is sent.
   */
  publish(action: ActionSpec, msg: ActivationMessage): Published {
    if (this.#closed) throw new LoadBalancerClosedError(`publishing activation ${msg.activationId}: the load balancer is shutting down`);
    if (this.#entries.has(msg.activationId)) throw new Error(`publishing activation ${msg.activationId}: it is already in flight`);
    const actionPathAndName = `${action.path}/${action.name}`;
    const actionKey = `${actionPathAndName}@${action.version}`;
    const concurrency = Math.max(1, action.concurrency);
    const { invoker, overloaded } = this.#scheduler.schedule(
      {
        namespace: action.namespace,
        actionPathAndName,
        actionKey,
        memoryMb: action.memoryMb,
        concurrency,
        blackbox: action.blackbox ?? false,
      },
      this.#now(),
    );

    const url = this.#options.invokerUrl(invoker.index);
    const kafka = this.#options.kafka;
    const useKafka = (overloaded && kafka !== undefined) || url === undefined;
    const overflow = useKafka && overloaded;
    if (useKafka && kafka !== undefined && kafka.available?.() === false) {
      // Nothing is sent: give the slot back and tell the caller to come back.
      invoker.slots.releaseConcurrent(actionKey, concurrency, action.memoryMb);
      this.#logger.warn({ activationId: msg.activationId, invoker: `invoker${invoker.index}` }, 'refused an activation for Kafka: Kafka is unreachable');
      throw new KafkaUnavailableError(
        overloaded ? 'no invoker has room and Kafka (the overflow) is unreachable' : `invoker${invoker.index} is reachable only through Kafka, which is unreachable`,
      );
    }
    if (overflow) invoker.slots.releaseConcurrent(actionKey, concurrency, action.memoryMb);

    let resolve!: (completion: ActivationCompletion) => void;
    const completion = new Promise<ActivationCompletion>((r) => (resolve = r));
    const delay = forcedCompletionDelayMs(action.timeoutMs, this.#forced);
    const entry: Entry = {
      activationId: msg.activationId,
      message: forcedMessage(msg),
      timeoutMs: action.timeoutMs,
      acknowledged: false,
      storeRecord: storesActivations(msg.user),
      invoker: invoker.index,
      incarnation: invoker.health.incarnation,
      holdsSlot: !overflow,
      kafkaOutages: useKafka ? (kafka?.outages?.() ?? 0) : undefined,
      actionKey,
      memoryMb: action.memoryMb,
      concurrency,
      timer: setTimeout(() => this.#force(entry, 'timeout', `no completion within ${delay} ms`), delay),
      abort: new AbortController(),
      resolve,
      answered: false,
    };
    this.#entries.set(msg.activationId, entry);

    const log = { activationId: msg.activationId, invoker: `invoker${invoker.index}`, action: actionKey };
    let acknowledged: Promise<void>;
    if (useKafka) {
      if (kafka === undefined) {
        this.#force(entry, 'failed', `invoker${invoker.index} has no URL to push to and Kafka is not configured`);
        acknowledged = Promise.reject(new Error(`publishing activation ${msg.activationId}: invoker${invoker.index} has no URL and Kafka is not configured`));
      } else {
        if (overloaded) this.#logger.warn(log, `system is overloaded: publishing to Kafka for invoker${invoker.index}`);
        acknowledged = kafka.publish(invoker.id, msg);
        acknowledged.catch((error: unknown) => this.#force(entry, 'failed', (error as Error).message));
      }
    } else {
      if (overloaded) this.#logger.warn(log, `system is overloaded and Kafka is not configured: pushing to invoker${invoker.index} anyway`);
      const push = this.#options.pusher.push(url, msg, entry.abort.signal);
      acknowledged = push.acknowledged;
      void push.completion.then((result) => {
        if (!result.ok) return this.#force(entry, 'failed', result.error);
        this.handleAcknowledgement(result.ack);
        // Over HTTP the body is the one and only completion: if it did not
        // free the slot (a result-only or mismatched message), nothing will.
        if (this.#entries.get(entry.activationId) === entry) {
          this.#force(entry, 'failed', `the HTTP completion from invoker${invoker.index} did not complete activation ${entry.activationId}`);
        }
      });
    }
    // A caller waiting only for the completion must not crash the process
    // with an unhandled rejection; awaiting `acknowledged` still sees it.
    acknowledged.then(
      () => (entry.acknowledged = true),
      () => undefined,
    );
    this.#logger.debug({ ...log, overloaded, transport: useKafka ? 'kafka' : 'http' }, 'published activation');
    return {
      activationId: msg.activationId,
      invoker: invoker.index,
      overloaded,
      transport: useKafka ? 'kafka' : 'http',
      acknowledged,
      completion,
    };
  }

  /**
   * An acknowledgement from `completed<C>` or an HTTP body. A result part
   * answers the caller; a completion part frees the slot. Acks for unknown
   * activations (already forced, from a previous run, duplicates) are logged
   * and dropped: each activation completes exactly once.
   */
  handleAcknowledgement(ack: AcknowledgementMessage): void {
    const activationId = ackActivationId(ack);
    const now = this.#now();
    const entry = this.#entries.get(activationId);
    if (entry === undefined) {
      if (this.#health?.has(activationId) === true && ack.kind !== 'result') {
        this.#health.finish(activationId, ack.isSystemError === true ? 'systemError' : 'success');
      } else if (ack.transid.id !== INVOKER_HEALTH_TRANSACTION) {
        this.#logger.info({ activationId, kind: ack.kind }, 'ignored an acknowledgement for an activation not in flight (completed, forced or unknown)');
      }
      return;
    }

    if (ack.kind !== 'completion' && !entry.answered) {
      const fromInvoker = ack.kind === 'combined' ? ack.instance.instance : entry.invoker;
      const completion: ActivationCompletion = {
        status: 'completed',
        activationId,
        invoker: fromInvoker,
        isSystemError:
          (ack.kind === 'combined' ? ack.isSystemError : undefined) ??
          (typeof ack.response !== 'string' && responseIsSystemError(ack.response.response)),
      };
      if (typeof ack.response !== 'string') completion.activation = ack.response;
      entry.answered = true;
      entry.resolve(completion);
    }
    if (ack.kind === 'result') return;

    this.#entries.delete(activationId);
    clearTimeout(entry.timer);
    const ranOn = this.#pool.get(ack.instance.instance) !== undefined ? ack.instance.instance : entry.invoker;
    if (ranOn !== entry.invoker) {
      this.#logger.warn({ activationId, scheduledOn: entry.invoker, completedBy: ack.instance.instance }, 'completion came from another invoker than the one scheduled');
    }
    this.#release(entry, ranOn);
    const isSystemError = ack.isSystemError ?? false;
    this.#logger.debug({ activationId, invoker: `invoker${ranOn}`, isSystemError }, 'completed activation');
    this.#recordResult(ranOn, isSystemError ? 'systemError' : 'success', now, ranOn === entry.invoker ? entry.incarnation : undefined);
    if (!entry.answered) {
      entry.answered = true;
      entry.resolve({ status: 'completed', activationId, invoker: ranOn, isSystemError });
    }
    this.#drainedCheck();
  }

  /**
   * Stops accepting, waits up to `graceMs` for activations in flight, then
   * force-completes the rest. Transports are closed by their owner after this.
   */
  async close(graceMs: number = 0): Promise<void> {
    this.#closed = true;
    this.#health?.close();
    if (this.#entries.size > 0 && graceMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#drained = undefined;
    }
    for (const entry of [...this.#entries.values()]) this.#force(entry, 'shutdown', 'the controller shut down before the activation completed');
    // Forced records are journaled by now or soon; the writer is closed by its owner.
    await Promise.allSettled([...this.#storing]);
  }

  #drainedCheck(): void {
    if (this.#entries.size === 0) this.#drained?.();
  }

  /** Completes an activation that will not complete by itself; no-op if it already has. */
  #force(entry: Entry, reason: 'timeout' | 'failed' | 'shutdown', error: string): void {
    if (this.#entries.get(entry.activationId) !== entry) return;
    this.#entries.delete(entry.activationId);
    clearTimeout(entry.timer);
    // Frees the connection of a push still waiting for its body.
    entry.abort.abort();
    this.#release(entry, entry.invoker);
    // Upstream counts a forced completion as a timeout; a failed push is the
    // invoker failing, so it counts as a system error (the seed does that).
    // What Kafka did is not the invoker's doing: a failed publish, or a
    // timeout of an activation that lived through a Kafka outage, is not counted.
    if (reason !== 'shutdown' && !this.#kafkaToBlame(entry, reason)) {
      this.#recordResult(entry.invoker, reason === 'timeout' ? 'timeout' : 'systemError', this.#now(), entry.incarnation);
    }
    this.#logger.warn({ activationId: entry.activationId, invoker: `invoker${entry.invoker}`, reason, error }, 'forced completion of activation');
    this.#storeForcedRecord(entry, reason, error);
    if (!entry.answered) {
      entry.answered = true;
      entry.resolve({ status: 'forced', activationId: entry.activationId, invoker: entry.invoker, reason, isSystemError: true, error });
    }
    this.#drainedCheck();
  }

  #kafkaToBlame(entry: Entry, reason: 'timeout' | 'failed'): boolean {
    const kafka = this.#options.kafka;
    if (entry.kafkaOutages === undefined || kafka === undefined) return false;
    if (reason === 'failed') return true;
    return kafka.available?.() === false || (kafka.outages?.() ?? 0) !== entry.kafkaOutages;
  }

  /**
   * The system-error record of a forced activation, so that it ends in a
   * record even if its invoker never writes one. Create-only: if the
   * invoker's record is stored (now or later), that one stays.
   */
  #storeForcedRecord(entry: Entry, reason: 'timeout' | 'failed' | 'shutdown', error: string): void {
    const records = this.#options.records;
    if (records === undefined || !entry.storeRecord) return;
    let stored: Promise<void>;
    try {
      const document = forcedRecord({
        message: entry.message,
        controller: this.#options.controller,
        reason,
        acknowledged: entry.acknowledged,
        timeoutMs: entry.timeoutMs,
        error,
        now: this.#now(),
      });
      stored = records.store(document);
    } catch (cause) {
      stored = Promise.reject(cause as Error);
    }
    const tracked = stored.then(
      () => this.#logger.debug({ activationId: entry.activationId, reason }, 'journaled the forced record'),
      (cause: unknown) =>
        this.#logger.error({ activationId: entry.activationId, reason, error: (cause as Error).message }, 'could not journal the forced record of the activation'),
    );
    this.#storing.add(tracked);
    void tracked.finally(() => this.#storing.delete(tracked));
  }

  #release(entry: Entry, index: number): void {
    if (!entry.holdsSlot) return;
    const invoker = this.#pool.get(index);
    if (invoker === undefined) return;
    try {
      invoker.slots.releaseConcurrent(entry.actionKey, entry.concurrency, entry.memoryMb);
    } catch (error) {
      this.#logger.error({ activationId: entry.activationId, invoker: `invoker${index}`, error: (error as Error).message }, 'releasing the slot failed');
    }
  }

  #recordResult(index: number, result: InvocationResult, now: number, incarnation?: number): void {
    this.#pool.recordResult(index, result, now, incarnation);
    // Upstream sends the next test action at once after a success while
    // unhealthy, to flush the errors out of the window quickly.
    if (result === 'success' && this.#pool.status(index, now) === 'unhealthy') this.#health?.send(index, now);
  }

  /** Delivers a message to one given invoker, outside scheduling; resolves when its completion was handled. */
  async #sendTo(invoker: InvokerState, msg: ActivationMessage): Promise<void> {
    const url = this.#options.invokerUrl(invoker.index);
    if (url === undefined) {
      if (this.#options.kafka === undefined) throw new Error(`invoker${invoker.index} has no URL and Kafka is not configured`);
      return this.#options.kafka.publish(invoker.id, msg);
    }
    const result = await this.#options.pusher.push(url, msg).completion;
    if (!result.ok) throw new Error(result.error);
    this.handleAcknowledgement(result.ack);
  }
}
