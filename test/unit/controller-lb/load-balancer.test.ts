import t, { type Test } from 'tap';
import { INVOKER_HEALTH_TRANSACTION, serializeAcknowledgement, parseAcknowledgement } from '../../../protocol/index.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { InvokerPool } from '../../../controller-lb/invoker-state.js';
import {
  forcedCompletionDelayMs,
  KafkaUnavailableError,
  LoadBalancer,
  LoadBalancerClosedError,
  type LoadBalancerOptions,
} from '../../../controller-lb/load-balancer.js';
import { NoInvokersAvailableError } from '../../../controller-lb/scheduler.js';
import {
  capturingLogger,
  combined,
  completion,
  FakePublisher,
  FakePusher,
  helloAction,
  invokerId,
  message,
  result,
  settle,
  sleep,
  until,
} from './fixtures.js';

type Setup = Partial<Omit<LoadBalancerOptions, 'pool' | 'pusher' | 'controller'>> & { invokers?: number; memoryMb?: number };

function setup(t: Test, options: Setup = {}) {
  const { invokers = 1, memoryMb = 512, ...rest } = options;
  const pool = new InvokerPool({ controllerCount: 1 });
  for (let i = 0; i < invokers; i++) pool.recordPing(invokerId(i, memoryMb), Date.now());
  const pusher = new FakePusher();
  const lb = new LoadBalancer({
    controller: { asString: '0' },
    pool,
    pusher,
    invokerUrl: (index) => `http://invoker${index}.test:8080`,
    logger: silentLogger(),
    healthTests: false,
    ...rest,
  });
  t.teardown(() => lb.close());
  return { pool, pusher, lb };
}

t.test('forced-completion delay: max(timeLimit, 60 s) * 2 + 1 min', async (t) => {
  const upstream = { minTimeLimitMs: 60_000, extraMs: 60_000 };
  t.equal(forcedCompletionDelayMs(1_000, upstream), 180_000);
  t.equal(forcedCompletionDelayMs(300_000, upstream), 660_000);
});

t.test('HTTP push: acknowledged, then the combined ack completes and frees the slot', async (t) => {
  const { pool, pusher, lb } = setup(t);
  const msg = message();
  const published = lb.publish(helloAction, msg);
  t.match(published, { activationId: msg.activationId, invoker: 0, overloaded: false, transport: 'http' });
  t.equal(pusher.last().url, 'http://invoker0.test:8080');
  t.equal(pool.get(0)?.slots.availableMb, 256, 'slot held');
  t.equal(lb.inFlight, 1);

  let acked = false;
  void published.acknowledged.then(() => (acked = true));
  pusher.last().acknowledge();
  await settle();
  t.ok(acked);

  pusher.last().complete({ ok: true, ack: combined(msg, 0) });
  const done = await published.completion;
  t.match(done, { status: 'completed', activationId: msg.activationId, invoker: 0, isSystemError: false });
  t.same(done.status === 'completed' && done.activation?.response, { statusCode: 0, result: { payload: 'Hello, World!' } });
  t.equal(pool.get(0)?.slots.availableMb, 512, 'slot released');
  t.equal(lb.inFlight, 0);
});

t.test('a result message answers the caller; the slot waits for the completion message', async (t) => {
  const publisher = new FakePublisher();
  const { pool, lb } = setup(t, { kafka: publisher, invokerUrl: () => undefined });
  const msg = message();
  const published = lb.publish(helloAction, msg);
  t.equal(published.transport, 'kafka', 'no URL: Kafka');
  await published.acknowledged;
  t.equal(publisher.published[0]?.msg, msg);

  lb.handleAcknowledgement(result(msg, 2));
  const done = await published.completion;
  t.match(done, { status: 'completed', isSystemError: false, activation: { response: { statusCode: 2 } } });
  t.equal(pool.get(0)?.slots.availableMb, 256, 'still held');
  lb.handleAcknowledgement(completion(msg, 0, 2));
  t.equal(pool.get(0)?.slots.availableMb, 512, 'released by the completion message');
  t.equal(lb.inFlight, 0);
});

