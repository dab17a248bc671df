/**
 * The invoker's container pool: which container runs an activation, and how
 * containers live and die. It knows nothing about Docker; containers come
 * from a ContainerProvider (declared in ./types.ts). Each container's state
 * and its allowed transitions are in ./pooled-container.ts, stem-cell upkeep
 * rules in ./stem-cells.ts.
 *
 * Longer than this project's ~500-line guide on purpose: placement, eviction,
 * the queue and the completion callbacks of create/pause/unpause/destroy all
 * read and change the same ledger, queue and indexes within one synchronous
 * turn (see "Race freedom" below); splitting them across classes would
 * spread that critical section over several files.
 *
 * Placement, in order (upstream ContainerPool semantics, see the wire spec §9):
 *  1. warm: an initialized container for the same warmKey with a free run
 *     slot (in-flight < concurrency), most recently used first; a paused one
 *     is unpaused first, and if that fails it is destroyed and placement goes on;
 *  2. stem cell: an idle stem cell of the same kind, memory and image;
 *  3. cold: create a container if its memory is free;
 *  4. evict idle containers (warm-idle, paused, and stem cells) oldest-first by
 *     last use until the new one fits, then create it;
 *  5. otherwise wait in a bounded FIFO queue.
 *
 * Why stem cells are evictable: a stem cell only saves a container
 * create, a warm container saves create + /init, and a stem cell of a kind
 * nobody asks for would otherwise pin its memory forever. Stem cells take part
 * in the same global LRU (their "last use" is when they became ready), so in a
 * full pool they usually go first; they are recreated when memory is free.
 *
 * Why strict FIFO: while any request waits, newcomers queue behind it, even
 * one a warm container could serve, and only the head is ever placed. A big
 * request at the head therefore blocks smaller ones behind it (head-of-line
 * blocking) - that is what first-come-first-served means, and it guarantees
 * the big one is not starved by a stream of small ones.
 *
 * Race freedom: every decision (find, claim, reserve, evict) happens
 * synchronously in one turn of the event loop; awaits come only after the
 * memory and the container are claimed. Memory (MiB, one ledger for every
 * container, stem cells included) is reserved before create() is called and
 * returned when create() fails or destroy() settles. Eviction hands a victim's
 * reservation straight to the request that evicted it, and the new container
 * is created only after the victims are gone, so the engine is never asked for
 * more memory than userMemoryMb even for a moment.
 *
 * Pause grace default 10 s (upstream's current value; the Go invoker uses
 * 150 ms): pausing soon after every run puts an unpause (130-425 ms measured
 * upstream with runc) on the path of nearly every warm hit that arrives more
 * than the grace apart, while a paused container only saves idle CPU, which
 * an idle action runtime hardly uses. Configurable; to be re-measured on this
 * engine. Idle removal default 10 min (upstream).
 */
import type { Logger } from '../telemetry/logger.js';
import { ActionTooLargeError, ContainerCreateError, PoolClosedError, PoolQueueFullError } from './errors.js';
import { IdleTimers } from './idle-timers.js';
import { MemoryLedger } from './memory-ledger.js';
import { CONTAINER_STATES, PooledContainer, type ContainerState, type PooledContainerInit } from './pooled-container.js';
import { RequestQueue } from './request-queue.js';
import {
  DEFAULT_STEM_CELL_BACKOFF,
  recordStemCellFailure,
  recordStemCellSuccess,
  stemCellShortfall,
  stemCellTargets,
  type BackoffOptions,
  type StemCellTarget,
} from './stem-cells.js';
import {
  type AcquireRequest,
  type ContainerProvider,
  type ContainerSnapshot,
  type ContainerSpec,
  type Lease,
  type LeaseOrigin,
  type PoolContainer,
  type PoolSnapshot,
  type PoolTotals,
  type ReleaseDisposition,
  type StemCellSpec,
} from './types.js';
import { WarmIndex } from './warm-index.js';

