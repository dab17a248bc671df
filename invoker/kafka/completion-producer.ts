/**
 * Completions to `completed<C>`: the message that frees the controller's slot
 * and, for blocking calls, carries the result.
 *
 * - acks: -1 with the idempotent producer (one request in flight): a
 *   completion counts as sent only when every in-sync replica has it, and a
 *   retry after a lost acknowledgement cannot write it twice. (The Go invoker
 *   sends without waiting for any acknowledgement.)
 * - A completion larger than a Kafka message may be (`maxMessageBytes`,
 *   upstream's 1 MiB plus envelope) goes out in shrunk form right away; one the
 *   broker still refuses as too large (a topic with a smaller
 *   `max.message.bytes`) is re-sent shrunk. Upstream does the same: the
 *   controller then reads the result from the activation record.
 * - A failed send is retried, with exponential backoff and jitter, for as
 *   long as the controller still waits for the completion (the record's
 *   `retryUntil`, its forced-completion deadline; default 3 minutes, upstream's
 *   deadline for the shortest actions): a broker outage shorter than that
 *   loses no completion. Each attempt gets kafkajs' own short retries.
 * - `send` logs every failure itself, then rejects; callers only need to catch.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Partitioners, type Kafka, type Producer, type RetryOptions } from 'kafkajs';
import { completedTopic, forcedCompletionDelayMs } from '../../protocol/index.js';
import type { Logger } from '../telemetry/logger.js';
import type { CompletionRecord } from '../invocation/activation-handler.js';
import type { CompletionSink } from './feed-types.js';
import { MAX_MESSAGE_BYTES, describeKafkaError, type TopicManager } from './topics.js';

/**
 * What a record batch of one value-only record adds to the value on the wire
 * (61-byte batch header plus the record's varints), rounded up generously:
 * the broker compares the whole batch with `max.message.bytes`.
 */
export const RECORD_OVERHEAD_BYTES = 128;

export type CompletionDelivery = 'full' | 'shrunk';

interface Generation {
  producer: Producer;
  sends: number;
  /** Replaced after a failed send; disconnected once its last send settles. */
  retired: boolean;
  connected: Promise<void> | undefined;
}

export interface CompletionProducerOptions {
  kafka: Kafka;
  logger: Logger;
  /** Names `completed<C>` (default: no prefix, `completedTopic` of protocol). */
  topicFor?: (controller: CompletionRecord['controller']) => string;
  /** When given, `completed<C>` is created with upstream's settings before the first send to C. */
  topics?: Pick<TopicManager, 'ensureCompletedTopic'>;
  /** Largest record the topics take (default MAX_MESSAGE_BYTES); larger completions go out shrunk. */
  maxMessageBytes?: number;
  /** How long the broker may wait for the in-sync replicas (default 30 s). */
  ackTimeoutMs?: number;
  /** kafkajs retries within one attempt (default: 2, a few seconds). */
  retry?: RetryOptions;
  /** Between attempts: from `initialMs` (default 500) doubling up to `maxMs` (default 10 000), with jitter. */
  retryBackoff?: { initialMs?: number; maxMs?: number };
  /** How long a completion without `retryUntil` is retried (default: the forced-completion delay of the shortest actions, 3 min). */
  defaultRetryWindowMs?: number;
}

export interface CompletionProducer extends CompletionSink {
  /** Connects; rejects with what failed. */
  start(): Promise<void>;
  /** Resolves once the broker acknowledged the completion (full or shrunk); rejects after logging. */
  send(completion: CompletionRecord): Promise<CompletionDelivery>;
  /** Waits for sends under way, then disconnects. Later sends reject. */
  stop(): Promise<void>;
}

