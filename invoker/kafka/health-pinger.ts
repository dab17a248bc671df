/**
 * Health pings on the `health` topic (wire spec section 4): every controller
 * reads them to decide which invokers get work. An invoker whose pings stop
 * is marked offline after a few seconds; `isEnabled: false` takes it out of
 * scheduling at once (disable, drain, shutdown).
 *
 * Pings are fire-and-forget with acks: 1 and no retries: the next tick is the
 * retry. A slow broker must not pile pings up, so a tick whose predecessor is
 * still unanswered is skipped. The disabled ping on `disable()`/`stop()` is
 * awaited (bounded by `sendTimeoutMs`) because it is the last word.
 */
import { Partitioners, type Kafka, type Producer } from 'kafkajs';
import { serializePingMessage, type InvokerInstanceId } from '../../protocol/index.js';
import type { Logger } from '../telemetry/logger.js';
import { HEALTH_TOPIC, describeKafkaError } from './topics.js';

export interface HealthPingerOptions {
  kafka: Kafka;
  instance: InvokerInstanceId;
  logger: Logger;
  /** Default 1000 ms, as upstream. */
  intervalMs?: number;
  /** Default `health`. */
  topic?: string;
  /** Broker-side acknowledgement timeout of one ping, and the bound on awaiting the final one. Default 1000 ms. */
  sendTimeoutMs?: number;
  /** Whether pings start enabled (default true). */
  enabled?: boolean;
}

export interface HealthPinger {
  /** Connects and sends the first ping; rejects with what failed. */
  start(): Promise<void>;
  /** Resumes enabled pings (one right away). */
  enable(): void;
  /** Stops the periodic pings and sends one with `isEnabled: false`. Never rejects. */
  disable(): Promise<void>;
  isEnabled(): boolean;
  /** Sends the final `isEnabled: false` ping, then disconnects. Never rejects. */
  stop(): Promise<void>;
}

export function createHealthPinger(options: HealthPingerOptions): HealthPinger {
  const log = options.logger.child({ component: 'kafka-health' });
  const topic = options.topic ?? HEALTH_TOPIC;
  const intervalMs = options.intervalMs ?? 1000;
  const sendTimeoutMs = options.sendTimeoutMs ?? 1000;
  const producer: Producer = options.kafka.producer({
    retry: { retries: 0 },
    allowAutoTopicCreation: true,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  let enabled = options.enabled ?? true;
  let state: 'new' | 'running' | 'stopped' = 'new';
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let skipped = 0;
  let failing = false;
  let stopping: Promise<void> | undefined;

  const ping = (isEnabled: boolean): Promise<void> => {
    const value = serializePingMessage({ instance: options.instance, isEnabled });
    const sent = producer
      .send({ topic, acks: 1, timeout: sendTimeoutMs, messages: [{ value }] })
      .then(
        () => {
          if (failing) log.info('health pings go through again');
          failing = false;
        },
        (error: unknown) => {
          // One line per outage, not one per second.
          if (!failing) log.warn({ err: describeKafkaError(error), topic }, 'health ping failed; controllers may mark this invoker offline');
          failing = true;
        },
      );
    inFlight = sent;
    void sent.finally(() => {
      if (inFlight === sent) inFlight = undefined;
    });
    return sent;
  };

  const tick = () => {
    if (!enabled || state !== 'running') return;
    if (inFlight) {
      skipped++;
      log.debug({ skipped }, 'previous health ping still pending; skipping this tick');
      return;
    }
    void ping(true);
  };

  const startTimer = () => {
    if (timer) return;
    timer = setInterval(tick, intervalMs);
    timer.unref();
  };
  const stopTimer = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
  };

  /** Waits for `p` at most sendTimeoutMs: shutdown must not hang on a dead broker. */
  const bounded = async (p: Promise<void> | undefined): Promise<void> => {
    if (!p) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([p, new Promise<void>((r) => (t = setTimeout(r, sendTimeoutMs)))]);
    clearTimeout(t);
  };

  const sendDisabled = async (): Promise<void> => {
    await bounded(inFlight);
    await bounded(ping(false));
  };

  return {
    async start() {
      if (state !== 'new') return;
      try {
        await producer.connect();
      } catch (error) {
        throw new Error(`connecting the health ping producer: ${describeKafkaError(error)}`, { cause: error });
      }
      state = 'running';
      log.info({ topic, intervalMs, enabled }, 'sending health pings');
      if (enabled) {
        void ping(true);
        startTimer();
      }
    },

    enable() {
      if (enabled) return;
      enabled = true;
      if (state !== 'running') return;
      log.info('invoker enabled: health pings resume');
      tick();
      startTimer();
    },

    async disable() {
      if (!enabled) return;
      enabled = false;
      stopTimer();
      if (state !== 'running') return;
      log.info('invoker disabled: sending a disabled health ping');
      await sendDisabled();
    },

    isEnabled: () => enabled,

    stop() {
      stopping ??= (async () => {
        stopTimer();
        enabled = false;
        if (state !== 'running') {
          state = 'stopped';
          return;
        }
        await sendDisabled();
        state = 'stopped';
        await producer.disconnect().catch((error: unknown) => log.warn({ err: error }, 'disconnecting the health ping producer failed'));
      })();
      return stopping;
    },
  };
}
