/**
 * Memory accounting, eviction, the FIFO queue and its refusals.
 */
import t from 'tap';
import {
  ActionTooLargeError,
  ContainerCreateError,
  PoolQueueFullError,
  type Lease,
} from '../../../invoker/pool/container-pool.js';
import { makePool, req } from './pool-fixture.js';
import { prng, settle, sleep, until, type FakeContainer } from './fake-provider.js';

t.test('an action larger than user memory fails at once with the sizes in the message', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 512 });
  const error = await pool.acquire(req('big', { memoryMb: 1024 })).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(error, ActionTooLargeError);
  t.match((error as Error).message, /1024 MB.*512 MB/);
  t.equal(provider.count('create', 'start'), 0);
  t.equal(pool.totals().queueLength, 0);
});

t.test('memory is reserved before create: parallel cold starts cannot overcommit', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 512 });
  provider.delays.create = 20;
  const acquires = [pool.acquire(req('a')), pool.acquire(req('b')), pool.acquire(req('c'))];
  await settle();
  t.equal(provider.count('create', 'start'), 2, 'only two fit');
  t.equal(pool.totals().usedMb, 512);
  t.equal(pool.totals().queueLength, 1);
  const [a, b] = await Promise.all([acquires[0]!, acquires[1]!]);
  a.release('destroy');
  const c = await acquires[2]!;
  t.equal(c.origin, 'cold');
  t.ok(c.waitMs >= 15, `waitMs ${c.waitMs} counts the queued time`);
  t.ok(provider.peakLiveMb <= 512);
  b.release('destroy');
  c.release('destroy');
});

t.test('create failure frees the memory and rejects that acquire with the cause', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 256 });
  const cause = new Error('image not found');
  provider.createFailures.push(cause);
  const error = await pool.acquire(req('ns/a')).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(error, ContainerCreateError);
  t.equal((error as Error).cause, cause);
  t.match((error as Error).message, /creating a 256 MB nodejs:20 container \(whisk\/action-nodejs-v20:local\) for ns\/a: image not found/);
  t.equal(pool.totals().usedMb, 0);
  t.equal(pool.snapshot().containers.length, 0);
  const lease = await pool.acquire(req('ns/a'));
  t.equal(lease.origin, 'cold', 'the memory is usable again');
  lease.release('destroy');
});

t.test('a provider that throws synchronously is handled like a failed create', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 256 });
  const create = provider.create.bind(provider);
  let calls = 0;
  provider.create = (spec) => {
    calls += 1;
    if (calls === 1) throw new Error('sync failure');
    return create(spec);
  };
  await t.rejects(pool.acquire(req('a')), { name: 'ContainerCreateError', message: /sync failure/ });
  t.equal(pool.totals().usedMb, 0);
  const lease = await pool.acquire(req('a'));
  t.equal(lease.origin, 'cold');
  lease.release('destroy');
});

t.test('a failed create lets the next queued request in', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 256 });
  provider.delays.create = 10;
  provider.createFailures.push(new Error('boom'));
  const first = pool.acquire(req('a'));
  const second = pool.acquire(req('b'));
  await t.rejects(first, ContainerCreateError);
  const lease = await second;
  t.equal(lease.origin, 'cold');
  lease.release('destroy');
});

t.test('evicts idle containers oldest-first (global LRU) until the action fits', async (t) => {
  const { pool, provider } = makePool(t, { userMemoryMb: 1024 });
  const leases: Lease<FakeContainer>[] = [];
  for (const key of ['a', 'b', 'c', 'd']) leases.push(await pool.acquire(req(key)));
  // Release in the order c, a, d, b: c is the least recently used.
  for (const i of [2, 0, 3, 1]) {
    leases[i]!.markInitialized();
    leases[i]!.release('reuse');
    await sleep(2);
  }
  const big = await pool.acquire(req('big', { memoryMb: 512 }));
  t.equal(big.origin, 'cold');
  t.same(
    provider.done('destroy'),
    [leases[2]!.container.name, leases[0]!.container.name],
    'c then a were evicted; d and b stay',
  );
  t.ok(provider.peakLiveMb <= 1024, `engine never asked for more than user memory (peak ${provider.peakLiveMb})`);
  t.equal(pool.totals().usedMb, 1024);
  const warmB = await pool.acquire(req('b'));
  t.equal(warmB.origin, 'warm');
  big.release('destroy');
  warmB.release('reuse');
});

