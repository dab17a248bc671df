/**
 * The journal's storage: append and acknowledge cost of the segment files
 * (invoker/store/journal.ts, the baseline measured in the same run) against
 * one `node:sqlite` table in WAL mode, as the journal would use it (one
 * transaction per event-loop turn, the same group commit as the segment
 * files), without and with a sync per commit. Bounded: 4,000 records of
 * about 1 KiB per run, 3 runs each (median; BENCH_RUNS, at most 9).
 *
 *   node --import tsx test/bench/journal.bench.ts
 *
 * A last part checks that SQLite keeps what it committed through a SIGKILL
 * of the process (the segment files' guarantee, tested in
 * test/integration/store/activation-writer-outage.test.ts).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Journal } from '../../invoker/store/journal.js';
import { silentLogger } from '../../invoker/telemetry/logger.js';

if (process.env.TAP !== undefined) {
  // tap picks up every file under test/; a benchmark is not a test.
  process.stdout.write('1..0 # SKIP benchmark: run with node --import tsx test/bench/journal.bench.ts\n');
  process.exit(0);
}

const RECORDS = 4000;
const BURST = 50;
const SINGLES = 500;
const RECORD_BYTES = 1024;
const RUNS = Math.min(9, Math.max(1, Number(process.env.BENCH_RUNS ?? 3)));

function record(i: number): { id: string; json: string } {
  const id = `guest/${i.toString(16).padStart(32, '0')}`;
  return { id, json: JSON.stringify({ _id: id, entityType: 'activation', response: { result: { pad: 'x'.repeat(RECORD_BYTES - 120) } } }) };
}
const docs = Array.from({ length: RECORDS }, (_, i) => record(i));

/** The part of a journal the benchmark drives. */
interface Store {
  append(id: string, json: string): Promise<unknown>;
  acknowledgeAll(): Promise<void>;
  close(): Promise<void>;
  /** Milliseconds the event loop was blocked inside the store's own synchronous calls. */
  blockedMs: number;
}

async function segmentStore(dir: string, sync: boolean): Promise<Store> {
  const journal = await Journal.open({ dir, sync, logger: silentLogger(), maxHeldRecords: RECORDS * 2 });
  return {
    blockedMs: 0,
    append: (id, json) => journal.append(id, json),
    async acknowledgeAll() {
      for (;;) {
        const { records } = await journal.take({ records: 200, bytes: 1e9 });
        if (records.length === 0) break;
        journal.acknowledge(records);
      }
      // The confirmation lines go out on the next turn; wait for that write too.
      await new Promise((r) => setImmediate(r));
      await journal.whenAppended();
    },
    close: () => journal.close(),
  };
}

