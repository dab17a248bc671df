/**
 * Picks the invoker for an activation (upstream
 * ShardingContainerPoolBalancer.schedule): start at the action's home invoker
 * and step through the others by a step coprime to their number, taking the
 * first healthy one with room; if none has room the system is overloaded and
 * a random healthy invoker gets the activation anyway.
 *
 * Synchronous on purpose: probe and acquire happen without yielding, so two
 * activations can never both take the last slot.
 */
import { pairwiseCoprimeNumbersUntil, placement } from './hashing.js';
import type { InvokerPool, InvokerState } from './invoker-state.js';

export interface SchedulingRequest {
  /** The invoking namespace (the user's), first half of the hash. */
  namespace: string;
  /** `path/name` without version, second half of the hash. */
  actionPathAndName: string;
  /** Identifies the action for concurrent slots: `path/name@version`. */
  actionKey: string;
  memoryMb: number;
  /** Activations one container runs at once (action limit `concurrency`). */
  concurrency: number;
  /** Blackbox (docker image) actions go to the blackbox share of the invokers. */
  blackbox: boolean;
}

export interface Scheduled {
  invoker: InvokerState;
  /** No invoker had room: the slot was force-acquired on a random healthy invoker. */
  overloaded: boolean;
}

export class NoInvokersAvailableError extends Error {
  override readonly name: string = 'NoInvokersAvailableError';
  constructor(detail: string) {
    super(`No invokers available: ${detail}`);
  }
}

export interface SchedulerOptions {
  /** Share of invokers (from the back) reserved for blackbox actions; upstream default 0.1. */
  blackboxFraction?: number;
  /** In [0, 1); for the overload pick. Injectable so tests can pin it. */
  random?: () => number;
}

export class Scheduler {
  readonly #pool: InvokerPool;
  readonly #blackboxFraction: number;
  readonly #random: () => number;
  /** Step sizes by invoker count: recomputed only when the count changes. */
  readonly #stepSizes = new Map<number, number[]>();

  constructor(pool: InvokerPool, options: SchedulerOptions = {}) {
    const fraction = options.blackboxFraction ?? 0.1;
    if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`blackboxFraction must be within [0, 1], got ${fraction}`);
    this.#pool = pool;
    this.#blackboxFraction = fraction;
    this.#random = options.random ?? Math.random;
  }

  /**
   * The invokers an action may run on. Upstream: managed actions on the first
   * `max(1, ceil(n * (1 - f)))`, blackbox actions on the last
   * `max(1, floor(n * f))`; the two ranges may overlap on small clusters.
   */
  candidates(blackbox: boolean): readonly InvokerState[] {
    const all = this.#pool.all();
    const n = all.length;
    if (n === 0) return all;
    if (blackbox) return all.slice(n - Math.max(1, Math.floor(n * this.#blackboxFraction)));
    return all.slice(0, Math.max(1, Math.ceil(n * (1 - this.#blackboxFraction))));
  }

  /** Acquires the slot and returns where it is; throws NoInvokersAvailableError. */
  schedule(request: SchedulingRequest, now: number): Scheduled {
    const invokers = this.candidates(request.blackbox);
    const n = invokers.length;
    const kind = request.blackbox ? 'blackbox' : 'managed';
    if (n === 0) throw new NoInvokersAvailableError(`no ${kind} invokers are known`);

    const { home, step } = placement(request.namespace, request.actionPathAndName, n, this.#steps(n));
    const { actionKey, concurrency, memoryMb } = request;
    // n + 1 probes (home, home + step, ...): with a step coprime to n the
    // first n visit every invoker once; upstream's extra probe revisits home.
    let index = home;
    for (let probe = 0; probe <= n; probe++) {
      const invoker = invokers[index] as InvokerState;
      if (invoker.health.status(now) === 'up' && invoker.slots.tryAcquireConcurrent(actionKey, concurrency, memoryMb)) {
        return { invoker, overloaded: false };
      }
      index = (index + step) % n;
    }

    const healthy = invokers.filter((invoker) => invoker.health.status(now) === 'up');
    const chosen = healthy[Math.floor(this.#random() * healthy.length)];
    if (chosen === undefined) throw new NoInvokersAvailableError(`none of the ${n} ${kind} invokers is up`);
    chosen.slots.forceAcquireConcurrent(actionKey, concurrency, memoryMb);
    return { invoker: chosen, overloaded: true };
  }

  #steps(n: number): number[] {
    let steps = this.#stepSizes.get(n);
    if (steps === undefined) {
      steps = pairwiseCoprimeNumbersUntil(n);
      this.#stepSizes.set(n, steps);
    }
    return steps;
  }
}
