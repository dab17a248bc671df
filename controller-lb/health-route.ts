/**
 * `GET /health`: the controller's own health. Always 200 while it serves;
 * `status` is `degraded` while Kafka is configured but unreachable: HTTP push
 * goes on, activations that would overflow to Kafka are refused with 503 and
 * `Retry-After` until it is back.
 */
import type { FastifyInstance } from 'fastify';
import type { InvokerPool } from './invoker-state.js';
import type { KafkaPathHealth } from './kafka-path.js';

export interface ControllerHealthDeps {
  pool: InvokerPool;
  /** Undefined without Kafka. */
  kafka: { health(): KafkaPathHealth } | undefined;
  now?: () => number;
}

export function registerHealthRoute(app: FastifyInstance, deps: ControllerHealthDeps): void {
  const now = deps.now ?? Date.now;
  app.get('/health', async () => {
    const kafka = deps.kafka?.health();
    const invokers = deps.pool.statuses(now());
    return {
      status: kafka !== undefined && !kafka.available ? 'degraded' : 'ok',
      kafka: kafka === undefined ? { configured: false } : { configured: true, ...kafka, since: new Date(kafka.since).toISOString() },
      invokers,
    };
  });
}
