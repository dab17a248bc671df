/**
 * The containers a ContainerPool holds and how they come and go: stem cell
 * upkeep, pause after the grace and unpause, idle removal, destroy, the
 * memory ledger they are charged to, and the snapshot of them all.
 * ContainerPool (./container-pool.ts) extends this with what asks for
 * containers: placement, eviction, the queue, leases and drain. It is one
 * object, so each decision still happens in one synchronous turn (see "Race
 * freedom" in container-pool.ts); the two files only divide the work.
 *
 * Pause grace default 10 s (upstream's current value; the Go invoker uses
 * 150 ms): pausing soon after every run puts an unpause (130-425 ms measured
 * upstream with runc) on the path of nearly every warm hit that arrives more
 * than the grace apart, while a paused container only saves idle CPU, which
 * an idle action runtime hardly uses. Configurable; to be re-measured on this
 * engine. Idle removal default 10 min (upstream).
 */
import type { Logger } from '../telemetry/logger.js';
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
import type {
  AcquireRequest,
  ContainerProvider,
  ContainerSnapshot,
  ContainerSpec,
  Lease,
  PoolContainer,
  PoolSnapshot,
  PoolTotals,
  StemCellSpec,
} from './types.js';
import { WarmIndex } from './warm-index.js';

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

/** An acquire() that has not got its lease yet. */
export interface Pending<C extends PoolContainer> {
  readonly request: AcquireRequest;
  readonly resolve: (lease: Lease<C>) => void;
  readonly reject: (error: Error) => void;
  /** Queue wait before the current stay in the queue (a request can be re-queued). */
  priorWaitMs: number;
  queuedAt: number;
  waitMs: number;
}

/** A pooled container as this pool holds it. */
export type Slot<C extends PoolContainer> = PooledContainer<C>;

export abstract class PoolContainers<C extends PoolContainer> {
  protected readonly provider: ContainerProvider<C>;
  protected readonly log: Logger;
  protected readonly ledger: MemoryLedger;
  protected readonly queue: RequestQueue<Pending<C>>;
  protected readonly warm = new WarmIndex<Slot<C>>();
  protected readonly timers = new IdleTimers<Slot<C>>();
  protected readonly slots = new Set<Slot<C>>();
  protected readonly stemCells: StemCellTarget[];
  protected readonly pauseGraceMs: number;
  protected readonly idleTimeoutMs: number;
  protected readonly drainTimeoutMs: number;
  protected readonly stemCellBackoff: BackoffOptions;
  protected readonly now: () => number;
  protected started = false;
  /** No new leases, no stem cell upkeep (drain() called). */
  protected closing = false;
  /** drain() has begun destroying: a container created from now on is destroyed at once. */
  protected closed = false;
  protected idleWaiter: (() => void) | undefined;

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

  /** Serves the queue head while it can be placed (ContainerPool); called whenever capacity may have freed. */
  protected abstract pump(): void;

  /** Starts creating stem cells in the background; creation failures are logged and retried. */
  start(): void {
    if (this.started || this.closing) return;
    this.started = true;
    this.maintainStemCells();
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

  // -------------------------------------------------------------------------
  // Pause / unpause / idle removal

  protected scheduleIdle(slot: Slot<C>): void {
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
  protected async resume(slot: Slot<C>): Promise<boolean> {
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

  protected maintainStemCells(): void {
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

  protected newSlot(init: Omit<PooledContainerInit, 'now'>): Slot<C> {
    const slot = new PooledContainer<C>({ ...init, now: this.now() });
    this.slots.add(slot);
    return slot;
  }

  /** Drops a slot whose container never came to exist. */
  protected forget(slot: Slot<C>): void {
    this.ledger.release(slot.chargedMb);
    slot.chargedMb = 0;
    slot.inFlight = 0;
    slot.beginDestroy();
    this.slots.delete(slot);
    this.notifyIfIdle();
  }

  protected unindex(slot: Slot<C>): void {
    if (slot.warmKey !== undefined) this.warm.remove(slot.warmKey, slot);
  }

  protected destroyingMb(): number {
    let mb = 0;
    for (const slot of this.slots) if (slot.state === 'destroying') mb += slot.chargedMb;
    return mb;
  }

  /** Removes a container (never rejects); its memory returns when destroy() settles. */
  protected destroy(slot: Slot<C>, reason: string): Promise<void> {
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

  /** Leases out or being created for a request. */
  protected activeLeases(): number {
    let n = 0;
    for (const slot of this.slots) if (slot.state !== 'destroying') n += slot.inFlight;
    return n;
  }

  protected notifyIfIdle(): void {
    if (this.idleWaiter !== undefined && this.activeLeases() === 0) this.idleWaiter();
  }
}

/**
 * Starts a container operation on a later microtask. Callers of create() and
 * destroy() are in the middle of a synchronous placement decision; a provider
 * that fails synchronously must not make the bookkeeping (release memory,
 * pump the queue) run re-entrantly inside that decision.
 */
export function yieldTurn(): Promise<void> {
  return Promise.resolve();
}

export function nonNegative(name: string, value: number): number {
  if (Number.isNaN(value) || value < 0) throw new RangeError(`${name} must be >= 0, got ${value}`);
  return value;
}
