/**
 * Container pool behaviour through a real invoker and real containers: warm
 * reuse and its key, prewarm use and replacement, eviction order, the FIFO
 * queue, intra-container concurrency, and the retry of an activation whose
 * warm container died. Each subtest has its own testbed (databases, invoker
 * id, configuration), torn down when it ends.
 */
import t, { type Test } from 'tap';
import { InvokerTestbed, type TestInvoker } from '../../helpers/invoker-harness.js';
import { activationOf, docker, eventually, hasAnnotation, poolOf, warmFor, type PoolEntry, type StoredRecord } from './helpers.js';

async function testbed(t: Test, overrides: Record<string, string> = {}): Promise<{ bed: InvokerTestbed; invoker: TestInvoker }> {
  const bed = new InvokerTestbed(t);
  await bed.createDatabases();
  const invoker = await bed.start(overrides);
  return { bed, invoker };
}

const SLEEPER = (ms: number) =>
  `function main(p) { return new Promise((r) => setTimeout(() => r({ name: p.name || 'x', at: Date.now() }), ${ms})); }`;

/** Invokes blocking and returns the completion's activation plus whether it was a cold start. */
async function invokeOnce(
  bed: InvokerTestbed,
  invoker: TestInvoker,
  action: { name: string; rev: string },
  options: { invocationNamespace?: string } = {},
): Promise<{ id: string; cold: boolean; statusCode: number; record: StoredRecord; namespace: string }> {
  const message = bed.message(action, options);
  const answer = await invoker.invoke(message);
  const activation = activationOf(answer.ack);
  const namespace = options.invocationNamespace ?? 'guest';
  const record = (await bed.waitForRecord(namespace, message.activationId)) as StoredRecord;
  return { id: message.activationId, cold: hasAnnotation(activation, 'initTime'), statusCode: activation.response.statusCode, record, namespace };
}

t.test('warm reuse, and no reuse across invocation namespaces or revisions', async (t) => {
  const { bed, invoker } = await testbed(t);
  const a = await bed.putAction({ name: 'reuse', code: `function main() { return { ok: true }; }` });
  const action = { name: 'reuse', rev: a.rev };

  const first = await invokeOnce(bed, invoker, action);
  t.ok(first.cold, 'first activation is a cold start (initTime)');
  const second = await invokeOnce(bed, invoker, action);
  t.equal(second.statusCode, 0);
  t.notOk(second.cold, 'second activation reuses the warm container (no initTime)');
  t.notOk(hasAnnotation(second.record, 'initTime'), 'the record agrees');
  let pool = await poolOf(invoker);
  t.equal(warmFor(pool, 'guest/reuse').length, 1, 'GET /pool: one container for the action');

  const otherNamespace = await invokeOnce(bed, invoker, action, { invocationNamespace: 'alice' });
  t.equal(otherNamespace.statusCode, 0);
  t.ok(otherNamespace.cold, 'another invoking namespace does not reuse it (cold again)');
  t.equal(otherNamespace.record.namespace, 'alice', 'the record is in the invoking namespace');

  const b = await bed.putAction({ name: 'reuse', code: `function main() { return { ok: 2 }; }` });
  t.not(b.rev, a.rev);
  const newRevision = await invokeOnce(bed, invoker, { name: 'reuse', rev: b.rev });
  t.ok(newRevision.cold, 'a new revision does not reuse it (cold again)');
  t.same(newRevision.record.response.result, { ok: 2 }, 'and runs the new code');

  const again = await invokeOnce(bed, invoker, action);
  t.notOk(again.cold, 'the original (namespace, revision) is still warm');
  pool = await poolOf(invoker);
  const containers = warmFor(pool, 'guest/reuse');
  t.equal(containers.length, 3, 'three containers, one per (namespace, revision)');
  t.equal(new Set(containers.map((c) => c.warmKey)).size, 3, 'with distinct warm keys');
});

