/**
 * One pooled container and its state machine. The pool decides what happens
 * (placement, eviction, timers); this type owns what state the container is
 * in and refuses a transition that does not start from a state it allows, so
 * a bookkeeping bug shows as an error naming both states instead of a
 * container silently handed out twice.
 *
 *   creating --created()--------> busy (cold, for a request) | prewarm (stem cell)
 *   prewarm  --leaseStemCell()--> busy
 *   busy     --idle()-----------> warm-idle                 (last run released)
 *   warm-idle --claim()---------> busy
 *   warm-idle --beginPause()----> pausing --paused()------> paused
 *   paused   --beginUnpause()---> unpausing --unpaused()--> busy | warm-idle
 *   any      --beginDestroy()---> destroying               (memory back when destroy() settles)
 *
 * A paused, pausing or unpausing container can be claimed (its run slot
 * counted in `inFlight`) before it runs again: the claim keeps it from being
 * paused again or evicted, and the pool unpauses it next.
 */
import type { StemCellTarget } from './stem-cells.js';
import type { ContainerState } from './types.js';

// The states are described where they are declared (types.ts).
export type { ContainerState } from './types.js';

export const CONTAINER_STATES: readonly ContainerState[] = ['creating', 'prewarm', 'warm-idle', 'busy', 'pausing', 'paused', 'unpausing', 'destroying'];

/** States in which an initialized container may take another run of its warmKey. */
const REUSABLE: ReadonlySet<ContainerState> = new Set(['warm-idle', 'busy', 'pausing', 'paused', 'unpausing']);
/** States in which an idle container may be evicted for another. */
const EVICTABLE: ReadonlySet<ContainerState> = new Set(['warm-idle', 'paused', 'prewarm']);

export class IllegalTransitionError extends Error {
  override readonly name = 'IllegalTransitionError';
  constructor(transition: string, from: ContainerState, container: string | undefined) {
    super(`container pool: ${transition} of ${container ?? 'a container being created'} from state '${from}'`);
  }
}

export interface PooledContainerInit {
  readonly kind: string;
  readonly image: string;
  readonly memoryMb: number;
  readonly origin: 'prewarm' | 'cold';
  /** Concurrency the container is created for. */
  readonly specConcurrency: number;
  /** The stem cell target a stem cell counts toward. */
  readonly stemCell: StemCellTarget | undefined;
  readonly now: number;
}

export class PooledContainer<C extends { readonly name: string }> {
  readonly kind: string;
  readonly image: string;
  readonly memoryMb: number;
  readonly origin: 'prewarm' | 'cold';
  readonly specConcurrency: number;
  #state: ContainerState = 'creating';
  #container: C | undefined;
  /** Ledger memory held; less than memoryMb once an evicting request took part of it over. */
  chargedMb: number;
  /** The stem cell target this counts toward while creating / an unused stem cell. */
  stemCell: StemCellTarget | undefined;
  /** Set once initialized (the pool then indexes it as warm). */
  warmKey: string | undefined;
  /** Runs in flight, claims of a paused container included. */
  inFlight = 0;
  lastUsedAt: number;
  /** The pause() or unpause() in flight (states pausing / unpausing); never rejects. */
  op: Promise<void> | undefined;
  /** Settles when create() has settled (state left 'creating'). */
  created: Promise<void> | undefined;
  /** Settles when destroy() has settled and the memory is back. */
  destroyed: Promise<void> | undefined;
  /** Remove once the last run in flight is released (broken, or never initialized). */
  doomed = false;

  constructor(init: PooledContainerInit) {
    this.kind = init.kind;
    this.image = init.image;
    this.memoryMb = init.memoryMb;
    this.origin = init.origin;
    this.specConcurrency = init.specConcurrency;
    this.stemCell = init.stemCell;
    this.chargedMb = init.memoryMb;
    this.lastUsedAt = init.now;
  }

