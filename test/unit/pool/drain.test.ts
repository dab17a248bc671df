/**
 * Shutdown: no new leases, queued requests refused, in-flight leases waited
 * for (bounded), every container destroyed.
 */
import t from 'tap';
import { PoolClosedError } from '../../../invoker/pool/container-pool.js';
import { IMAGE, KIND, makePool, req } from './pool-fixture.js';
import { settle, sleep, until } from './fake-provider.js';

t.test('drain rejects queued requests, waits for leases, destroys everything', async (t) => {
  const { pool, provider } = makePool(t, {
    userMemoryMb: 1024,
    pauseGraceMs: 5,
    stemCells: [{ kind: KIND, image: IMAGE, memoryMb: 256, count: 1 }],
  });
  pool.start();
  await until(() => pool.totals().byState.prewarm === 1, 1000, 'prewarm');
  const idle = await pool.acquire(req('idle', { memoryMb: 128 }));
  idle.markInitialized();
  idle.release('reuse');
  await until(() => idle.container.paused, 1000, 'paused');
  const busy = await pool.acquire(req('busy', { memoryMb: 128 }));
  const queued = pool.acquire(req('queued', { memoryMb: 1024 }));
  await settle();
  t.equal(pool.totals().queueLength, 1);

  const drained = pool.drain(1000);
  await t.rejects(queued, PoolClosedError);
  await t.rejects(pool.acquire(req('late')), PoolClosedError);
  await sleep(20);
  t.equal(busy.container.destroyed, false, 'a container in use is not removed under its run');
  busy.markInitialized();
  busy.release('reuse');
  const result = await drained;
  t.same(result, { abandonedLeases: 0, destroyed: 3 });
  t.equal(provider.alive().length, 0);
  t.equal(pool.totals().usedMb, 0);
  t.equal(pool.snapshot().containers.length, 0);
  t.equal(await pool.drain(), result, 'idempotent');
});

t.test('drain gives up waiting after its timeout and removes containers still in use', async (t) => {
  const { pool, provider } = makePool(t);
  const lease = await pool.acquire(req('stuck'));
  const result = await pool.drain(30);
  t.same(result, { abandonedLeases: 1, destroyed: 1 });
  t.ok(lease.container.destroyed);
  lease.release('reuse'); // late release is harmless
  t.equal(pool.totals().usedMb, 0);
  t.equal(provider.alive().length, 0);
});

t.test('a stem cell still being created during drain is destroyed when it arrives', async (t) => {
  const { pool, provider } = makePool(t, { stemCells: [{ kind: KIND, image: IMAGE, memoryMb: 256, count: 1 }] });
  provider.delays.create = 30;
  pool.start();
  await settle();
  t.equal(pool.totals().byState.creating, 1);
  await pool.drain(100);
  t.equal(provider.count('create'), 1);
  t.equal(provider.alive().length, 0);
  t.equal(pool.totals().usedMb, 0);
});

t.test('close() is drain with the configured timeout', async (t) => {
  const { pool, provider } = makePool(t, { drainTimeoutMs: 20 });
  await pool.acquire(req('a'));
  await pool.close();
  t.equal(provider.alive().length, 0);
});
