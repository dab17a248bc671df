/**
 * What the balancer knows about each invoker: its share of the invoker's
 * memory (a semaphore, upstream ForcibleSemaphore/NestedSemaphore) and its
 * health (upstream InvokerPool/InvokerActor).
 *
 * Everything here is synchronous and takes `now` as an argument: the scheduler
 * must test-and-acquire without yielding, and health is computed from
 * timestamps rather than timers, so tests need no clock.
 */
import { megabytes, type InvokerInstanceId } from '../protocol/index.js';

/** Upstream MemoryLimit.MIN_MEMORY: no invoker share is smaller than one minimal container. */
export const MIN_SLOT_MEMORY_MB = 128;

/**
 * Memory permits in MB. `forceAcquire` may drive the count negative: on
 * overload the balancer still places the activation and the invoker queues
 * it; the debt is paid back by later releases before anything else fits.
 */
export class MemorySemaphore {
  #total: number;
  #available: number;

  constructor(totalMb: number) {
    if (!Number.isSafeInteger(totalMb) || totalMb < 0) throw new RangeError(`memory permits must be a non-negative integer, got ${totalMb}`);
    this.#total = totalMb;
    this.#available = totalMb;
  }

  get totalMb(): number {
    return this.#total;
  }

  /** May be negative after forced acquires. */
  get availableMb(): number {
    return this.#available;
  }

  tryAcquire(mb: number): boolean {
    if (this.#available < mb) return false;
    this.#available -= mb;
    return true;
  }

  forceAcquire(mb: number): void {
    this.#available -= mb;
  }

  release(mb: number): void {
    this.#available += mb;
  }

  /** A new size (the invoker reported different memory); memory in use stays in use. */
  resize(totalMb: number): void {
    this.#available += totalMb - this.#total;
    this.#total = totalMb;
  }
}

interface ActionSlots {
  /** Containers' worth of memory held for the action. */
  containers: number;
  /** Free concurrent slots in those containers. */
  free: number;
}

/**
 * Memory plus, for actions with concurrency c > 1, slots within containers:
 * the first activation takes one container's memory and opens c - 1 further
 * slots; the next c - 1 activations take a slot and no memory. A container's
 * memory comes back when all of its c slots are free again (upstream
 * NestedSemaphore with ResizableSemaphore's opportunistic release).
 */
export class NestedSemaphore extends MemorySemaphore {
  readonly #actions = new Map<string, ActionSlots>();

  tryAcquireConcurrent(action: string, maxConcurrent: number, memoryMb: number): boolean {
    return this.#acquire(action, maxConcurrent, memoryMb, false);
  }

  forceAcquireConcurrent(action: string, maxConcurrent: number, memoryMb: number): void {
    this.#acquire(action, maxConcurrent, memoryMb, true);
  }

  releaseConcurrent(action: string, maxConcurrent: number, memoryMb: number): void {
    if (maxConcurrent <= 1) return this.release(memoryMb);
    const slots = this.#actions.get(action);
    if (slots === undefined) throw new Error(`releasing a concurrent slot of ${action}: none is held`);
    slots.free += 1;
    if (slots.free >= maxConcurrent) {
      slots.free -= maxConcurrent;
      slots.containers -= 1;
      this.release(memoryMb);
    }
    if (slots.containers <= 0 && slots.free <= 0) this.#actions.delete(action);
  }

  /** Free concurrent slots held for `action` (for tests and diagnostics). */
  freeSlots(action: string): number {
    return this.#actions.get(action)?.free ?? 0;
  }

  #acquire(action: string, maxConcurrent: number, memoryMb: number, force: boolean): boolean {
    if (maxConcurrent <= 1) {
      if (force) {
        this.forceAcquire(memoryMb);
        return true;
      }
      return this.tryAcquire(memoryMb);
    }
    let slots = this.#actions.get(action);
    if (slots !== undefined && slots.free > 0) {
      slots.free -= 1;
      return true;
    }
    if (force) this.forceAcquire(memoryMb);
    else if (!this.tryAcquire(memoryMb)) return false;
    if (slots === undefined) {
      slots = { containers: 0, free: 0 };
      this.#actions.set(action, slots);
    }
    slots.containers += 1;
    slots.free += maxConcurrent - 1;
    return true;
  }
}

/** Upstream's names, as `GET /invokers` reports them. */
export type InvokerStatus = 'up' | 'unhealthy' | 'unresponsive' | 'down';

/** How an activation on an invoker ended, as far as its health goes. */
export type InvocationResult = 'success' | 'systemError' | 'timeout';

export interface HealthOptions {
  /** Without a ping for longer than this, the invoker is down. Upstream: 10 s. */
  offlineAfterMs: number;
  /** Results remembered. Upstream: 10. */
  windowSize: number;
  /** More system errors (timeouts) than this in the window -> unhealthy (unresponsive). Upstream: 3. */
  errorTolerance: number;
}

export const DEFAULT_HEALTH_OPTIONS: HealthOptions = { offlineAfterMs: 10_000, windowSize: 10, errorTolerance: 3 };

