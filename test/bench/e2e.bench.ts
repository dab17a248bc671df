/**
 * End to end over the real transport: a real invoker process, compiled as
 * deployed (`node dist/invoker/main.js`), driven by a load generator in a
 * separate process (this file run as `... e2e.bench.ts client`) with
 * keep-alive connections, against a direct `POST /run` on a warm container of
 * the same image that the invoker does not manage, in the same run. Needs the
 * services (Docker engine + runtime image, CouchDB-compatible server, Kafka).
 *
 *   node --import tsx test/bench/e2e.bench.ts        (or: npm run bench e2e)
 *
 * Prints, and writes to .cache/bench/e2e.json, e2e.md and e2e.svg:
 * 1. warm, for concurrency 1, 4 and 16, rounds of direct and invoker
 *    interleaved: p50/p90/p99 latency, throughput, the overhead over direct,
 *    and the invoker's CPU per activation read from its own counters
 *    (/proc/<pid>/stat: the invoker process only, so CouchDB's share of
 *    storing each record, the load generator and the container are not in it;
 *    every record is still journaled and stored);
 * 2. the same through Kafka (produce to `invoker<N>`, consume `completed<C>`)
 *    at concurrency 1 and 16;
 * 3. cold start: a new action per activation through the invoker vs the
 *    engine's own create + start + ready + `/init` done directly, interleaved;
 *    with the invoker's CPU per cold activation;
 * 4. RSS: idle, after the load, and with BENCH_WARM_CONTAINERS (200) warm
 *    128 MB containers.
 * BENCH_CPU_PROF=1 writes a V8 CPU profile of the invoker to
 * .cache/bench/profiles/ (open it in Chrome DevTools, or summarise it with
 * `node scripts/cpu-profile-top.mjs <file>`).
 * BENCH_PHASES (http,kafka,cold,rss) and BENCH_CONCURRENCIES (1,4,16) narrow
 * a run, e.g. to profile one path.
 * Bounded: BENCH_WARM_REQUESTS per round (2,000), BENCH_ROUNDS (3), BENCH_COLD
 * (10) cold starts; every wait has a deadline.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { logLevel } from 'kafkajs';
import { Pool } from 'undici';
import {
  generateActivationId,
  generateTransactionId,
  RawJson,
  serializeActivationMessage,
  type JsonValue,
  type ActivationMessage,
} from '../../protocol/index.js';
import { freePort, InvokerTestbed, sleep } from '../helpers/invoker-harness.js';
import { uniqueName } from '../helpers/env.js';
import { testKafka } from '../helpers/kafka.js';

if (process.env.TAP !== undefined) {
  process.stdout.write('1..0 # SKIP benchmark: run with node --import tsx test/bench/e2e.bench.ts\n');
  process.exit(0);
}

const ROOT = new URL('../..', import.meta.url).pathname;
const CODE = `function main(p) { console.log('hello ' + p.name); return { greeting: 'Hello, ' + p.name + '!' }; }`;

// ------------------------------------------------------------ load generator

/** What the parent asks of a client process (argv[3], JSON). */
type LoadJob =
  | { mode: 'http'; origin: string; path: string; body?: string; message?: ActivationMessage; requests: number; concurrency: number; deadlineMs: number }
  | { mode: 'kafka'; brokers: string[]; topic: string; completedTopic: string; message: ActivationMessage; requests: number; concurrency: number; deadlineMs: number };

interface LoadResult {
  latenciesMs: number[];
  wallMs: number;
  errors: number;
  firstError?: string;
}

/** A fresh activation: new ids, the rest as given. */
function freshMessage(template: ActivationMessage): string {
  return serializeActivationMessage({ ...template, activationId: generateActivationId(), transid: generateTransactionId() });
}

async function runHttp(job: Extract<LoadJob, { mode: 'http' }>): Promise<LoadResult> {
  const pool = new Pool(job.origin, { connections: job.concurrency, pipelining: 1 });
  const result = await boundedLoad(job, () => (job.message ? freshMessage(job.message) : (job.body as string)), async (body) => {
    const res = await pool.request({ path: job.path, method: 'POST', body, headers: { 'content-type': 'application/json' } });
    const text = await res.body.text();
    // A completion with statusCode 0 (invoker) or the action's result (direct).
    if (res.statusCode !== 200 || (job.message && !text.includes('"statusCode":0'))) throw new Error(`${res.statusCode} ${text.slice(0, 300)}`);
  });
  await pool.close();
  return result;
}

