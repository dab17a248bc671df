import t from 'tap';
import { configuredInvokerId, InvokerPool } from '../../../controller-lb/invoker-state.js';
import { NoInvokersAvailableError, Scheduler, type SchedulingRequest } from '../../../controller-lb/scheduler.js';

/** n invokers of `memoryMb` each, all up at time 0. */
function poolOf(n: number, memoryMb = 256): InvokerPool {
  const pool = new InvokerPool({ controllerCount: 1 });
  for (let i = 0; i < n; i++) pool.recordPing(configuredInvokerId(i, memoryMb), 0);
  return pool;
}

// guest + guest/hello: hash 13198339 (Java). Among 5 invokers: home 4,
// steps [1,2,3], step = steps[13198339 % 3] = 2 -> walk 4, 1, 3, 0, 2.
const hello: SchedulingRequest = {
  namespace: 'guest',
  actionPathAndName: 'guest/hello',
  actionKey: 'guest/hello@0.0.1',
  memoryMb: 256,
  concurrency: 1,
  blackbox: false,
};

t.test('walks home, home + step, ... and takes the first with room', async (t) => {
  const pool = poolOf(5);
  const scheduler = new Scheduler(pool, { blackboxFraction: 0 });
  const order = [4, 1, 3, 0, 2].map(() => scheduler.schedule(hello, 1)).map((s) => [s.invoker.index, s.overloaded]);
  t.same(order, [
    [4, false],
    [1, false],
    [3, false],
    [0, false],
    [2, false],
  ]);
});

t.test('skips invokers that are not up', async (t) => {
  const pool = poolOf(5);
  for (let i = 0; i < 4; i++) pool.recordResult(4, 'systemError', 1);
  t.equal(pool.status(4, 1), 'unhealthy');
  const scheduler = new Scheduler(pool, { blackboxFraction: 0 });
  t.equal(scheduler.schedule(hello, 1).invoker.index, 1, 'home is unhealthy: next in the walk');
  t.equal(pool.get(4)?.slots.availableMb, 256, 'nothing taken on the unhealthy one');
});

t.test('overload: a random healthy invoker, force-acquired', async (t) => {
  const pool = poolOf(3, 256);
  const scheduler = new Scheduler(pool, { blackboxFraction: 0, random: () => 0.5 });
  for (let i = 0; i < 3; i++) t.equal(scheduler.schedule(hello, 1).overloaded, false);
  pool.recordPing({ ...configuredInvokerId(0, 256) }, 20_000); // others go offline at 20 s
  pool.recordPing({ ...configuredInvokerId(2, 256) }, 20_000);
  const over = scheduler.schedule(hello, 20_000);
  t.equal(over.overloaded, true);
  t.equal(over.invoker.index, 2, 'random 0.5 of healthy [0, 2]');
  t.equal(over.invoker.slots.availableMb, -256, 'forced into debt');
});

t.test('no healthy invoker: "No invokers available"', async (t) => {
  const scheduler = new Scheduler(poolOf(3), { blackboxFraction: 0 });
  t.throws(() => scheduler.schedule(hello, 60_000), NoInvokersAvailableError);
  t.throws(() => scheduler.schedule(hello, 60_000), /^No invokers available/);
  const empty = new Scheduler(new InvokerPool({ controllerCount: 1 }));
  t.throws(() => empty.schedule(hello, 0), /No invokers available: no managed invokers are known/);
});

t.test('concurrency: activations share a container on the same invoker', async (t) => {
  const pool = poolOf(2, 256);
  const scheduler = new Scheduler(pool, { blackboxFraction: 0 });
  const concurrent = { ...hello, concurrency: 3 };
  const placed = [1, 2, 3].map(() => scheduler.schedule(concurrent, 1).invoker.index);
  const home = placed[0];
  t.same(placed, [home, home, home], 'three activations, one container');
  t.equal(scheduler.schedule(concurrent, 1).invoker.index === home, false, 'the fourth needs memory elsewhere');
});

t.test('managed/blackbox split: 90% from the front, 10% from the back, at least one each', async (t) => {
  const ten = new Scheduler(poolOf(10));
  t.same(ten.candidates(false).map((i) => i.index), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  t.same(ten.candidates(true).map((i) => i.index), [9]);
  const one = new Scheduler(poolOf(1));
  t.same(one.candidates(false).map((i) => i.index), [0], 'they overlap on one invoker');
  t.same(one.candidates(true).map((i) => i.index), [0]);
  const twenty = new Scheduler(poolOf(20));
  t.same(twenty.candidates(true).map((i) => i.index), [18, 19]);
  t.equal(twenty.schedule({ ...hello, blackbox: true }, 1).invoker.index >= 18, true);
  t.throws(() => new Scheduler(poolOf(1), { blackboxFraction: 2 }), RangeError);
});