export * from './errors.js';
export * from './types.js';
export type { BackoffOptions } from './stem-cells.js';

export const POOL_DEFAULTS = {
  pauseGraceMs: 10_000,
  idleTimeoutMs: 600_000,
  queueLimit: 1000,
  drainTimeoutMs: 60_000,
} as const;

export interface ContainerPoolOptions<C extends PoolContainer> {
  provider: ContainerProvider<C>;
  logger: Logger;
  /** Memory shared by all action containers, stem cells included (MiB). */
  userMemoryMb: number;
  /** Stem cell targets, e.g. RuntimeManifest.stemCells(); created by start(). */
  stemCells?: readonly StemCellSpec[];
  /** Idle time before a warm container is paused; Infinity: never pause. Default 10 s. */
  pauseGraceMs?: number;
  /** Idle time before a warm container is removed; Infinity: never. Default 10 min. */
  idleTimeoutMs?: number;
  /** Requests that may wait for capacity; one more is refused with PoolQueueFullError. Default 1000. */
  queueLimit?: number;
  /** How long drain() waits for leases to be released by default. Default 60 s. */
  drainTimeoutMs?: number;
  /** Retry delays after a failed stem cell creation. Default 1 s doubling to 60 s. */
  stemCellBackoff?: BackoffOptions;
  /** Monotonic clock in ms (tests). Default performance.now. */
  now?: () => number;
}

export interface DrainResult {
  /** Leases still out when the timeout expired; their containers were destroyed anyway. */
  abandonedLeases: number;
  /** Containers destroyed by the drain. */
  destroyed: number;
}

/** An acquire() that has not got its lease yet. */
interface Pending<C extends PoolContainer> {
  readonly request: AcquireRequest;
  readonly resolve: (lease: Lease<C>) => void;
  readonly reject: (error: Error) => void;
  /** Queue wait before the current stay in the queue (a request can be re-queued). */
  priorWaitMs: number;
  queuedAt: number;
  waitMs: number;
}

/** A pooled container as this pool holds it. */
type Slot<C extends PoolContainer> = PooledContainer<C>;

export class ContainerPool<C extends PoolContainer> {
  private readonly provider: ContainerProvider<C>;
  private readonly log: Logger;
  private readonly ledger: MemoryLedger;
  private readonly queue: RequestQueue<Pending<C>>;
  private readonly warm = new WarmIndex<Slot<C>>();
  private readonly timers = new IdleTimers<Slot<C>>();
  private readonly slots = new Set<Slot<C>>();
  private readonly stemCells: StemCellTarget[];
  private readonly pauseGraceMs: number;
  private readonly idleTimeoutMs: number;
  private readonly drainTimeoutMs: number;
  private readonly stemCellBackoff: BackoffOptions;
  private readonly now: () => number;
  private started = false;
  /** No new leases, no stem cell upkeep (drain() called). */
  private closing = false;
  /** drain() has begun destroying: a container created from now on is destroyed at once. */
  private closed = false;
  private pumping = false;
  private drainPromise: Promise<DrainResult> | undefined;
  private idleWaiter: (() => void) | undefined;

  constructor(options: ContainerPoolOptions<C>) {
    this.provider = options.provider;
    this.log = options.logger.child({ component: 'container-pool' });
    this.ledger = new MemoryLedger(options.userMemoryMb);
    this.queue = new RequestQueue(options.queueLimit ?? POOL_DEFAULTS.queueLimit);
    this.stemCells = stemCellTargets(options.stemCells ?? []);
    this.pauseGraceMs = nonNegative('pauseGraceMs', options.pauseGraceMs ?? POOL_DEFAULTS.pauseGraceMs);
    this.idleTimeoutMs = nonNegative('idleTimeoutMs', options.idleTimeoutMs ?? POOL_DEFAULTS.idleTimeoutMs);
    this.drainTimeoutMs = nonNegative('drainTimeoutMs', options.drainTimeoutMs ?? POOL_DEFAULTS.drainTimeoutMs);
    this.stemCellBackoff = options.stemCellBackoff ?? DEFAULT_STEM_CELL_BACKOFF;
    this.now = options.now ?? (() => performance.now());
    for (const cell of this.stemCells) {
      if (cell.memoryMb * cell.count > this.ledger.capacityMb) {
        this.log.warn(
          { kind: cell.kind, memoryMb: cell.memoryMb, count: cell.count, userMemoryMb: this.ledger.capacityMb },
          'stem cell target exceeds user memory; only as many stem cells as fit will be created',
        );
      }
    }
  }

