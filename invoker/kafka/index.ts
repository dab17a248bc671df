/**
 * The invoker's Kafka side: the `invoker<N>` feed, the completion producer,
 * health pings and topic setup. Each part is usable on its own; createKafkaSide
 * wires them in the order the invoker needs. Kafka is optional: with no
 * brokers configured there is no Kafka side (HTTP push only, no pings).
 */
import type { Kafka } from 'kafkajs';
import type { InvokerInstanceId } from '../../protocol/index.js';
import type { Admission, RejectingActivationHandler } from '../invocation/activation-handler.js';
import type { ActivationIds } from '../invocation/activation-ids.js';
import type { Logger } from '../telemetry/logger.js';
import { createActivationFeed } from './activation-feed.js';
import { createKafkaClient } from './client.js';
import { createCompletionProducer, type CompletionProducer } from './completion-producer.js';
import type { ActivationFeed, FeedConsumerSettings, FeedMetrics } from './feed-types.js';
import { createHealthPinger, type HealthPinger } from './health-pinger.js';
import { createTopicManager, topicNames, type TopicManager, type TopicNames } from './topics.js';

export * from './activation-feed.js';
export * from './client.js';
export * from './completion-producer.js';
export * from './health-pinger.js';
export * from './consumer-restart.js';
export * from './join.js';
export * from './topics.js';

export interface KafkaSideOptions {
  /** Empty: no Kafka side. */
  brokers: string[];
  clientId: string;
  instance: InvokerInstanceId;
  /** Runs the messages read, and ends the activations of unreadable ones (InvocationCore). */
  handler: RejectingActivationHandler;
  admission: Admission;
  /** Ids running or finished recently, shared with HTTP push. */
  ids?: ActivationIds;
  logger: Logger;
  metrics: FeedMetrics;
  healthPingIntervalMs?: number;
  /**
   * Upstream's `whisk.kafka.topics.prefix` (KAFKA_TOPIC_PREFIX): every topic
   * and group is named under it. Default empty.
   */
  topicPrefix?: string;
  /** Default `<prefix>health`. */
  healthTopic?: string;
  consumer?: FeedConsumerSettings;
}

export interface KafkaSide {
  readonly kafka: Kafka;
  readonly names: TopicNames;
  readonly topics: TopicManager;
  readonly completions: CompletionProducer;
  readonly pinger: HealthPinger;
  readonly feed: ActivationFeed;
  /**
   * Creates `invoker<N>` and `health`, connects the producer, joins the group,
   * then starts pinging (controllers send work only to pinging invokers, so
   * the invoker is in its group before the first ping). Rejects with what failed.
   */
  start(): Promise<void>;
  /** Drain, first half: a disabled ping, then stop reading and leave the group. In-flight work runs on. */
  stopIntake(): Promise<void>;
  /** Drain, second half (after in-flight work ended or the drain timed out): flush completions, final ping, disconnect. */
  close(): Promise<void>;
}

export function createKafkaSide(options: KafkaSideOptions): KafkaSide | undefined {
  if (options.brokers.length === 0) return undefined;
  const { instance, logger } = options;
  const kafka = createKafkaClient({ brokers: options.brokers, clientId: `${options.clientId}${instance.instance}`, logger });
  const names = topicNames(options.topicPrefix ?? '');
  const healthTopic = options.healthTopic ?? names.health;
  const topics = createTopicManager({ kafka, logger });
  const completions = createCompletionProducer({ kafka, logger, topics, topicFor: names.completed });
  const pinger = createHealthPinger({
    kafka,
    instance,
    logger,
    ...(options.healthPingIntervalMs === undefined ? {} : { intervalMs: options.healthPingIntervalMs }),
    topic: healthTopic,
  });
  const feed = createActivationFeed({
    kafka,
    instance,
    // The group is named after the topic, as upstream (getConsumer(config, topic, topic, ...)).
    topic: names.invoker(instance),
    handler: options.handler,
    admission: options.admission,
    completions,
    ...(options.ids ? { ids: options.ids } : {}),
    logger,
    metrics: options.metrics,
    ...(options.consumer === undefined ? {} : { consumer: options.consumer }),
  });

  return {
    kafka,
    names,
    topics,
    completions,
    pinger,
    feed,
    async start() {
      await topics.ensureInvokerTopics({ invokerTopic: feed.topic, healthTopic });
      await completions.start();
      await feed.start();
      await pinger.start();
    },
    async stopIntake() {
      await pinger.disable();
      await feed.stop();
    },
    async close() {
      await feed.stop();
      await completions.stop();
      await pinger.stop();
      await topics.close();
    },
  };
}
