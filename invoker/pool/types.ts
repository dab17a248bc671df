/**
 * What the container pool needs from the outside world, declared here by the
 * consumer (see docs/architecture.md): the Docker layer's container handle is
 * adapted to PoolContainer / ContainerProvider in invoker/wiring/container-provider.ts, and tests
 * pass an in-memory provider.
 */

/** A running action container, as far as the pool is concerned. */
export interface PoolContainer {
  readonly id: string;
  readonly name: string;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  /**
   * Removes the container. Called in any state, paused included: the adapter
   * must unpause first if its engine needs that.
   */
  destroy(): Promise<void>;
}

export interface ContainerSpec {
  kind: string;
  image: string;
  memoryMb: number;
  /** Runs the container must accept at once (for a stem cell: the most it may be asked for). */
  concurrency: number;
  /** True for a stem cell created ahead of demand (naming, labels). */
  stemCell: boolean;
  /** Present for a cold start on behalf of an action (naming, labels). */
  action?: ActionName;
}

/** Whose action a container is created for: the invoking namespace, the action's path and name. */
export interface ActionName {
  namespace: string;
  path: string;
  name: string;
}

export interface ContainerProvider<C extends PoolContainer> {
  create(spec: ContainerSpec): Promise<C>;
}

/**
 * How the container behind a lease was obtained. The value 'prewarm' (a stem
 * cell), here and in ContainerState, is kept: it is a metric label value
 * (invoker_container_starts_total, invoker_containers{state}) and in the ops API.
 */
export type LeaseOrigin = 'warm' | 'prewarm' | 'cold';

/**
 * Lifecycle states of a pooled container (here rather than in
 * pooled-container.ts so that this module imports nothing of the pool).
 *   creating   provider.create() in flight (memory already reserved)
 *   prewarm    stem cell, running, never initialized, idle
 *   warm-idle  initialized for a warmKey, running, no runs in flight
 *   busy       leased: at least one run in flight (or a fresh lease not yet initialized)
 *   pausing    pause() in flight
 *   paused     paused, idle (or claimed and about to be unpaused)
 *   unpausing  unpause() in flight
 *   destroying destroy() in flight; its memory is freed when destroy() settles
 * The transitions are in pooled-container.ts.
 */
export type ContainerState = 'creating' | 'prewarm' | 'warm-idle' | 'busy' | 'pausing' | 'paused' | 'unpausing' | 'destroying';

export interface AcquireRequest {
  /**
   * Identity of an initialized container's code: invocation namespace, action
   * path/name/version and revision. Built by the caller; containers are only
   * reused for an identical key.
   */
  warmKey: string;
  kind: string;
  image: string;
  memoryMb: number;
  /** The action's intra-container concurrency limit (1 = one run at a time). */
  concurrency: number;
  /** Skip warm containers and stem cells: retry on a fresh container after a broken warm one. */
  fresh?: boolean;
  /** Passed to ContainerSpec on a cold start. */
  action?: ActionName;
}

export type ReleaseDisposition = 'reuse' | 'destroy';

export interface Lease<C extends PoolContainer> {
  readonly container: C;
  readonly origin: LeaseOrigin;
  /** False only for a warm container, whose code is already initialized. */
  readonly needsInit: boolean;
  /** Time spent waiting in the pool's queue for capacity (ms). */
  readonly waitMs: number;
  /**
   * After a successful /init: the container now holds `warmKey`'s code and
   * may be shared (concurrency > 1) and reused. A no-op on a warm lease.
   */
  markInitialized(): void;
  /**
   * Ends this lease. 'reuse' keeps the container for the same warmKey (only if
   * it was initialized; otherwise it is destroyed, since its state is
   * unknown); 'destroy' removes it once no other run uses it. Idempotent.
   */
  release(disposition: ReleaseDisposition): void;
}

export interface ContainerSnapshot {
  /** Null while the container is still being created. */
  id: string | null;
  name: string | null;
  state: ContainerState;
  kind: string;
  memoryMb: number;
  warmKey?: string;
  inFlight: number;
  /** Time since the last run ended; 0 while runs are in flight. */
  idleMs: number;
  /** How the container came to exist. */
  origin: 'prewarm' | 'cold';
}

export interface PoolTotals {
  userMemoryMb: number;
  usedMb: number;
  freeMb: number;
  queueLength: number;
  inFlight: number;
  byState: Record<ContainerState, number>;
}

export interface PoolSnapshot {
  containers: ContainerSnapshot[];
  totals: PoolTotals;
}

/** A (kind, memory) stem cell target; see RuntimeManifest.stemCells(). */
export interface StemCellSpec {
  kind: string;
  image: string;
  memoryMb: number;
  /**
   * The configured size in bytes when it is not `memoryMb` MiB exactly (a
   * manifest may say `"300000 KB"`): the container gets `memoryMb`, but as
   * upstream (ByteSize equality) it is only handed to an action whose memory
   * limit is exactly this size, i.e. never. Default `memoryMb` MiB.
   */
  memoryBytes?: number;
  count: number;
  /**
   * Largest action concurrency a stem cell of this target may serve: passed
   * to ContainerSpec.concurrency, since a runtime may need to be started
   * with concurrency enabled. Default 1.
   */
  concurrency?: number;
}
