/**
 * The readiness checks behind `/health/ready`, built from the parts they
 * probe. Ready means HTTP push work can run: the pool and the store are up.
 * Kafka carries only the overflow and the pings, so it joins in the
 * background and, with READINESS_KAFKA=degraded, only degrades readiness.
 */
import type { HealthCheckResult, HealthChecks } from '../http/ops-routes.js';
import { runCheck } from './check.js';

export interface ReadinessParts {
  docker: { ping(): Promise<unknown> };
  records: { health(): { healthy: boolean; lastError?: string | undefined } };
  /** Absent without Kafka brokers. */
  kafka?: { joined(): boolean; problem(): string | undefined } | undefined;
  /** A Kafka problem only degrades readiness (READINESS_KAFKA=degraded). */
  kafkaOptional: boolean;
  draining(): boolean;
}

export interface Readiness extends HealthChecks {
  /** Everything HTTP work needs has started: probes may route work here from now on. */
  markStarted(): void;
}

export function createReadiness(parts: ReadinessParts): Readiness {
  // Probes must not route work to a half-started invoker.
  let started = false;
  return {
    markStarted() {
      started = true;
    },
    draining: () => parts.draining(),
    async checks(): Promise<HealthCheckResult[]> {
      const results = [
        runCheck('startup', async () => {
          if (!started) throw new Error('still starting');
        }),
        runCheck('docker', () => parts.docker.ping()),
        // Optional: while CouchDB is down records wait in the journal and known
        // actions come from the cache, so the invoker still takes HTTP work;
        // failing readiness here would take every invoker out of rotation at
        // the controller for a store outage (it says `degraded` instead).
        runCheck(
          'store',
          async () => {
            const health = parts.records.health();
            if (!health.healthy) throw new Error(health.lastError ?? 'not yet connected');
          },
          { optional: true },
        ),
      ];
      const kafka = parts.kafka;
      if (kafka) {
        // From the Kafka side's background probe, never a broker call on the
        // request path: a hanging broker must not make this probe time out.
        results.push(
          runCheck(
            'kafka',
            async () => {
              const problem = kafka.problem();
              if (!kafka.joined()) throw new Error(`starting: ${problem ?? "joining the invoker topic's group"}`);
              if (problem !== undefined) throw new Error(problem);
            },
            { optional: parts.kafkaOptional },
          ),
        );
      }
      return Promise.all(results);
    },
  };
}