t.test('a prewarmed container is used and replaced', async (t) => {
  const { bed, invoker } = await testbed(t, { INVOKER_PREWARM_COUNT: '1', INVOKER_PREWARM_MEMORY_MB: '256' });
  const isStemCell = (c: PoolEntry) => c.state === 'prewarm';
  const before = await eventually('a prewarm container', () => poolOf(invoker), (p) => p.some(isStemCell));
  const stemCell = before.find(isStemCell) as PoolEntry;
  t.equal(stemCell.origin, 'prewarm');
  t.equal(stemCell.memoryMb, 256);

  const { rev } = await bed.putAction({ name: 'pw', code: `function main() { return { ok: true }; }`, limits: { memory: 256 } });
  const result = await invokeOnce(bed, invoker, { name: 'pw', rev });
  t.equal(result.statusCode, 0);
  t.ok(hasAnnotation(result.record, 'initTime'), 'a prewarm start still reports initTime');

  const after = await eventually(
    'a replacement prewarm container',
    () => poolOf(invoker),
    (p) => p.some((c) => isStemCell(c) && c.id !== stemCell.id),
  );
  const used = after.find((c) => c.id === stemCell.id);
  t.ok(used, 'the stem cell is still there');
  t.match(used?.warmKey ?? '', /\|guest\/pw@/, 'and now holds the action: the activation ran on it');
  t.equal(used?.origin, 'prewarm');
  const replacement = after.find((c) => isStemCell(c) && c.id !== stemCell.id) as PoolEntry;
  t.equal(replacement.memoryMb, 256, 'the replacement has the prewarm memory');
  t.equal(replacement.origin, 'prewarm');
});

t.test('eviction: the least recently used idle container goes first', async (t) => {
  const { bed, invoker } = await testbed(t, { INVOKER_USER_MEMORY_MB: '512', INVOKER_PAUSE_GRACE_MS: '60000' });
  const revs: Record<string, string> = {};
  for (const name of ['ev-a', 'ev-b', 'ev-c']) {
    revs[name] = (await bed.putAction({ name, code: `function main() { return { me: '${name}' }; }`, limits: { memory: 256 } })).rev;
  }
  t.ok((await invokeOnce(bed, invoker, { name: 'ev-a', rev: revs['ev-a'] as string })).cold);
  t.ok((await invokeOnce(bed, invoker, { name: 'ev-b', rev: revs['ev-b'] as string })).cold);
  let pool = await poolOf(invoker);
  t.equal(warmFor(pool, 'guest/ev-a').length + warmFor(pool, 'guest/ev-b').length, 2, 'A and B warm: the pool is full');

  const c = await invokeOnce(bed, invoker, { name: 'ev-c', rev: revs['ev-c'] as string });
  t.equal(c.statusCode, 0);
  t.ok(c.cold);
  pool = await eventually('A evicted', () => poolOf(invoker), (p) => warmFor(p, 'guest/ev-a').length === 0);
  t.equal(warmFor(pool, 'guest/ev-a').length, 0, 'A, the oldest, was evicted');
  t.equal(warmFor(pool, 'guest/ev-b').length, 1, 'B stays');
  t.equal(warmFor(pool, 'guest/ev-c').length, 1, 'C runs');
  t.notOk((await invokeOnce(bed, invoker, { name: 'ev-b', rev: revs['ev-b'] as string })).cold, 'B is still warm');
});

