/**
 * Stem cells: created by start(), used by matching requests, replaced after
 * use, retried with backoff after failures, evictable.
 */
import t from 'tap';
import { IMAGE, KIND, makePool, req } from './pool-fixture.js';
import { settle, sleep, until } from './fake-provider.js';

const stem = (count: number, memoryMb = 256) => [{ kind: KIND, image: IMAGE, memoryMb, count }];

t.test('start() creates the configured stem cells in the background', async (t) => {
  const { pool, provider } = makePool(t, { stemCells: stem(2) });
  t.equal(provider.count('create', 'start'), 0, 'nothing before start()');
  pool.start();
  t.equal(pool.totals().usedMb, 512, 'memory reserved before create() resolves');
  t.equal(pool.totals().byState.creating, 2);
  await until(() => pool.totals().byState.prewarm === 2, 1000, 'two prewarm');
  const specs = provider.containers.map((c) => c.spec);
  t.same(specs, [
    { kind: KIND, image: IMAGE, memoryMb: 256, concurrency: 1, stemCell: true },
    { kind: KIND, image: IMAGE, memoryMb: 256, concurrency: 1, stemCell: true },
  ]);
  t.same(
    pool.snapshot().containers.map((c) => [c.state, c.origin, c.inFlight]),
    [
      ['prewarm', 'prewarm', 0],
      ['prewarm', 'prewarm', 0],
    ],
  );
});

t.test('a matching request takes a prewarm container (needsInit) and it is replaced', async (t) => {
  const { pool, provider } = makePool(t, { stemCells: stem(1) });
  pool.start();
  await until(() => pool.totals().byState.prewarm === 1, 1000, 'prewarm');
  const stemContainer = provider.containers[0]!;

  const lease = await pool.acquire(req('ns/a'));
  t.equal(lease.origin, 'prewarm');
  t.equal(lease.needsInit, true);
  t.equal(lease.container, stemContainer);
  await until(() => pool.totals().byState.prewarm === 1, 1000, 'replacement');
  t.equal(provider.count('create'), 2);

  lease.markInitialized();
  lease.release('reuse');
  const again = await pool.acquire(req('ns/a'));
  t.equal(again.origin, 'warm', 'once initialized it is a warm container of that action');
  t.equal(again.container, stemContainer);
  again.release('reuse');
});

t.test('a stem cell whose configured size is not whole MiB (300000 KB) is created at 292 MiB but serves no action, as upstream', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 2048, stemCells: [{ kind: KIND, image: IMAGE, memoryMb: 292, memoryBytes: 300000 * 1024, count: 1 }] });
  pool.start();
  await until(() => pool.totals().byState.prewarm === 1, 1000, 'prewarm');
  t.equal(provider.containers[0]?.spec.memoryMb, 292, 'the container limit: upstream ByteSize.toMB, rounded down');
  t.equal(pool.totals().usedMb, 292);
  const lease = await pool.acquire(req('a', { memoryMb: 292 }));
  t.equal(lease.origin, 'cold', 'a 292 MB action is not 300000 KB');
  lease.release('reuse');
  t.throws(() => makePool(t, { stemCells: [{ kind: KIND, image: IMAGE, memoryMb: 256, memoryBytes: 300000 * 1024, count: 1 }] }), /not 256 MiB rounded down/);
});

t.test('no prewarm of that kind or memory: cold', async (t) => {
  const { pool } = makePool(t, { userMemoryMb: 2048, stemCells: stem(1) });
  pool.start();
  await until(() => pool.totals().byState.prewarm === 1, 1000, 'prewarm');
  const otherMemory = await pool.acquire(req('a', { memoryMb: 512 }));
  t.equal(otherMemory.origin, 'cold');
  const otherKind = await pool.acquire(req('b', { kind: 'python:3', image: 'openwhisk/python3action' }));
  t.equal(otherKind.origin, 'cold');
  const concurrent = await pool.acquire(req('c', { concurrency: 4 }));
  t.equal(concurrent.origin, 'cold', 'a stem cell created for concurrency 1 does not serve concurrency 4');
  t.equal(pool.totals().byState.prewarm, 1, 'the stem cell is still there');
  for (const lease of [otherMemory, otherKind, concurrent]) lease.release('destroy');
});

t.test('the replacement waits for memory and is created when memory frees', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 512, stemCells: stem(1) });
  pool.start();
  await until(() => pool.totals().byState.prewarm === 1, 1000, 'prewarm');
  const a = await pool.acquire(req('a')); // the stem cell
  // Fresh: cold even if the replacement is ready; it takes the memory the replacement needs.
  const b = await pool.acquire(req('b', { fresh: true }));
  t.equal(a.origin, 'prewarm');
  t.equal(b.origin, 'cold');
  await settle();
  t.equal(pool.totals().byState.prewarm + pool.totals().byState.creating, 0, 'no room for a replacement');
  b.release('destroy');
  await until(() => pool.totals().byState.prewarm === 1, 1000, 'replacement after memory freed');
  t.ok(provider.peakLiveMb <= 512);
  a.release('destroy');
});

t.test('stem cells are evictable (oldest first) and come back when memory frees', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 512, stemCells: stem(2) });
  pool.start();
  await until(() => pool.totals().byState.prewarm === 2, 1000, 'prewarm');
  const big = await pool.acquire(req('big', { memoryMb: 512 }));
  t.equal(big.origin, 'cold');
  t.equal(provider.count('destroy'), 2, 'both stem cells evicted');
  t.ok(provider.peakLiveMb <= 512, `peak ${provider.peakLiveMb}`);
  big.release('destroy');
  await until(() => pool.totals().byState.prewarm === 2, 1000, 'stem cells recreated');
});

t.test('stem cell creation failures are logged and retried with backoff, not fatal', async (t) => {
  const { pool, provider } = makePool(t, { stemCells: stem(1), stemCellBackoff: { initialMs: 20, maxMs: 40 } });
  provider.createFailures.push(new Error('pull failed'), new Error('pull failed again'));
  const started = Date.now();
  pool.start();
  await until(() => pool.totals().byState.prewarm === 1, 2000, 'prewarm after retries');
  t.equal(provider.count('create', 'fail'), 2);
  t.ok(Date.now() - started >= 55, 'waited 20 ms then 40 ms between attempts');
  t.equal(pool.totals().usedMb, 256, 'failed attempts gave their memory back');
});

t.test('stem cells do not take memory a queued request waits for', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 512, stemCells: stem(1) });
  const a = await pool.acquire(req('a'));
  const b = await pool.acquire(req('b'));
  pool.start(); // no memory: nothing created
  const waiting = pool.acquire(req('c', { memoryMb: 512 }));
  a.release('destroy');
  await sleep(10);
  t.equal(provider.count('create', 'start'), 2, 'no stem cell while c waits');
  b.release('destroy');
  const c = await waiting;
  t.equal(c.origin, 'cold');
  c.release('destroy');
  await until(() => pool.totals().byState.prewarm === 1, 1000, 'stem cell once nobody waits');
});