async function runKafka(job: Extract<LoadJob, { mode: 'kafka' }>): Promise<LoadResult> {
  const kafka = testKafka({ clientId: 'e2e-bench', brokers: job.brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  const consumer = kafka.consumer({ groupId: uniqueName('bench-completed'), maxWaitTimeInMs: 10 });
  const waiting = new Map<string, () => void>();
  // The invoker creates completed<C> on its first completion; subscribing
  // needs it now.
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: job.completedTopic, numPartitions: 1 }] }).catch(() => false);
  await admin.disconnect();
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: job.completedTopic, fromBeginning: false });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const text = message.value?.toString() ?? '';
      const id = /"activationId":"([0-9a-f]{32})"/.exec(text)?.[1];
      if (id !== undefined) waiting.get(id)?.();
    },
  });
  // The group join ends before the first partition assignment is usable.
  await sleep(3000);
  const fresh = () => {
    const activationId = generateActivationId();
    return { activationId, value: serializeActivationMessage({ ...job.message, activationId, transid: generateTransactionId() }) };
  };
  const result = await boundedLoad(job, fresh, async ({ activationId, value }) => {
    try {
      const done = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no completion for ${activationId} within 30 s`)), 30_000);
        waiting.set(activationId, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      await producer.send({ topic: job.topic, acks: -1, messages: [{ value }] });
      await done;
    } finally {
      waiting.delete(activationId);
    }
  });
  await consumer.disconnect();
  await producer.disconnect();
  return result;
}

/**
 * `job.concurrency` workers sending one request at a time until
 * `job.requests` are sent or `job.deadlineMs` has passed. `prepare` builds a
 * request outside the timed part; `send` resolves when it succeeded and throws
 * when it failed (counted, first message kept).
 */
async function boundedLoad<T>(
  job: { requests: number; concurrency: number; deadlineMs: number },
  prepare: () => T,
  send: (request: T) => Promise<void>,
): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const stopAt = performance.now() + job.deadlineMs;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < job.requests && performance.now() < stopAt) {
      next++;
      const request = prepare();
      const t0 = performance.now();
      try {
        await send(request);
        latencies.push(performance.now() - t0);
      } catch (error) {
        errors++;
        firstError ??= (error as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  return { latenciesMs: latencies, wallMs: performance.now() - started, errors, ...(firstError ? { firstError } : {}) };
}

if (process.argv[2] === 'client') {
  const job = JSON.parse(process.argv[3] as string) as LoadJob;
  // argv carries the message as JSON, where RawJson's toJSON wrote `content` as its value: make it RawJson again.
  if (job.message?.content !== undefined) job.message.content = RawJson.of(job.message.content as unknown as JsonValue);
  const result = job.mode === 'http' ? await runHttp(job) : await runKafka(job);
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}

/** Runs one job in a separate client process. */
function load(job: LoadJob): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, 'client', JSON.stringify(job)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`load client exited with ${code}`));
      try {
        resolve(JSON.parse(out) as LoadResult);
      } catch (error) {
        reject(new Error(`load client printed no result: ${out.slice(0, 200)}`, { cause: error }));
      }
    });
  });
}

// ------------------------------------------------------------ measurement helpers

/**
 * CPU time of every thread of `pid` (main, libuv pool, V8's GC helpers), in
 * ms, from the scheduler's nanosecond counters (/proc/<pid>/task/<tid>/schedstat,
 * first field): /proc/<pid>/stat counts in 10 ms ticks, too coarse for one
 * cold start.
 */
function cpuMs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended in between.
    }
  }
  return ns / 1e6;
}
function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? NaN) / 1024;
}

interface Stats {
  p50: number;
  p90: number;
  p99: number;
  n: number;
}
function stats(samples: number[]): Stats {
  const sorted = Float64Array.from(samples).sort();
  const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), n: samples.length };
}
const f = (v: number, d = 2): string => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');

// ------------------------------------------------------------ the system under test

const WARM_REQUESTS = Number(process.env.BENCH_WARM_REQUESTS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const COLD = Number(process.env.BENCH_COLD ?? 10);
const WARM_CONTAINERS = Number(process.env.BENCH_WARM_CONTAINERS ?? 200);
/** Which parts run (comma-separated; all by default): focus a profile on one path. */
const PHASES = new Set((process.env.BENCH_PHASES ?? 'http,kafka,cold,rss').split(',').map((p) => p.trim()));
const IDLE_SECONDS = 5;
const CONCURRENCIES = (process.env.BENCH_CONCURRENCIES ?? '1,4,16').split(',').map(Number);
const KAFKA_CONCURRENCIES = [1, 16];
const ACTION_MB = 128;

const teardowns: Array<() => unknown> = [];
const bed = new InvokerTestbed({ teardown: (fn) => teardowns.push(fn) });
const docker = new Dockerode();
const controller = `bench${process.pid}`;
const kafkaBrokers = bed.env.kafkaBrokers;
const directContainers: Dockerode.Container[] = [];
let invokerProcess: ChildProcess | undefined;

async function startInvoker(): Promise<{ pid: number; origin: string }> {
  const build = spawn('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  const built = await new Promise<number | null>((resolve) => build.once('exit', resolve));
  if (built !== 0) throw new Error('npm run build failed');
  const port = await freePort();
  // BENCH_CPU_PROF=1: a V8 CPU profile of the invoker, written when it stops.
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, '.cache', 'bench', 'profiles')}`] : [];
  // As the image runs it (the Dockerfile's NODE_OPTIONS).
  const deployedFlags = ['--max-semi-space-size=8'];
  const child = spawn(process.execPath, [...deployedFlags, ...profile, 'dist/invoker/main.js'], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...bed.invokerEnv({
        INVOKER_HTTP_PORT: String(port),
        // Room for the warm-container RSS measurement; no pausing while measuring.
        INVOKER_USER_MEMORY_MB: String(Math.max(4096, (WARM_CONTAINERS + 8) * ACTION_MB)),
        INVOKER_PAUSE_GRACE_MS: '600000',
        INVOKER_PREWARM_COUNT: '0',
        KAFKA_BROKERS: kafkaBrokers.join(','),
        LOG_LEVEL: 'info',
      }),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  invokerProcess = child;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const origin = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`invoker exited during startup: ${stderr}`);
    const ready = await fetch(`${origin}/health/ready`).then((r) => r.status).catch(() => 0);
    if (ready === 200) break;
    if (Date.now() > deadline) throw new Error(`invoker not ready within 90 s: ${stderr}`);
    await sleep(200);
  }
  return { pid: child.pid as number, origin };
}

