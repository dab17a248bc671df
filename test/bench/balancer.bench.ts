/**
 * The balancer at scale, by simulation: controller-lb's scheduler and memory
 * accounting driven in-process (no network, no timers) with 10, 100 and 1,000
 * simulated invokers of mixed sizes and 100,000 actions of Zipf-distributed
 * popularity. Activations arrive in simulated time, each completes after a
 * simulated run time (releasing its slot), and invokers go unhealthy (a burst
 * of system errors) and down (pings stop) and come back.
 *
 *   node --import tsx test/bench/balancer.bench.ts      (or: npm run bench balancer)
 *
 * Prints per invoker count: wall-clock microseconds per placement (p50/p99,
 * the `schedule()` call alone), share placed on the home invoker, share
 * overloaded (what goes to Kafka when it is configured), the balancer's heap
 * growth, and the ratio of each figure to the 10-invoker run, so that what
 * grows faster than the invoker count shows at a glance. Bounded: a fixed
 * number of placements per size.
 */
import { actionHash, indexFor } from '../../controller-lb/hashing.js';
import { InvokerPool } from '../../controller-lb/invoker-state.js';
import { NoInvokersAvailableError, Scheduler, type SchedulingRequest } from '../../controller-lb/scheduler.js';
import { megabytes } from '../../protocol/index.js';
// Deterministic (mulberry32), so runs are comparable.
import { prng } from '../unit/pool/fake-provider.js';

const ACTIONS = 100_000;
const PLACEMENTS = Number(process.env.BENCH_PLACEMENTS ?? 100_000);
const SIZES = (process.env.BENCH_INVOKERS ?? '10,100,1000').split(',').map(Number);
const MEMORY_CHOICES_MB = [128, 256, 256, 512];
const INVOKER_MEMORY_MB = [2048, 4096, 8192];

/** Zipf(s) sampler over [0, n) by inverse CDF on a precomputed table. */
function zipf(n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / Math.pow(k + 1, s);
    cdf[k] = sum;
  }
  return () => {
    const u = random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** Min-heap of completions by simulated time. */
class Completions {
  readonly #times: number[] = [];
  readonly #items: Array<() => void> = [];
  get size(): number {
    return this.#times.length;
  }
  push(at: number, release: () => void): void {
    const t = this.#times;
    const it = this.#items;
    let i = t.length;
    t.push(at);
    it.push(release);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((t[p] as number) <= at) break;
      t[i] = t[p] as number;
      it[i] = it[p] as () => void;
      i = p;
    }
    t[i] = at;
    it[i] = release;
  }
  /** Runs every completion due at or before `now`. */
  drain(now: number): void {
    const t = this.#times;
    const it = this.#items;
    while (t.length > 0 && (t[0] as number) <= now) {
      const release = it[0] as () => void;
      const lastT = t.pop() as number;
      const lastI = it.pop() as () => void;
      if (t.length > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= t.length) break;
          const r = l + 1;
          const c = r < t.length && (t[r] as number) < (t[l] as number) ? r : l;
          if ((t[c] as number) >= lastT) break;
          t[i] = t[c] as number;
          it[i] = it[c] as () => void;
          i = c;
        }
        t[i] = lastT;
        it[i] = lastI;
      }
      release();
    }
  }
}

interface Action {
  request: SchedulingRequest;
  home: number;
  runMs: number;
}