t.test('busy containers are never evicted: the request waits', async (t) => {
  const { pool } = makePool(t, { userMemoryMb: 512 });
  const a = await pool.acquire(req('a'));
  const b = await pool.acquire(req('b'));
  let got: Lease<FakeContainer> | undefined;
  const waiting = pool.acquire(req('c')).then((l) => (got = l));
  await settle();
  t.equal(got, undefined);
  t.equal(pool.totals().queueLength, 1);
  a.markInitialized();
  a.release('reuse'); // now idle, hence evictable
  await waiting;
  t.equal(got?.origin, 'cold');
  t.ok(a.container.destroyed);
  b.release('destroy');
  got?.release('destroy');
});

t.test('FIFO: queued requests are served strictly in order as capacity frees one by one', async (t) => {
  const { pool } = makePool(t, { userMemoryMb: 512 });
  const held = [await pool.acquire(req('x')), await pool.acquire(req('y'))];
  const order: string[] = [];
  const queued = [
    pool.acquire(req('big', { memoryMb: 512 })),
    pool.acquire(req('s1', { memoryMb: 128 })),
    pool.acquire(req('s2', { memoryMb: 128 })),
  ].map((p, i) =>
    p.then((lease) => {
      order.push(['big', 's1', 's2'][i]!);
      return lease;
    }),
  );
  await settle();
  t.equal(pool.totals().queueLength, 3);

  held[0]!.release('destroy');
  await settle();
  t.same(order, [], 'the small ones do not overtake the big head (head-of-line blocking is FIFO)');
  t.equal(pool.totals().freeMb, 256);

  held[1]!.release('destroy');
  const big = await queued[0]!;
  t.same(order, ['big']);
  await settle();
  t.same(order, ['big'], 'still no room for the small ones');
  big.release('destroy');
  const [s1, s2] = await Promise.all([queued[1]!, queued[2]!]);
  t.same(order, ['big', 's1', 's2']);
  s1.release('destroy');
  s2.release('destroy');
});

t.test('while requests wait, newcomers queue behind them even with a warm container', async (t) => {
  const { pool } = makePool(t, { userMemoryMb: 512 });
  const warm = await pool.acquire(req('w'));
  warm.markInitialized();
  const other = await pool.acquire(req('o'));
  const head = pool.acquire(req('big', { memoryMb: 512 }));
  await settle();
  warm.release('reuse'); // idle now, but 'o' is busy: big still cannot fit
  await settle();
  const order: string[] = [];
  const late = pool.acquire(req('w')).then((l) => {
    order.push('w');
    return l;
  });
  void head.then(() => order.push('big'));
  await settle();
  t.same(order, [], 'w waits behind big');
  other.release('destroy');
  const bigLease = await head;
  t.ok(warm.container.destroyed, 'big evicted the idle warm container');
  bigLease.release('destroy');
  const wLease = await late;
  t.same(order, ['big', 'w']);
  t.equal(wLease.origin, 'cold');
  wLease.release('destroy');
});

t.test('a full queue rejects at once with PoolQueueFullError', async (t) => {
  const { pool } = makePool(t, { userMemoryMb: 256, queueLimit: 2 });
  const held = await pool.acquire(req('a'));
  const q1 = pool.acquire(req('b'));
  const q2 = pool.acquire(req('c'));
  await t.rejects(pool.acquire(req('d')), PoolQueueFullError);
  t.equal(pool.totals().queueLength, 2);
  held.release('destroy');
  (await q1).release('destroy');
  (await q2).release('destroy');
});

t.test('queueLimit 0 refuses instead of waiting', async (t) => {
  const { pool } = makePool(t, { userMemoryMb: 256, queueLimit: 0 });
  const held = await pool.acquire(req('a'));
  await t.rejects(pool.acquire(req('b')), PoolQueueFullError);
  held.release('destroy');
});

t.test('invalid requests are refused with a clear error', async (t) => {
  const { pool } = makePool(t);
  await t.rejects(pool.acquire(req('a', { memoryMb: 0 })), /memoryMb must be a positive integer/);
  await t.rejects(pool.acquire(req('a', { concurrency: 0 })), /concurrency must be a positive integer/);
  await t.rejects(pool.acquire(req('')), /warmKey must be a non-empty string/);
});