function message(name: string, rev: string): ActivationMessage {
  return { ...bed.message({ name, rev }, { content: { name: 'World' }, controller }), activationId: generateActivationId() };
}

/** The runtime answers on :8080 (TCP connect), polled every 2 ms. */
async function waitPort(host: string, deadlineMs: number): Promise<void> {
  const stopAt = performance.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(8080, host);
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > stopAt) throw new Error(`${host}:8080 did not accept connections within ${deadlineMs} ms`);
    await sleep(2);
  }
}

/** The engine's own floor: create + start + ready + /init, done directly. */
async function engineColdStart(): Promise<{ ms: number; ip: string; container: Dockerode.Container }> {
  const t0 = performance.now();
  const container = await docker.createContainer({
    Image: bed.env.actionImageNodejs,
    name: uniqueName('bench-direct'),
    HostConfig: { NetworkMode: bed.env.dockerNetwork, Memory: ACTION_MB * 1024 * 1024, MemorySwap: ACTION_MB * 1024 * 1024 },
  });
  directContainers.push(container);
  await container.start();
  const info = await container.inspect();
  const ip = info.NetworkSettings.Networks[bed.env.dockerNetwork]?.IPAddress;
  if (!ip) throw new Error('direct container has no IP');
  await waitPort(ip, 10_000);
  const res = await fetch(`http://${ip}:8080/init`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ value: { name: 'direct', main: 'main', code: CODE, binary: false, env: {} } }),
  });
  if (res.status !== 200) throw new Error(`direct /init: ${res.status} ${await res.text()}`);
  return { ms: performance.now() - t0, ip, container };
}

interface Row {
  transport: string;
  concurrency: number;
  p50: number;
  p90: number;
  p99: number;
  throughput: number;
  overheadP50: number | null;
  cpuUsPerActivation: number | null;
  errors: number;
}

