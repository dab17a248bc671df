/**
 * The `invoker<N>` feed: reads activation messages from Kafka (consumer group
 * = topic name, as upstream) and hands them to the invocation core, taking no
 * more than the core can start now, so that a backlog waits in Kafka and not
 * in this process.
 *
 * Flow control (upstream's maxPeek idea). Before each message the feed asks
 * `admission.freeSlots()` (it may also always run `reservedSlots` of its own,
 * default 1, so that HTTP push, which takes freed slots first, cannot starve
 * the overflow); with no free slot it holds the fetched batch and
 * waits, without taking further messages, until `admission.onChange` fires or
 * one of its own activations ends (heartbeating meanwhile so the group does
 * not evict it). `freeSlots()` must therefore count an activation as soon as
 * `handler.handle` was called for it. At most one fetched batch
 * (`maxBytesPerPartition`) is in memory. While `admission.accepting()` is
 * false (disabled, draining) the topic is paused instead and the unprocessed
 * rest of the batch dropped from memory: kafkajs fetches from the last
 * resolved offset + 1 when it is resumed, so nothing is skipped.
 * (Pausing is not used for the short waits for a slot: a fully paused kafkajs
 * consumer only looks again after `maxWaitTimeInMs`, which would add that
 * much latency every time the invoker is saturated.)
 *
 * Offsets and what a crash loses. A message's offset is resolved the moment
 * it has been handed to `handler.handle` (or rejected as unreadable) and is
 * committed right after that, in one OffsetCommit for all messages handed over
 * in the same pass, and before the feed waits for capacity. Nothing that was
 * not handed over is ever committed. If the process dies:
 * - a message not yet handed over is not committed: the group's next consumer
 *   (this invoker restarted) receives it again;
 * - a message handed over and committed is not redelivered: at most once, as
 *   upstream. The controller's forced-completion timer ends that activation
 *   (a whisk error for the caller, counted against this invoker's health);
 * - a message handed over but whose commit did not reach the broker (a crash
 *   in the same few milliseconds, or a failed commit during a rebalance) is
 *   redelivered and may run twice. Within one process this cannot happen: the
 *   feed remembers how far it has handed over per partition and skips older
 *   redelivered offsets.
 * A graceful `stop()` leaves the group after the current pass; activations
 * already handed over run on and their completions still go out.
 *
 * Unreadable messages never block the partition: they are committed, logged,
 * counted, and answered with a system-error completion when the controller
 * and activation id can be read (see rejected-message.ts).
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Consumer, ConsumerConfig, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import {
  activationDocument,
  invokerTopic,
  parseActivationMessage,
  ProtocolParseError,
  validateActivationMessageNames,
  type ActivationMessage,
  type InvokerInstanceId,
} from '../../protocol/index.js';
import type { ActivationHandler, ActivationOutcome, Admission } from '../invocation/activation-handler.js';
import type { ActivationIds } from '../invocation/activation-ids.js';
import type { RecordSink } from '../invocation/invocation-core.js';
import type { Logger } from '../telemetry/logger.js';
import type { InvokerMetrics } from '../telemetry/metrics.js';
import { salvageRejectedMessage, systemErrorActivation, systemErrorCompletion, unreadableMessageError } from './rejected-message.js';
import { describeKafkaError } from './topics.js';

/** A completion addressed to its controller: what goes to `completed<C>`. */
export type CompletionRecord = Pick<ActivationOutcome, 'activationId' | 'controller' | 'completion' | 'shrunkCompletion' | 'retryUntil'>;

/** Where completions go (the completion producer). Logs its own failures; the feed only catches them. */
export interface CompletionSink {
  send(completion: CompletionRecord): Promise<unknown>;
}

export type FeedMetrics = Pick<InvokerMetrics, 'kafkaConsumerLag' | 'kafkaMessagesRejected'>;

/** The kafkajs consumer settings the feed lets callers tune (tests shorten the timeouts). */
export type FeedConsumerSettings = Pick<
  ConsumerConfig,
  'sessionTimeout' | 'heartbeatInterval' | 'rebalanceTimeout' | 'maxWaitTimeInMs' | 'maxBytesPerPartition'
>;

