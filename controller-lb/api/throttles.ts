/**
 * Upstream's activation throttles (ActivationThrottler, RateThrottler):
 * invocations per namespace per minute and invocations in flight per
 * namespace; 429 with upstream's texts. A namespace's limits document
 * (`invocationsPerMinute`, `concurrentInvocations`) overrides the
 * configured defaults; 0 turns a throttle off (the default here: the
 * controller ships with throttling off, as documented in README).
 */
import type { Identity } from '../../protocol/index.js';
import { ApiError, Messages } from './errors.js';

export interface ThrottleConfig {
  /** Default invocations per minute per namespace; 0: unlimited. */
  invocationsPerMinute: number;
  /** Default invocations in flight per namespace; 0: unlimited. */
  concurrentInvocations: number;
}

export interface Throttle {
  /** Admits one invocation or throws ApiError 429; call the result when it is over. */
  admit(identity: Identity): () => void;
}

function userLimit(identity: Identity, field: string, fallback: number): number {
  const value = identity.limits[field];
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : fallback;
}

export function createThrottle(config: ThrottleConfig, now: () => number = Date.now): Throttle {
  /** Per namespace: the minute (epoch minutes) and its count, like upstream's RateThrottler. */
  const rates = new Map<string, { minute: number; count: number }>();
  const inFlight = new Map<string, number>();
  return {
    admit(identity) {
      const ns = identity.namespace.name;
      const perMinute = userLimit(identity, 'invocationsPerMinute', config.invocationsPerMinute);
      const concurrent = userLimit(identity, 'concurrentInvocations', config.concurrentInvocations);
      if (perMinute > 0) {
        const minute = Math.floor(now() / 60_000);
        let rate = rates.get(ns);
        if (rate === undefined || rate.minute !== minute) {
          rate = { minute, count: 0 };
          rates.set(ns, rate);
        }
        if (rate.count >= perMinute) throw new ApiError(429, Messages.tooManyRequests(rate.count + 1, perMinute));
        rate.count++;
      }
      const current = inFlight.get(ns) ?? 0;
      if (concurrent > 0 && current >= concurrent) throw new ApiError(429, Messages.tooManyConcurrentRequests(current + 1, concurrent));
      inFlight.set(ns, current + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (inFlight.get(ns) ?? 1) - 1;
        if (left <= 0) inFlight.delete(ns);
        else inFlight.set(ns, left);
      };
    },
  };
}