export interface StatusTransition {
  from: InvokerStatus;
  to: InvokerStatus;
}

type WindowState = 'up' | 'unhealthy' | 'unresponsive';

/**
 * Where a sign of life comes from: a Kafka ping on `health`, or an HTTP
 * readiness probe (`GET /health/ready`) of an invoker with a URL.
 */
export type SignSource = 'ping' | 'probe';

/**
 * One invoker's health (upstream InvokerActor). Being online is a matter of
 * its signs of life, from up to two sources (Kafka pings, HTTP readiness
 * probes): it is online while at least one source gave a positive sign within
 * the offline window and no source's latest sign within it is negative (a
 * disabled ping, a failed probe). So a Kafka outage, which stops the pings,
 * leaves an invoker that still answers its probes up for HTTP push.
 *
 * The results window decides between up, unhealthy and unresponsive. As
 * upstream, only an up invoker is demoted by errors, and any state returns
 * to up once the whole window is successes (which is what the health test
 * actions are for). Each return from down is a new incarnation: results of
 * activations sent to an earlier one (lost by a crash, timing out minutes
 * later) are not counted against it.
 */
export class InvokerHealth {
  readonly #options: HealthOptions;
  readonly #signs = new Map<SignSource, { at: number; ok: boolean }>();
  #state: WindowState = 'up';
  #results: InvocationResult[] = [];
  #incarnation = 0;

  constructor(options: HealthOptions = DEFAULT_HEALTH_OPTIONS) {
    this.#options = options;
  }

  status(now: number): InvokerStatus {
    return this.#online(now) ? this.#state : 'down';
  }

  #online(now: number): boolean {
    let online = false;
    for (const sign of this.#signs.values()) {
      if (now - sign.at > this.#options.offlineAfterMs) continue;
      if (!sign.ok) return false;
      online = true;
    }
    return online;
  }

