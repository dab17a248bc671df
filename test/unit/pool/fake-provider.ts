/**
 * An in-memory ContainerProvider for the pool's unit tests. The pool is pure
 * capacity and lifecycle bookkeeping, so a fake that records every call and
 * can be told to be slow or to fail exercises all of it; the pool is tested
 * against real Docker containers in test/integration.
 *
 * It also measures what really matters for memory safety: the memory of
 * containers that exist (or are being created) at any moment, and its peak.
 */
import type { ContainerProvider, ContainerSpec, PoolContainer } from '../../../invoker/pool/container-pool.js';

export type FakeOp = 'create' | 'pause' | 'unpause' | 'destroy';

export interface FakeEvent {
  op: FakeOp;
  /** Container name, or `create:<kind>/<memory>` for creates that have no container yet. */
  name: string;
  outcome: 'start' | 'ok' | 'fail';
}

type Failure = Error | undefined;

export class FakeContainer implements PoolContainer {
  readonly id: string;
  readonly name: string;
  readonly spec: ContainerSpec;
  paused = false;
  destroyed = false;
  private readonly provider: FakeProvider;

  constructor(provider: FakeProvider, n: number, spec: ContainerSpec) {
    this.provider = provider;
    this.spec = spec;
    this.id = `fake-${n.toString(16).padStart(12, '0')}`;
    this.name = `wsk-fake-${n}${spec.stemCell ? `-prewarm-${spec.kind}` : ''}`;
  }

  async pause(): Promise<void> {
    await this.provider.op('pause', this, () => {
      this.paused = true;
    });
  }

  async unpause(): Promise<void> {
    await this.provider.op('unpause', this, () => {
      this.paused = false;
    });
  }

  async destroy(): Promise<void> {
    await this.provider.op('destroy', this, () => {
      // Only a successful remove gives the memory back to the "engine".
      this.destroyed = true;
      this.provider.liveMb -= this.spec.memoryMb;
    });
  }
}

export interface FakeProviderOptions {
  delays?: Partial<Record<FakeOp, number>>;
}

export class FakeProvider implements ContainerProvider<FakeContainer> {
  readonly events: FakeEvent[] = [];
  readonly containers: FakeContainer[] = [];
  /** Per-op delays in ms (0: resolve on the next tick). */
  delays: Record<FakeOp, number>;
  /** Memory of containers created or being created and not yet destroyed. */
  liveMb = 0;
  peakLiveMb = 0;
  /** Fail the next N creates (each entry one create). */
  readonly createFailures: Failure[] = [];
  /** Containers (by name) whose next pause/unpause/destroy fails. */
  readonly failNext = new Map<string, Set<FakeOp>>();
  /** Optional per-create hook, e.g. a random delay. */
  createDelay: ((spec: ContainerSpec) => number) | undefined;
  private n = 0;

  constructor(options: FakeProviderOptions = {}) {
    this.delays = { create: 0, pause: 0, unpause: 0, destroy: 0, ...options.delays };
  }

  async create(spec: ContainerSpec): Promise<FakeContainer> {
    const label = `create:${spec.kind}/${spec.memoryMb}${spec.stemCell ? '/prewarm' : ''}`;
    this.events.push({ op: 'create', name: label, outcome: 'start' });
    this.liveMb += spec.memoryMb;
    this.peakLiveMb = Math.max(this.peakLiveMb, this.liveMb);
    await sleep(this.createDelay?.(spec) ?? this.delays.create);
    if (this.createFailures.length > 0) {
      const failure = this.createFailures.shift() ?? new Error('fake create failure');
      this.liveMb -= spec.memoryMb;
      this.events.push({ op: 'create', name: label, outcome: 'fail' });
      throw failure;
    }
    const container = new FakeContainer(this, ++this.n, spec);
    this.containers.push(container);
    this.events.push({ op: 'create', name: container.name, outcome: 'ok' });
    return container;
  }

  failNextOp(container: FakeContainer, op: Exclude<FakeOp, 'create'>): void {
    let ops = this.failNext.get(container.name);
    if (ops === undefined) {
      ops = new Set();
      this.failNext.set(container.name, ops);
    }
    ops.add(op);
  }

  /** @internal used by FakeContainer */
  async op(op: Exclude<FakeOp, 'create'>, container: FakeContainer, apply: () => void): Promise<void> {
    this.events.push({ op, name: container.name, outcome: 'start' });
    if (container.destroyed) throw new Error(`fake ${op} on destroyed container ${container.name}`);
    await sleep(this.delays[op]);
    const ops = this.failNext.get(container.name);
    if (ops?.delete(op) === true) {
      this.events.push({ op, name: container.name, outcome: 'fail' });
      throw new Error(`fake ${op} failure on ${container.name}`);
    }
    apply();
    this.events.push({ op, name: container.name, outcome: 'ok' });
  }

  /** Completed calls of `op`, as container names (or create labels), in order. */
  done(op: FakeOp): string[] {
    return this.events.filter((e) => e.op === op && e.outcome === 'ok').map((e) => e.name);
  }

  count(op: FakeOp, outcome: FakeEvent['outcome'] = 'ok'): number {
    return this.events.filter((e) => e.op === op && e.outcome === outcome).length;
  }

  alive(): FakeContainer[] {
    return this.containers.filter((c) => !c.destroyed);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Lets queued promise callbacks and zero-delay timers run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await sleep(0);
}

/** Polls until `check` holds (or fails the wait after `timeoutMs`). */
export async function until(check: () => boolean, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** Deterministic PRNG (mulberry32) for randomized tests. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
