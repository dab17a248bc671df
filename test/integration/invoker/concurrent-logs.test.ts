/**
 * Per-activation logs with intra-container concurrency, end to end: a real
 * invoker, our runtime image, real containers shared by up to 4 activations
 * at once, records in the CouchDB-compatible store. Every record must hold
 * exactly its own lines, in order per stream, and nothing else.
 */
import t, { type Test } from 'tap';
import { randomUUID } from 'node:crypto';
import { logsTruncated } from '../../../protocol/error-texts.js';
import type { WhiskActivation } from '../../../protocol/index.js';
import { InvokerTestbed, sleep, type TestInvoker } from '../../helpers/invoker-harness.js';
import { activationOf, boundedMap, eventually, hasAnnotation, type StoredRecord } from './helpers.js';

const LINES = 40;
const LOG_LIMIT_BYTES = 1024 * 1024;
// 39 bytes of time and stream, then the text.
const FORMATTED_OVERHEAD = 39;

const CODE = `console.log('module loaded');
const os = require('os');
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
async function main(p) {
  const start = Date.now();
  for (let i = 0; i < p.lines; i++) {
    console.log(p.me + ' out ' + i);
    if (i % 3 === 0) await pause((i * 7 + p.n) % 5);
    process.stderr.write(p.me + ' err ' + i + '\\n');
    await null;
  }
  if (p.flood) {
    const big = 'f'.repeat(1000);
    for (let i = 0; i < 1200; i++) console.log(p.me + ' flood ' + i + ' ' + big);
  }
  if (p.late) setTimeout(() => { console.log('LATE ' + p.me); console.error('LATE ' + p.me); }, 300);
  if (p.throws) throw new Error('thrown by ' + p.me);
  return { me: p.me, host: os.hostname(), start, end: Date.now() };
}`;

const bed = new InvokerTestbed(t);
await bed.createDatabases();
const invoker = await bed.start();

interface Run {
  me: string;
  n: number;
  flood: boolean;
  throws: boolean;
  activation: WhiskActivation;
  activationId: string;
}

async function invokeOne(name: string, rev: string, n: number, options: { late: boolean }): Promise<Run> {
  const me = randomUUID();
  const flood = n % 7 === 3;
  const throws = n % 5 === 4;
  const message = bed.message({ name, rev }, { content: { me, n, lines: LINES, flood, throws, late: options.late } });
  const answer = await invoker.invoke(message);
  if (answer.status !== 200) throw new Error(`POST /invoke answered ${answer.status}: ${answer.body}`);
  return { me, n, flood, throws, activation: activationOf(answer.ack), activationId: message.activationId };
}

const textOf = (line: string) => line.slice(31);
const expected = (me: string, stream: 'out' | 'err') =>
  Array.from({ length: LINES }, (_, i) => `${stream === 'out' ? 'stdout' : 'stderr'}: ${me} ${stream} ${i}`);

/** Checks one record's logs; returns nothing, fails the test on any foreign or missing line. */
function checkLogs(t: Test, run: Run, logs: string[]): void {
  const texts = logs.map(textOf);
  const cold = hasAnnotation(run.activation, 'initTime');
  const user = texts.filter((l) => !l.includes(' flood ') && !l.endsWith('module loaded') && !l.startsWith('stderr: Logs were truncated'));
  t.same(
    user.filter((l) => l.startsWith('stdout: ')),
    expected(run.me, 'out'),
    `${run.n}: its stdout lines, in order`,
  );
  t.same(
    user.filter((l) => l.startsWith('stderr: ')),
    expected(run.me, 'err'),
    `${run.n}: its stderr lines, in order`,
  );
  t.equal(texts.filter((l) => l === 'stdout: module loaded').length, cold ? 1 : 0, `${run.n}: module output only with the init`);
  // Order holds within a stream; stdout and stderr are two pipes.
  if (cold) t.equal(texts.find((l) => l.startsWith('stdout: ')), 'stdout: module loaded');
  t.notOk(
    texts.some((l) => l.includes('LATE')),
    `${run.n}: no late line`,
  );
  const flood = texts.filter((l) => l.includes(' flood '));
  if (!run.flood) {
    t.same(flood, [], `${run.n}: no flood`);
    t.equal(texts.length, 2 * LINES + (cold ? 1 : 0), `${run.n}: nothing else`);
    return;
  }
  // The limit applies to this activation alone: a prefix of its own flood, then the truncation line.
  t.equal(texts.at(-1), `stderr: ${logsTruncated(LOG_LIMIT_BYTES)}`, `${run.n}: truncated`);
  t.ok(flood.length > 500 && flood.length < 1200, `${run.n}: ${flood.length} flood lines kept`);
  t.ok(
    flood.every((l, i) => l === `stdout: ${run.me} flood ${i} ${'f'.repeat(1000)}`),
    `${run.n}: the first flood lines, in order`,
  );
  const kept = logs.slice(0, -1).reduce((sum, l) => sum + Buffer.byteLength(l), 0);
  t.ok(kept <= LOG_LIMIT_BYTES && kept > LOG_LIMIT_BYTES - 1100 - FORMATTED_OVERHEAD, `${run.n}: ${kept} bytes kept under the limit`);
}