  /** Starts creating stem cells in the background; creation failures are logged and retried. */
  start(): void {
    if (this.started || this.closing) return;
    this.started = true;
    this.maintainStemCells();
  }

  /**
   * A container for `request`. Rejects with ActionTooLargeError (can never
   * fit), PoolQueueFullError (no capacity, queue full), ContainerCreateError
   * (cold start failed), PoolClosedError (draining).
   */
  acquire(request: AcquireRequest): Promise<Lease<C>> {
    try {
      validateRequest(request);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (this.closing) return Promise.reject(new PoolClosedError(`acquiring a container for ${request.warmKey}`));
    if (request.memoryMb > this.ledger.capacityMb) {
      return Promise.reject(new ActionTooLargeError(request.memoryMb, this.ledger.capacityMb, request.warmKey));
    }

    return new Promise<Lease<C>>((resolve, reject) => {
      const pending: Pending<C> = { request, resolve, reject, priorWaitMs: 0, queuedAt: 0, waitMs: 0 };
      // Strict FIFO: while anyone is waiting, newcomers wait behind them.
      if (this.queue.length === 0 && this.place(pending)) return;
      this.enqueue(pending, 'back');
    });
  }

  /** Every container and the totals, for `/pool` and metrics. No secrets: warmKeys name actions only. */
  snapshot(): PoolSnapshot {
    const now = this.now();
    const containers: ContainerSnapshot[] = [...this.slots].map((slot) => {
      const entry: ContainerSnapshot = {
        id: slot.container?.id ?? null,
        name: slot.container?.name ?? null,
        state: slot.state,
        kind: slot.kind,
        memoryMb: slot.memoryMb,
        inFlight: slot.inFlight,
        idleMs: slot.inFlight > 0 || slot.state === 'creating' ? 0 : Math.max(0, Math.round(now - slot.lastUsedAt)),
        origin: slot.origin,
      };
      if (slot.warmKey !== undefined) entry.warmKey = slot.warmKey;
      return entry;
    });
    return { containers, totals: this.totals() };
  }

  /** Cheap totals (metrics scrape). */
  totals(): PoolTotals {
    const byState = Object.fromEntries(CONTAINER_STATES.map((state) => [state, 0])) as Record<ContainerState, number>;
    let inFlight = 0;
    for (const slot of this.slots) {
      byState[slot.state] += 1;
      inFlight += slot.inFlight;
    }
    return {
      userMemoryMb: this.ledger.capacityMb,
      usedMb: this.ledger.usedMb,
      freeMb: this.ledger.freeMb,
      queueLength: this.queue.length,
      inFlight,
      byState,
    };
  }

  /**
   * Stops creating stem cells, rejects queued requests (PoolClosedError), waits up to
   * `timeoutMs` for leases to be released, then destroys every container.
   * Idempotent: later calls return the first call's promise.
   */
  drain(timeoutMs: number = this.drainTimeoutMs): Promise<DrainResult> {
    if (this.drainPromise !== undefined) return this.drainPromise;
    this.closing = true;
    for (const cell of this.stemCells) {
      if (cell.retryTimer !== undefined) clearTimeout(cell.retryTimer);
      cell.retryTimer = undefined;
    }
    for (const pending of this.queue.takeAll()) {
      pending.reject(new PoolClosedError(`waiting for a container for ${pending.request.warmKey}`));
    }
    this.drainPromise = this.finishDrain(timeoutMs);
    return this.drainPromise;
  }

  /** drain() with the configured timeout. */
  async close(): Promise<void> {
    await this.drain();
  }

  // -------------------------------------------------------------------------
  // Placement (synchronous)

  /** Places `pending` now, or returns false if it has to wait. Never awaits. */
  private place(pending: Pending<C>): boolean {
    const request = pending.request;
    if (request.fresh !== true) {
      const warm = this.warm.find(request.warmKey, request.concurrency, (slot) => slot.reusable);
      if (warm !== undefined) {
        this.leaseWarm(warm, pending);
        return true;
      }
      const stem = this.findStemCell(request);
      if (stem !== undefined) {
        this.leaseStemCell(stem, pending);
        return true;
      }
    }
    if (this.ledger.tryReserve(request.memoryMb)) {
      this.startCold(pending, request.memoryMb, []);
      return true;
    }
    const shortMb = request.memoryMb - this.ledger.freeMb;
    // Memory already on its way back (destroys in flight) will do: wait for
    // it instead of evicting a container somebody may still want.
    if (this.destroyingMb() >= shortMb) return false;
    const victims = this.pickVictims(shortMb);
    if (victims === undefined) return false;
    this.evictFor(pending, victims);
    return true;
  }

  private leaseWarm(slot: Slot<C>, pending: Pending<C>): void {
    this.timers.clear(slot);
    if (slot.claim(this.now())) {
      pending.resolve(this.makeLease(slot, pending, 'warm'));
      return;
    }
    // pausing / paused / unpausing: the run slot is ours (inFlight counted, so
    // the container is neither evicted nor paused again); make it run first.
    void this.resume(slot).then((running) => {
      if (running) {
        pending.resolve(this.makeLease(slot, pending, 'warm'));
      } else {
        // The container broke on unpause and is being destroyed; the
        // activation must not fail for that: place it again, ahead of later arrivals.
        this.retry(pending);
      }
    });
  }

  private findStemCell(request: AcquireRequest): Slot<C> | undefined {
    for (const slot of this.slots) if (slot.servesAsStemCell(request)) return slot;
    return undefined;
  }

  private leaseStemCell(slot: Slot<C>, pending: Pending<C>): void {
    slot.leaseStemCell(this.now());
    this.log.debug({ container: slot.container?.name, kind: slot.kind, memoryMb: slot.memoryMb }, 'stem cell taken');
    pending.resolve(this.makeLease(slot, pending, 'prewarm'));
    // The replacement: started now when nobody waits, else when the queue empties.
    this.maintainStemCells();
  }

  /** Idle containers, oldest last use first, whose memory covers `shortMb`; undefined if they cannot. */
  private pickVictims(shortMb: number): Slot<C>[] | undefined {
    const idle = [...this.slots]
      .filter((slot) => slot.evictable)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    const victims: Slot<C>[] = [];
    let covered = 0;
    for (const slot of idle) {
      if (covered >= shortMb) break;
      victims.push(slot);
      covered += slot.chargedMb;
    }
    return covered >= shortMb ? victims : undefined;
  }

  private evictFor(pending: Pending<C>, victims: Slot<C>[]): void {
    const memoryMb = pending.request.memoryMb;
    // Take the free memory, then hand over just enough of the victims'
    // reservations: the ledger total never changes, so it never exceeds capacity.
    let needed = memoryMb - this.ledger.freeMb;
    this.ledger.tryReserve(this.ledger.freeMb);
    for (const victim of victims) {
      const take = Math.min(victim.chargedMb, needed);
      victim.chargedMb -= take;
      needed -= take;
    }
    this.log.info(
      {
        warmKey: pending.request.warmKey,
        memoryMb,
        evicted: victims.map((v) => ({ container: v.container?.name, state: v.state, memoryMb: v.memoryMb, warmKey: v.warmKey })),
      },
      'evicting idle containers to make room',
    );
    const gone = victims.map((victim) => this.destroy(victim, 'evicted'));
    this.startCold(pending, memoryMb, gone);
  }

  private startCold(pending: Pending<C>, memoryMb: number, waitFor: Promise<void>[]): void {
    const request = pending.request;
    const slot = this.newSlot({
      kind: request.kind,
      image: request.image,
      memoryMb,
      origin: 'cold',
      specConcurrency: request.concurrency,
      stemCell: undefined,
    });
    slot.inFlight = 1;
    const spec: ContainerSpec = {
      kind: request.kind,
      image: request.image,
      memoryMb,
      concurrency: request.concurrency,
      stemCell: false,
    };
    if (request.namespace !== undefined) spec.namespace = request.namespace;
    if (request.actionName !== undefined) spec.actionName = request.actionName;
    slot.created = this.createForRequest(slot, pending, spec, waitFor);
  }

  private async createForRequest(slot: Slot<C>, pending: Pending<C>, spec: ContainerSpec, waitFor: Promise<void>[]): Promise<void> {
    // Never settle within the caller's synchronous decision (see yieldTurn).
    await yieldTurn();
    // Victims first: their memory is ours in the ledger, but the engine must
    // have it back before it is asked for the new container. destroy() never rejects.
    if (waitFor.length > 0) await Promise.all(waitFor);
    let container: C;
    try {
      container = await this.provider.create(spec);
    } catch (error) {
      this.forget(slot);
      const what = `creating a ${spec.memoryMb} MB ${spec.kind} container (${spec.image}) for ${pending.request.warmKey}`;
      this.log.warn({ err: error, kind: spec.kind, memoryMb: spec.memoryMb, warmKey: pending.request.warmKey }, 'container creation failed');
      pending.reject(new ContainerCreateError(what, error));
      this.pump();
      return;
    }
    slot.markCreated(container, this.now());
    if (this.closed) {
      // drain() gave up waiting and is tearing everything down.
      void this.destroy(slot, 'pool closed');
      pending.reject(new PoolClosedError(`creating a container for ${pending.request.warmKey}`));
      return;
    }
    pending.resolve(this.makeLease(slot, pending, 'cold'));
  }

  // -------------------------------------------------------------------------
  // Queue

  private enqueue(pending: Pending<C>, where: 'back' | 'front'): void {
    if (where === 'back') {
      if (!this.queue.push(pending)) {
        pending.reject(new PoolQueueFullError(this.queue.limit, pending.request.memoryMb));
        return;
      }
    } else {
      this.queue.unshift(pending);
    }
    pending.queuedAt = this.now();
    this.log.debug({ warmKey: pending.request.warmKey, memoryMb: pending.request.memoryMb, queueLength: this.queue.length }, 'waiting for capacity');
  }

  /** Serves the queue head while it can be placed; called whenever capacity may have freed. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let head = this.queue.peek(); head !== undefined; head = this.queue.peek()) {
        head.waitMs = head.priorWaitMs + (this.now() - head.queuedAt);
        if (!this.place(head)) break;
        this.queue.shift();
      }
    } finally {
      this.pumping = false;
    }
    this.maintainStemCells();
  }

  /** A placed request lost its container before getting a lease: it keeps its turn. */
  private retry(pending: Pending<C>): void {
    if (this.closing) {
      pending.reject(new PoolClosedError(`acquiring a container for ${pending.request.warmKey}`));
      return;
    }
    pending.priorWaitMs = pending.waitMs;
    this.enqueue(pending, 'front');
    this.pump();
  }

  // -------------------------------------------------------------------------
  // Leases

  private makeLease(slot: Slot<C>, pending: Pending<C>, origin: LeaseOrigin): Lease<C> {
    const container = slot.requireContainer('leasing');
    const warmKey = pending.request.warmKey;
    let initialized = origin === 'warm';
    let released = false;
    return {
      container,
      origin,
      needsInit: origin !== 'warm',
      waitMs: Math.round(pending.waitMs),
      markInitialized: () => {
        if (released || initialized) return;
        initialized = true;
        if (slot.doomed || slot.state === 'destroying' || slot.warmKey !== undefined) return;
        slot.warmKey = warmKey;
        this.warm.add(warmKey, slot);
        // Other requests for the same action may share it now (concurrency > 1).
        this.pump();
      },
      release: (disposition: ReleaseDisposition) => {
        if (released) return;
        released = true;
        this.release(slot, disposition, initialized);
      },
    };
  }

  private release(slot: Slot<C>, disposition: ReleaseDisposition, initialized: boolean): void {
    // drain() may have destroyed it already after its timeout.
    if (slot.state === 'destroying' || !this.slots.has(slot)) return;
    slot.inFlight -= 1;
    slot.lastUsedAt = this.now();
    if (disposition === 'destroy' || !initialized) {
      if (disposition === 'reuse') {
        this.log.warn({ container: slot.container?.name }, 'container released for reuse but never initialized; removing it');
      }
      slot.doomed = true;
      this.unindex(slot);
    }
    if (slot.inFlight > 0) {
      // Other runs still use it (concurrency > 1): a run slot is free again.
      this.notifyIfIdle();
      this.pump();
      return;
    }
    if (slot.doomed) {
      void this.destroy(slot, disposition === 'destroy' ? 'released for destruction' : 'never initialized');
      return;
    }
    slot.idle(this.now());
    if (this.closing) {
      this.notifyIfIdle();
      return;
    }
    this.scheduleIdle(slot);
    this.pump();
  }

  // -------------------------------------------------------------------------
  // Pause / unpause / idle removal

  private scheduleIdle(slot: Slot<C>): void {
    if (Number.isFinite(this.pauseGraceMs)) this.timers.schedule(slot, 'pause', this.pauseGraceMs, () => this.pauseIdle(slot));
    if (Number.isFinite(this.idleTimeoutMs)) this.timers.schedule(slot, 'remove', this.idleTimeoutMs, () => this.expire(slot));
  }

  private pauseIdle(slot: Slot<C>): void {
    if (slot.state !== 'warm-idle' || slot.inFlight > 0 || this.closing) return;
    const container = slot.container;
    if (container === undefined) return;
    // Through an async function so that a synchronous throw becomes a rejection
    // and `op` is always set while the state says an operation is in flight.
    // If a lease claims it meanwhile (inFlight > 0), resume() unpauses it next.
    const op = (async () => container.pause())().then(
      () => void slot.pauseSettled(),
      (error: unknown) => {
        if (!slot.opFailed('pausing')) return;
        // Its state is unknown now; a broken container must not be handed out.
        this.log.warn({ err: error, container: container.name }, 'pausing container failed; removing it');
        void this.destroy(slot, 'pause failed');
      },
    );
    slot.beginPause(op);
  }

  /** Brings a claimed paused/pausing container back to running; false if it was destroyed instead. */
  private async resume(slot: Slot<C>): Promise<boolean> {
    for (;;) {
      switch (slot.state) {
        case 'busy':
        case 'warm-idle':
          slot.running();
          return true;
        case 'pausing':
        case 'unpausing':
          await slot.op;
          break;
        case 'paused':
          this.startUnpause(slot);
          break;
        default:
          return false;
      }
    }
  }

  private startUnpause(slot: Slot<C>): void {
    const container = slot.requireContainer('unpausing');
    const op = (async () => container.unpause())().then(
      () => {
        if (!slot.unpauseSettled()) return;
        if (slot.state === 'warm-idle' && !this.closing) this.scheduleIdle(slot);
      },
      (error: unknown) => {
        if (!slot.opFailed('unpausing')) return;
        this.log.warn({ err: error, container: container.name, warmKey: slot.warmKey }, 'unpausing container failed; removing it and placing the activation elsewhere');
        void this.destroy(slot, 'unpause failed');
      },
    );
    slot.beginUnpause(op);
  }

  private expire(slot: Slot<C>): void {
    if (slot.inFlight > 0 || this.closing) return;
    if (slot.state === 'warm-idle' || slot.state === 'paused') {
      void this.destroy(slot, 'idle timeout');
    } else if (slot.state === 'pausing' && slot.op !== undefined) {
      void slot.op.then(() => this.expire(slot));
    }
  }

  // -------------------------------------------------------------------------
  // Stem cells

  private maintainStemCells(): void {
    // Queued requests come first: stem cells only take memory nobody waits for.
    if (!this.started || this.closing || this.queue.length > 0) return;
    const now = this.now();
    for (const target of this.stemCells) {
      let live = 0;
      for (const slot of this.slots) if (slot.stemCell === target) live += 1;
      for (let wanted = stemCellShortfall(target, live, now); wanted > 0; wanted -= 1) {
        // Short of memory: skip; every pump (capacity freed) tries again.
        if (!this.ledger.tryReserve(target.memoryMb)) break;
        this.createStemCell(target);
      }
    }
  }

  private createStemCell(target: StemCellTarget): void {
    const slot = this.newSlot({
      kind: target.kind,
      image: target.image,
      memoryMb: target.memoryMb,
      origin: 'prewarm',
      specConcurrency: target.concurrency,
      stemCell: target,
    });
    const spec: ContainerSpec = { kind: target.kind, image: target.image, memoryMb: target.memoryMb, concurrency: target.concurrency, stemCell: true };
    slot.created = (async () => {
      await yieldTurn();
      let container: C;
      try {
        container = await this.provider.create(spec);
      } catch (error) {
        this.forget(slot);
        const delayMs = recordStemCellFailure(target, this.now(), this.stemCellBackoff);
        this.log.warn(
          { err: error, kind: target.kind, memoryMb: target.memoryMb, failures: target.failures, retryInMs: delayMs },
          'creating a stem cell failed; retrying later',
        );
        if (target.retryTimer === undefined && !this.closing) {
          target.retryTimer = setTimeout(() => {
            target.retryTimer = undefined;
            // Timers may fire a little early by the pool clock: the timer decides.
            target.retryAt = 0;
            this.maintainStemCells();
          }, delayMs);
          target.retryTimer.unref();
        }
        this.pump();
        return;
      }
      recordStemCellSuccess(target);
      slot.markCreated(container, this.now());
      if (this.closing) {
        void this.destroy(slot, 'pool closing');
        return;
      }
      this.log.debug({ container: container.name, kind: target.kind, memoryMb: target.memoryMb }, 'stem cell ready');
      this.pump();
    })();
  }

  // -------------------------------------------------------------------------
  // Slots and memory

  private newSlot(init: Omit<PooledContainerInit, 'now'>): Slot<C> {
    const slot = new PooledContainer<C>({ ...init, now: this.now() });
    this.slots.add(slot);
    return slot;
  }

  /** Drops a slot whose container never came to exist. */
  private forget(slot: Slot<C>): void {
    this.ledger.release(slot.chargedMb);
    slot.chargedMb = 0;
    slot.inFlight = 0;
    slot.beginDestroy();
    this.slots.delete(slot);
    this.notifyIfIdle();
  }

  private unindex(slot: Slot<C>): void {
    if (slot.warmKey !== undefined) this.warm.remove(slot.warmKey, slot);
  }

  private destroyingMb(): number {
    let mb = 0;
    for (const slot of this.slots) if (slot.state === 'destroying') mb += slot.chargedMb;
    return mb;
  }

  /** Removes a container (never rejects); its memory returns when destroy() settles. */
  private destroy(slot: Slot<C>, reason: string): Promise<void> {
    if (slot.destroyed !== undefined) return slot.destroyed;
    this.timers.clear(slot);
    this.unindex(slot);
    slot.beginDestroy();
    const container = slot.container;
    slot.destroyed = (async () => {
      await yieldTurn();
      if (container !== undefined) {
        try {
          await container.destroy();
          this.log.debug({ container: container.name, reason }, 'container removed');
        } catch (error) {
          this.log.warn({ err: error, container: container.name, reason }, 'removing container failed');
        }
      }
      this.ledger.release(slot.chargedMb);
      slot.chargedMb = 0;
      this.slots.delete(slot);
      this.notifyIfIdle();
      this.pump();
    })();
    return slot.destroyed;
  }

  // -------------------------------------------------------------------------
  // Drain

  /** Leases out or being created for a request. */
  private activeLeases(): number {
    let n = 0;
    for (const slot of this.slots) if (slot.state !== 'destroying') n += slot.inFlight;
    return n;
  }

  private notifyIfIdle(): void {
    if (this.idleWaiter !== undefined && this.activeLeases() === 0) this.idleWaiter();
  }

  private async finishDrain(timeoutMs: number): Promise<DrainResult> {
    this.log.info({ inFlight: this.activeLeases(), containers: this.slots.size }, 'draining container pool');
    if (this.activeLeases() > 0) {
      await new Promise<void>((resolve) => {
        // setTimeout(Infinity) would fire at once: an infinite timeout means no timer.
        const timer = Number.isFinite(timeoutMs) ? setTimeout(resolve, timeoutMs) : undefined;
        this.idleWaiter = () => {
          if (timer !== undefined) clearTimeout(timer);
          resolve();
        };
      });
      this.idleWaiter = undefined;
    }
    const abandonedLeases = this.activeLeases();
    if (abandonedLeases > 0) this.log.warn({ abandonedLeases, timeoutMs }, 'drain timeout: removing containers still in use');
    this.closed = true;
    this.timers.clearAll();
    let destroyed = 0;
    await Promise.all(
      [...this.slots].map(async (slot) => {
        if (slot.state === 'creating') await slot.created;
        if (slot.op !== undefined) await slot.op;
        await this.destroy(slot, 'pool drained');
        if (slot.container !== undefined) destroyed += 1;
      }),
    );
    this.log.info({ destroyed }, 'container pool drained');
    return { abandonedLeases, destroyed };
  }
}

/**
 * Starts a container operation on a later microtask. Callers of create() and
 * destroy() are in the middle of a synchronous placement decision; a provider
 * that fails synchronously must not make the bookkeeping (release memory,
 * pump the queue) run re-entrantly inside that decision.
 */
function yieldTurn(): Promise<void> {
  return Promise.resolve();
}

function nonNegative(name: string, value: number): number {
  if (Number.isNaN(value) || value < 0) throw new RangeError(`${name} must be >= 0, got ${value}`);
  return value;
}

function validateRequest(request: AcquireRequest): void {
  const what = `acquiring a container for ${String(request.warmKey)}`;
  if (typeof request.warmKey !== 'string' || request.warmKey === '') throw new TypeError(`${what}: warmKey must be a non-empty string`);
  if (typeof request.kind !== 'string' || request.kind === '') throw new TypeError(`${what}: kind must be a non-empty string`);
  if (typeof request.image !== 'string' || request.image === '') throw new TypeError(`${what}: image must be a non-empty string`);
  if (!Number.isSafeInteger(request.memoryMb) || request.memoryMb <= 0) throw new RangeError(`${what}: memoryMb must be a positive integer, got ${request.memoryMb}`);
  if (!Number.isSafeInteger(request.concurrency) || request.concurrency < 1) throw new RangeError(`${what}: concurrency must be a positive integer, got ${request.concurrency}`);
}