interface Result {
  invokers: number;
  load: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  homeShare: number;
  overloadShare: number;
  refused: number;
  heapMb: number;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

function heapUsed(): number {
  globalThis.gc?.();
  return process.memoryUsage().heapUsed;
}

function simulate(n: number, load: number): Result {
  const random = prng(42 + n);
  const latencies = new Float64Array(PLACEMENTS);
  const heapBefore = heapUsed();
  const pool = new InvokerPool({ controllerCount: 1, maxInvokers: 100_000 });
  let capacityMb = 0;
  for (let i = 0; i < n; i++) {
    const mb = INVOKER_MEMORY_MB[i % INVOKER_MEMORY_MB.length] as number;
    capacityMb += mb;
    pool.register({ instance: i, userMemory: megabytes(mb), tags: [], dedicatedNamespaces: [] });
  }
  const scheduler = new Scheduler(pool, { random });
  const managed = scheduler.candidates(false).length;

  const actions: Action[] = new Array(ACTIONS);
  for (let a = 0; a < ACTIONS; a++) {
    const namespace = `ns${a % 997}`;
    const actionPathAndName = `${namespace}/action${a}`;
    const memoryMb = MEMORY_CHOICES_MB[a % MEMORY_CHOICES_MB.length] as number;
    const blackbox = a % 50 === 0;
    actions[a] = {
      request: { namespace, actionPathAndName, actionKey: `${actionPathAndName}@0.0.1`, memoryMb, concurrency: a % 10 === 0 ? 4 : 1, blackbox },
      home: blackbox ? -1 : indexFor(actionHash(namespace, actionPathAndName), managed),
      runMs: 20 + Math.floor(random() * 400),
    };
  }
  const pick = zipf(ACTIONS, 1.1, random);

  // Arrivals sized so that the offered load is `load` times the memory: at
  // 0.9 a busy cluster (few overflow), at 1.2 sustained overload (every
  // placement walks all invokers, then overflows).
  const meanMb = MEMORY_CHOICES_MB.reduce((s, m) => s + m, 0) / MEMORY_CHOICES_MB.length;
  const meanRunMs = 220;
  const arrivalsPerMs = (load * capacityMb) / meanMb / meanRunMs;

  const completions = new Completions();
  let now = 0;
  for (let i = 0; i < n; i++) pool.recordPing(pool.get(i)?.id ?? { instance: i, userMemory: megabytes(2048), tags: [], dedicatedNamespaces: [] }, now);
  let nextPingAt = 2_000;
  let nextFaultAt = 5_000;
  const down = new Set<number>();

  let home = 0;
  let overloaded = 0;
  let refused = 0;

  for (let p = 0; p < PLACEMENTS; p++) {
    now += -Math.log(1 - random()) / arrivalsPerMs;
    completions.drain(now);
    if (now >= nextPingAt) {
      for (let i = 0; i < n; i++) if (!down.has(i)) pool.recordPing((pool.get(i) as { id: Parameters<InvokerPool['recordPing']>[0] }).id, now);
      nextPingAt += 2_000;
    }
    if (now >= nextFaultAt) {
      // Faults: 2 % of the invokers stop pinging (down after 10 s), 2 % report
      // a burst of system errors (unhealthy until successes come back); the
      // previous round's down invokers return.
      down.clear();
      const faulty = Math.max(1, Math.floor(n * 0.02));
      for (let f = 0; f < faulty; f++) down.add(Math.floor(random() * n));
      for (let f = 0; f < faulty; f++) {
        const index = Math.floor(random() * n);
        for (let e = 0; e < 4; e++) pool.recordResult(index, 'systemError', now);
      }
      nextFaultAt += 5_000;
    }

    const action = actions[pick()] as Action;
    const start = process.hrtime.bigint();
    let scheduled;
    try {
      scheduled = scheduler.schedule(action.request, now);
    } catch (error) {
      if (!(error instanceof NoInvokersAvailableError)) throw error;
      refused++;
      latencies[p] = Number(process.hrtime.bigint() - start) / 1000;
      continue;
    }
    latencies[p] = Number(process.hrtime.bigint() - start) / 1000;
    if (scheduled.overloaded) overloaded++;
    if (scheduled.invoker.index === action.home) home++;
    const { invoker } = scheduled;
    const { actionKey, concurrency, memoryMb } = action.request;
    completions.push(now + action.runMs, () => {
      invoker.slots.releaseConcurrent(actionKey, concurrency, memoryMb);
      // Successes heal unhealthy invokers, as health test actions would.
      pool.recordResult(invoker.index, 'success', now);
    });
  }
  // What the balancer keeps: everything completes, the simulation's own
  // tables are dropped, the pool and scheduler stay.
  completions.drain(Number.POSITIVE_INFINITY);
  actions.length = 0;
  const heapMb = (heapUsed() - heapBefore) / 1e6;
  if (scheduler.candidates(false).length !== managed) throw new Error('the pool changed size during the simulation');
  const sorted = latencies.slice().sort();
  return {
    invokers: n,
    load,
    p50Us: percentile(sorted, 0.5),
    p99Us: percentile(sorted, 0.99),
    meanUs: sorted.reduce((s, v) => s + v, 0) / sorted.length,
    homeShare: home / PLACEMENTS,
    overloadShare: overloaded / PLACEMENTS,
    refused,
    heapMb,
  };
}

const LOADS = (process.env.BENCH_LOADS ?? '0.9,1.2').split(',').map(Number);
const fmt = (v: number, d = 2): string => v.toFixed(d);
console.log(`balancer simulation: ${PLACEMENTS} placements per size, ${ACTIONS} actions (Zipf s=1.1), 2 % of invokers down and 2 % unhealthy every 5 s`);
console.log('| offered load | invokers | us/placement p50 | p99 | mean | mean vs 10 invokers | home share | overloaded (to Kafka) | refused | balancer heap MB |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const load of LOADS) {
  const results = SIZES.map((n) => simulate(n, load));
  const base = results[0] as Result;
  for (const r of results) {
    console.log(
      `| ${fmt(load * 100, 0)} % | ${r.invokers} | ${fmt(r.p50Us)} | ${fmt(r.p99Us)} | ${fmt(r.meanUs)} | ${fmt(r.meanUs / base.meanUs)}x (${fmt(r.invokers / base.invokers, 0)}x invokers) | ${fmt(r.homeShare * 100, 1)} % | ${fmt(r.overloadShare * 100, 1)} % | ${r.refused} | ${fmt(r.heapMb, 1)} |`,
    );
  }
}
