/**
 * Warm reuse: keyed by warmKey, most recently used first, intra-container
 * concurrency, pause/unpause, idle removal, broken containers on reuse.
 */
import t from 'tap';
import { makePool, req } from './pool-fixture.js';
import { settle, sleep, until } from './fake-provider.js';

t.test('same warmKey reuses the same container; needsInit only the first time', async (t) => {
  const { pool, provider } = makePool(t);
  const first = await pool.acquire(req('ns/a@1'));
  t.equal(first.origin, 'cold');
  t.equal(first.needsInit, true);
  first.markInitialized();
  first.release('reuse');

  const second = await pool.acquire(req('ns/a@1'));
  t.equal(second.origin, 'warm');
  t.equal(second.needsInit, false);
  t.equal(second.container, first.container);
  t.equal(second.waitMs, 0);
  second.release('reuse');
  t.equal(provider.count('create'), 1);
});

t.test('most recently used container first', async (t) => {
  const { pool } = makePool(t);
  const a = await pool.acquire(req('k'));
  const b = await pool.acquire(req('k'));
  a.markInitialized();
  b.markInitialized();
  a.release('reuse');
  await sleep(2);
  b.release('reuse'); // b is now the most recently used
  const next = await pool.acquire(req('k'));
  t.equal(next.container, b.container);
  const other = await pool.acquire(req('k'));
  t.equal(other.container, a.container, 'the other idle one is used while the MRU one is busy');
  next.release('reuse');
  other.release('reuse');
});

t.test('no reuse across namespaces or revisions', async (t) => {
  const { pool, provider } = makePool(t);
  const keys = ['ns1/pkg/a@0.0.1#rev1', 'ns2/pkg/a@0.0.1#rev1', 'ns1/pkg/a@0.0.1#rev2'];
  const containers = new Set<string>();
  for (const key of keys) {
    const lease = await pool.acquire(req(key));
    t.equal(lease.origin, 'cold', key);
    containers.add(lease.container.id);
    lease.markInitialized();
    lease.release('reuse');
  }
  t.equal(containers.size, 3);
  t.equal(provider.count('create'), 3);
});

t.test('a container released for reuse but never initialized is destroyed, not reused', async (t) => {
  const { pool, provider } = makePool(t);
  const lease = await pool.acquire(req('k'));
  lease.release('reuse');
  await until(() => provider.count('destroy') === 1, 1000, 'destroy');
  const next = await pool.acquire(req('k'));
  t.equal(next.origin, 'cold');
  t.not(next.container, lease.container);
  next.release('destroy');
  await until(() => pool.totals().usedMb === 0, 1000, 'memory freed');
});

t.test('release is idempotent', async (t) => {
  const { pool } = makePool(t);
  const lease = await pool.acquire(req('k'));
  lease.markInitialized();
  lease.release('reuse');
  lease.release('reuse');
  lease.release('destroy');
  t.equal(pool.totals().byState['warm-idle'], 1);
  t.equal(pool.totals().inFlight, 0);
});

t.test('fresh: true skips the warm container', async (t) => {
  const { pool } = makePool(t);
  const first = await pool.acquire(req('k'));
  first.markInitialized();
  first.release('reuse');
  const fresh = await pool.acquire(req('k', { fresh: true }));
  t.equal(fresh.origin, 'cold');
  t.not(fresh.container, first.container);
  fresh.release('destroy');
});

t.test('concurrency > 1 shares one container up to the limit, then goes cold', async (t) => {
  const { pool, provider } = makePool(t);
  const first = await pool.acquire(req('k', { concurrency: 3 }));
  first.markInitialized();
  const second = await pool.acquire(req('k', { concurrency: 3 }));
  const third = await pool.acquire(req('k', { concurrency: 3 }));
  t.equal(second.container, first.container);
  t.equal(third.container, first.container);
  t.equal(second.origin, 'warm');
  const fourth = await pool.acquire(req('k', { concurrency: 3 }));
  t.not(fourth.container, first.container, 'the fourth run exceeds the limit');
  t.equal(fourth.origin, 'cold');
  t.equal(provider.count('create'), 2);

  const snap = pool.snapshot().containers.find((c) => c.id === first.container.id);
  t.equal(snap?.inFlight, 3);
  t.equal(snap?.state, 'busy');

  second.release('reuse');
  const fifth = await pool.acquire(req('k', { concurrency: 3 }));
  t.equal(fifth.container, first.container, 'a freed run slot is reused while the container is busy');
  for (const lease of [first, third, fourth, fifth]) lease.release('reuse');
});

t.test('release(destroy) of a shared container waits for its other runs', async (t) => {
  const { pool, provider } = makePool(t);
  const a = await pool.acquire(req('k', { concurrency: 2 }));
  a.markInitialized();
  const b = await pool.acquire(req('k', { concurrency: 2 }));
  t.equal(b.container, a.container);
  a.release('destroy');
  await settle();
  t.equal(provider.count('destroy', 'start'), 0, 'b still runs in it');
  const c = await pool.acquire(req('k', { concurrency: 2 }));
  t.not(c.container, a.container, 'a doomed container takes no new runs');
  b.release('reuse');
  await until(() => a.container.destroyed, 1000, 'destroy');
  c.release('reuse');
});