export interface ActivationFeedOptions {
  kafka: Kafka;
  /** This invoker: names the topic and answers rejected messages. */
  instance: InvokerInstanceId;
  handler: ActivationHandler;
  admission: Admission;
  completions: CompletionSink;
  /** Where the system-error record of an unreadable (but addressable) message goes. */
  records?: RecordSink;
  /** Ids running or finished recently (shared with HTTP push): a message with one of them is skipped. */
  ids?: ActivationIds;
  logger: Logger;
  metrics: FeedMetrics;
  /** Default `invoker<N>`. */
  topic?: string;
  /** Default: the topic name, as upstream. */
  groupId?: string;
  /**
   * Where a group without committed offsets starts. Default true, upstream's
   * `auto-offset-reset = earliest`: messages sent before the first join are run.
   */
  fromBeginning?: boolean;
  consumer?: FeedConsumerSettings;
  /**
   * Activations the feed may always have running, even when HTTP push fills
   * the invoker (no free slot): the overflow in Kafka is never starved by a
   * steady HTTP load, at the cost of that many activations waiting briefly
   * in the pool's queue. Default 1.
   */
  reservedSlots?: number;
  /** Restarts after a crash kafkajs does not recover from itself. */
  restartBackoff?: { initialMs?: number; maxMs?: number };
  now?: () => number;
}

export interface ActivationFeed {
  readonly topic: string;
  readonly groupId: string;
  /** Connects, subscribes and joins the group; rejects with what failed. */
  start(): Promise<void>;
  /**
   * Stops fetching and leaves the group (resolves when it has). Activations
   * already handed over continue; see `whenIdle`.
   */
  stop(): Promise<void>;
  /** Activations handed to the handler that have not ended yet. */
  inFlight(): number;
  /** Resolves when every handed-over activation has ended and its completion send has settled. */
  whenIdle(): Promise<void>;
  /** Resolves at the consumer's next (or current) group membership with an assignment. */
  whenJoined(): Promise<void>;
}

// kafkajs' defaults are tuned for throughput; an invoker wants a prompt resume
// after enable and a stop that does not wait out a 5 s long poll.
const DEFAULT_CONSUMER: Required<FeedConsumerSettings> = {
  sessionTimeout: 30_000,
  heartbeatInterval: 3_000,
  rebalanceTimeout: 60_000,
  maxWaitTimeInMs: 500,
  maxBytesPerPartition: 1_048_576 + 6_144,
};

export function createActivationFeed(options: ActivationFeedOptions): ActivationFeed {
  return new KafkaActivationFeed(options);
}

class KafkaActivationFeed implements ActivationFeed {
  readonly topic: string;
  readonly groupId: string;
  private readonly log: Logger;
  private readonly settings: Required<FeedConsumerSettings>;
  private readonly now: () => number;
  private readonly restartInitialMs: number;
  private readonly restartMaxMs: number;

  private consumer: Consumer | undefined;
  private launching: Promise<void> | undefined;
  private started = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartDelayMs: number;
  private unsubscribeAdmission: (() => void) | undefined;
  /** Whether the feed paused the topic because admission is closed. */
  private pausedForAdmission = false;
  /** Per partition, the offset after the last message handed over: redeliveries below it are skipped. */
  private readonly handedOverUpTo = new Map<number, bigint>();
  private running = 0;
  /** Handle-then-send chains and rejection answers, for whenIdle. */
  private readonly pending = new Set<Promise<void>>();
  private wake: () => void = () => undefined;
  private changed: Promise<void>;
  private joinWaiters: Array<() => void> = [];
  private joined = false;

  constructor(private readonly options: ActivationFeedOptions) {
    this.topic = options.topic ?? invokerTopic(options.instance);
    this.groupId = options.groupId ?? this.topic;
    this.log = options.logger.child({ component: 'kafka-feed', topic: this.topic });
    this.settings = { ...DEFAULT_CONSUMER, ...definedOnly(options.consumer ?? {}) };
    this.now = options.now ?? Date.now;
    this.restartInitialMs = options.restartBackoff?.initialMs ?? 1_000;
    this.restartMaxMs = options.restartBackoff?.maxMs ?? 30_000;
    this.restartDelayMs = this.restartInitialMs;
    this.changed = this.nextChange();
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.unsubscribeAdmission = this.options.admission.onChange(() => this.onAdmissionChange());
    try {
      await this.launch();
    } catch (error) {
      this.unsubscribeAdmission();
      this.started = false;
      await this.consumer?.disconnect().catch(() => undefined);
      this.consumer = undefined;
      throw new Error(`starting the Kafka feed of ${this.topic}: ${describeKafkaError(error)}`, { cause: error });
    }
  }

  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  inFlight(): number {
    return this.running;
  }

