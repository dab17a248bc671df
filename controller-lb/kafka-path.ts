/**
 * The Kafka transport, used when the balancer is overloaded (the seed's split:
 * HTTP push normally, Kafka only on overload, where the topic buffers what no
 * invoker has room for): activation messages are produced to `invoker<N>`,
 * and acknowledgements are consumed from `completed<C>`, group `completed<C>`,
 * all under the topic prefix (KAFKA_TOPIC_PREFIX, upstream's
 * `whisk.kafka.topics.prefix`).
 */
import { ProtocolParseError, parseAcknowledgement, serializeActivationMessage } from '../protocol/index.js';
import { topicNames, type TopicNames } from '../invoker/kafka/topics.js';
import type { AcknowledgementMessage, ActivationMessage, ControllerInstanceId, InvokerInstanceId } from '../protocol/index.js';
import { Partitioners, type Admin, type Consumer, type Kafka, type Producer } from 'kafkajs';
import type { Logger } from '../invoker/telemetry/logger.js';
import { startValueConsumer } from './kafka-support.js';

export interface KafkaPathOptions {
  kafka: Kafka;
  controller: ControllerInstanceId;
  /** Receives every acknowledgement from `completed<C>`; must not throw. */
  onAcknowledgement: (ack: AcknowledgementMessage) => void;
  logger: Logger;
  /** Default empty: `invoker<N>`, `completed<C>`. */
  topicPrefix?: string;
  /** For tests on fresh topics; see startValueConsumer. */
  fromBeginning?: boolean;
  /** How often the broker is probed (metadata request), default 1 s; each probe may take as long. */
  probeIntervalMs?: number;
}

/** What the controller's health endpoint says about the Kafka path. */
export interface KafkaPathHealth {
  available: boolean;
  /** When the current state began (epoch ms). */
  since: number;
  lastError?: string;
}

/** The part of the Kafka path the load balancer needs (tests can substitute it). */
export interface ActivationPublisher {
  publish(invoker: InvokerInstanceId, msg: ActivationMessage): Promise<void>;
  /** False while Kafka is known to be unreachable: the balancer then refuses what would go to Kafka. */
  available?(): boolean;
  /** How many times Kafka has become unreachable so far: an activation that lived through one is not the invoker's fault. */
  outages?(): number;
}

/**
 * Whether Kafka answers is known from a metadata probe every second (and from publishes: a failed one marks it unreachable at once, a
 * successful one reachable). While unreachable, the balancer refuses what
 * would go to Kafka (503 + Retry-After) instead of waiting on the producer's
 * retries; HTTP push is not affected.
 */
export class KafkaPath implements ActivationPublisher {
  readonly #producer: Producer;
  readonly #consumer: Consumer;
  readonly #admin: Admin;
  readonly #logger: Logger;
  readonly #names: TopicNames;
  #health: KafkaPathHealth = { available: true, since: Date.now() };
  readonly #probeTimer: NodeJS.Timeout;
  #probing = false;
  #closed = false;
  #outages = 0;

  private constructor(producer: Producer, consumer: Consumer, admin: Admin, logger: Logger, names: TopicNames, probeIntervalMs: number) {
    this.#producer = producer;
    this.#consumer = consumer;
    this.#admin = admin;
    this.#logger = logger;
    this.#names = names;
    this.#probeTimer = setInterval(() => void this.#probe(probeIntervalMs), probeIntervalMs);
    this.#probeTimer.unref();
  }

  /** Kafka answered the last probe or publish. */
  available(): boolean {
    return this.#health.available;
  }

  health(): KafkaPathHealth {
    return { ...this.#health };
  }

  outages(): number {
    return this.#outages;
  }

  #mark(available: boolean, error?: string): void {
    if (available === this.#health.available) {
      if (error !== undefined) this.#health.lastError = error;
      return;
    }
    if (!available) this.#outages++;
    this.#health = { available, since: Date.now(), ...(error !== undefined ? { lastError: error } : {}) };
    if (available) this.#logger.info('Kafka is reachable again: overflow to Kafka resumes');
    else this.#logger.warn({ error }, 'Kafka is unreachable: HTTP push goes on, activations that would overflow are refused (503)');
  }

  async #probe(timeoutMs: number): Promise<void> {
    if (this.#probing || this.#closed) return;
    this.#probing = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.#admin.describeCluster(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no metadata answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      this.#mark(true);
    } catch (error) {
      this.#mark(false, (error as Error).message);
    } finally {
      clearTimeout(timer);
      this.#probing = false;
    }
  }

  static async start(options: KafkaPathOptions): Promise<KafkaPath> {
    const { kafka, controller, onAcknowledgement, logger } = options;
    const names = topicNames(options.topicPrefix ?? '');
    const topic = names.completed(controller);
    // The invoker<N> topics have one partition; naming the partitioner only
    // silences kafkajs' warning about its changed default.
    // Short retries: while Kafka is down a caller should hear so in seconds
    // (the probe then refuses overflow at once), not wait out kafkajs' defaults.
    const producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 },
    });
    try {
      await producer.connect();
    } catch (error) {
      throw new Error(`connecting the Kafka producer for invoker<N> topics: ${(error as Error).message}`, { cause: error });
    }
    let consumer: Consumer;
    try {
      consumer = await startValueConsumer({
        kafka,
        topic,
        groupId: topic,
        ...(options.fromBeginning !== undefined ? { fromBeginning: options.fromBeginning } : {}),
        logger,
        onValue: (value, position) => {
          let ack: AcknowledgementMessage;
          try {
            ack = parseAcknowledgement(value);
          } catch (error) {
            // A ProtocolParseError names the field; the message itself may hold user data.
            const reason = error instanceof ProtocolParseError ? error.message : `unexpected: ${String(error)}`;
            logger.warn({ topic, ...position, error: reason }, 'ignored an invalid acknowledgement');
            return;
          }
          onAcknowledgement(ack);
        },
      });
    } catch (error) {
      await producer.disconnect().catch(() => undefined);
      throw error;
    }
    // No retries of its own: a probe says how Kafka is now.
    const admin = kafka.admin({ retry: { retries: 0 } });
    await admin.connect().catch((error: unknown) => logger.warn({ error: (error as Error).message }, 'connecting the Kafka probe'));
    return new KafkaPath(producer, consumer, admin, logger, names, options.probeIntervalMs ?? 1_000);
  }

  /**
   * Resolves once all in-sync replicas have the message (acks -1): the Kafka
   * equivalent of the HTTP ack. One under way when Kafka goes away waits for
   * the producer's retries: it is acknowledged once Kafka is back within
   * them, or fails (a forced completion).
   */
  async publish(invoker: InvokerInstanceId, msg: ActivationMessage): Promise<void> {
    const topic = this.#names.invoker(invoker);
    try {
      await this.#producer.send({ topic, acks: -1, messages: [{ value: serializeActivationMessage(msg) }] });
    } catch (error) {
      this.#mark(false, (error as Error).message);
      throw new Error(`publishing activation ${msg.activationId} to ${topic}: ${(error as Error).message}`, { cause: error });
    }
    this.#mark(true);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#probeTimer);
    const results = await Promise.allSettled([this.#consumer.disconnect(), this.#producer.disconnect(), this.#admin.disconnect()]);
    for (const result of results) {
      if (result.status === 'rejected') this.#logger.warn({ error: String(result.reason) }, 'closing the Kafka path');
    }
  }
}