t.test('a completion message alone (non-blocking) completes without an activation', async (t) => {
  const { pool, pusher, lb } = setup(t);
  const msg = message({ blocking: false });
  const published = lb.publish(helloAction, msg);
  pusher.last().acknowledge();
  pusher.last().complete({ ok: true, ack: completion(msg, 0, 3) });
  const done = await published.completion;
  t.same(done, { status: 'completed', activationId: msg.activationId, invoker: 0, isSystemError: true });
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('the slot is released on the invoker named by the ack', async (t) => {
  const { pool, pusher, lb } = setup(t, { invokers: 2 });
  const msg = message();
  const published = lb.publish(helloAction, msg);
  const scheduledOn = published.invoker;
  const other = 1 - scheduledOn;
  pool.get(other)?.slots.forceAcquire(256); // pretend the other one ran something of this size
  pusher.last().complete({ ok: true, ack: combined(msg, other) });
  t.match(await published.completion, { status: 'completed', invoker: other });
  t.equal(pool.get(other)?.slots.availableMb, 512, 'released where the ack says it ran (as upstream)');
});

t.test('push not acknowledged: forced system-error completion, slot freed, counted against health', async (t) => {
  const { pool, pusher, lb } = setup(t);
  const msg = message();
  const published = lb.publish(helloAction, msg);
  pusher.last().refuse('invoker answered HTTP 503');
  await t.rejects(published.acknowledged, /503/);
  t.match(await published.completion, { status: 'forced', reason: 'failed', isSystemError: true, error: /503/ });
  t.equal(pool.get(0)?.slots.availableMb, 512);
  t.equal(pusher.last().signal?.aborted, true, 'the request is aborted');
  // Three more failures make four system errors: unhealthy.
  for (let i = 0; i < 3; i++) {
    const p = lb.publish(helloAction, message());
    pusher.last().refuse('connect ECONNREFUSED');
    await p.completion;
  }
  t.equal(pool.status(0, Date.now()), 'unhealthy');
  t.throws(() => lb.publish(helloAction, message()), NoInvokersAvailableError);
});

t.test('failure while reading the body: forced system error after the ack', async (t) => {
  const { pool, pusher, lb } = setup(t);
  const published = lb.publish(helloAction, message());
  pusher.last().acknowledge();
  pusher.last().complete({ ok: false, acknowledged: true, error: 'reading the completion: other side closed' });
  await published.acknowledged;
  t.match(await published.completion, { status: 'forced', reason: 'failed', error: /other side closed/ });
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('an HTTP body that does not complete the activation is a forced completion', async (t) => {
  const { pool, pusher, lb } = setup(t);
  const msg = message();
  const published = lb.publish(helloAction, msg);
  pusher.last().acknowledge();
  pusher.last().complete({ ok: true, ack: result(msg) });
  const done = await published.completion;
  t.equal(done.status, 'completed', 'the caller got the result');
  await settle();
  t.equal(pool.get(0)?.slots.availableMb, 512, 'but the slot does not wait for a completion that cannot come');
  t.equal(lb.inFlight, 0);
});

t.test('forced-completion timer: releases, fails the caller, counts a timeout; late acks are ignored', async (t) => {
  const { logger, lines } = capturingLogger();
  const { pool, pusher, lb } = setup(t, { logger, forcedCompletion: { minTimeLimitMs: 10, extraMs: 10 } });
  const msg = message();
  const started = Date.now();
  const published = lb.publish({ ...helloAction, timeoutMs: 5 }, msg); // max(5, 10) * 2 + 10 = 30 ms
  pusher.last().acknowledge();
  const done = await published.completion;
  t.ok(Date.now() - started >= 25, 'not before the delay');
  t.match(done, { status: 'forced', reason: 'timeout', isSystemError: true, invoker: 0 });
  t.equal(pool.get(0)?.slots.availableMb, 512);
  t.equal(pusher.last().signal?.aborted, true, 'the waiting push is cut off');

  // The invoker's completion arrives after all: exactly one completion per activation.
  lb.handleAcknowledgement(combined(msg, 0));
  t.equal(pool.get(0)?.slots.availableMb, 512, 'not released twice');
  t.ok(lines.some((l) => l['activationId'] === msg.activationId && /ignored an acknowledgement/.test(String(l['msg']))), 'logged');

  for (let i = 0; i < 3; i++) await lb.publish({ ...helloAction, timeoutMs: 5 }, message()).completion;
  t.equal(pool.status(0, Date.now()), 'unresponsive', 'four timeouts');
});

t.test('overload goes to Kafka when configured, is pushed anyway without', async (t) => {
  const publisher = new FakePublisher();
  const withKafka = setup(t, { memoryMb: 256, kafka: publisher });
  const first = withKafka.lb.publish(helloAction, message());
  t.match(first, { overloaded: false, transport: 'http' });
  const msg = message();
  const second = withKafka.lb.publish(helloAction, msg);
  t.match(second, { overloaded: true, transport: 'kafka' });
  await second.acknowledged;
  t.same(publisher.published.map((p) => [p.invoker, p.msg.activationId]), [[0, msg.activationId]]);
  t.equal(withKafka.pool.get(0)?.slots.availableMb, 0, 'overflow to Kafka holds no slot (it waits in the topic)');

  const withoutKafka = setup(t, { memoryMb: 256 });
  withoutKafka.lb.publish(helloAction, message());
  const pushed = withoutKafka.lb.publish(helloAction, message());
  t.match(pushed, { overloaded: true, transport: 'http' });
});

t.test('a failed Kafka publish is a forced system error', async (t) => {
  const publisher = new FakePublisher();
  publisher.fail = new Error('publishing to invoker0: broker down');
  const { pool, lb } = setup(t, { kafka: publisher, invokerUrl: () => undefined });
  const published = lb.publish(helloAction, message());
  await t.rejects(published.acknowledged, /broker down/);
  t.match(await published.completion, { status: 'forced', reason: 'failed' });
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('refusals before anything is sent', async (t) => {
  const { lb } = setup(t);
  const msg = message();
  lb.publish(helloAction, msg);
  t.throws(() => lb.publish(helloAction, msg), /already in flight/);
  await lb.close();
  t.throws(() => lb.publish(helloAction, message()), LoadBalancerClosedError);
});

t.test('close: waits for the grace, then forces what is left', async (t) => {
  const { pool, pusher, lb } = setup(t);
  const quick = message();
  const a = lb.publish(helloAction, quick);
  const b = lb.publish(helloAction, message());
  const closing = lb.close(200);
  pusher.pushes[0]?.complete({ ok: true, ack: combined(quick, 0) });
  await closing;
  t.match(await a.completion, { status: 'completed' });
  t.match(await b.completion, { status: 'forced', reason: 'shutdown' });
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('health test actions bring an unhealthy invoker back', async (t) => {
  const { pool, pusher, lb } = setup(t, { healthTests: { intervalMs: 60_000, checkIntervalMs: 10 } });
  for (let i = 0; i < 4; i++) {
    const p = lb.publish(helloAction, message());
    pusher.last().refuse('HTTP 500');
    await p.completion;
  }
  t.equal(pool.status(0, Date.now()), 'unhealthy');

  // Answer each test action with a successful completion until the invoker is up.
  let tests = 0;
  while (pool.status(0, Date.now()) !== 'up') {
    await until(() => pusher.pushes.length > 4 + tests, 2_000, `health test ${tests + 1}`);
    const test = pusher.last();
    t.equal(test.msg.transid.id, INVOKER_HEALTH_TRANSACTION);
    t.same(test.msg.action, { path: 'whisk.system', name: 'invokerHealthTestAction0', version: '0.0.1' });
    t.equal(test.msg.revision, null);
    t.equal(test.msg.blocking, false);
    tests += 1;
    // Through the wire form, as an invoker would answer.
    test.complete({ ok: true, ack: parseAcknowledgement(serializeAcknowledgement(completion(test.msg, 0))) });
    await settle();
    if (tests > 20) break;
  }
  t.equal(pool.status(0, Date.now()), 'up');
  t.equal(tests, 10, 'ten successes push the four errors out of the window');
  t.equal(pool.get(0)?.slots.availableMb, 512, 'test actions hold no slot');
  await sleep(50);
  t.equal(pusher.pushes.length, 4 + tests, 'no more tests once up');
});

t.test('no sticky overflow: activations return to HTTP push as soon as a slot frees', async (t) => {
  const publisher = new FakePublisher();
  const { pool, pusher, lb } = setup(t, { memoryMb: 512, kafka: publisher });
  const http = [lb.publish(helloAction, message()), lb.publish(helloAction, message())];
  t.same(http.map((p) => p.transport), ['http', 'http'], 'two slots of 256 MB');
  const overflow = Array.from({ length: 20 }, () => lb.publish(helloAction, message()));
  t.ok(overflow.every((p) => p.transport === 'kafka' && p.overloaded), 'the rest overflows to Kafka');
  t.equal(pool.get(0)?.slots.availableMb, 0, 'overflow holds no slot: it waits in the topic');

  const first = pusher.pushes[0];
  first?.complete({ ok: true, ack: combined(first.msg, 0) });
  await http[0]?.completion;
  const next = lb.publish(helloAction, message());
  t.equal(next.transport, 'http', 'the freed slot goes to HTTP push at once');

  // Overflow completions (from completed<C>) free nothing.
  for (const p of overflow.slice(0, 5)) lb.handleAcknowledgement(combined(publisher.published.find((x) => x.msg.activationId === p.activationId)!.msg, 0));
  t.equal(pool.get(0)?.slots.availableMb, 0);
  t.equal(lb.publish(helloAction, message()).transport, 'kafka', 'still full');
});

t.test('Kafka unreachable: overflow is refused (KafkaUnavailableError, Retry-After), HTTP push goes on', async (t) => {
  const publisher = Object.assign(new FakePublisher(), { up: false, available(this: { up: boolean }) { return this.up; } });
  const { pool, pusher, lb } = setup(t, { memoryMb: 512, kafka: publisher });
  t.equal(lb.publish(helloAction, message()).transport, 'http', 'HTTP push does not need Kafka');
  lb.publish(helloAction, message());
  const error = (() => {
    try {
      lb.publish(helloAction, message());
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.type(error, KafkaUnavailableError);
  t.type(error, NoInvokersAvailableError, 'a 503 for callers that know only that one');
  t.equal((error as KafkaUnavailableError).retryAfterSeconds, 5);
  t.equal(pool.get(0)?.slots.availableMb, 0, 'the refused one holds nothing');
  t.equal(lb.inFlight, 2);
  t.equal(publisher.published.length, 0, 'nothing sent to Kafka');

  const first = pusher.pushes[0];
  first?.complete({ ok: true, ack: combined(first.msg, 0) });
  await settle();
  t.equal(lb.publish(helloAction, message()).transport, 'http');
  publisher.up = true;
  t.equal(lb.publish(helloAction, message()).transport, 'kafka', 'overflow again once Kafka is back');
});

t.test('results of activations sent to an earlier incarnation do not count against the invoker', async (t) => {
  const { pool, pusher, lb } = setup(t, { forcedCompletion: { minTimeLimitMs: 50, extraMs: 0 }, memoryMb: 4096 });
  // Sent before the invoker died; they will time out after 100 ms.
  const lost = Array.from({ length: 6 }, () => lb.publish({ ...helloAction, timeoutMs: 1 }, message()));
  for (const p of pusher.pushes) p.acknowledge();
  // The invoker dies (failed probe) and comes back: a new incarnation.
  pool.get(0)?.health.recordPing(Date.now(), false, 'probe');
  pool.get(0)?.health.recordPing(Date.now(), true, 'probe');
  t.equal(pool.status(0, Date.now()), 'up');
  for (const p of lost) t.match(await p.completion, { status: 'forced', reason: 'timeout' });
  t.equal(pool.status(0, Date.now()), 'up', 'the previous run\'s timeouts are not counted');

  const current = Array.from({ length: 4 }, () => lb.publish({ ...helloAction, timeoutMs: 1 }, message()));
  for (const p of current) await p.completion;
  t.equal(pool.status(0, Date.now()), 'unresponsive', 'the current incarnation\'s are');
});

t.test('what Kafka does is not counted against the invoker: failed publishes, timeouts across a Kafka outage', async (t) => {
  const publisher = Object.assign(new FakePublisher(), {
    up: true,
    count: 0,
    available(this: { up: boolean }) {
      return this.up;
    },
    outages(this: { count: number }) {
      return this.count;
    },
  });
  const { pool, lb } = setup(t, { kafka: publisher, invokerUrl: () => undefined, forcedCompletion: { minTimeLimitMs: 20, extraMs: 0 } });
  const waiting = Array.from({ length: 5 }, () => lb.publish({ ...helloAction, memoryMb: 1, timeoutMs: 1 }, message()));
  // Kafka goes away and comes back while they wait in the topic.
  publisher.up = false;
  publisher.count++;
  publisher.up = true;
  for (const p of waiting) t.match(await p.completion, { status: 'forced', reason: 'timeout' });
  t.equal(pool.status(0, Date.now()), 'up', 'not unresponsive: Kafka lost them, not the invoker');

  publisher.fail = new Error('broker down');
  for (let i = 0; i < 5; i++) await lb.publish({ ...helloAction, memoryMb: 1, timeoutMs: 1 }, message()).completion;
  t.equal(pool.status(0, Date.now()), 'up', 'failed publishes are not system errors of the invoker');

  publisher.fail = undefined;
  for (let i = 0; i < 4; i++) await lb.publish({ ...helloAction, memoryMb: 1, timeoutMs: 1 }, message()).completion;
  t.equal(pool.status(0, Date.now()), 'unresponsive', 'timeouts without an outage still count');
});