/** One table, one transaction per event-loop turn. DatabaseSync runs on the main thread: its time blocks the loop. */
function sqliteStore(dir: string, synchronous: 'NORMAL' | 'FULL'): Store {
  const db = new DatabaseSync(join(dir, 'journal.db'));
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=${synchronous};`);
  db.exec('CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, json TEXT NOT NULL)');
  const insert: StatementSync = db.prepare('INSERT INTO records (id, json) VALUES (?, ?) RETURNING seq');
  const remove: StatementSync = db.prepare('DELETE FROM records WHERE seq = ?');
  let buffer: Array<{ id: string; json: string; resolve: (seq: number) => void }> = [];
  let scheduled = false;
  const seqs: number[] = [];
  const store: Store = {
    blockedMs: 0,
    append(id, json) {
      return new Promise<number>((resolve) => {
        buffer.push({ id, json, resolve });
        if (scheduled) return;
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          const batch = buffer;
          buffer = [];
          const started = performance.now();
          db.exec('BEGIN');
          const results = batch.map((item) => Number((insert.get(item.id, item.json) as { seq: number }).seq));
          db.exec('COMMIT');
          store.blockedMs += performance.now() - started;
          results.forEach((seq, i) => {
            seqs.push(seq);
            batch[i]?.resolve(seq);
          });
        });
      });
    },
    async acknowledgeAll() {
      for (let i = 0; i < seqs.length; i += 200) {
        const started = performance.now();
        db.exec('BEGIN');
        for (const seq of seqs.slice(i, i + 200)) remove.run(seq);
        db.exec('COMMIT');
        store.blockedMs += performance.now() - started;
        await new Promise((r) => setImmediate(r));
      }
      seqs.length = 0;
    },
    async close() {
      db.close();
    },
  };
  return store;
}

interface Figures {
  burstUs: number;
  singleUs: number;
  ackUs: number;
  blockedUs: number;
}

async function measure(open: (dir: string) => Promise<Store>): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'journal-bench-'));
  try {
    const store = await open(dir);
    let started = performance.now();
    for (let i = 0; i < RECORDS; i += BURST) {
      await Promise.all(docs.slice(i, i + BURST).map((d) => store.append(d.id, d.json)));
    }
    const burstMs = performance.now() - started;
    const blockedBursts = store.blockedMs;
    started = performance.now();
    await store.acknowledgeAll();
    const ackMs = performance.now() - started;
    started = performance.now();
    for (let i = 0; i < SINGLES; i++) await store.append((docs[i] as { id: string }).id + 's', (docs[i] as { json: string }).json);
    const singleMs = performance.now() - started;
    await store.close();
    return { burstUs: (burstMs * 1000) / RECORDS, singleUs: (singleMs * 1000) / SINGLES, ackUs: (ackMs * 1000) / RECORDS, blockedUs: (blockedBursts * 1000) / RECORDS };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** Child mode: appends records one commit at a time to SQLite, printing each committed count, until killed. */
function sqliteChild(path: string): void {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;');
  db.exec('CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, json TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO records (id, json) VALUES (?, ?)');
  let n = 0;
  const step = () => {
    db.exec('BEGIN');
    for (let i = 0; i < 10; i++, n++) insert.run((docs[n % RECORDS] as { id: string }).id + n, (docs[n % RECORDS] as { json: string }).json);
    db.exec('COMMIT');
    process.stdout.write(`${n}\n`);
    if (n < 100_000) setImmediate(step);
  };
  step();
}

/** SIGKILLs a child mid-stream and counts what the database kept against what it had reported committed. */
async function sqliteKillCheck(): Promise<{ reported: number; kept: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'journal-bench-kill-'));
  try {
    const path = join(dir, 'journal.db');
    const env = { ...process.env };
    delete env.TAP;
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'sqlite-child', path], {
      stdio: ['ignore', 'pipe', 'ignore'],
      env,
    });
    let reported = 0;
    const lines = createInterface({ input: child.stdout });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    for await (const line of lines) {
      reported = Number(line);
      if (reported >= 3000) {
        child.kill('SIGKILL');
        break;
      }
    }
    await exited;
    const db = new DatabaseSync(path);
    const kept = Number((db.prepare('SELECT count(*) AS n FROM records').get() as { n: number }).n);
    db.close();
    return { reported, kept };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  process.stdout.write(`journal storage: ${RECORDS} records of ~${RECORD_BYTES} B in bursts of ${BURST} per turn, then ${SINGLES} single appends; median of ${RUNS} runs\n`);
  const configs: Array<[string, (dir: string) => Promise<Store>]> = [
    ['segment files (baseline)', (dir) => segmentStore(dir, false)],
    ['node:sqlite WAL, synchronous=NORMAL', async (dir) => sqliteStore(dir, 'NORMAL')],
    ['segment files, sync: true', (dir) => segmentStore(dir, true)],
    ['node:sqlite WAL, synchronous=FULL', async (dir) => sqliteStore(dir, 'FULL')],
  ];
  await measure(configs[0]?.[1] as (dir: string) => Promise<Store>); // warm-up
  let baseline: Figures | undefined;
  for (const [label, open] of configs) {
    const runs: Figures[] = [];
    for (let run = 0; run < RUNS; run++) runs.push(await measure(open));
    const figures: Figures = {
      burstUs: median(runs.map((r) => r.burstUs)),
      singleUs: median(runs.map((r) => r.singleUs)),
      ackUs: median(runs.map((r) => r.ackUs)),
      blockedUs: median(runs.map((r) => r.blockedUs)),
    };
    baseline ??= figures;
    const ratio = (value: number, base: number) => (value / base).toFixed(2);
    process.stdout.write(
      `  ${label.padEnd(38)} burst ${figures.burstUs.toFixed(1).padStart(7)} us/rec (x${ratio(figures.burstUs, baseline.burstUs)})` +
        `  single ${figures.singleUs.toFixed(1).padStart(7)} us (x${ratio(figures.singleUs, baseline.singleUs)})` +
        `  ack ${figures.ackUs.toFixed(1).padStart(6)} us/rec (x${ratio(figures.ackUs, baseline.ackUs)})` +
        `  loop blocked ${figures.blockedUs.toFixed(1).padStart(6)} us/rec\n`,
    );
  }
  const kill = await sqliteKillCheck();
  process.stdout.write(`  node:sqlite through SIGKILL: ${kill.kept} rows kept of ${kill.reported} reported committed (${kill.kept >= kill.reported ? 'nothing lost' : 'LOST RECORDS'})\n`);
}

if (process.argv[2] === 'sqlite-child') {
  sqliteChild(process.argv[3] as string);
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`journal.bench: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
