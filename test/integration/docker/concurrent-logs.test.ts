/**
 * Per-activation logs in a concurrent container (log tags), in the real
 * engine with our runtime image, through the container handle the core uses.
 * The end-to-end test through an invoker is test/integration/invoker/concurrent-logs.test.ts.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { LOG_COLLECTION_ISSUE } from '../../../protocol/error-texts.js';
import type { ActionContainer } from '../../../invoker/docker/index.js';
import type { DroppedLogLineReason } from '../../../invoker/docker/log-router.js';
import { docker, env, initBody, newActivationId, nodejsSpec, runBody, testFactory, texts } from './helpers.js';

function counter() {
  const counts: Record<DroppedLogLineReason, number> = { untagged: 0, late: 0 };
  return { counts, droppedLogLines: (reason: DroppedLogLineReason) => void counts[reason]++ };
}

async function initialized(c: ActionContainer, code: string): Promise<string> {
  const id = newActivationId();
  c.beginActivation({ activationId: id });
  const init = await c.init(initBody(code, 'main', id), 10_000);
  if (init.kind !== 'response' || init.status !== 200) throw new Error(`init failed: ${JSON.stringify(init)}`);
  return id;
}

const onStream = (lines: string[], stream: 'stdout' | 'stderr') => lines.filter((l) => l.startsWith(`${stream}: `));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('lines written after an activation ended, or outside any, reach no activation and are counted', async (t) => {
  const { counts, droppedLogLines } = counter();
  const factory = await testFactory(t, { droppedLogLines });
  const c = await factory.create({ ...nodejsSpec(128, 'late'), concurrency: 4 });
  t.teardown(() => c.destroy());
  const first = await initialized(
    c,
    `const fs = require('fs');
function main(p) {
  console.log('start ' + p.n);
  setTimeout(() => console.log('LATE timer of ' + p.n), 250);
  new Promise((r) => setTimeout(r, 300)).then(() => console.error('LATE promise of ' + p.n));
  // Outside the runtime's stream objects: untagged.
  if (p.n === 1) fs.writeSync(1, 'UNTAGGED direct write\\n');
  return new Promise((r) => setTimeout(() => { console.log('end ' + p.n); r({ n: p.n }); }, 15 * p.n));
}`,
  );
  const collect = async (n: number, id: string) => {
    const run = await c.run(runBody({ n }, id), 10_000);
    t.equal(run.kind === 'response' && run.status, 200);
    return c.collectLogs({ activationId: id });
  };
  const round = async (ns: number[], firstId?: string) => {
    const ids = ns.map((_, i) => (i === 0 && firstId ? firstId : newActivationId()));
    for (const id of ids.slice(firstId ? 1 : 0)) c.beginActivation({ activationId: id });
    return Promise.all(ns.map((n, i) => collect(n, ids[i] as string)));
  };
  const one = await round([1, 2, 3, 4], first);
  // The late lines of round one (250-300 ms after it started) are written while round two runs.
  await sleep(150);
  const two = await round([5, 6, 7, 8]);
  await sleep(500);
  for (const [i, logs] of [...one, ...two].entries()) {
    const n = i + 1;
    t.same(texts(logs.lines), [`stdout: start ${n}`, `stdout: end ${n}`], `activation ${n}: its own lines only`);
    t.equal(logs.complete, true);
  }
  t.equal(counts.late, 16, 'two late lines per activation');
  t.equal(counts.untagged, 1);
});

t.test('an uncaught error in one activation: reported in its log; the others keep theirs', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create({ ...nodejsSpec(128, 'crash'), concurrency: 4 });
  t.teardown(() => c.destroy());
  const first = await initialized(
    c,
    `function main(p) {
  console.log('hello from ' + p.who);
  process.stdout.write('partial of ' + p.who);
  if (p.who === 'crasher') setTimeout(() => { throw new Error('boom in a timer'); }, 100);
  return new Promise(() => {});
}`,
  );
  const other = newActivationId();
  c.beginActivation({ activationId: other });
  const runs = [c.run(runBody({ who: 'crasher' }, first), 10_000), c.run(runBody({ who: 'bystander' }, other), 10_000)];
  const results = await Promise.all(runs);
  t.same(
    results.map((r) => r.kind),
    ['connection-failed', 'connection-failed'],
    'the process died under both',
  );
  const [crasher, bystander] = await Promise.all([c.collectLogs({ activationId: first }), c.collectLogs({ activationId: other })]);
  // stdout and stderr are two pipes: order is kept within a stream, not across them.
  const crasherTexts = texts(crasher.lines);
  t.same(onStream(crasherTexts, 'stdout'), ['stdout: hello from crasher', 'stdout: partial of crasher']);
  t.equal(onStream(crasherTexts, 'stderr')[0], 'stderr: Uncaught exception: Error: boom in a timer');
  t.equal(crasherTexts.at(-1), `stderr: ${LOG_COLLECTION_ISSUE}`);
  t.notOk(crasherTexts.some((l) => l.includes('bystander')));
  t.same(texts(bystander.lines), ['stdout: hello from bystander', 'stdout: partial of bystander', `stderr: ${LOG_COLLECTION_ISSUE}`]);
  t.equal(crasher.complete, false);
  t.equal(bystander.complete, false);
});

t.test('an action that throws keeps its lines and its error; runs in flight keep theirs', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create({ ...nodejsSpec(128, 'throws'), concurrency: 4 });
  t.teardown(() => c.destroy());
  const first = await initialized(
    c,
    `async function later(p) {
  for (let i = 0; i < 5; i++) { await new Promise((r) => setTimeout(r, 10)); console.log(p.who + ' ' + i); }
  return { who: p.who };
}
function main(p) {
  console.log(p.who + ' starts');
  if (p.who === 'sync') throw new Error('thrown by ' + p.who);
  if (p.who === 'async') return later(p).then(() => { throw new Error('rejected by ' + p.who); });
  return later(p);
}`,
  );
  const ids = { async: newActivationId(), calm: newActivationId() };
  for (const id of Object.values(ids)) c.beginActivation({ activationId: id });
  const [a, calm] = await Promise.all([c.run(runBody({ who: 'async' }, ids.async), 10_000), c.run(runBody({ who: 'calm' }, ids.calm), 10_000)]);
  t.equal(a.kind === 'response' && a.status, 200, 'a rejection is an application error');
  t.equal(calm.kind === 'response' && calm.status, 200);
  const asyncLogs = texts((await c.collectLogs({ activationId: ids.async })).lines);
  t.same(asyncLogs, ['stdout: async starts', ...[0, 1, 2, 3, 4].map((i) => `stdout: async ${i}`)]);
  t.same(texts((await c.collectLogs({ activationId: ids.calm })).lines), ['stdout: calm starts', ...[0, 1, 2, 3, 4].map((i) => `stdout: calm ${i}`)]);

  // A synchronous throw stops the runtime (as upstream): its lines and error still reach its log.
  const runner = newActivationId();
  c.beginActivation({ activationId: runner });
  const inFlight = c.run(runBody({ who: 'runner' }, runner), 10_000);
  await sleep(15);
  const sync = await c.run(runBody({ who: 'sync' }, first), 10_000);
  t.equal(sync.kind === 'response' && sync.status, 502);
  const syncLogs = texts((await c.collectLogs({ activationId: first })).lines);
  t.same(onStream(syncLogs, 'stdout'), ['stdout: sync starts']);
  const syncErr = onStream(syncLogs, 'stderr');
  t.equal(syncErr[0], 'stderr: Error: thrown by sync');
  t.ok(syncErr.length > 1 && syncErr.slice(1).every((l) => l.startsWith('stderr:     at ')), 'then its stack');
  t.equal((await inFlight).kind, 'response');
  t.same(texts((await c.collectLogs({ activationId: runner })).lines), ['stdout: runner starts', ...[0, 1, 2, 3, 4].map((i) => `stdout: runner ${i}`)]);
});

t.test('a line longer than the cap: every piece goes to its activation', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create({ ...nodejsSpec(128, 'long'), concurrency: 2 });
  t.teardown(() => c.destroy());
  const first = await initialized(
    c,
    `function main(p) { const s = (p.who + '€').repeat(20000); console.log(s); console.log('short ' + p.who); return { bytes: Buffer.byteLength(s) }; }`,
  );
  const second = newActivationId();
  c.beginActivation({ activationId: second });
  const runs = await Promise.all([c.run(runBody({ who: 'x' }, first), 10_000), c.run(runBody({ who: 'y' }, second), 10_000)]);
  for (const [i, id] of [first, second].entries()) {
    const who = i === 0 ? 'x' : 'y';
    const run = runs[i];
    const bytes = run?.kind === 'response' ? (JSON.parse(run.body) as { bytes: number }).bytes : -1;
    const lines = texts((await c.collectLogs({ activationId: id })).lines);
    t.equal(lines.at(-1), `stdout: short ${who}`);
    const joined = lines
      .slice(0, -1)
      .map((l) => l.slice('stdout: '.length))
      .join('');
    t.equal(Buffer.byteLength(joined), bytes, `${who}: every byte`);
    t.equal(joined, `${who}€`.repeat(20000));
  }
});

t.test('a runtime that does not tag (as upstream) in a concurrent container: no logs, no wait', async (t) => {
  // Our image, with the key removed before the proxy reads it: a runtime that ignores __OW_LOG_TAGS.
  const dir = mkdtempSync(join(tmpdir(), 'untagged-runtime-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'untag.cjs'), 'delete process.env.__OW_LOG_TAGS;\n');
  writeFileSync(
    join(dir, 'Dockerfile'),
    `FROM ${env.actionImageNodejs}\nCOPY untag.cjs /nodejsAction/untag.cjs\nCMD ["/usr/bin/node", "-r", "/nodejsAction/untag.cjs", "/nodejsAction/server.cjs"]\n`,
  );
  const image = `whisk/untagged-runtime-test:${process.pid}`;
  const build = spawnSync('docker', ['build', '-q', '-t', image, dir], { encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '0' } });
  t.equal(build.status, 0, build.stderr);
  t.teardown(() => docker.getImage(image).remove({ force: true }).catch(() => undefined));

  const { counts, droppedLogLines } = counter();
  const factory = await testFactory(t, { droppedLogLines });
  const c = await factory.create({ ...nodejsSpec(128, 'untagged'), image, concurrency: 2 });
  t.teardown(() => c.destroy());
  const first = await initialized(c, `function main(p) { console.log('run ' + p.n); return { n: p.n }; }`);
  t.equal(c.tagsLogs, false, 'nothing announced');
  const second = newActivationId();
  c.beginActivation({ activationId: second });
  await Promise.all([c.run(runBody({ n: 1 }, first), 10_000), c.run(runBody({ n: 2 }, second), 10_000)]);
  const start = performance.now();
  const logs = await Promise.all([c.collectLogs({ activationId: first }), c.collectLogs({ activationId: second })]);
  t.ok(performance.now() - start < 100, 'no wait for sentinels that will not be tagged');
  t.same(logs, [
    { lines: [], complete: true, truncated: false, bytes: 0 },
    { lines: [], complete: true, truncated: false, bytes: 0 },
  ]);
  await sleep(200);
  t.equal(counts.untagged, 2, 'their lines were dropped (the bare sentinels are not counted)');
});
