/**
 * What the two Kafka consumers of the balancer (completions, health pings)
 * share: topic creation, a consumer that hands each value to a callback, and
 * kafkajs logs routed into our structured logger.
 */
import { logLevel, type Consumer, type Kafka, type logCreator } from 'kafkajs';
import type { Logger } from '../invoker/telemetry/logger.js';
import { createTopicsRetrying } from '../invoker/kafka/topics.js';

/** kafkajs log lines as pino lines (kafkajs' own format is unstructured text). */
export function kafkaLogCreator(logger: Logger): logCreator {
  return () =>
    ({ namespace, level, log }) => {
      const { message, timestamp: _timestamp, ...extra } = log;
      const fields = { kafka: namespace, ...extra };
      if (level === logLevel.ERROR) logger.error(fields, message);
      else if (level === logLevel.WARN) logger.warn(fields, message);
      else if (level === logLevel.INFO) logger.info(fields, message);
      else logger.debug(fields, message);
    };
}

/**
 * Creates `topic` if missing. Without this a consumer of a topic that does not
 * exist yet idles silently on brokers with auto-creation off.
 */
export async function ensureTopic(kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    const existing = await admin.listTopics();
    if (!existing.includes(topic)) {
      await createTopicsRetrying(admin, { topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    }
  } catch (error) {
    // Two controllers may race to create it; that one exists is all we need.
    const message = (error as Error).message;
    if (!/already exists/i.test(message)) throw new Error(`creating Kafka topic ${topic}: ${message}`, { cause: error });
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export interface ValueConsumerOptions {
  kafka: Kafka;
  topic: string;
  groupId: string;
  /** Start from the oldest message when the group has no committed offset (tests). Default: newest. */
  fromBeginning?: boolean;
  /** Called for every message; it must not throw (failures are its own to log). */
  /** `timestamp`: when the message was produced (epoch ms, from the record). */
  onValue: (value: Buffer, position: { partition: number; offset: string; timestamp: number }) => void;
  logger: Logger;
  /** How long start waits for the group join before going on with a warning. */
  joinTimeoutMs?: number;
}

/**
 * Subscribes and runs a consumer; resolves once the group is joined (or the
 * join timeout passed), so callers know that messages from now on are seen.
 */
export async function startValueConsumer(options: ValueConsumerOptions): Promise<Consumer> {
  const { kafka, topic, groupId, onValue, logger } = options;
  await ensureTopic(kafka, topic);
  // An idle fetch returns after maxWaitTime; a short one keeps shutdown (which
  // waits for the fetch in progress) quick. Messages still arrive at once.
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 1_000 });
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: options.fromBeginning ?? false });
    const joined = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), options.joinTimeoutMs ?? 30_000);
      const remove = consumer.on(consumer.events.GROUP_JOIN, () => {
        clearTimeout(timer);
        remove();
        resolve(true);
      });
    });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        if (message.value === null) {
          logger.warn({ topic, partition, offset: message.offset }, 'ignored a Kafka message without a value');
          return;
        }
        onValue(message.value, { partition, offset: message.offset, timestamp: Number(message.timestamp) });
      },
    });
    if (!(await joined)) logger.warn({ topic, groupId }, 'Kafka consumer has not joined its group yet; going on');
    return consumer;
  } catch (error) {
    await consumer.disconnect().catch(() => undefined);
    throw new Error(`starting the Kafka consumer of ${topic} (group ${groupId}): ${(error as Error).message}`, { cause: error });
  }
}
