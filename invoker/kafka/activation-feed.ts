/**
 * The `invoker<N>` feed: reads activation messages from Kafka (consumer group
 * = topic name, as upstream) and hands them to the invocation core, taking no
 * more than the core can start now, so that a backlog waits in Kafka and not
 * in this process. It only consumes and commits: readable messages go to
 * `handler.handle`, unreadable ones to `handler.reject`, and the completions
 * they return to the completion sink. README.md has the whole contract.
 *
 * Flow control (upstream's maxPeek idea). Before each message the feed asks
 * `admission.freeSlots()` (it may also always run `reservedSlots` of its own,
 * default 1, so that HTTP push, which takes freed slots first, cannot starve
 * the overflow); with no free slot it holds the fetched batch (at most
 * `maxBytesPerPartition`) and waits, without taking further messages, until
 * `admission.onChange` fires or one of its own activations ends, heartbeating
 * meanwhile. `freeSlots()` must therefore count an activation as soon as
 * `handler.handle` was called for it. While `admission.accepting()` is false
 * the topic is paused instead and the rest of the batch dropped: kafkajs
 * fetches from the last resolved offset + 1 on resume. (Pausing is not used
 * for the short waits for a slot: a paused kafkajs consumer only looks again
 * after `maxWaitTimeInMs`, which would add that latency whenever the invoker
 * is saturated.)
 *
 * Offsets. A message's offset is resolved the moment it has been handed over
 * (or rejected as unreadable: unreadable messages never block the partition)
 * and committed right after, in one OffsetCommit per pass, before the feed
 * waits for capacity; nothing not handed over is ever committed. So a crash
 * redelivers what was not handed over, and not what was (at most once, as
 * upstream: the controller's forced-completion timer ends it), except in the
 * few milliseconds between hand-over and commit; within one process a
 * redelivered offset below what was handed over is skipped. A consumer that
 * crashes for good is replaced (consumer-restart.ts).
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs';
import {
  invokerTopic,
  parseActivationMessage,
  ProtocolParseError,
  salvageRejectedMessage,
  validateActivationMessageNames,
  type ActivationMessage,
} from '../../protocol/index.js';
import type { CompletionRecord } from '../invocation/activation-handler.js';
import { brokenHandlerCompletion } from '../invocation/system-error.js';
import type { Logger } from '../telemetry/logger.js';
import { ConsumerRestart } from './consumer-restart.js';
import { consumerSettings, type ActivationFeed, type ActivationFeedOptions, type FeedConsumerSettings } from './feed-types.js';
import { describeKafkaError } from './topics.js';

export type { CompletionRecord } from '../invocation/activation-handler.js';
export type { ActivationFeed, ActivationFeedOptions, CompletionSink, FeedConsumerSettings, FeedMetrics } from './feed-types.js';

export function createActivationFeed(options: ActivationFeedOptions): ActivationFeed {
  return new KafkaActivationFeed(options);
}

class KafkaActivationFeed implements ActivationFeed {
  readonly topic: string;
  readonly groupId: string;
  private readonly log: Logger;
  private readonly settings: Required<FeedConsumerSettings>;
  private readonly now: () => number;
  private readonly restarts: ConsumerRestart;

  private consumer: Consumer | undefined;
  private launching: Promise<void> | undefined;
  private started = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private unsubscribeAdmission: (() => void) | undefined;
  /** Whether the feed paused the topic because admission is closed. */
  private pausedForAdmission = false;
  /** Per partition, the offset after the last message handed over: redeliveries below it are skipped. */
  private readonly handedOverUpTo = new Map<number, bigint>();
  private running = 0;
  /** Handle-then-send and reject-then-send chains, for whenIdle. */
  private readonly pending = new Set<Promise<void>>();
  private wake: () => void = () => undefined;
  private changed: Promise<void>;
  private joinWaiters: Array<() => void> = [];
  private joined = false;

  constructor(private readonly options: ActivationFeedOptions) {
    this.topic = options.topic ?? invokerTopic(options.instance);
    this.groupId = options.groupId ?? this.topic;
    this.log = options.logger.child({ component: 'kafka-feed', topic: this.topic });
    this.settings = consumerSettings(options.consumer);
    this.now = options.now ?? Date.now;
    this.restarts = new ConsumerRestart({
      topic: this.topic,
      log: this.log,
      ...options.restartBackoff,
      stopping: () => this.stopping,
      launch: () => this.launch(),
      current: () => this.consumer,
    });
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
    this.restarts.watch(consumer, () => {
      // A join of a consumer replaced meanwhile (crash, restart) says nothing about the current one.
      if (consumer !== this.consumer) return;
      this.joined = true;
      const waiters = this.joinWaiters;
      this.joinWaiters = [];
      for (const resolve of waiters) resolve();
    });
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    this.restarts.cancel();
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
        const why = 'committing handed-over offsets failed; if the partition moves to another consumer they run again there';
        this.log.warn({ err: error, partition, offset }, why);
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
      this.reject(partition, message, receivedAt, error);
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
    const outcome = settled(() => this.options.handler.handle({ message, transport: 'kafka', receivedAt }));
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
        return this.send(brokenHandlerCompletion(message, this.options.instance, this.now()));
      },
    );
    this.track(chain);
  }

  /** Hands an unreadable message to `handler.reject`, whose outcome (if any) is sent like every completion. */
  private reject(partition: number, message: KafkaMessage, receivedAt: number, error: unknown): void {
    const salvaged = salvageRejectedMessage(message.value);
    this.options.metrics.kafkaMessagesRejected.inc({ reason: salvaged.reason });
    // ProtocolParseError messages name the field, never its value (which may be a secret).
    const problem = error instanceof ProtocolParseError ? error.message : `unexpected parser failure: ${String(error)}`;
    const { reason, activationId, controller } = salvaged;
    const context = { partition, offset: message.offset, reason, problem, activationId, controller: controller?.asString };
    if (!(error instanceof ProtocolParseError)) this.log.error({ ...context, err: error }, 'parsing an activation message threw');
    const outcome = settled(() => this.options.handler.reject({ salvaged, problem, transport: 'kafka', receivedAt }));
    const chain = outcome.then(
      (result) => {
        if (result === undefined) {
          this.log.warn(context, 'dropped an unreadable activation message; no controller to tell');
          return;
        }
        this.log.warn(context, 'rejected an unreadable activation message; answered with a system error');
        return this.send(result);
      },
      (err: unknown) => {
        // The handler promises never to reject; the controller's timer ends this activation then.
        this.log.error({ ...context, err }, 'rejecting an unreadable activation message failed');
      },
    );
    this.track(chain);
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

/** `call()`'s promise, or a rejected one when it throws synchronously: one place to handle both. */
function settled<T>(call: () => Promise<T>): Promise<T> {
  try {
    return call();
  } catch (error) {
    return Promise.reject(error);
  }
}