  /** Whether the latest sign of any source says disabled or failed. */
  get disabled(): boolean {
    return [...this.#signs.values()].some((sign) => !sign.ok);
  }

  /** Counts the returns from down: results are counted only for activations sent to the current one. */
  get incarnation(): number {
    return this.#incarnation;
  }

  /**
   * A sign of life from `source`. `enabled: false` (a disabled invoker's
   * ping, a failed readiness probe) takes it down. Coming back from down
   * starts a new incarnation with an empty window: results from before an
   * outage say nothing about the restarted invoker. (Upstream instead goes
   * through unhealthy and waits for a health test action to succeed.)
   */
  recordPing(now: number, enabled: boolean = true, source: SignSource = 'ping'): StatusTransition | undefined {
    const from = this.status(now);
    this.#signs.set(source, { at: now, ok: enabled });
    if (from === 'down' && this.#online(now)) {
      this.#results = [];
      this.#state = 'up';
      this.#incarnation++;
    }
    return transition(from, this.status(now));
  }

  /**
   * The result of an activation. With `incarnation` (the one current when it
   * was sent), a result for an earlier incarnation is ignored.
   */
  recordResult(result: InvocationResult, now: number, incarnation?: number): StatusTransition | undefined {
    if (incarnation !== undefined && incarnation !== this.#incarnation) return undefined;
    const from = this.status(now);
    this.#results.push(result);
    if (this.#results.length > this.#options.windowSize) this.#results.shift();
    const systemErrors = this.#results.filter((r) => r === 'systemError').length;
    const timeouts = this.#results.filter((r) => r === 'timeout').length;
    if (this.#state === 'up' && systemErrors > this.#options.errorTolerance) this.#state = 'unhealthy';
    else if (this.#state === 'up' && timeouts > this.#options.errorTolerance) this.#state = 'unresponsive';
    else if (this.#results.every((r) => r === 'success')) this.#state = 'up';
    return transition(from, this.status(now));
  }
}

function transition(from: InvokerStatus, to: InvokerStatus): StatusTransition | undefined {
  return from === to ? undefined : { from, to };
}

/** One invoker as the balancer sees it. */
export interface InvokerState {
  /** Index in the pool = `instance` of the id = N of `invoker<N>`. */
  readonly index: number;
  /** As last announced (ping) or configured; its userMemory sized the slots. */
  id: InvokerInstanceId;
  readonly slots: NestedSemaphore;
  readonly health: InvokerHealth;
}

export interface InvokerPoolOptions {
  /** Controllers sharing each invoker; each gets userMemory / controllerCount. */
  controllerCount: number;
  health?: Partial<HealthOptions>;
  /**
   * Invoker ids at or above this are refused: ids index an array, and one
   * bogus ping must not allocate millions of placeholders. Default 10000.
   */
  maxInvokers?: number;
}

export interface InvokerSnapshot {
  status: InvokerStatus;
  userMemoryMb: number;
  slotMemoryMb: number;
  availableMb: number;
}

/** This controller's share of an invoker's memory (upstream getInvokerSlot). */
export function slotMemoryMb(userMemoryBytes: number, controllerCount: number): number {
  const mb = Math.floor(userMemoryBytes / (1024 * 1024) / controllerCount);
  return Math.max(mb, MIN_SLOT_MEMORY_MB);
}

/** An invoker id for an invoker known only from configuration (no ping yet). */
export function configuredInvokerId(instance: number, userMemoryMb: number): InvokerInstanceId {
  return { instance, userMemory: megabytes(userMemoryMb), tags: [], dedicatedNamespaces: [] };
}

/**
 * All invokers by index. Invokers appear when configured or when their first
 * ping arrives; gaps (a ping from invoker 3 before 0..2) are filled with
 * placeholders that stay down until they ping, as upstream does, so that
 * indexes, topics and the hash ring agree.
 */
export class InvokerPool {
  readonly #invokers: InvokerState[] = [];
  readonly #controllerCount: number;
  readonly #health: HealthOptions;
  readonly #maxInvokers: number;
  /** Status per index as last seen by observe(). */
  readonly #observed: InvokerStatus[] = [];

  constructor(options: InvokerPoolOptions) {
    if (!Number.isInteger(options.controllerCount) || options.controllerCount < 1) {
      throw new RangeError(`controllerCount must be a positive integer, got ${options.controllerCount}`);
    }
    this.#controllerCount = options.controllerCount;
    this.#health = { ...DEFAULT_HEALTH_OPTIONS, ...options.health };
    this.#maxInvokers = options.maxInvokers ?? 10_000;
  }

  get size(): number {
    return this.#invokers.length;
  }

  get(index: number): InvokerState | undefined {
    return this.#invokers[index];
  }

  all(): readonly InvokerState[] {
    return this.#invokers;
  }

  /** Adds the invoker, or updates its id (and slot size) if known. Throws RangeError beyond maxInvokers. */
  register(id: InvokerInstanceId): InvokerState {
    if (id.instance >= this.#maxInvokers) {
      throw new RangeError(`registering invoker${id.instance}: ids must be below ${this.#maxInvokers} (maxInvokers)`);
    }
    while (this.#invokers.length < id.instance) {
      const index = this.#invokers.length;
      this.#invokers.push(this.#make(configuredInvokerId(index, MIN_SLOT_MEMORY_MB)));
    }
    const existing = this.#invokers[id.instance];
    if (existing === undefined) {
      const state = this.#make(id);
      this.#invokers.push(state);
      return state;
    }
    if (existing.id.userMemory.bytes !== id.userMemory.bytes) {
      existing.slots.resize(slotMemoryMb(id.userMemory.bytes, this.#controllerCount));
    }
    existing.id = id;
    return existing;
  }

  /** A sign of life of `id` (registers it if new): a Kafka ping, or an HTTP probe. */
  recordPing(id: InvokerInstanceId, now: number, enabled: boolean = true, source: SignSource = 'ping'): StatusTransition | undefined {
    return this.register(id).health.recordPing(now, enabled, source);
  }

  /** See InvokerHealth.recordResult; `incarnation` as it was when the activation was sent. */
  recordResult(index: number, result: InvocationResult, now: number, incarnation?: number): StatusTransition | undefined {
    return this.#invokers[index]?.health.recordResult(result, now, incarnation);
  }

  status(index: number, now: number): InvokerStatus {
    return this.#invokers[index]?.health.status(now) ?? 'down';
  }

  /** `{"invoker0": "up", ...}`, the body of upstream's `GET /invokers`. */
  statuses(now: number): Record<string, InvokerStatus> {
    const out: Record<string, InvokerStatus> = {};
    for (const invoker of this.#invokers) out[`invoker${invoker.index}`] = invoker.health.status(now);
    return out;
  }

  /**
   * Status changes since the previous call, including the ones that happen
   * by time alone (pings stopping). Called periodically by the health monitor,
   * the one place that reports transitions.
   */
  observe(now: number): Array<StatusTransition & { index: number }> {
    const changes: Array<StatusTransition & { index: number }> = [];
    for (const invoker of this.#invokers) {
      const to = invoker.health.status(now);
      const from = this.#observed[invoker.index] ?? 'down';
      if (from !== to) changes.push({ index: invoker.index, from, to });
      this.#observed[invoker.index] = to;
    }
    return changes;
  }

  snapshot(now: number): Record<string, InvokerSnapshot> {
    const out: Record<string, InvokerSnapshot> = {};
    for (const invoker of this.#invokers) {
      out[`invoker${invoker.index}`] = {
        status: invoker.health.status(now),
        userMemoryMb: Math.floor(invoker.id.userMemory.bytes / (1024 * 1024)),
        slotMemoryMb: invoker.slots.totalMb,
        availableMb: invoker.slots.availableMb,
      };
    }
    return out;
  }

  #make(id: InvokerInstanceId): InvokerState {
    return {
      index: id.instance,
      id,
      slots: new NestedSemaphore(slotMemoryMb(id.userMemory.bytes, this.#controllerCount)),
      health: new InvokerHealth(this.#health),
    };
  }
}
