/**
 * Keeps the invoker pool's view of who is alive, from two sources that run
 * side by side (InvokerHealth combines them):
 * - Kafka, when configured: the invokers' pings on `<prefix>health` (group
 *   `<prefix>health<C>`), as upstream; an invoker appears with its first ping, sized
 *   by the memory it reports.
 * - HTTP, for every invoker with a URL: a sign of life whenever its
 *   `GET /health/ready` answers 200, polled every few seconds; anything else
 *   takes it down at once.
 * So a Kafka outage takes away the overflow path, not the invokers: those
 * that answer their probes stay up for HTTP push. This is also where status
 * changes are logged.
 */
import { Agent } from 'undici';
import type { Consumer, Kafka } from 'kafkajs';
import { ProtocolParseError, parsePingMessage, type ControllerInstanceId, type PingMessage } from '../protocol/index.js';
import type { Logger } from '../invoker/telemetry/logger.js';
import { configuredInvokerId, DEFAULT_HEALTH_OPTIONS, type InvokerPool } from './invoker-state.js';
import { startValueConsumer } from './kafka-support.js';
import { topicNames } from '../invoker/kafka/topics.js';
import type { PushTlsOptions } from './push-client.js';

export interface HealthMonitor {
  stop(): Promise<void>;
}

/** Upstream's topic name; tests use their own. */
export const HEALTH_TOPIC = 'health';

function logTransitions(pool: InvokerPool, logger: Logger, now: number): void {
  for (const { index, from, to } of pool.observe(now)) {
    const fields = { invoker: `invoker${index}`, from, to };
    if (to === 'up') logger.info(fields, `invoker${index} is up`);
    else logger.warn(fields, `invoker${index} is ${to}`);
  }
}

export interface KafkaHealthMonitorOptions {
  kafka: Kafka;
  controller: ControllerInstanceId;
  pool: InvokerPool;
  logger: Logger;
  /** Upstream's `whisk.kafka.topics.prefix` (KAFKA_TOPIC_PREFIX); names the topic and the group. Default empty. */
  topicPrefix?: string;
  /** Default `<prefix>health`. */
  topic?: string;
  fromBeginning?: boolean;
  /** Pings produced longer ago than this are ignored (default: the offline window, 10 s). */
  staleAfterMs?: number;
  /** How often status changes by time alone (missed pings) are checked. */
  observeIntervalMs?: number;
  now?: () => number;
}

export async function startKafkaHealthMonitor(options: KafkaHealthMonitorOptions): Promise<HealthMonitor> {
  const { kafka, controller, pool, logger } = options;
  const now = options.now ?? Date.now;
  const names = topicNames(options.topicPrefix ?? '');
  const topic = options.topic ?? names.health;
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_HEALTH_OPTIONS.offlineAfterMs;
  const consumer: Consumer = await startValueConsumer({
    kafka,
    topic,
    groupId: names.healthGroup(controller),
    ...(options.fromBeginning !== undefined ? { fromBeginning: options.fromBeginning } : {}),
    logger,
    onValue: (value, position) => {
      // The group resumes from its committed offset, so pings sent while this
      // controller was away are replayed; one older than the offline window
      // says nothing about whether that invoker is alive now.
      if (now() - position.timestamp > staleAfterMs) return;
      let ping: PingMessage;
      try {
        ping = parsePingMessage(value);
      } catch (error) {
        const reason = error instanceof ProtocolParseError ? error.message : `unexpected: ${String(error)}`;
        logger.warn({ topic, ...position, error: reason }, 'ignored an invalid health ping');
        return;
      }
      try {
        pool.recordPing(ping.instance, now(), ping.isEnabled ?? true, 'ping');
      } catch (error) {
        logger.warn({ topic, ...position, error: (error as Error).message }, 'ignored a health ping');
        return;
      }
      // Report an invoker coming up at once rather than on the next tick.
      logTransitions(pool, logger, now());
    },
  });
  const timer = setInterval(() => logTransitions(pool, logger, now()), options.observeIntervalMs ?? 1_000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await consumer.disconnect().catch((error: unknown) => logger.warn({ error: String(error) }, 'closing the health consumer'));
    },
  };
}

export interface StaticInvoker {
  /** Base URL; `/health/ready` and `/invoke` are below it. */
  url: string;
  userMemoryMb: number;
}

export interface StaticHealthMonitorOptions {
  /** Index = invoker id. */
  invokers: readonly StaticInvoker[];
  pool: InvokerPool;
  logger: Logger;
  intervalMs?: number;
  probeTimeoutMs?: number;
  tls?: PushTlsOptions | undefined;
  now?: () => number;
}

/**
 * Registers the configured invokers and probes them. A 200 counts as a ping;
 * anything else takes the invoker down at once (a draining invoker answers 503
 * and must stop getting work) until the next 200.
 */
export function startStaticHealthMonitor(options: StaticHealthMonitorOptions): HealthMonitor {
  const { invokers, pool, logger } = options;
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? 2_000;
  const probeTimeoutMs = options.probeTimeoutMs ?? 2_000;
  const tls = options.tls;
  const agent = new Agent({
    connect: {
      timeout: probeTimeoutMs,
      ...(tls?.cert !== undefined ? { cert: tls.cert } : {}),
      ...(tls?.key !== undefined ? { key: tls.key } : {}),
      ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
    },
  });
  // Registered once with the configured memory; pings may resize them later,
  // and probes must not size them back.
  invokers.forEach((invoker, index) => {
    if (pool.get(index) === undefined) pool.register(configuredInvokerId(index, invoker.userMemoryMb));
  });
  const lastProblem = new Map<number, string>();

  const probe = async (index: number, invoker: StaticInvoker): Promise<void> => {
    const url = new URL(invoker.url);
    const path = `${url.pathname.replace(/\/+$/, '')}/health/ready`;
    let problem: string | undefined;
    try {
      const response = await agent.request({ origin: url.origin, path, method: 'GET', signal: AbortSignal.timeout(probeTimeoutMs) });
      await response.body.dump();
      if (response.statusCode !== 200) problem = `GET ${url.origin}${path} answered HTTP ${response.statusCode}`;
    } catch (error) {
      problem = `GET ${url.origin}${path}: ${(error as Error).message}`;
    }
    pool.get(index)?.health.recordPing(now(), problem === undefined, 'probe');
    // Log a failing probe once per distinct problem, not every interval.
    if (problem !== undefined && lastProblem.get(index) !== problem) logger.warn({ invoker: `invoker${index}`, problem }, 'readiness probe failed');
    if (problem === undefined) lastProblem.delete(index);
    else lastProblem.set(index, problem);
  };

  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let round: Promise<void> = Promise.resolve();
  const run = (): void => {
    round = Promise.all(invokers.map((invoker, index) => probe(index, invoker))).then(() => {
      logTransitions(pool, logger, now());
      // Scheduled after the round so that slow probes never overlap.
      if (!stopped) {
        timer = setTimeout(run, intervalMs);
        timer.unref();
      }
    });
  };
  run();

  return {
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await round;
      await agent.close();
    },
  };
}