export function createCompletionProducer(options: CompletionProducerOptions): CompletionProducer {
  const log = options.logger.child({ component: 'kafka-completions' });
  const maxMessageBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
  const newProducer = (): Producer =>
    options.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // Without a topic manager a missing completed<C> is left to the broker's
      // auto-creation: a topic with default settings beats a lost completion.
      allowAutoTopicCreation: true,
      createPartitioner: Partitioners.DefaultPartitioner,
      // kafkajs' idempotent default is to retry forever; each attempt is kept
      // short and `deliver` retries attempts until the controller's deadline.
      retry: options.retry ?? { retries: 2, initialRetryTime: 300, maxRetryTime: 2_000 },
    });
  const backoffInitialMs = options.retryBackoff?.initialMs ?? 500;
  const backoffMaxMs = Math.max(backoffInitialMs, options.retryBackoff?.maxMs ?? 10_000);
  const defaultRetryWindowMs = options.defaultRetryWindowMs ?? forcedCompletionDelayMs(0);
  /** The idempotent producer in use, and how many sends it has under way. */
  let current: Generation = { producer: newProducer(), sends: 0, retired: false, connected: undefined };
  const pending = new Set<Promise<unknown>>();
  let state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  let stopped: Promise<void> | undefined;

  const connect = (g: Generation): Promise<void> => {
    g.connected ??= g.producer.connect().catch((error: unknown) => {
      g.connected = undefined; // the next send tries again
      throw new Error(`connecting the completion producer: ${describeKafkaError(error)}`, { cause: error });
    });
    return g.connected;
  };

  const produce = async (topic: string, value: string): Promise<void> => {
    const g = current;
    g.sends++;
    try {
      await connect(g);
    } catch (error) {
      g.sends--;
      throw error;
    }
    try {
      await g.producer.send({ topic, acks: -1, timeout: ackTimeoutMs, messages: [{ value }] });
    } catch (error) {
      // A send that failed for good may still have been written (a timeout):
      // the idempotent producer would then reuse its sequence number for the
      // next completion, which the broker would acknowledge as a duplicate
      // without writing it. A new producer (new producer id) cannot collide.
      if (!isTooLarge(error) && g === current && state !== 'stopped') {
        g.retired = true;
        current = { producer: newProducer(), sends: 0, retired: false, connected: undefined };
        log.warn('replaced the completion producer after a failed send');
      }
      throw error;
    } finally {
      g.sends--;
      if (g.retired && g.sends === 0) void g.producer.disconnect().catch(() => undefined);
    }
  };

  const deliver = async (c: CompletionRecord): Promise<CompletionDelivery> => {
    const topic = options.topicFor === undefined ? completedTopic(c.controller) : options.topicFor(c.controller);
    const context = { activationId: c.activationId, topic };
    if (state !== 'running' && state !== 'stopping') {
      const why = state === 'new' ? 'not started' : 'stopped';
      const error = new Error(`sending the completion of ${c.activationId} to ${topic}: the completion producer is ${why}`);
      log.error({ ...context, err: error }, 'completion not sent');
      throw error;
    }
    const until = c.retryUntil ?? Date.now() + defaultRetryWindowMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await attemptDelivery(c, topic);
      } catch (error) {
        const ceiling = Math.min(backoffMaxMs, backoffInitialMs * 2 ** Math.min(attempt - 1, 30));
        const waitMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
        if (Date.now() + waitMs >= until) {
          log.error({ ...context, err: error, attempts: attempt }, 'completion not sent; the controller will time the activation out');
          throw error;
        }
        log.warn({ ...context, err: error, attempt, retryInMs: waitMs, giveUpInMs: until - Date.now() }, 'sending a completion failed; retrying');
        await delay(waitMs);
      }
    }
  };

  const attemptDelivery = async (c: CompletionRecord, topic: string): Promise<CompletionDelivery> => {
    const context = { activationId: c.activationId, topic };
    await options.topics?.ensureCompletedTopic(topic);
    const bytes = Buffer.byteLength(c.completion);
    let delivery: CompletionDelivery = 'full';
    try {
      if (bytes + RECORD_OVERHEAD_BYTES > maxMessageBytes) {
        log.warn({ ...context, bytes, maxMessageBytes }, 'completion too large for Kafka; sending it shrunk');
        delivery = 'shrunk';
        await produce(topic, c.shrunkCompletion);
      } else {
        try {
          await produce(topic, c.completion);
        } catch (error) {
          if (!isTooLarge(error)) throw error;
          log.warn({ ...context, bytes }, 'broker refused the completion as too large; re-sending it shrunk');
          delivery = 'shrunk';
          await produce(topic, c.shrunkCompletion);
        }
      }
    } catch (error) {
      throw new Error(`sending the ${delivery} completion of ${c.activationId} to ${topic}: ${describeKafkaError(error)}`, { cause: error });
    }
    log.debug({ ...context, delivery }, 'completion sent');
    return delivery;
  };

  return {
    async start() {
      if (state !== 'new') return;
      await connect(current);
      state = 'running';
    },

    send(completion) {
      const p = deliver(completion);
      pending.add(p);
      const forget = () => pending.delete(p);
      p.then(forget, forget);
      return p;
    },

    stop() {
      stopped ??= (async () => {
        if (state !== 'running') {
          state = 'stopped';
          return;
        }
        state = 'stopping';
        // Completions handed to us, even while stopping, still go out (the last
        // activations of a drain end now); only then is the connection closed.
        while (pending.size > 0) await Promise.allSettled([...pending]);
        state = 'stopped';
        await current.producer
          .disconnect()
          .catch((error: unknown) => log.warn({ err: error }, 'disconnecting the completion producer failed'));
      })();
      return stopped;
    },
  };
}

/** The broker's "too large" refusals (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE), however kafkajs wraps them. */
export function isTooLarge(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 5) return false;
  const e = error as { type?: unknown; cause?: unknown; errors?: unknown };
  if (e.type === 'MESSAGE_TOO_LARGE' || e.type === 'RECORD_LIST_TOO_LARGE') return true;
  if (isTooLarge(e.cause, depth + 1)) return true;
  return Array.isArray(e.errors) && e.errors.some((inner) => isTooLarge(inner, depth + 1));
}