function svg(rows: Row[]): string {
  // Two panels: p50 latency (ms) and throughput (/s) by concurrency, one line per transport.
  const transports = [...new Set(rows.map((r) => r.transport))];
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const panel = (title: string, value: (r: Row) => number, x0: number): string => {
    const w = 360;
    const h = 220;
    const max = Math.max(...rows.map(value), 1e-9) * 1.1;
    const xs = CONCURRENCIES;
    const px = (c: number): number => x0 + 40 + (xs.indexOf(c) / Math.max(1, xs.length - 1)) * (w - 60);
    const py = (v: number): number => 30 + h - (v / max) * h;
    let out = `<text x="${x0 + 40}" y="18" font-size="13">${title}</text>`;
    out += `<line x1="${x0 + 40}" y1="${30 + h}" x2="${x0 + w - 20}" y2="${30 + h}" stroke="#888"/>`;
    out += `<line x1="${x0 + 40}" y1="30" x2="${x0 + 40}" y2="${30 + h}" stroke="#888"/>`;
    out += `<text x="${x0 + 2}" y="36" font-size="10">${max.toPrecision(3)}</text>`;
    for (const c of xs) out += `<text x="${px(c) - 8}" y="${45 + h}" font-size="10">c=${c}</text>`;
    transports.forEach((t, i) => {
      const pts = rows.filter((r) => r.transport === t && xs.includes(r.concurrency));
      const path = pts.map((r) => `${px(r.concurrency).toFixed(1)},${py(value(r)).toFixed(1)}`).join(' ');
      out += `<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="2" points="${path}"/>`;
      for (const r of pts) out += `<circle cx="${px(r.concurrency).toFixed(1)}" cy="${py(value(r)).toFixed(1)}" r="3" fill="${colors[i % colors.length]}"/>`;
    });
    return out;
  };
  const legend = transports.map((t, i) => `<text x="${40 + i * 170}" y="300" font-size="12" fill="${colors[i % colors.length]}">${t}</text>`).join('');
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="760" height="310" font-family="sans-serif">` +
    panel('p50 latency (ms)', (r) => r.p50, 0) +
    panel('throughput (activations/s)', (r) => r.throughput, 380) +
    legend +
    `</svg>\n`
  );
}

try {
  await bed.createDatabases();
  const { pid, origin } = await startInvoker();
  await sleep(1000);
  const rssIdle = rssMb(pid);
  // What the invoker spends with nothing to do (Kafka fetch loop, pings,
  // probes, timers): at low rates it is a large part of CPU per activation.
  const idleBefore = cpuMs(pid);
  await sleep(IDLE_SECONDS * 1000);
  const idleCpuMsPerSecond = (cpuMs(pid) - idleBefore) / IDLE_SECONDS;
  console.log(`invoker pid ${pid} (node ${process.version}, compiled dist/), idle RSS ${f(rssIdle, 1)} MB, idle CPU ${f(idleCpuMsPerSecond, 1)} ms/s`);

  // ---- 1. warm, HTTP push vs direct /run
  const { rev } = await bed.putAction({ name: 'warm', code: CODE, limits: { memory: ACTION_MB, concurrency: 1 } });
  const warm = message('warm', rev);
  // Warm containers for c=16: one per concurrent caller (concurrency 1 action).
  await load({ mode: 'http', origin, path: '/invoke', message: warm, requests: 64, concurrency: 16, deadlineMs: 120_000 });
  const direct = await engineColdStart();
  const directRun = JSON.stringify({
    value: { name: 'World' },
    namespace: 'guest',
    action_name: '/guest/direct',
    activation_id: generateActivationId(),
    transaction_id: generateTransactionId().id,
    deadline: String(Date.now() + 3_600_000),
  });
  // One direct container per concurrent caller, as the invoker has one warm
  // container per concurrent activation of a concurrency-1 action.
  const directOrigins = [direct.ip];
  for (let i = 1; i < Math.max(...CONCURRENCIES); i++) directOrigins.push((await engineColdStart()).ip);

  const rows: Row[] = [];
  for (const concurrency of PHASES.has('http') ? CONCURRENCIES : []) {
    const directSamples: number[] = [];
    const invokerSamples: number[] = [];
    let directWall = 0;
    let invokerWall = 0;
    let invokerCount = 0;
    let invokerCpu = 0;
    let directCount = 0;
    let errors = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // Interleaved, alternating which goes first, to cancel drift.
      const sides = [
        async () => {
          // Direct: the same /run body shape, spread over the direct containers.
          const used = directOrigins.slice(0, concurrency);
          const results = await Promise.all(
            used.map((ip) => load({ mode: 'http', origin: `http://${ip}:8080`, path: '/run', body: directRun, requests: Math.ceil(WARM_REQUESTS / used.length), concurrency: 1, deadlineMs: 60_000 })),
          );
          for (const r of results) {
            directSamples.push(...r.latenciesMs);
            directCount += r.latenciesMs.length;
            errors += r.errors;
          }
          directWall += Math.max(...results.map((r) => r.wallMs));
        },
        async () => {
          const before = cpuMs(pid);
          const r = await load({ mode: 'http', origin, path: '/invoke', message: warm, requests: WARM_REQUESTS, concurrency, deadlineMs: 120_000 });
          invokerCpu += cpuMs(pid) - before;
          invokerSamples.push(...r.latenciesMs);
          invokerCount += r.latenciesMs.length;
          invokerWall += r.wallMs;
          errors += r.errors;
          if (r.firstError) console.log(`   !! invoker c=${concurrency}: ${r.errors} errors, first: ${r.firstError}`);
        },
      ];
      if (round % 2 === 1) sides.reverse();
      for (const side of sides) await side();
    }
    const d = stats(directSamples);
    const i = stats(invokerSamples);
    rows.push({ transport: 'direct /run', concurrency, ...d, throughput: (directCount * 1000) / directWall, overheadP50: null, cpuUsPerActivation: null, errors: 0 });
    rows.push({
      transport: 'invoker HTTP push',
      concurrency,
      ...i,
      throughput: (invokerCount * 1000) / invokerWall,
      overheadP50: i.p50 - d.p50,
      cpuUsPerActivation: (invokerCpu * 1000) / invokerCount,
      errors,
    });
  }
  const rssAfterLoad = rssMb(pid);

  // ---- 2. Kafka path
  // Under the invoker's topic prefix (the testbed gives each process its own).
  const kafkaTopic = `${bed.topicPrefix}invoker${bed.invokerId}`;
  for (const concurrency of PHASES.has('kafka') ? KAFKA_CONCURRENCIES : []) {
    const before = cpuMs(pid);
    const requests = Math.min(WARM_REQUESTS, concurrency === 1 ? 300 : 1000);
    const r = await load({ mode: 'kafka', brokers: kafkaBrokers, topic: kafkaTopic, completedTopic: `${bed.topicPrefix}completed${controller}`, message: warm, requests, concurrency, deadlineMs: 120_000 });
    const cpu = cpuMs(pid) - before;
    const s = stats(r.latenciesMs);
    const httpRow = rows.find((x) => x.transport === 'invoker HTTP push' && x.concurrency === concurrency);
    const directRow = rows.find((x) => x.transport === 'direct /run' && x.concurrency === concurrency);
    rows.push({
      transport: 'invoker Kafka',
      concurrency,
      ...s,
      throughput: (r.latenciesMs.length * 1000) / r.wallMs,
      overheadP50: directRow ? s.p50 - directRow.p50 : null,
      cpuUsPerActivation: r.latenciesMs.length > 0 ? (cpu * 1000) / r.latenciesMs.length : null,
      errors: r.errors,
    });
    if (r.firstError) console.log(`   !! kafka c=${concurrency}: ${r.errors} errors, first: ${r.firstError}`);
    if (httpRow) console.log(`   kafka c=${concurrency}: p50 ${f(s.p50)} ms vs HTTP push ${f(httpRow.p50)} ms`);
  }

  // ---- 3. cold start: through the invoker vs the engine's own steps
  const coldInvoker: number[] = [];
  const coldEngine: number[] = [];
  let coldCpu = 0;
  for (let k = 0; k < (PHASES.has('cold') ? COLD : 0); k++) {
    const name = `cold${k}`;
    const cold = await bed.putAction({ name, code: CODE, limits: { memory: ACTION_MB } });
    const viaInvoker = async (): Promise<void> => {
      // From this process, not a load client: a client's own start would
      // widen the CPU window by several hundred ms of the invoker idling.
      const before = cpuMs(pid);
      const r = await runHttp({ mode: 'http', origin, path: '/invoke', message: message(name, cold.rev), requests: 1, concurrency: 1, deadlineMs: 60_000 });
      coldCpu += cpuMs(pid) - before;
      if (r.errors > 0) throw new Error(`cold activation failed: ${r.firstError}`);
      coldInvoker.push(r.latenciesMs[0] as number);
    };
    const viaEngine = async (): Promise<void> => {
      const e = await engineColdStart();
      coldEngine.push(e.ms);
      await e.container.remove({ force: true });
      directContainers.splice(directContainers.indexOf(e.container), 1);
    };
    if (k % 2 === 0) {
      await viaInvoker();
      await sleep(300);
      await viaEngine();
    } else {
      await viaEngine();
      await sleep(300);
      await viaInvoker();
    }
    await sleep(300);
  }
  const ci = stats(coldInvoker);
  const ce = stats(coldEngine);
  // The client process's own start is not in either figure: both are timed from the request.

  // ---- 4. RSS with many warm containers
  let rssWarm = NaN;
  let warmCount = 0;
  if (WARM_CONTAINERS > 0 && PHASES.has('rss')) {
    const names: Array<{ name: string; rev: string }> = [];
    for (let k = 0; k < WARM_CONTAINERS; k++) {
      const name = `many${k}`;
      names.push({ name, rev: (await bed.putAction({ name, code: CODE, limits: { memory: ACTION_MB } })).rev });
    }
    let nextName = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (nextName < names.length) {
          const a = names[nextName++] as { name: string; rev: string };
          const r = await load({ mode: 'http', origin, path: '/invoke', message: message(a.name, a.rev), requests: 1, concurrency: 1, deadlineMs: 60_000 });
          if (r.errors === 0) warmCount++;
        }
      }),
    );
    await sleep(2000);
    rssWarm = rssMb(pid);
  }

  // ---- report
  const md: string[] = [];
  md.push(`End to end over HTTP (node ${process.version}, ${ROUNDS} interleaved rounds of ${WARM_REQUESTS} per concurrency, records stored)`);
  md.push('');
  md.push('| transport | concurrency | p50 ms | p90 ms | p99 ms | throughput /s | overhead over direct p50 ms | ratio to direct throughput | invoker CPU us/activation | errors |');
  md.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const directRow = rows.find((x) => x.transport === 'direct /run' && x.concurrency === r.concurrency);
    md.push(
      `| ${r.transport} | ${r.concurrency} | ${f(r.p50)} | ${f(r.p90)} | ${f(r.p99)} | ${f(r.throughput, 0)} | ${r.overheadP50 === null ? '-' : `+${f(r.overheadP50)}`} | ${directRow && r !== directRow ? f(r.throughput / directRow.throughput) : '-'} | ${r.cpuUsPerActivation === null ? '-' : f(r.cpuUsPerActivation, 0)} | ${r.errors} |`,
    );
  }
  md.push('');
  md.push(`Cold start (${COLD} each, interleaved): invoker p50 ${f(ci.p50, 1)} ms, engine create+start+ready+/init p50 ${f(ce.p50, 1)} ms, overhead p50 +${f(ci.p50 - ce.p50, 1)} ms (ratio ${f(ci.p50 / ce.p50)}x); invoker CPU per cold activation ${f(coldCpu / COLD, 1)} ms`);
  md.push(`Idle: ${f(idleCpuMsPerSecond, 1)} ms of CPU per second with nothing to do (measured over ${IDLE_SECONDS} s after startup)`);
  md.push(`RSS: idle ${f(rssIdle, 1)} MB, after load ${f(rssAfterLoad, 1)} MB, with ${warmCount} warm ${ACTION_MB} MB containers ${f(rssWarm, 1)} MB`);
  const text = md.join('\n');
  console.log(text);
  const outDir = join(ROOT, '.cache', 'bench');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'e2e.md'), `${text}\n`);
  writeFileSync(
    join(outDir, 'e2e.json'),
    `${JSON.stringify({ node: process.version, at: new Date().toISOString(), rows, cold: { invoker: ci, engine: ce, cpuMsPerActivation: coldCpu / COLD }, idleCpuMsPerSecond, rss: { idle: rssIdle, afterLoad: rssAfterLoad, warm: rssWarm, warmContainers: warmCount } }, null, 2)}\n`,
  );
  writeFileSync(join(outDir, 'e2e.svg'), svg(rows));
  console.log('written: .cache/bench/e2e.json, e2e.md, e2e.svg');
} finally {
  invokerProcess?.kill('SIGTERM');
  // A drain, then the profile (if any) is written on exit.
  for (let waited = 0; waited < 40 && invokerProcess && invokerProcess.exitCode === null; waited++) await sleep(250);
  if (invokerProcess && invokerProcess.exitCode === null) invokerProcess.kill('SIGKILL');
  for (const c of directContainers) await c.remove({ force: true }).catch(() => undefined);
  // Containers of the invoker (label whisk.invoker=<id>) left by a killed run.
  const left = await docker.listContainers({ all: true, filters: { label: [`whisk.invoker=${bed.invokerId}`] } });
  for (const c of left) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  for (const fn of teardowns.reverse()) await Promise.resolve(fn()).catch(() => undefined);
}
