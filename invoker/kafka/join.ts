/**
 * Joining Kafka in the background, and staying aware of the broker after.
 * A restarted invoker takes 18-30 s to join its group (the group waits out
 * its old member), and HTTP push must not wait for that: the invoker is ready
 * for HTTP first, and this keeps trying with backoff until the side has joined
 * and pings, then probes the broker so readiness can report an outage without
 * a broker call on the probe's path.
 */
import type { Admin, Kafka } from 'kafkajs';
import { HEALTH_CHECK_TIMEOUT_MS, runCheck } from '../health/check.js';
import type { Logger } from '../telemetry/logger.js';

/** What joining needs of the Kafka side (index.ts's KafkaSide has it). */
export interface JoinableSide {
  readonly kafka: Kafka;
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface KafkaJoinOptions {
  side: JoinableSide;
  logger: Logger;
  /** How often the broker is asked whether it answers once joined. Default HEALTH_CHECK_TIMEOUT_MS. */
  probeIntervalMs?: number;
  /** Backoff after failed attempt `attempt` (1-based). Default 1 s doubling, at most 30 s. */
  retryDelayMs?: (attempt: number) => number;
}

export interface KafkaJoin {
  /** Starts the attempts in the background; never rejects, failures are logged and retried. */
  begin(): void;
  /** Whether the side has joined its group and pings. */
  joined(): boolean;
  /** What is wrong: the last failed attempt, or a broker that stopped answering. Undefined when all is well. */
  problem(): string | undefined;
  /** Resolves once joined; never if it never joins. */
  whenJoined(): Promise<void>;
  /** No further attempts; an attempt under way ends first (so that what it started can be closed), and the probe stops. */
  stop(): Promise<void>;
  /** Disconnects the probe's admin client, then the side's clients. */
  close(): Promise<void>;
}

const defaultRetryDelayMs = (attempt: number) => Math.min(30_000, 1_000 * 2 ** Math.min(attempt - 1, 5));

export function createKafkaJoin(options: KafkaJoinOptions): KafkaJoin {
  const { side, logger } = options;
  const retryDelayMs = options.retryDelayMs ?? defaultRetryDelayMs;
  const probeIntervalMs = options.probeIntervalMs ?? HEALTH_CHECK_TIMEOUT_MS;
  let joined = false;
  let problem: string | undefined = 'not yet connected';
  let stopping = false;
  let admin: Admin | undefined;
  let probe: NodeJS.Timeout | undefined;
  let attempts: Promise<void> | undefined;
  let wakeUp: (() => void) | undefined;
  let markJoined: () => void = () => undefined;
  const whenJoined = new Promise<void>((resolve) => (markJoined = resolve));

  const startProbe = (client: Admin) => {
    probe = setInterval(() => {
      void runCheck('kafka', () => client.describeCluster()).then((result) => {
        if (result.ok === (problem === undefined)) return;
        problem = result.ok ? undefined : `the broker does not answer: ${result.detail ?? ''}`;
        if (result.ok) logger.info('Kafka answers again');
        else logger.warn({ problem }, 'Kafka does not answer: HTTP push goes on, the overflow waits');
      });
    }, probeIntervalMs);
    probe.unref();
  };

  const attempt = async (): Promise<void> => {
    for (let n = 1; !stopping; n++) {
      try {
        await side.start();
        const client = side.kafka.admin();
        await client.connect();
        admin = client;
        joined = true;
        problem = undefined;
        // A stop during the attempt has no probe to clear yet: none is started after it.
        if (!stopping) startProbe(client);
        markJoined();
        logger.info({ attempt: n }, 'Kafka side started: consuming invoker topic, sending health pings');
        return;
      } catch (error) {
        problem = (error as Error).message;
        const retryInMs = retryDelayMs(n);
        logger.error({ err: error, attempt: n, retryInMs }, 'starting the Kafka side failed; HTTP push goes on, retrying');
        // A stop cuts the wait short, so that the shutdown does not sit out the backoff.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, retryInMs);
          timer.unref();
          wakeUp = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wakeUp = undefined;
      }
    }
  };

  return {
    begin() {
      attempts ??= attempt();
    },
    joined: () => joined,
    problem: () => problem,
    whenJoined: () => whenJoined,
    async stop() {
      stopping = true;
      clearInterval(probe);
      wakeUp?.();
      await attempts;
      clearInterval(probe);
    },
    async close() {
      await admin?.disconnect();
      await side.close();
    },
  };
}
