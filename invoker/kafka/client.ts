/**
 * The kafkajs client the Kafka side shares: one `Kafka` instance, from which
 * the feed, the completion producer, the health pinger and the topic manager
 * each open their own connections.
 */
import { Kafka, logLevel, type KafkaConfig, type LogEntry, type logCreator } from 'kafkajs';
import type { Logger } from '../telemetry/logger.js';
import { fixKafkajsRequestQueue } from './request-queue-fix.js';

export interface KafkaClientOptions {
  brokers: string[];
  /** Kafka client id; shows up in broker logs and quotas. */
  clientId: string;
  logger: Logger;
  /** Further kafkajs settings (ssl, sasl, timeouts); brokers/clientId/logging above win. */
  overrides?: Omit<KafkaConfig, 'brokers' | 'clientId' | 'logCreator' | 'logLevel'>;
}

export function createKafkaClient(options: KafkaClientOptions): Kafka {
  fixKafkajsRequestQueue();
  return new Kafka({
    connectionTimeout: 3000,
    requestTimeout: 30_000,
    ...options.overrides,
    brokers: options.brokers,
    clientId: options.clientId,
    // kafkajs filters by its own level before calling the creator; pino filters again by its own.
    logLevel: logLevel.INFO,
    logCreator: pinoLogCreator(options.logger),
  });
}

/** Routes kafkajs log lines into our structured log, under `component: "kafkajs"`. */
export function pinoLogCreator(logger: Logger): logCreator {
  const child = logger.child({ component: 'kafkajs' });
  return () => (entry: LogEntry) => {
    const { message, timestamp: _timestamp, ...extra } = entry.log;
    const fields = { namespace: entry.namespace, ...extra };
    switch (kafkajsLevel(entry)) {
      case logLevel.ERROR:
        child.error(fields, message);
        break;
      case logLevel.WARN:
        child.warn(fields, message);
        break;
      case logLevel.INFO:
        child.info(fields, message);
        break;
      default:
        child.debug(fields, message);
    }
  };
}

function kafkajsLevel(entry: LogEntry): logLevel {
  // kafkajs logs every protocol error response at ERROR from the connection
  // ("Response Produce(...)"), before the caller sees the error. The callers
  // here report those errors with what they were doing (or handle them, as a
  // MESSAGE_TOO_LARGE or an already existing topic), so the raw line is debug.
  if (entry.namespace === 'Connection' && entry.log.message.startsWith('Response ')) return logLevel.DEBUG;
  // The completion producer bounds its retries on purpose (a drain must end);
  // kafkajs warns about that at every start.
  if (entry.log.message.startsWith('Limiting retries for the idempotent producer')) return logLevel.DEBUG;
  // The group's normal life (joins, stops) is logged by the feed itself.
  if (entry.level === logLevel.INFO) return logLevel.DEBUG;
  return entry.level;
}
