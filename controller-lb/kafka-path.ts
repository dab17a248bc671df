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
import { Partitioners, type Consumer, type Kafka, type Producer } from 'kafkajs';
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
}

/** The part of the Kafka path the load balancer needs (tests can substitute it). */
export interface ActivationPublisher {
  publish(invoker: InvokerInstanceId, msg: ActivationMessage): Promise<void>;
}

export class KafkaPath implements ActivationPublisher {
  readonly #producer: Producer;
  readonly #consumer: Consumer;
  readonly #logger: Logger;
  readonly #names: TopicNames;

  private constructor(producer: Producer, consumer: Consumer, logger: Logger, names: TopicNames) {
    this.#producer = producer;
    this.#consumer = consumer;
    this.#logger = logger;
    this.#names = names;
  }

  static async start(options: KafkaPathOptions): Promise<KafkaPath> {
    const { kafka, controller, onAcknowledgement, logger } = options;
    const names = topicNames(options.topicPrefix ?? '');
    const topic = names.completed(controller);
    // The invoker<N> topics have one partition; naming the partitioner only
    // silences kafkajs' warning about its changed default.
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
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
    return new KafkaPath(producer, consumer, logger, names);
  }

  /** Resolves once all in-sync replicas have the message (acks -1): the Kafka equivalent of the HTTP ack. */
  async publish(invoker: InvokerInstanceId, msg: ActivationMessage): Promise<void> {
    const topic = this.#names.invoker(invoker);
    try {
      await this.#producer.send({ topic, acks: -1, messages: [{ value: serializeActivationMessage(msg) }] });
    } catch (error) {
      throw new Error(`publishing activation ${msg.activationId} to ${topic}: ${(error as Error).message}`, { cause: error });
    }
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled([this.#consumer.disconnect(), this.#producer.disconnect()]);
    for (const result of results) {
      if (result.status === 'rejected') this.#logger.warn({ error: String(result.reason) }, 'closing the Kafka path');
    }
  }
}
