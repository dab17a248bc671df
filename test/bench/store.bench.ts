/**
 * Activation-record throughput: records/s through the ActivationWriter
 * (journal write + batching + `_bulk_docs` + confirmations) against the
 * floor of a single `_bulk_docs` call carrying the same documents, and the
 * effect of the writer's knobs. Bounded: 2,000 records of about 1 KiB per
 * run, 3 runs each (median; BENCH_RUNS, at most 9), fresh database per run.
 *
 *   node --import tsx test/bench/store.bench.ts      (COUCHDB_URL, default http://127.0.0.1:5984)
 *
 * A second part measures the latency of a light trickle (200 records at
 * ~400/s), which is what `batchDelayMs` trades against the number of calls.
 */
import { rm } from 'node:fs/promises';
import nano from 'nano';
import { ActivationWriter, type ActivationWriterOptions } from '../../invoker/store/activation-writer.js';
import { silentLogger } from '../../invoker/telemetry/logger.js';
import { activationRecord, tempDir } from '../integration/store/couch-helpers.js';

if (process.env.TAP !== undefined) {
  // tap picks up every file under test/; a benchmark is not a test.
  process.stdout.write('1..0 # SKIP benchmark: run with node --import tsx test/bench/store.bench.ts\n');
  process.exit(0);
}

const url = process.env.COUCHDB_URL ?? 'http://127.0.0.1:5984';
const RECORDS = 2000;
const RECORD_BYTES = 1024;
const RUNS = Math.min(9, Math.max(1, Number(process.env.BENCH_RUNS ?? 3)));
const server = nano(url);
let dbCounter = 0;

function records(run: number): ReturnType<typeof activationRecord>[] {
  return Array.from({ length: RECORDS }, (_, i) => activationRecord(`bench${run}`, i, RECORD_BYTES));
}

async function freshDb(): Promise<string> {
  const name = `bench-store-${process.pid}-${dbCounter++}`;
  await server.db.create(name);
  return name;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** One `_bulk_docs` call with every document: the fastest way the server can take them. */
async function singleBulk(run: number): Promise<number> {
  const db = await freshDb();
  try {
    const docs = records(run);
    const started = performance.now();
    const answer = await server.use(db).bulk({ docs });
    const ms = performance.now() - started;
    if (answer.length !== RECORDS || answer.some((r) => r.error !== undefined)) throw new Error('baseline bulk write failed');
    return ms;
  } finally {
    await server.db.destroy(db);
  }
}

/** store() every record, then flush(): from the first store() to the last confirmation. */
async function throughWriter(run: number, options: Partial<ActivationWriterOptions>): Promise<{ ms: number; calls: number }> {
  const db = await freshDb();
  const dir = await tempDir('bench-journal');
  const writer = new ActivationWriter({ url, database: db, journalDir: dir, logger: silentLogger(), ...options });
  try {
    await writer.start();
    while (!writer.isHealthy()) await new Promise((r) => setTimeout(r, 5));
    const docs = records(run);
    const started = performance.now();
    await Promise.all(docs.map((doc) => writer.store(doc)));
    const flushed = await writer.flush({ timeoutMs: 120_000 });
    const ms = performance.now() - started;
    if (!flushed.complete || writer.stats().confirmed !== RECORDS) throw new Error('writer did not confirm every record');
    return { ms, calls: writer.stats().batches };
  } finally {
    await writer.close();
    await rm(dir, { recursive: true, force: true });
    await server.db.destroy(db);
  }
}

/**
 * A light load: 200 records, one every 2.5 ms; time from store() to the
 * answer of the call that carried it. Batches go out oldest first, so the
 * n records of each answered call are the next n in store order.
 */
async function trickle(options: Partial<ActivationWriterOptions>): Promise<{ p50: number; p99: number; calls: number }> {
  const db = await freshDb();
  const dir = await tempDir('bench-journal');
  const storedAt: number[] = [];
  const latencies: number[] = [];
  const metrics = {
    batchWritten: (docs: number) => {
      const now = performance.now();
      for (let i = 0; i < docs; i++) latencies.push(now - (storedAt[latencies.length] as number));
    },
    failure: () => undefined,
  };
  const writer = new ActivationWriter({ url, database: db, journalDir: dir, logger: silentLogger(), metrics, ...options });
  try {
    await writer.start();
    while (!writer.isHealthy()) await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < 200; i++) {
      storedAt.push(performance.now());
      await writer.store(activationRecord('trickle', i, RECORD_BYTES));
      await new Promise((r) => setTimeout(r, 2.5));
    }
    await writer.flush({ timeoutMs: 30_000 });
    latencies.sort((a, b) => a - b);
    return {
      p50: latencies[Math.floor(latencies.length * 0.5)] as number,
      p99: latencies[Math.floor(latencies.length * 0.99)] as number,
      calls: writer.stats().batches,
    };
  } finally {
    await writer.close();
    await rm(dir, { recursive: true, force: true });
    await server.db.destroy(db);
  }
}

