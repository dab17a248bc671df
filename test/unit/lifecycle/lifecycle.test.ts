/**
 * The invoker's lifecycle: start in order, stop in reverse, a failed start
 * unwinds what came up, and a stop that fails or hangs does not hold the rest.
 */
import t from 'tap';
import { ComponentStartError, Lifecycle, type LifecycleComponent } from '../../../invoker/lifecycle.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { captureLogger } from '../../helpers/log-capture.js';


/** Components that record their starts and stops in one shared list. */
function recorded(names: string[], events: string[], overrides: Record<string, Partial<LifecycleComponent>> = {}): LifecycleComponent[] {
  return names.map((name) => ({
    name,
    start: async () => {
      await Promise.resolve();
      events.push(`start ${name}`);
    },
    stop: async () => {
      await Promise.resolve();
      events.push(`stop ${name}`);
    },
    ...overrides[name],
  }));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

t.test('starts in order, each after the previous one finished, and stops in reverse', async (t) => {
  const events: string[] = [];
  const lifecycle = new Lifecycle(
    recorded(['a', 'b', 'c'], events, {
      // A slow start: the next one must wait for it.
      b: {
        start: async () => {
          await sleep(20);
          events.push('start b');
        },
      },
    }),
    silentLogger(),
  );
  await lifecycle.start();
  t.same(events, ['start a', 'start b', 'start c']);
  await lifecycle.stop();
  t.same(events, ['start a', 'start b', 'start c', 'stop c', 'stop b', 'stop a']);
});

t.test('components without a start or a stop take their place in the order', async (t) => {
  const events: string[] = [];
  const lifecycle = new Lifecycle(
    [
      { name: 'first', stop: () => void events.push('stop first') },
      { name: 'only-start', start: () => void events.push('start only-start') },
      { name: 'last', start: () => void events.push('start last'), stop: () => void events.push('stop last') },
    ],
    silentLogger(),
  );
  await lifecycle.start();
  await lifecycle.stop();
  t.same(events, ['start only-start', 'start last', 'stop last', 'stop first']);
});

t.test('a failed start stops exactly what started, in reverse, and names the component', async (t) => {
  const events: string[] = [];
  const { lines, logger } = captureLogger();
  const lifecycle = new Lifecycle(
    recorded(['store', 'records', 'http', 'pool'], events, {
      http: {
        start: async () => {
          events.push('start http (fails)');
          throw new Error('listen EADDRINUSE: address already in use');
        },
      },
    }),
    logger,
  );
  const error = await lifecycle.start().then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof ComponentStartError, 'a ComponentStartError');
  t.equal((error as ComponentStartError).component, 'http');
  t.match((error as Error).message, /^http failed to start: listen EADDRINUSE/);
  t.match(((error as Error).cause as Error).message, /EADDRINUSE/, 'the cause is kept');
  t.same(events, ['start store', 'start records', 'start http (fails)', 'stop records', 'stop store'], 'neither the failed one nor the later ones are stopped; pool never started');
  t.match(lines, [{ level: 'error', component: 'http', msg: 'start failed: stopping what already started' }]);

  // Nothing is left to stop afterwards.
  await lifecycle.stop();
  t.equal(events.filter((e) => e.startsWith('stop')).length, 2, 'stop after a failed start stops nothing twice');
});

t.test('a failed start still rethrows when the unwind itself fails', async (t) => {
  const events: string[] = [];
  const { lines, logger } = captureLogger();
  const lifecycle = new Lifecycle(
    recorded(['a', 'b', 'c'], events, {
      b: { stop: () => Promise.reject(new Error('b will not stop')) },
      c: { start: () => Promise.reject(new Error('c is broken')) },
    }),
    logger,
  );
  await t.rejects(lifecycle.start(), { name: 'ComponentStartError', component: 'c', message: 'c failed to start: c is broken' });
  t.same(events, ['start a', 'start b', 'stop a'], 'a is stopped although b failed to');
  t.ok(lines.some((line) => line.msg === 'shutdown: stopping b failed' && line.component === 'b'));
});

t.test('a stop that fails is logged and the stop goes on', async (t) => {
  const events: string[] = [];
  const { lines, logger } = captureLogger();
  const lifecycle = new Lifecycle(
    recorded(['a', 'b', 'c'], events, {
      b: {
        stop: () => {
          events.push('stop b (throws)');
          throw new Error('engine gone');
        },
        stopping: 'removing containers',
      },
    }),
    logger,
  );
  await lifecycle.start();
  await lifecycle.stop();
  t.same(events.slice(3), ['stop c', 'stop b (throws)', 'stop a']);
  const line = lines.find((l) => l.msg === 'shutdown: removing containers failed');
  t.ok(line, 'the failure is logged with its description');
  t.match(line, { level: 'error', component: 'b', err: { message: 'engine gone' } });
});

t.test('a stop that overruns its limit is logged and left behind; the stop goes on', async (t) => {
  const events: string[] = [];
  const { lines, logger } = captureLogger();
  let release: () => void = () => undefined;
  const lifecycle = new Lifecycle(
    recorded(['a', 'b', 'c'], events, {
      b: {
        stop: () => new Promise<void>((resolve) => (release = resolve)),
        stopLimitMs: 50,
        stopping: 'closing Kafka',
      },
    }),
    logger,
  );
  await lifecycle.start();
  const began = Date.now();
  await lifecycle.stop();
  const tookMs = Date.now() - began;
  t.ok(tookMs >= 45 && tookMs < 1000, `bounded by the limit (${tookMs} ms)`);
  t.same(events.slice(3), ['stop c', 'stop a'], 'a stopped after b overran');
  t.match(lines, [{ level: 'error', component: 'b', limitMs: 50, msg: 'shutdown: closing Kafka did not finish within 50 ms; going on' }]);
  release();
});

t.test('a stop within its limit is waited for and not logged', async (t) => {
  const events: string[] = [];
  const { lines, logger } = captureLogger();
  const lifecycle = new Lifecycle(
    recorded(['a', 'b'], events, {
      b: {
        stop: async () => {
          await sleep(30);
          events.push('stop b');
        },
        stopLimitMs: 1000,
      },
    }),
    logger,
  );
  await lifecycle.start();
  await lifecycle.stop();
  t.same(events.slice(2), ['stop b', 'stop a'], 'a waits for b');
  t.same(lines, [], 'nothing logged');
});

t.test('stop is idempotent: one stop, the same promise for every caller', async (t) => {
  const events: string[] = [];
  const lifecycle = new Lifecycle(recorded(['a', 'b'], events), silentLogger());
  await lifecycle.start();
  const first = lifecycle.stop();
  const second = lifecycle.stop();
  t.equal(first, second, 'the same promise');
  await Promise.all([first, second, lifecycle.stop()]);
  t.same(events, ['start a', 'start b', 'stop b', 'stop a'], 'each component stopped once');
});

t.test('a stop during the start lets the component under way finish, starts no more, and stops what started', async (t) => {
  const events: string[] = [];
  let release: () => void = () => undefined;
  const lifecycle = new Lifecycle(
    recorded(['a', 'b', 'c'], events, {
      b: {
        start: async () => {
          await new Promise<void>((resolve) => (release = resolve));
          events.push('start b');
        },
      },
    }),
    silentLogger(),
  );
  const starting = lifecycle.start();
  await sleep(10);
  const stopping = lifecycle.stop();
  release();
  await t.rejects(starting, { component: 'c', message: 'c failed to start: stopped while starting' });
  await stopping;
  t.same(events, ['start a', 'start b', 'stop b', 'stop a']);
});