async function droppedLines(inv: TestInvoker): Promise<{ late: number; untagged: number }> {
  const body = (await inv.get('/metrics')).body;
  const read = (reason: string) => {
    const m = new RegExp(`^invoker_log_lines_dropped_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)$`, 'm').exec(body);
    return m ? Number(m[1]) : 0;
  };
  return { late: read('late'), untagged: read('untagged') };
}

t.test('concurrency 4, 50 activations in bursts: every record holds exactly its own lines', async (t) => {
  const { rev } = await bed.putAction({ name: 'chatty4', code: CODE, limits: { concurrency: 4, memory: 128, logs: 1 } });
  const runs: Run[] = [];
  for (let burst = 0; burst < 5; burst++) {
    const ns = Array.from({ length: 10 }, (_, i) => burst * 10 + i);
    runs.push(...(await Promise.all(ns.map((n) => invokeOne('chatty4', rev, n, { late: true })))));
    await sleep(50);
  }
  t.equal(runs.length, 50);

  // The runs did share containers, at the same time.
  const byHost = new Map<string, Array<{ start: number; end: number }>>();
  for (const run of runs) {
    const result = run.activation.response.result as { host?: string; start?: number; end?: number; error?: unknown };
    if (run.throws) {
      t.equal(run.activation.response.statusCode, 1, `${run.n}: a throw is an application error`);
      t.match(result.error, { message: `thrown by ${run.me}` });
      continue;
    }
    t.equal(run.activation.response.statusCode, 0, `${run.n}: success`);
    const host = result.host as string;
    byHost.set(host, [...(byHost.get(host) ?? []), { start: result.start as number, end: result.end as number }]);
  }
  let overlapping = 0;
  for (const spans of byHost.values()) {
    for (let i = 0; i < spans.length; i++) {
      for (let j = i + 1; j < spans.length; j++) {
        const a = spans[i] as { start: number; end: number };
        const b = spans[j] as { start: number; end: number };
        if (a.start < b.end && b.start < a.end) overlapping++;
      }
    }
  }
  t.ok(byHost.size < 40, `${byHost.size} containers for ${runs.length} activations`);
  t.ok(overlapping > 10, `${overlapping} pairs of activations ran at the same time in one container`);

  for (const run of runs) checkLogs(t, run, run.activation.logs);
  // The stored records carry the same logs as the completions.
  for (const run of runs) {
    const record = (await bed.waitForRecord('guest', run.activationId)) as StoredRecord;
    t.same(record.logs, run.activation.logs, `${run.n}: record = completion`);
  }

  // Every activation left one late timer (two lines): dropped and counted, none in any record.
  const dropped = await eventually('late lines counted', () => droppedLines(invoker), (d) => d.late >= 100, 10_000);
  t.equal(dropped.late, 100);
  t.equal(dropped.untagged, 0, 'nothing written outside an activation');
});

t.test('the same action with concurrency 1 still gets its logs', async (t) => {
  const { rev } = await bed.putAction({ name: 'chatty1', code: CODE, limits: { concurrency: 1, memory: 128, logs: 1 } });
  const before = await droppedLines(invoker);
  const runs = await boundedMap(
    Array.from({ length: 12 }, (_, i) => i),
    6,
    (n) => invokeOne('chatty1', rev, n, { late: false }),
  );
  for (const run of runs) checkLogs(t, run, run.activation.logs);
  const hosts = new Set(runs.filter((r) => !r.throws).map((r) => (r.activation.response.result as { host: string }).host));
  t.ok(hosts.size <= 6, `${hosts.size} containers, reused one activation at a time`);
  t.same(await droppedLines(invoker), before, 'the sequential path counts nothing');
});