const fmt = (n: number, digits = 0) => n.toFixed(digits).padStart(8);

async function main(): Promise<void> {
  await server.info().catch((err: unknown) => {
    throw new Error(`no CouchDB-compatible server at ${url}: ${(err as Error).message}`, { cause: err });
  });
  process.stdout.write(`store throughput: ${RECORDS} records of ~${RECORD_BYTES} B, median of ${RUNS} runs, server ${url}\n`);
  await singleBulk(99); // warm-up: connection, JIT, server caches
  const baselineRuns: number[] = [];
  for (let run = 0; run < RUNS; run++) baselineRuns.push(await singleBulk(run));
  const baseline = median(baselineRuns);
  const baselineRate = (RECORDS / baseline) * 1000;
  process.stdout.write(`  single _bulk_docs call            ${fmt(baseline, 1)} ms ${fmt(baselineRate)} rec/s   ratio 1.00\n`);

  const configs: Array<[string, Partial<ActivationWriterOptions>]> = [
    ['writer, defaults', {}],
    ['writer, syncJournal', { syncJournal: true }],
    ['writer, 1 batch in flight', { maxConcurrentBatches: 1 }],
    ['writer, 4 batches in flight', { maxConcurrentBatches: 4 }],
    ['writer, batches of 100', { batchMaxDocs: 100 }],
    ['writer, batches of 500', { batchMaxDocs: 500 }],
  ];
  for (const [label, options] of configs) {
    const runs: number[] = [];
    let calls = 0;
    for (let run = 0; run < RUNS; run++) {
      const result = await throughWriter(run, options);
      runs.push(result.ms);
      calls = result.calls;
    }
    const ms = median(runs);
    const rate = (RECORDS / ms) * 1000;
    process.stdout.write(`  ${label.padEnd(33)} ${fmt(ms, 1)} ms ${fmt(rate)} rec/s   ratio ${(rate / baselineRate).toFixed(2)}  (${calls} calls)\n`);
  }

  process.stdout.write('light load: 200 records at ~400/s, store() to confirmation\n');
  const trickles: Array<[string, Partial<ActivationWriterOptions>]> = [
    ['batchDelayMs 0', { batchDelayMs: 0 }],
    ['batchDelayMs 5', { batchDelayMs: 5 }],
    ['batchDelayMs 20 (default)', {}],
    ['batchDelayMs 50', { batchDelayMs: 50 }],
    ['batchDelayMs 20, syncJournal', { syncJournal: true }],
  ];
  for (const [label, options] of trickles) {
    const result = await trickle(options);
    process.stdout.write(`  ${label.padEnd(30)} p50 ${fmt(result.p50, 1)} ms  p99 ${fmt(result.p99, 1)} ms  ${String(result.calls).padStart(4)} calls\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`store.bench: ${(err as Error).message}\n`);
  process.exit(1);
});
