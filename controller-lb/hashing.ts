/**
 * Where an action lives: the home invoker and the step size of the probe walk
 * (upstream ShardingContainerPoolBalancer.generateHash / schedule /
 * pairwiseCoprimeNumbersUntil). These must agree with upstream bit for bit, so
 * that a mixed deployment, or one moved over from upstream, keeps each
 * action's warm containers on the same invoker.
 */

/**
 * Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code
 * units, in 32-bit two's complement. JavaScript strings are UTF-16 too, so
 * `charCodeAt` yields exactly Java's `char`s (surrogate pairs included).
 */
export function javaStringHashCode(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) {
    // Math.imul keeps the multiplication in 32 bits; `| 0` wraps the sum.
    h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  }
  return h;
}

/**
 * Scala's `Int.abs` (= Java `Math.abs(int)`): `Int.MinValue.abs` is
 * `Int.MinValue`, because +2^31 does not fit. Mirrored on purpose: the
 * resulting value feeds both the home index and the step index.
 */
export function javaIntAbs(x: number): number {
  return Math.abs(x) | 0;
}

/**
 * Upstream's hash of (namespace, action): `(ns.hashCode ^ "path/name".hashCode).abs`.
 * `actionPathAndName` is the fully qualified name without version (`path/name`,
 * where path may contain a package).
 */
export function actionHash(namespace: string, actionPathAndName: string): number {
  return javaIntAbs(javaStringHashCode(namespace) ^ javaStringHashCode(actionPathAndName));
}

/**
 * `hash % n` for n > 0, always in [0, n). The hash is negative only for
 * Int.MinValue (see javaIntAbs); upstream would then index with a negative
 * remainder and throw, we use the non-negative remainder instead.
 */
export function indexFor(hash: number, n: number): number {
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`an index needs a positive count, got ${n}`);
  const r = hash % n;
  // `+ 0` turns -0 (from e.g. -2147483648 % 4) into 0.
  return (r < 0 ? r + n : r) + 0;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * The numbers in 1..x that are coprime to x and to each other, chosen greedily
 * from 1 upwards (upstream pairwiseCoprimeNumbersUntil); `[1]` when none.
 * Coprime to x means a walk with that step visits every invoker once.
 */
export function pairwiseCoprimeNumbersUntil(x: number): number[] {
  const primes: number[] = [];
  for (let cur = 1; cur <= x; cur++) {
    if (gcd(cur, x) === 1 && primes.every((p) => gcd(p, cur) === 1)) primes.push(cur);
  }
  return primes.length > 0 ? primes : [1];
}

export interface Placement {
  /** The invoker index the walk starts at, in [0, n). */
  home: number;
  /** The distance between probes. */
  step: number;
}

/**
 * The home invoker and step size for an action among `n` invokers, `stepSizes`
 * being `pairwiseCoprimeNumbersUntil(n)` (callers cache it: it only changes with n).
 */
export function placement(namespace: string, actionPathAndName: string, n: number, stepSizes: readonly number[]): Placement {
  const hash = actionHash(namespace, actionPathAndName);
  const step = stepSizes[indexFor(hash, stepSizes.length)];
  if (step === undefined) throw new RangeError('placement needs at least one step size');
  return { home: indexFor(hash, n), step };
}

/** The home invoker of an action among `n` invokers. */
export function homeInvoker(namespace: string, actionPathAndName: string, n: number): number {
  return indexFor(actionHash(namespace, actionPathAndName), n);
}
