/**
 * HTTP push against a server that keeps the invoker's contract: headers are
 * the acknowledgement, the body is the completion.
 */
import t, { type Test } from 'tap';
import { serializeActivationMessage } from '../../../protocol/index.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { InvokerPool } from '../../../controller-lb/invoker-state.js';
import { LoadBalancer } from '../../../controller-lb/load-balancer.js';
import { PushClient, PushRejectedError } from '../../../controller-lb/push-client.js';
import { helloAction, invokerId, message, sleep, until } from '../../unit/controller-lb/fixtures.js';
import { refusedUrl, startFakeInvoker } from './fake-invoker.js';

async function setup(t: Test, url: string | (() => string), options: { token?: string } = {}) {
  const pool = new InvokerPool({ controllerCount: 1 });
  pool.recordPing(invokerId(0, 512), Date.now());
  const pusher = new PushClient({ token: options.token, ackTimeoutMs: 2_000 });
  const lb = new LoadBalancer({
    controller: { asString: '0' },
    pool,
    pusher,
    invokerUrl: () => (typeof url === 'string' ? url : url()),
    logger: silentLogger(),
    healthTests: false,
  });
  t.teardown(async () => {
    await lb.close();
    await pusher.close();
  });
  return { pool, pusher, lb };
}

t.test('acknowledged on headers, completed by the body, slot released', async (t) => {
  const invoker = await startFakeInvoker(0, { token: 'tok' });
  t.teardown(() => invoker.close());
  const { pool, lb } = await setup(t, invoker.url, { token: 'tok' });
  const msg = message();
  const published = lb.publish(helloAction, msg);

  let completed = false;
  void published.completion.then(() => (completed = true));
  await published.acknowledged;
  t.notOk(completed, 'acknowledged before the completion');
  t.equal(pool.get(0)?.slots.availableMb, 256, 'slot held while the activation runs');

  const received = invoker.received[0];
  t.ok(received);
  t.equal(received?.raw.toString('utf8'), serializeActivationMessage(msg), 'the body is the serialized message, byte for byte');
  t.match(received?.headers, {
    'content-type': 'application/json',
    'functions-activation-id': msg.activationId,
    'functions-transaction-id': msg.transid.id,
    'functions-account': 'guest',
    'functions-namespace': 'guest',
    'functions-function': 'hello',
    authorization: 'Bearer tok',
  });

  await sleep(50);
  t.notOk(completed, 'still running');
  received?.release();
  const done = await published.completion;
  t.match(done, { status: 'completed', invoker: 0, isSystemError: false, activation: { activationId: msg.activationId, response: { statusCode: 0, result: { name: 'World' } } } });
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('keep-alive: pushes in sequence reuse one connection', async (t) => {
  const invoker = await startFakeInvoker(0);
  t.teardown(() => invoker.close());
  const { lb } = await setup(t, invoker.url);
  for (let i = 0; i < 3; i++) {
    const p = lb.publish(helloAction, message());
    await p.acknowledged;
    invoker.received.at(-1)?.release();
    await p.completion;
    // undici returns the socket to the pool just after the body's end event.
    await sleep(10);
  }
  const ports = new Set(invoker.received.map((r) => r.remotePort));
  t.equal(invoker.received.length, 3);
  t.equal(ports.size, 1, 'one connection');

  // Concurrent activations each hold a connection until their completion.
  const concurrent = [lb.publish(helloAction, message()), lb.publish(helloAction, message())];
  await Promise.all(concurrent.map((p) => p.acknowledged));
  t.equal(new Set(invoker.received.slice(3).map((r) => r.remotePort)).size, 2, 'two connections in parallel');
  for (const r of invoker.received.slice(3)) r.release();
  await Promise.all(concurrent.map((p) => p.completion));
});

t.test('non-200: not acknowledged, forced system-error completion', async (t) => {
  const invoker = await startFakeInvoker(0);
  t.teardown(() => invoker.close());
  invoker.behaviour = { kind: 'refuse', status: 503 };
  const { pool, lb } = await setup(t, invoker.url);
  const published = lb.publish(helloAction, message());
  const error = await published.acknowledged.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(error, PushRejectedError);
  t.equal((error as PushRejectedError).statusCode, 503);
  t.match((error as Error).message, /invoker answered HTTP 503: .*draining/);
  t.match(await published.completion, { status: 'forced', reason: 'failed', isSystemError: true });
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('wrong token: 401 is a refusal too', async (t) => {
  const invoker = await startFakeInvoker(0, { token: 'right' });
  t.teardown(() => invoker.close());
  const { lb } = await setup(t, invoker.url, { token: 'wrong' });
  const published = lb.publish(helloAction, message());
  await t.rejects(published.acknowledged, /HTTP 401/);
  t.match(await published.completion, { status: 'forced', reason: 'failed' });
});

t.test('connection refused: forced system-error completion', async (t) => {
  const { pool, lb } = await setup(t, await refusedUrl());
  const published = lb.publish(helloAction, message());
  await t.rejects(published.acknowledged, /ECONNREFUSED/);
  t.match(await published.completion, { status: 'forced', reason: 'failed', isSystemError: true, error: /ECONNREFUSED/ });
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('body cut mid-way: acknowledged, then forced system error', async (t) => {
  const invoker = await startFakeInvoker(0);
  t.teardown(() => invoker.close());
  invoker.behaviour = { kind: 'cut' };
  const { pool, lb } = await setup(t, invoker.url);
  const published = lb.publish(helloAction, message());
  await published.acknowledged;
  const done = await published.completion;
  t.match(done, { status: 'forced', reason: 'failed', isSystemError: true, error: /reading the completion/ });
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('forced completion aborts the waiting push', async (t) => {
  const invoker = await startFakeInvoker(0);
  t.teardown(() => invoker.close());
  const pool = new InvokerPool({ controllerCount: 1 });
  pool.recordPing(invokerId(0, 512), Date.now());
  const pusher = new PushClient();
  const lb = new LoadBalancer({
    controller: { asString: '0' },
    pool,
    pusher,
    invokerUrl: () => invoker.url,
    logger: silentLogger(),
    healthTests: false,
    forcedCompletion: { minTimeLimitMs: 50, extraMs: 50 },
  });
  t.teardown(async () => {
    await lb.close();
    await pusher.close();
  });
  const msg = message();
  const published = lb.publish({ ...helloAction, timeoutMs: 10 }, msg);
  await published.acknowledged;
  t.match(await published.completion, { status: 'forced', reason: 'timeout' });
  t.equal(pool.get(0)?.slots.availableMb, 512);
  // The late body finds nothing to complete; the slot stays released once.
  invoker.received[0]?.release();
  await sleep(50);
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('the push client alone: parsed acknowledgement, bad URL', async (t) => {
  const invoker = await startFakeInvoker(3);
  t.teardown(() => invoker.close());
  const client = new PushClient();
  t.teardown(() => client.close());
  const msg = message();
  const push = client.push(`${invoker.url}/`, msg);
  await push.acknowledged;
  await until(() => invoker.received.length === 1);
  invoker.received[0]?.release();
  const result = await push.completion;
  t.match(result, { ok: true, ack: { kind: 'combined', instance: { instance: 3 } } });

  const bad = client.push('ftp://nowhere', msg);
  await t.rejects(bad.acknowledged, /expected an http\(s\) URL/);
  t.match(await bad.completion, { ok: false, acknowledged: false });
});