t.test('pauses after the grace period and unpauses on reuse', async (t) => {
  const { pool, provider } = makePool(t, { pauseGraceMs: 20 });
  const lease = await pool.acquire(req('k'));
  lease.markInitialized();
  lease.release('reuse');
  t.equal(pool.snapshot().containers[0]?.state, 'warm-idle');
  await until(() => pool.snapshot().containers[0]?.state === 'paused', 1000, 'paused');
  t.equal(lease.container.paused, true);

  const again = await pool.acquire(req('k'));
  t.equal(again.container, lease.container);
  t.equal(again.origin, 'warm');
  t.equal(again.container.paused, false, 'unpaused before being handed out');
  t.equal(pool.snapshot().containers[0]?.state, 'busy');
  t.same(provider.done('pause'), [lease.container.name]);
  t.same(provider.done('unpause'), [lease.container.name]);

  // Reuse within the grace period clears the timer: no second pause.
  again.release('reuse');
  const third = await pool.acquire(req('k'));
  await sleep(40);
  t.equal(provider.count('pause', 'start'), 1, 'no pause while leased');
  third.release('reuse');
});

t.test('a lease arriving while pause() is in flight waits for it, then unpauses', async (t) => {
  const { pool, provider } = makePool(t, { pauseGraceMs: 5 });
  provider.delays.pause = 40;
  const lease = await pool.acquire(req('k'));
  lease.markInitialized();
  lease.release('reuse');
  await until(() => pool.snapshot().containers[0]?.state === 'pausing', 1000, 'pausing');
  const again = await pool.acquire(req('k'));
  t.equal(again.container, lease.container);
  t.equal(again.container.paused, false);
  t.same(
    provider.events.filter((e) => e.op !== 'create').map((e) => `${e.op}:${e.outcome}`),
    ['pause:start', 'pause:ok', 'unpause:start', 'unpause:ok'],
  );
  t.equal(pool.snapshot().containers[0]?.state, 'busy');
  again.release('reuse');
});

t.test('unpause failure destroys the broken container and falls back to another one', async (t) => {
  const { pool, provider } = makePool(t, { pauseGraceMs: 5 });
  const broken = await pool.acquire(req('k'));
  const healthy = await pool.acquire(req('k'));
  broken.markInitialized();
  healthy.markInitialized();
  healthy.release('reuse');
  await sleep(2);
  broken.release('reuse'); // most recently used: tried first
  await until(() => pool.snapshot().containers.every((c) => c.state === 'paused'), 1000, 'both paused');
  provider.failNextOp(broken.container, 'unpause');

  const lease = await pool.acquire(req('k'));
  t.equal(lease.container, healthy.container, 'falls back to the other warm container');
  t.equal(lease.origin, 'warm');
  await until(() => broken.container.destroyed, 1000, 'broken container destroyed');
  t.equal(pool.snapshot().containers.length, 1);
  lease.release('reuse');
});

t.test('unpause failure with no other warm container goes cold, not failing the activation', async (t) => {
  const { pool, provider } = makePool(t, { pauseGraceMs: 5, userMemoryMb: 256 });
  const first = await pool.acquire(req('k'));
  first.markInitialized();
  first.release('reuse');
  await until(() => first.container.paused, 1000, 'paused');
  provider.failNextOp(first.container, 'unpause');
  const lease = await pool.acquire(req('k'));
  t.equal(lease.origin, 'cold');
  t.equal(lease.needsInit, true);
  t.ok(first.container.destroyed, 'the broken one is gone (its memory was needed)');
  t.ok(provider.peakLiveMb <= 256);
  lease.release('destroy');
});

t.test('pause failure removes the container', async (t) => {
  const { pool, provider } = makePool(t, { pauseGraceMs: 5 });
  const lease = await pool.acquire(req('k'));
  provider.failNextOp(lease.container, 'pause');
  lease.markInitialized();
  lease.release('reuse');
  await until(() => lease.container.destroyed, 1000, 'destroyed');
  t.equal(pool.totals().usedMb, 0);
});

t.test('idle containers are removed after the idle timeout; reuse resets it', async (t) => {
  const { pool } = makePool(t, { pauseGraceMs: 10, idleTimeoutMs: 60 });
  const lease = await pool.acquire(req('k'));
  lease.markInitialized();
  lease.release('reuse');
  await sleep(40);
  const again = await pool.acquire(req('k'));
  t.equal(again.container, lease.container, 'still there before the timeout');
  await sleep(80);
  t.equal(lease.container.destroyed, false, 'no removal while leased');
  again.release('reuse');
  await until(() => lease.container.destroyed, 1000, 'removed after idle timeout');
  t.equal(pool.totals().usedMb, 0);
  t.equal(pool.snapshot().containers.length, 0);
});

t.test('snapshot lists containers without secrets', async (t) => {
  const { pool } = makePool(t, { userMemoryMb: 1000 });
  const lease = await pool.acquire(req('ns/a@1#rev', { memoryMb: 128 }));
  lease.markInitialized();
  const snap = pool.snapshot();
  t.same(snap.containers, [
    {
      id: lease.container.id,
      name: lease.container.name,
      state: 'busy',
      kind: 'nodejs:20',
      memoryMb: 128,
      inFlight: 1,
      idleMs: 0,
      origin: 'cold',
      warmKey: 'ns/a@1#rev',
    },
  ]);
  t.match(snap.totals, { userMemoryMb: 1000, usedMb: 128, freeMb: 872, queueLength: 0, inFlight: 1 });
  t.equal(snap.totals.byState.busy, 1);
  t.equal(snap.totals.byState.paused, 0);
  lease.release('reuse');
});