  get state(): ContainerState {
    return this.#state;
  }

  /** The container; undefined only while creating (or when creation failed). */
  get container(): C | undefined {
    return this.#container;
  }

  /** For a lease: the container, which must exist by then. */
  requireContainer(purpose: string): C {
    if (this.#container === undefined) throw new Error(`container pool: ${purpose} without a container`);
    return this.#container;
  }

  get reusable(): boolean {
    return !this.doomed && REUSABLE.has(this.#state);
  }

  get evictable(): boolean {
    return this.inFlight === 0 && EVICTABLE.has(this.#state);
  }

  /** A stem cell of this kind, memory and image that can serve `concurrency`. */
  servesAsStemCell(request: { kind: string; memoryMb: number; image: string; concurrency: number }): boolean {
    return (
      this.#state === 'prewarm' &&
      this.kind === request.kind &&
      this.memoryMb === request.memoryMb &&
      // Upstream compares ByteSizes: a stem cell of, say, 300000 KB serves no action.
      (this.stemCell === undefined || this.stemCell.memoryBytes === request.memoryMb * 1024 * 1024) &&
      this.image === request.image &&
      this.specConcurrency >= request.concurrency
    );
  }

  /** create() succeeded: a stem cell is ready, a cold container is busy with its request. */
  markCreated(container: C, now: number): void {
    this.#expect('created', ['creating']);
    this.#container = container;
    this.#state = this.origin === 'prewarm' ? 'prewarm' : 'busy';
    this.lastUsedAt = now;
  }

  leaseStemCell(now: number): void {
    this.#expect('leasing a stem cell', ['prewarm']);
    this.#state = 'busy';
    this.inFlight = 1;
    this.lastUsedAt = now;
    this.stemCell = undefined;
  }

  /**
   * Takes a run slot of a reusable container. True when it runs now (warm-idle
   * or busy); false when it is paused or on its way there, and must be resumed.
   */
  claim(now: number): boolean {
    this.#expect('claiming', [...REUSABLE]);
    this.inFlight += 1;
    this.lastUsedAt = now;
    if (this.#state === 'warm-idle' || this.#state === 'busy') {
      this.#state = 'busy';
      return true;
    }
    return false;
  }

  /** A claimed container is running (after resume). */
  running(): void {
    this.#expect('resuming', ['warm-idle', 'busy']);
    this.#state = 'busy';
  }

  /** The last run was released and the container stays. */
  idle(now: number): void {
    this.#expect('idling', ['busy']);
    this.#state = 'warm-idle';
    this.lastUsedAt = now;
  }

  beginPause(op: Promise<void>): void {
    this.#expect('pausing', ['warm-idle']);
    this.#state = 'pausing';
    this.op = op;
  }

  /** pause() settled; false when the container moved on meanwhile (destroyed). */
  pauseSettled(): boolean {
    this.op = undefined;
    if (this.#state !== 'pausing') return false;
    this.#state = 'paused';
    return true;
  }

  beginUnpause(op: Promise<void>): void {
    this.#expect('unpausing', ['paused']);
    this.#state = 'unpausing';
    this.op = op;
  }

  /** unpause() settled; false when the container moved on meanwhile (destroyed). */
  unpauseSettled(): boolean {
    this.op = undefined;
    if (this.#state !== 'unpausing') return false;
    this.#state = this.inFlight > 0 ? 'busy' : 'warm-idle';
    return true;
  }

  /** A pause or unpause failed: the op is over, the state is left to destroy. */
  opFailed(expected: 'pausing' | 'unpausing'): boolean {
    this.op = undefined;
    return this.#state === expected;
  }

  beginDestroy(): void {
    this.#state = 'destroying';
    this.stemCell = undefined;
  }

  #expect(transition: string, from: readonly ContainerState[]): void {
    if (!from.includes(this.#state)) throw new IllegalTransitionError(transition, this.#state, this.#container?.name);
  }
}