t.test('FIFO: activations waiting for memory run in arrival order', async (t) => {
  const { bed, invoker } = await testbed(t, { INVOKER_USER_MEMORY_MB: '256' });
  const names = ['fifo-0', 'fifo-1', 'fifo-2', 'fifo-3', 'fifo-4'];
  const revs = new Map<string, string>();
  for (const [i, name] of names.entries()) {
    // The first one holds the only slot long enough for the others to queue behind it.
    const code = SLEEPER(i === 0 ? 1500 : 200);
    revs.set(name, (await bed.putAction({ name, code, limits: { memory: 256 } })).rev);
  }
  const finished: string[] = [];
  const runs: Array<Promise<{ name: string; statusCode: number; end: number }>> = [];
  let sawQueue = false;
  for (const name of names) {
    const message = bed.message({ name, rev: revs.get(name) as string }, { content: { name } });
    runs.push(
      invoker.invoke(message).then((answer) => {
        finished.push(name);
        const activation = activationOf(answer.ack);
        return { name, statusCode: activation.response.statusCode, end: activation.end };
      }),
    );
    // Spaced so that each message is fetched and queued before the next arrives.
    await new Promise((r) => setTimeout(r, 150));
    const totals = JSON.parse((await invoker.get('/pool')).body) as { totals: { queueLength: number } };
    if (totals.totals.queueLength > 0) sawQueue = true;
  }
  const results = await Promise.all(runs);
  t.ok(sawQueue, 'activations waited in the queue');
  t.same(results.map((r) => r.statusCode), names.map(() => 0), 'all succeeded');
  t.same(finished, names, 'completions arrive in arrival order');
  const ends = results.map((r) => r.end);
  t.same([...ends].sort((x, y) => x - y), ends, 'and their records end in that order');
});

t.test('concurrency > 1: parallel runs in one container', async (t) => {
  const { bed, invoker } = await testbed(t);
  const { rev } = await bed.putAction({ name: 'conc', code: SLEEPER(1000), limits: { concurrency: 3 } });
  const action = { name: 'conc', rev };
  // Warm it first: a container is shared only once its code is initialized.
  t.ok((await invokeOnce(bed, invoker, action)).cold);

  const started = performance.now();
  const results = await Promise.all([0, 1, 2].map(() => invokeOnce(bed, invoker, action)));
  const tookMs = performance.now() - started;
  t.same(results.map((r) => r.statusCode), [0, 0, 0]);
  t.same(results.map((r) => r.cold), [false, false, false], 'all three ran warm');
  t.ok(tookMs < 2200, `three 1 s activations took ${Math.round(tookMs)} ms (well under 3 s)`);
  const starts = results.map((r) => r.record.start);
  t.ok(Math.max(...starts) - Math.min(...starts) < 500, 'they ran at the same time');
  const pool = await poolOf(invoker);
  t.equal(warmFor(pool, 'guest/conc').length, 1, 'GET /pool: a single container');
});

t.test('a warm container killed from outside: the activation is retried on a fresh one', async (t) => {
  const { bed, invoker } = await testbed(t, { INVOKER_PAUSE_GRACE_MS: '60000' });
  const { rev } = await bed.putAction({ name: 'victim', code: `function main() { return { ok: true }; }` });
  const action = { name: 'victim', rev };
  t.ok((await invokeOnce(bed, invoker, action)).cold);
  t.notOk((await invokeOnce(bed, invoker, action)).cold, 'warm');

  const listed = await docker.listContainers({
    filters: { label: [`whisk.invoker=${bed.invokerId}`, 'whisk.action=guest/victim'] },
  });
  t.equal(listed.length, 1, 'one container for the action, found by label');
  const killedId = listed[0]?.Id as string;
  await docker.getContainer(killedId).kill({ signal: 'SIGKILL' });
  await eventually('the container to be dead', () => docker.getContainer(killedId).inspect(), (i) => !i.State.Running, 10_000);

  const retried = await invokeOnce(bed, invoker, action);
  t.equal(retried.statusCode, 0, 'success');
  t.same(retried.record.response.result, { ok: true });
  t.equal(retried.record.response.statusCode, 0, 'the record is a success');
  t.ok(retried.cold, 'initTime present: it ran on a fresh container');
  const pool = await poolOf(invoker);
  const containers = warmFor(pool, 'guest/victim');
  t.equal(containers.length, 1, 'one container for the action');
  t.not(containers[0]?.id, killedId, 'and it is not the killed one');
});
