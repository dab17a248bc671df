/**
 * The invoker's container pool: which container runs an activation, and how
 * containers live and die. It knows nothing about Docker; containers come
 * from a ContainerProvider (declared in ./types.ts). Each container's state
 * and its allowed transitions are in ./pooled-container.ts, stem-cell upkeep
 * rules in ./stem-cells.ts.
 *
 * The containers themselves (creation of stem cells, pause/unpause, idle
 * removal, destroy, memory, snapshot) are in ./pool-containers.ts, the base
 * class; this file is what asks for them: placement, eviction, the queue,
 * leases and drain.
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
 */
import { ActionTooLargeError, ContainerCreateError, PoolClosedError, PoolQueueFullError } from './errors.js';
import { PoolContainers, yieldTurn, type Pending, type Slot } from './pool-containers.js';
import type { AcquireRequest, ContainerSpec, Lease, LeaseOrigin, PoolContainer, ReleaseDisposition } from './types.js';

export * from './errors.js';
export * from './types.js';
export type { BackoffOptions } from './stem-cells.js';
export { POOL_DEFAULTS, type ContainerPoolOptions } from './pool-containers.js';

export interface DrainResult {
  /** Leases still out when the timeout expired; their containers were destroyed anyway. */
  abandonedLeases: number;
  /** Containers destroyed by the drain. */
  destroyed: number;
}

export class ContainerPool<C extends PoolContainer> extends PoolContainers<C> {
  private pumping = false;
  private drainPromise: Promise<DrainResult> | undefined;

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
    if (request.action !== undefined) spec.action = request.action;
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
  protected pump(): void {
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

  // -------------------------------------------------------------------------
  // Stem cells

  // -------------------------------------------------------------------------
  // Slots and memory

  // -------------------------------------------------------------------------
  // Drain

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

function validateRequest(request: AcquireRequest): void {
  const what = `acquiring a container for ${String(request.warmKey)}`;
  if (typeof request.warmKey !== 'string' || request.warmKey === '') throw new TypeError(`${what}: warmKey must be a non-empty string`);
  if (typeof request.kind !== 'string' || request.kind === '') throw new TypeError(`${what}: kind must be a non-empty string`);
  if (typeof request.image !== 'string' || request.image === '') throw new TypeError(`${what}: image must be a non-empty string`);
  if (!Number.isSafeInteger(request.memoryMb) || request.memoryMb <= 0) throw new RangeError(`${what}: memoryMb must be a positive integer, got ${request.memoryMb}`);
  if (!Number.isSafeInteger(request.concurrency) || request.concurrency < 1) throw new RangeError(`${what}: concurrency must be a positive integer, got ${request.concurrency}`);
}
