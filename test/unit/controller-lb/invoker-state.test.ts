import t from 'tap';
import { megabytes } from '../../../protocol/index.js';
import {
  configuredInvokerId,
  InvokerHealth,
  InvokerPool,
  MemorySemaphore,
  NestedSemaphore,
  slotMemoryMb,
} from '../../../controller-lb/invoker-state.js';

t.test('memory semaphore: try fails when short, force goes into debt', async (t) => {
  const s = new MemorySemaphore(512);
  t.ok(s.tryAcquire(256));
  t.ok(s.tryAcquire(256));
  t.notOk(s.tryAcquire(1), 'full');
  s.forceAcquire(256);
  t.equal(s.availableMb, -256);
  s.release(256);
  t.notOk(s.tryAcquire(128), 'the debt is paid back first');
  s.release(256);
  t.ok(s.tryAcquire(128));
  t.equal(s.availableMb, 128, '384 MB in use');
  s.resize(1024);
  t.equal(s.availableMb, 640, 'resizing keeps what is in use');
  t.equal(s.totalMb, 1024);
});

t.test('nested semaphore: concurrency 1 is plain memory', async (t) => {
  const s = new NestedSemaphore(256);
  t.ok(s.tryAcquireConcurrent('a@1', 1, 128));
  t.ok(s.tryAcquireConcurrent('a@1', 1, 128));
  t.notOk(s.tryAcquireConcurrent('a@1', 1, 128));
  s.releaseConcurrent('a@1', 1, 128);
  t.equal(s.availableMb, 128);
});

t.test('nested semaphore: concurrency c takes one container per c activations', async (t) => {
  const s = new NestedSemaphore(512);
  // Concurrency 3, 256 MB: activations 1-3 share one container's memory.
  for (let i = 0; i < 3; i++) t.ok(s.tryAcquireConcurrent('c@1', 3, 256), `activation ${i + 1}`);
  t.equal(s.availableMb, 256, 'one container');
  t.equal(s.freeSlots('c@1'), 0);
  t.ok(s.tryAcquireConcurrent('c@1', 3, 256), 'the fourth opens a second container');
  t.equal(s.availableMb, 0);
  t.equal(s.freeSlots('c@1'), 2);
  t.ok(s.tryAcquireConcurrent('c@1', 3, 256), 'slot in the second container, no memory needed');
  t.ok(s.tryAcquireConcurrent('c@1', 3, 256));
  t.notOk(s.tryAcquireConcurrent('c@1', 3, 256), 'no slot and no memory');
  t.notOk(s.tryAcquireConcurrent('other@1', 1, 128), 'other actions see the memory as taken');

  // Releasing: memory comes back only when a whole container's slots are free.
  s.releaseConcurrent('c@1', 3, 256);
  s.releaseConcurrent('c@1', 3, 256);
  t.equal(s.availableMb, 0, 'two free slots are not a container');
  s.releaseConcurrent('c@1', 3, 256);
  t.equal(s.availableMb, 256, 'three free slots give one container back');
  for (let i = 0; i < 3; i++) s.releaseConcurrent('c@1', 3, 256);
  t.equal(s.availableMb, 512);
  t.equal(s.freeSlots('c@1'), 0, 'the action is forgotten');
  t.throws(() => s.releaseConcurrent('c@1', 3, 256), /none is held/);
});

t.test('nested semaphore: forced concurrent acquire goes into debt for a new container', async (t) => {
  const s = new NestedSemaphore(128);
  t.ok(s.tryAcquireConcurrent('x@1', 1, 128));
  s.forceAcquireConcurrent('c@1', 2, 256);
  t.equal(s.availableMb, -256);
  t.equal(s.freeSlots('c@1'), 1);
  t.ok(s.tryAcquireConcurrent('c@1', 2, 256), 'the free slot of the forced container is usable');
});

t.test('slot memory: userMemory / controllers, at least 128 MB', async (t) => {
  t.equal(slotMemoryMb(2048 * 1024 * 1024, 1), 2048);
  t.equal(slotMemoryMb(2048 * 1024 * 1024, 2), 1024);
  t.equal(slotMemoryMb(2048 * 1024 * 1024, 3), 682);
  t.equal(slotMemoryMb(256 * 1024 * 1024, 4), 128, 'never below the minimum');
});

t.test('health: down until a ping, down again after 10 s without one', async (t) => {
  const h = new InvokerHealth();
  t.equal(h.status(0), 'down');
  t.same(h.recordPing(1000), { from: 'down', to: 'up' });
  t.equal(h.status(11_000), 'up', 'exactly 10 s is still up');
  t.equal(h.status(11_001), 'down');
  t.same(h.recordPing(12_000), { from: 'down', to: 'up' });
  t.equal(h.recordPing(12_500), undefined, 'no transition');
});

t.test('health: a disabled ping takes it down, an enabled one brings it back', async (t) => {
  const h = new InvokerHealth();
  h.recordPing(0);
  t.same(h.recordPing(100, false), { from: 'up', to: 'down' });
  t.ok(h.disabled);
  t.equal(h.status(200), 'down');
  t.same(h.recordPing(300, true), { from: 'down', to: 'up' });
});

t.test('health: more than 3 system errors in the last 10 -> unhealthy; 10 successes -> up', async (t) => {
  const h = new InvokerHealth();
  h.recordPing(0);
  for (let i = 0; i < 3; i++) t.equal(h.recordResult('systemError', 1), undefined);
  t.equal(h.status(1), 'up', '3 errors are tolerated');
  t.same(h.recordResult('systemError', 1), { from: 'up', to: 'unhealthy' });
  // The window holds 4 errors; it takes 10 successes to push them all out.
  for (let i = 0; i < 9; i++) t.equal(h.recordResult('success', 2), undefined, `success ${i + 1}`);
  t.same(h.recordResult('success', 2), { from: 'unhealthy', to: 'up' });
});