  async whenIdle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  whenJoined(): Promise<void> {
    if (this.joined) return Promise.resolve();
    return new Promise((resolve) => this.joinWaiters.push(resolve));
  }

  // ------------------------------------------------------------------ consumer life

  private launch(): Promise<void> {
    const launching = this.launchConsumer();
    this.launching = launching;
    return launching;
  }

  private async launchConsumer(): Promise<void> {
    const consumer = this.options.kafka.consumer({
      groupId: this.groupId,
      sessionTimeout: this.settings.sessionTimeout,
      heartbeatInterval: this.settings.heartbeatInterval,
      rebalanceTimeout: this.settings.rebalanceTimeout,
      maxWaitTimeInMs: this.settings.maxWaitTimeInMs,
      maxBytesPerPartition: this.settings.maxBytesPerPartition,
      // invoker<N> is created at startup with its settings; never with broker defaults.
      allowAutoTopicCreation: false,
    });
    this.consumer = consumer;
    this.joined = false;
    this.watch(consumer);
    await consumer.connect();
    if (this.stopping) return; // shutdown disconnects it
    await consumer.subscribe({ topics: [this.topic], fromBeginning: this.options.fromBeginning ?? true });
    if (this.stopping) return;
    // Resolves once the group is joined (or the join crashed, which the CRASH handler deals with).
    await consumer.run({
      eachBatchAutoResolve: false,
      // kafkajs still commits resolved offsets at the end of a batch and before
      // a rebalance; the feed commits explicitly right after each hand-over.
      autoCommit: true,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.eachBatch(payload),
    });
  }

  private watch(consumer: Consumer): void {
    const { events } = consumer;
    consumer.on(events.GROUP_JOIN, ({ payload }) => {
      this.restartDelayMs = this.restartInitialMs;
      this.log.info(
        { groupId: payload.groupId, memberId: payload.memberId, assignment: payload.memberAssignment, ms: payload.duration },
        'joined the consumer group',
      );
      if (consumer !== this.consumer) return;
      this.joined = true;
      const waiters = this.joinWaiters;
      this.joinWaiters = [];
      for (const resolve of waiters) resolve();
    });
    consumer.on(events.REBALANCING, ({ payload }) => {
      this.log.info({ groupId: payload.groupId, memberId: payload.memberId }, 'consumer group is rebalancing');
    });
    consumer.on(events.CRASH, ({ payload }) => {
      const { error, restart } = payload;
      if (this.stopping) {
        this.log.debug({ err: error }, 'consumer crashed while stopping');
        return;
      }
      if (restart) {
        // Retriable: kafkajs restarts this consumer itself after its retry time.
        this.log.warn({ err: error }, 'Kafka consumer crashed; kafkajs restarts it');
        return;
      }
      const inMs = this.restartDelayMs;
      this.restartDelayMs = Math.min(this.restartDelayMs * 2, this.restartMaxMs);
      this.log.error(
        { err: error, restartInMs: inMs },
        `Kafka consumer of ${this.topic} crashed with a non-retriable error: no activations are read until it restarts`,
      );
      this.scheduleRestart(consumer, inMs);
    });
  }