t.test('randomized: memory never exceeds user memory under many concurrent acquires', async (t) => {
  for (const seed of [1, 42, 1337]) {
    const random = prng(seed);
    const userMemoryMb = 2048;
    const { pool, provider } = makePool(t, {
      userMemoryMb,
      queueLimit: 10_000,
      pauseGraceMs: 3,
      idleTimeoutMs: 30,
      stemCells: [{ kind: 'nodejs:20', image: 'whisk/action-nodejs-v20:local', memoryMb: 256, count: 1 }],
      stemCellBackoff: { initialMs: 1, maxMs: 5 },
    });
    provider.delays = { create: 0, pause: 2, unpause: 2, destroy: 2 };
    provider.createDelay = () => Math.floor(random() * 8);
    pool.start();

    let violations = 0;
    const origins = { warm: 0, prewarm: 0, cold: 0 };
    let queuedRuns = 0;
    const check = (): void => {
      const totals = pool.totals();
      if (totals.usedMb > userMemoryMb || totals.freeMb < 0 || provider.liveMb > userMemoryMb) violations += 1;
    };
    // Eight actions in two namespaces; memory and concurrency are part of an
    // action's definition, so fixed per warmKey. Two of them match the stem cell.
    const actions = Array.from({ length: 8 }, (_, i) => ({
      key: `ns${i % 2}/action${i}`,
      memoryMb: i < 2 ? 256 : [128, 256, 512][Math.floor(random() * 3)]!,
      concurrency: i < 2 ? 1 : random() < 0.4 ? 3 : 1,
    }));
    const runs: Promise<string>[] = [];
    for (let i = 0; i < 400; i++) {
      // Mostly the first few actions (a skewed, realistic mix), so warm hits happen.
      const action = actions[Math.floor(random() ** 2 * actions.length)]!;
      const { key, memoryMb, concurrency } = action;
      if (random() < 0.05) provider.createFailures.push(new Error('random create failure'));
      if (random() < 0.1) {
        // Break a paused container: its next reuse must fall back elsewhere.
        const paused = pool.snapshot().containers.find((c) => c.state === 'paused');
        const container = provider.containers.find((c) => c.id === paused?.id);
        if (container !== undefined) provider.failNextOp(container, 'unpause');
      }
      const fresh = random() < 0.05;
      runs.push(
        pool.acquire(req(key, { memoryMb, concurrency, fresh })).then(
          async (lease) => {
            check();
            origins[lease.origin] += 1;
            if (lease.waitMs > 0) queuedRuns += 1;
            if (lease.needsInit) {
              await sleep(Math.floor(random() * 3));
              lease.markInitialized();
            }
            await sleep(Math.floor(random() * 6));
            check();
            lease.release(random() < 0.1 ? 'destroy' : 'reuse');
            return 'ok';
          },
          (error: unknown) => (error as Error).name,
        ),
      );
      // Bursts (no pause) and lulls (long enough for pausing and idle removal).
      const gap = random();
      if (gap > 0.95) await sleep(20 + Math.floor(random() * 20));
      else if (gap > 0.3) await sleep(1 + Math.floor(random() * 5));
      check();
    }
    const outcomes = await Promise.all(runs);
    const unexpected = outcomes.filter((o) => o !== 'ok' && o !== 'ContainerCreateError');
    t.same(unexpected, [], `seed ${seed}: every acquire got a container or a create error`);
    t.equal(violations, 0, `seed ${seed}: memory never over user memory`);
    t.ok(provider.peakLiveMb <= userMemoryMb, `seed ${seed}: engine peak ${provider.peakLiveMb} MB <= ${userMemoryMb} MB`);
    t.equal(pool.totals().inFlight, 0);
    // The run must have exercised every path, or it proves little.
    t.ok(origins.warm > 0 && origins.prewarm > 0 && origins.cold > 0, `seed ${seed}: origins ${JSON.stringify(origins)}`);
    t.ok(queuedRuns > 0, `seed ${seed}: ${queuedRuns} runs waited in the queue`);
    t.ok(provider.count('unpause') > 0 && provider.count('unpause', 'fail') > 0, `seed ${seed}: unpauses ${provider.count('unpause')}, failed ${provider.count('unpause', 'fail')}`);
    t.ok(provider.count('destroy') > 0, `seed ${seed}: ${provider.count('destroy')} containers destroyed before drain`);
    const result = await pool.drain(1000);
    t.equal(result.abandonedLeases, 0);
    t.equal(pool.totals().usedMb, 0, `seed ${seed}: every MB returned`);
    await until(() => provider.alive().length === 0, 1000, 'all containers destroyed');
  }
});