t.test('health: more than 3 timeouts -> unresponsive; errors mixed in stay tolerated', async (t) => {
  const h = new InvokerHealth();
  h.recordPing(0);
  h.recordResult('timeout', 1);
  h.recordResult('systemError', 1);
  h.recordResult('timeout', 1);
  h.recordResult('success', 1);
  h.recordResult('timeout', 1);
  t.equal(h.status(1), 'up');
  t.same(h.recordResult('timeout', 1), { from: 'up', to: 'unresponsive' });
  t.equal(h.recordResult('systemError', 1), undefined, 'only an up invoker is demoted');
});

t.test('health: only the last 10 results count', async (t) => {
  const h = new InvokerHealth();
  h.recordPing(0);
  for (let i = 0; i < 3; i++) h.recordResult('systemError', 1);
  for (let i = 0; i < 7; i++) h.recordResult('success', 1);
  h.recordResult('systemError', 1); // pushes the first error out: still 3
  t.equal(h.status(1), 'up');
});

t.test('health: coming back from down starts with a clean window', async (t) => {
  const h = new InvokerHealth();
  h.recordPing(0);
  for (let i = 0; i < 4; i++) h.recordResult('systemError', 1);
  t.equal(h.status(1), 'unhealthy');
  t.equal(h.status(20_000), 'down');
  h.recordPing(20_000);
  t.equal(h.status(20_000), 'up');
});

t.test('pool: registers by ping, fills gaps, resizes, reports statuses', async (t) => {
  const pool = new InvokerPool({ controllerCount: 2, health: { offlineAfterMs: 1000 } });
  pool.recordPing({ instance: 2, userMemory: megabytes(1024), tags: [], dedicatedNamespaces: [] }, 0);
  t.equal(pool.size, 3, 'invokers 0 and 1 exist as placeholders');
  t.same(pool.statuses(0), { invoker0: 'down', invoker1: 'down', invoker2: 'up' });
  t.equal(pool.get(2)?.slots.totalMb, 512, 'half of 1024 MB for each of two controllers');
  t.same(pool.observe(0), [{ index: 2, from: 'down', to: 'up' }]);
  t.same(pool.observe(500), [], 'reported once');

  pool.register(configuredInvokerId(2, 2048));
  t.equal(pool.get(2)?.slots.totalMb, 1024, 'resized on new memory');
  t.same(pool.observe(1500), [{ index: 2, from: 'up', to: 'down' }], 'offline by time alone');
  t.match(pool.snapshot(1500), { invoker2: { status: 'down', userMemoryMb: 2048, slotMemoryMb: 1024, availableMb: 1024 } });
  t.equal(pool.status(7, 0), 'down', 'unknown invokers are down');
  const small = new InvokerPool({ controllerCount: 1, maxInvokers: 4 });
  t.throws(() => small.recordPing(configuredInvokerId(4, 256), 0), /invoker4: ids must be below 4/);
  t.equal(small.size, 0, 'nothing allocated');
});

t.test('two sources: an invoker that answers its HTTP probes stays up while its Kafka pings stop', async (t) => {
  const health = new InvokerHealth();
  health.recordPing(0, true, 'ping');
  health.recordPing(0, true, 'probe');
  t.equal(health.status(5_000), 'up');
  // Kafka down: no pings from 0 on; probes keep answering.
  health.recordPing(8_000, true, 'probe');
  health.recordPing(16_000, true, 'probe');
  t.equal(health.status(20_000), 'up', 'up on the probes alone');
  t.equal(health.status(30_000), 'down', 'and down once neither source says anything');
});

t.test('two sources: a recent negative sign from either takes it down', async (t) => {
  const health = new InvokerHealth();
  health.recordPing(0, true, 'probe');
  health.recordPing(0, false, 'ping'); // disabled over /disable: readiness still answers 200
  t.equal(health.status(100), 'down');
  health.recordPing(1_000, true, 'probe');
  t.equal(health.status(1_000), 'down', 'the probe does not override a recent disabled ping');
  t.equal(health.status(11_500), 'down', 'still down once the disabled ping is stale and the probe too');
  health.recordPing(12_000, true, 'probe');
  t.equal(health.status(12_000), 'up', 'a stale disabled ping says nothing any more');
  health.recordPing(13_000, false, 'probe');
  t.equal(health.status(13_000), 'down', 'a failed probe: down at once (draining, gone)');
});

t.test('results for an earlier incarnation are not counted', async (t) => {
  const health = new InvokerHealth();
  health.recordPing(0, true, 'probe');
  const before = health.incarnation;
  // The invoker dies (a failed probe) and comes back: a new incarnation with an empty window.
  health.recordPing(1_000, false, 'probe');
  health.recordPing(11_000, true, 'probe');
  t.equal(health.incarnation, before + 1);
  // Activations the old run lost time out minutes later.
  for (let i = 0; i < 10; i++) t.equal(health.recordResult('timeout', 12_000, before), undefined);
  t.equal(health.status(12_000), 'up', 'not demoted by what the previous run lost');
  for (let i = 0; i < 4; i++) health.recordResult('timeout', 12_000, health.incarnation);
  t.equal(health.status(12_000), 'unresponsive', 'timeouts of the current incarnation count');
});