  private scheduleRestart(crashed: Consumer, inMs: number): void {
    if (this.restartTimer) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void (async () => {
        if (this.stopping) return;
        await crashed.disconnect().catch(() => undefined);
        try {
          await this.launch();
          this.log.info('Kafka consumer restarted');
        } catch (error) {
          const next = this.restartDelayMs;
          this.restartDelayMs = Math.min(this.restartDelayMs * 2, this.restartMaxMs);
          this.log.error({ err: error, restartInMs: next }, `restarting the Kafka consumer of ${this.topic} failed`);
          const current = this.consumer;
          if (current && !this.stopping) this.scheduleRestart(current, next);
        }
      })();
    }, inMs);
    this.restartTimer.unref();
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.unsubscribeAdmission?.();
    this.wake(); // a pass waiting for capacity returns now
    // A (re)start under way finishes first, so that no consumer is left behind running.
    await this.launching?.catch(() => undefined);
    const consumer = this.consumer;
    if (!consumer) return;
    try {
      // Stops the fetch loop (after the current pass), leaves the group, closes the connections.
      await consumer.disconnect();
      this.log.info({ inFlight: this.running }, 'stopped reading activations and left the consumer group');
    } catch (error) {
      this.log.warn({ err: error }, 'disconnecting the Kafka consumer failed; the group drops this member after its session timeout');
    }
  }

  // ------------------------------------------------------------------ admission

  private nextChange(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.changed = this.nextChange();
        resolve();
      };
    });
  }

  private onAdmissionChange(): void {
    this.wake();
    if (this.pausedForAdmission && this.options.admission.accepting() && !this.stopping) {
      this.pausedForAdmission = false;
      this.setPaused(false);
      this.log.info('admission open again: resumed reading activations');
    }
  }

  private setPaused(paused: boolean): void {
    const consumer = this.consumer;
    if (!consumer) return;
    try {
      if (paused) consumer.pause([{ topic: this.topic }]);
      else consumer.resume([{ topic: this.topic }]);
    } catch (error) {
      // Between a crash and its restart there is no group to pause; the next
      // pass checks admission again before taking anything.
      this.log.debug({ err: error, paused }, 'could not change the pause state of the consumer');
    }
  }

  /**
   * Resolves true when a message may be taken now; false when the pass must
   * end (stopping, stale batch, admission closed - then the topic is paused).
   */
  private async awaitCapacity(payload: EachBatchPayload, commit: () => Promise<boolean>): Promise<boolean> {
    const { admission } = this.options;
    for (;;) {
      if (this.stopping || !payload.isRunning() || payload.isStale()) return false;
      if (!admission.accepting()) {
        if (!this.pausedForAdmission) {
          this.log.info({ reason: admission.refusalReason() }, 'admission closed: paused reading activations');
        }
        this.pausedForAdmission = true;
        this.setPaused(true);
        return false;
      }
      if (admission.freeSlots() > 0 || this.running < (this.options.reservedSlots ?? 1)) return true;
      // Commit what was handed over before waiting, however long the wait;
      // then look again, since capacity may have come back during the commit.
      if (await commit()) continue;
      const timeout = new AbortController();
      await Promise.race([
        this.changed,
        delay(this.settings.heartbeatInterval, undefined, { signal: timeout.signal }).catch(() => undefined),
      ]);
      timeout.abort();
      // Keeps the membership while holding the batch; throws when the group
      // rebalances, which ends the pass and lets kafkajs rejoin.
      await payload.heartbeat();
    }
  }

  // ------------------------------------------------------------------ messages

  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const { topic, partition } = batch;
    let uncommitted: string | undefined;
    /** Commits what this pass handed over since the last commit; false when there was nothing. */
    const commit = async (): Promise<boolean> => {
      if (uncommitted === undefined) return false;
      const offset = uncommitted;
      uncommitted = undefined;
      try {
        await payload.commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset }] }] });
        return true;
      } catch (error) {
        this.log.warn(
          { err: error, partition, offset },
          'committing handed-over offsets failed; if the partition moves to another consumer they run again there',
        );
        throw error;
      }
    };

    const highWatermark = BigInt(batch.highWatermark);
    const reportLag = (from: bigint) => {
      const lag = highWatermark - from;
      this.options.metrics.kafkaConsumerLag.set({ partition: String(partition) }, Number(lag < 0n ? 0n : lag));
    };
    const first = batch.messages[0];
    if (first) reportLag(BigInt(first.offset));

    for (const message of batch.messages) {
      const offset = BigInt(message.offset);
      const upTo = this.handedOverUpTo.get(partition);
      if (upTo !== undefined && offset < upTo) {
        // Redelivered after a failed commit or a rebalance back to us: it already runs here.
        this.log.warn({ partition, offset: message.offset }, 'skipping a redelivered message this process already took');
      } else {
        if (!(await this.awaitCapacity(payload, commit))) break;
        this.take(partition, message);
        this.handedOverUpTo.set(partition, offset + 1n);
      }
      payload.resolveOffset(message.offset);
      uncommitted = (offset + 1n).toString();
      reportLag(offset + 1n);
    }
    await commit();
  }

  /** Hands one message over (or rejects it). Synchronous: nothing can interleave between check and hand-over. */
  private take(partition: number, message: KafkaMessage): void {
    const receivedAt = this.now();
    let parsed: ActivationMessage;
    try {
      parsed = parseActivationMessage(message.value ?? new Uint8Array(0));
      validateActivationMessageNames(parsed);
    } catch (error) {
      this.reject(partition, message, error);
      return;
    }
    if (this.options.ids !== undefined && !this.options.ids.claim(parsed.activationId)) {
      // Its first copy runs (or ran) here and answers for it.
      this.log.warn(
        { partition, offset: message.offset, activationId: parsed.activationId, state: this.options.ids.state(parsed.activationId) },
        'skipped an activation message whose activation id is already running or finished here',
      );
      return;
    }
    this.dispatch(parsed, receivedAt);
  }

  private dispatch(message: ActivationMessage, receivedAt: number): void {
    this.running++;
    let outcome: Promise<ActivationOutcome>;
    try {
      outcome = this.options.handler.handle({ message, transport: 'kafka', receivedAt });
    } catch (error) {
      outcome = Promise.reject(error);
    }
    const ended = () => {
      this.running--;
      this.options.ids?.finish(message.activationId);
      this.wake(); // a slot may be free now even if admission does not say so itself
    };
    const chain = outcome.then(
      (result) => {
        ended();
        return this.send(result);
      },
      (error: unknown) => {
        ended();
        // The handler promises never to reject; if it does, the controller still gets an answer.
        this.log.error({ err: error, activationId: message.activationId }, 'activation handler rejected; answering with a system error');
        return this.send(
          systemErrorCompletion({
            activationId: message.activationId,
            controller: message.rootControllerIndex,
            transid: message.transid,
            instance: this.options.instance,
            error: 'The invoker failed to run the activation.',
            blocking: message.blocking,
            namespace: message.user.namespace.name,
            actionPath: message.action.path,
            actionName: message.action.name,
            ...(message.action.version === undefined ? {} : { version: message.action.version }),
            subject: message.user.subject,
            now: this.now(),
          }),
        );
      },
    );
    this.track(chain);
  }

  private reject(partition: number, message: KafkaMessage, error: unknown): void {
    const salvaged = salvageRejectedMessage(message.value);
    this.options.metrics.kafkaMessagesRejected.inc({ reason: salvaged.reason });
    // ProtocolParseError messages name the field, never its value (which may be a secret).
    const problem = error instanceof ProtocolParseError ? error.message : `unexpected parser failure: ${String(error)}`;
    const context = {
      partition,
      offset: message.offset,
      reason: salvaged.reason,
      problem,
      activationId: salvaged.activationId,
      controller: salvaged.controller?.asString,
    };
    if (!(error instanceof ProtocolParseError)) this.log.error({ ...context, err: error }, 'parsing an activation message threw');
    if (salvaged.activationId === undefined || salvaged.controller === undefined) {
      this.log.warn(context, 'dropped an unreadable activation message; no controller to tell');
      return;
    }
    this.log.warn(context, 'rejected an unreadable activation message; answering with a system error');
    const { reason: _reason, ...identity } = salvaged;
    const answer = {
      ...identity,
      activationId: salvaged.activationId,
      controller: salvaged.controller,
      instance: this.options.instance,
      error: unreadableMessageError(problem),
      now: this.now(),
    };
    const records = this.options.records;
    const stored =
      records !== undefined && salvaged.namespace !== undefined
        ? records.store(activationDocument(systemErrorActivation(answer), this.now())).catch((err: unknown) => {
            this.log.error({ ...context, err }, 'storing the record of an unreadable activation message failed');
          })
        : Promise.resolve();
    // As for every activation: the record is durable before the completion goes out.
    this.track(stored.then(() => this.send(systemErrorCompletion(answer))));
  }

  private async send(completion: CompletionRecord): Promise<void> {
    try {
      await this.options.completions.send(completion);
    } catch (error) {
      // The sink has logged it with its cause.
      this.log.debug({ err: error, activationId: completion.activationId }, 'completion not delivered');
    }
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
