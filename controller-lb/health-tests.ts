/**
 * Health test actions (upstream InvokerPool's test action): sent to invokers
 * that are unhealthy or unresponsive, every `intervalMs`, and right after
 * each success while unhealthy, so that an invoker can prove itself healthy
 * again. They hold no slot and have no forced completion; a test that never
 * answers is forgotten after the forced-completion delay of a 0 ms action.
 * The load balancer (load-balancer.ts) owns the transports and the results.
 */
import { randomUUID } from 'node:crypto';
import {
  INVOKER_HEALTH_TRANSACTION,
  generateActivationId,
  type ActivationMessage,
  type ControllerInstanceId,
  type FullyQualifiedEntityName,
  type Identity,
} from '../protocol/index.js';
import type { Logger } from '../invoker/telemetry/logger.js';
import type { InvocationResult, InvokerPool, InvokerState } from './invoker-state.js';

export interface HealthTestOptions {
  /** Between test actions to an invoker that stays unusable. Upstream: 1 min. */
  intervalMs: number;
  /** How often invokers are checked for needing a test. */
  checkIntervalMs: number;
}

const HEALTH_NAMESPACE = 'whisk.system';

/** The health test action of controller C (upstream InvokerPool.healthAction). */
export function healthTestActionName(controller: ControllerInstanceId): FullyQualifiedEntityName {
  return { path: HEALTH_NAMESPACE, name: `invokerHealthTestAction${controller.asString}`, version: '0.0.1' };
}

export interface HealthTestsOptions extends HealthTestOptions {
  controller: ControllerInstanceId;
  pool: InvokerPool;
  logger: Logger;
  now: () => number;
  /** How long a test that never answered is remembered. */
  forgetAfterMs: number;
  /** Delivers a message to one given invoker; resolves when its completion was handled. */
  send: (invoker: InvokerState, msg: ActivationMessage) => Promise<void>;
  /** Counts a test's result for the invoker (the balancer's bookkeeping, which may send the next test). */
  recordResult: (index: number, result: InvocationResult, now: number, incarnation: number) => void;
}

export class HealthTests {
  readonly #options: HealthTestsOptions;
  /** Health test activations in flight: activation id -> invoker index. */
  readonly #tests = new Map<string, { invoker: number; incarnation: number; timer: NodeJS.Timeout }>();
  readonly #lastTestAt = new Map<number, number>();
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  constructor(options: HealthTestsOptions) {
    this.#options = options;
    this.#timer = setInterval(() => this.#sendDue(), options.checkIntervalMs);
    this.#timer.unref();
  }

  /** Whether `activationId` is a health test still waiting for its answer. */
  has(activationId: string): boolean {
    return this.#tests.has(activationId);
  }

  /** A test's answer came (or its push failed): counted once, then forgotten. */
  finish(activationId: string, result: InvocationResult): void {
    const test = this.#tests.get(activationId);
    if (test === undefined) return;
    clearTimeout(test.timer);
    this.#tests.delete(activationId);
    this.#options.recordResult(test.invoker, result, this.#options.now(), test.incarnation);
  }

  /** Sends a test to invoker `index` unless one is in flight to it already. */
  send(index: number, now: number): void {
    const invoker = this.#options.pool.get(index);
    if (this.#closed || invoker === undefined) return;
    if ([...this.#tests.values()].some((test) => test.invoker === index)) return;
    this.#lastTestAt.set(index, now);
    const msg = this.#message(now);
    const activationId = msg.activationId;
    // Upstream health tests hold no slot and have no forced completion; the
    // timer only forgets a test that never answered.
    const timer = setTimeout(() => this.#tests.delete(activationId), this.#options.forgetAfterMs);
    timer.unref();
    this.#tests.set(activationId, { invoker: index, incarnation: invoker.health.incarnation, timer });
    this.#options.logger.info({ invoker: `invoker${index}`, activationId }, 'sending a health test action');
    this.#options.send(invoker, msg).catch((error: unknown) => {
      this.#options.logger.warn({ invoker: `invoker${index}`, activationId, error: (error as Error).message }, 'health test action failed');
      this.finish(activationId, 'systemError');
    });
  }

  /** No more tests; those in flight are forgotten. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const [id, test] of this.#tests) {
      clearTimeout(test.timer);
      this.#tests.delete(id);
    }
  }

  #sendDue(): void {
    if (this.#closed) return;
    const now = this.#options.now();
    for (const invoker of this.#options.pool.all()) {
      const status = invoker.health.status(now);
      if (status !== 'unhealthy' && status !== 'unresponsive') continue;
      const last = this.#lastTestAt.get(invoker.index);
      if (last === undefined || now - last >= this.#options.intervalMs) this.send(invoker.index, now);
    }
  }

  #message(now: number): ActivationMessage {
    const uuid = randomUUID();
    const user: Identity = {
      subject: HEALTH_NAMESPACE,
      namespace: { name: HEALTH_NAMESPACE, uuid },
      authkey: { api_key: `${uuid}:${generateActivationId()}${generateActivationId()}` },
      rights: [],
      limits: {},
    };
    return {
      transid: { id: INVOKER_HEALTH_TRANSACTION, start: now },
      action: healthTestActionName(this.#options.controller),
      revision: null,
      user,
      activationId: generateActivationId(),
      rootControllerIndex: this.#options.controller,
      blocking: false,
      initArgs: [],
      lockedArgs: {},
    };
  }
}
