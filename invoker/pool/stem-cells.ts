/**
 * Stem cell targets (upstream's ExecManifest name for containers created
 * ahead of demand, called "prewarm" only in environment variables, metric
 * label values and container names/labels) and their upkeep rules: how many are still
 * wanted, and when creation may be tried again after a failure. The pool owns
 * the containers and the timers; this owns the arithmetic.
 */
import type { StemCellSpec } from './types.js';

const MIB = 1024 * 1024;

export interface BackoffOptions {
  /** Delay after the first failure. */
  initialMs: number;
  /** Cap for the doubling delay. */
  maxMs: number;
}

export const DEFAULT_STEM_CELL_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 60_000 };

export interface StemCellTarget {
  readonly kind: string;
  readonly image: string;
  readonly memoryMb: number;
  /** See StemCellSpec.memoryBytes; always set here. */
  readonly memoryBytes: number;
  readonly count: number;
  readonly concurrency: number;
  /** Consecutive creation failures; reset by a success. */
  failures: number;
  /** No creation attempt before this time (pool clock). */
  retryAt: number;
  retryTimer: NodeJS.Timeout | undefined;
}

/** Merges duplicate (kind, memory, image) entries and validates the numbers. */
export function stemCellTargets(specs: readonly StemCellSpec[]): StemCellTarget[] {
  const byKey = new Map<string, StemCellTarget>();
  specs.forEach((spec, i) => {
    const what = `stem cell ${i} (${spec.kind}, ${spec.memoryMb} MB)`;
    if (!Number.isSafeInteger(spec.count) || spec.count < 0) throw new RangeError(`${what}: count must be a non-negative integer, got ${spec.count}`);
    if (!Number.isSafeInteger(spec.memoryMb) || spec.memoryMb <= 0) throw new RangeError(`${what}: memoryMb must be a positive integer`);
    const memoryBytes = spec.memoryBytes ?? spec.memoryMb * MIB;
    if (!Number.isSafeInteger(memoryBytes) || Math.floor(memoryBytes / MIB) !== spec.memoryMb) {
      throw new RangeError(`${what}: memoryBytes ${memoryBytes} is not ${spec.memoryMb} MiB rounded down`);
    }
    const concurrency = spec.concurrency ?? 1;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new RangeError(`${what}: concurrency must be a positive integer, got ${concurrency}`);
    if (spec.count === 0) return;
    const key = `${spec.kind}\u0000${memoryBytes}\u0000${spec.image}`;
    const existing = byKey.get(key);
    byKey.set(key, {
      kind: spec.kind,
      image: spec.image,
      memoryMb: spec.memoryMb,
      memoryBytes,
      count: (existing?.count ?? 0) + spec.count,
      concurrency: Math.max(existing?.concurrency ?? 1, concurrency),
      failures: 0,
      retryAt: 0,
      retryTimer: undefined,
    });
  });
  return [...byKey.values()];
}

/** Stem cells `target` still wants with `live` of them counted: none while it backs off. */
export function stemCellShortfall(target: StemCellTarget, live: number, now: number): number {
  if (now < target.retryAt) return 0;
  return Math.max(0, target.count - live);
}

/** A creation failed: counts it and returns the delay (ms) before the next attempt. */
export function recordStemCellFailure(target: StemCellTarget, now: number, backoff: BackoffOptions): number {
  target.failures += 1;
  const delayMs = backoffDelayMs(target.failures, backoff);
  target.retryAt = now + delayMs;
  return delayMs;
}

/** A creation succeeded: the backoff starts over. */
export function recordStemCellSuccess(target: StemCellTarget): void {
  target.failures = 0;
}

/** Delay before the next attempt after `failures` consecutive failures (>= 1): doubling, capped. */
export function backoffDelayMs(failures: number, options: BackoffOptions): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  return Math.min(options.maxMs, options.initialMs * 2 ** exponent);
}
