/**
 * The controller as a whole: main.ts started as a process with environment
 * configuration, actions read from the real CouchDB-compatible server, pushed
 * to a fake invoker; plus the action store on its own.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { CouchActionStore } from '../../../controller-lb/action-store.js';
import { CouchServer } from '../../../controller-lb/couch-db.js';
import { GUEST_API_KEY, startController } from '../../helpers/controller-harness.js';
import { testEnvironment, uniqueName } from '../../helpers/env.js';
import { until } from '../../unit/controller-lb/fixtures.js';
import { startFakeInvoker } from './fake-invoker.js';

const env = testEnvironment();

const helloDoc = {
  _id: 'guest/hello',
  entityType: 'action',
  namespace: 'guest',
  name: 'hello',
  version: '0.0.1',
  publish: false,
  exec: { kind: 'nodejs:20', code: 'function main(p) { return p; }', binary: false },
  parameters: [{ key: 'greeting', value: 'Hello' }],
  limits: { timeout: 60000, memory: 256, logs: 10, concurrency: 1 },
  annotations: [],
  updated: 1,
};

t.test('action store on CouchDB: read, missing, cache, health test action', async (t) => {
  const server = new CouchServer({ url: env.couchdbUrl });
  t.teardown(() => server.close());
  const dbName = uniqueName('whisks-lbtest');
  const db = server.db(dbName);
  await db.ensureExists();
  t.teardown(() => server.call('DELETE', `/${dbName}`).catch(() => undefined));
  const written = await db.put(helloDoc);

  let now = 1_000_000;
  const store = new CouchActionStore(db, { ttlMs: 1000, staleMs: 5000, now: () => now });
  await store.prepare();
  const action = await store.get('guest', 'hello');
  t.match(action, { path: 'guest', name: 'hello', revision: written.rev, limits: { memoryMb: 256 } });
  t.equal(await store.get('guest', 'missing'), undefined);
  t.same((await store.list('guest', 0, 10)).map((a) => a['name']), ['hello']);
  t.equal(await store.count('guest', 0), 1);

  await store.ensureHealthTestAction({ asString: '3' }, 'nodejs:20');
  await store.ensureHealthTestAction({ asString: '3' }, 'nodejs:20'); // idempotent
  const health = await store.get('whisk.system', 'invokerHealthTestAction3');
  t.match(health, { path: 'whisk.system', kind: 'nodejs:20', limits: { memoryMb: 128 } });

  // The entity cache: a CouchDB outage does not refuse a known action (for a bounded time).
  const unreachable = new CouchServer({ url: 'http://127.0.0.1:1', timeoutMs: 500 });
  t.teardown(() => unreachable.close());
  const outage = new CouchActionStore(unreachable.db(dbName), { ttlMs: 1000, staleMs: 5000, now: () => now });
  await t.rejects(outage.get('guest', 'hello'), new RegExp(`reading action guest/hello from database ${dbName}`));
  const cached = new CouchActionStore(db, { ttlMs: 1000, staleMs: 5000, now: () => now });
  await cached.get('guest', 'hello');
  Object.defineProperty(cached, 'db', { value: unreachable.db(dbName) });
  now += 2000;
  t.match(await cached.get('guest', 'hello'), { revision: written.rev }, 'stale but served while CouchDB is down');
  t.equal(cached.stats().stale, 1);
  now += 10_000;
  await t.rejects(cached.get('guest', 'hello'), /reading action/, 'not beyond the stale bound');
});

t.test('main.ts: env config, authenticated invoke over HTTP push, /invokers, SIGTERM', async (t) => {
  const server = new CouchServer({ url: env.couchdbUrl });
  t.teardown(() => server.close());
  const whisksDb = uniqueName('whisks-lbtest');
  const activationsDb = uniqueName('activations-lbtest');
  await server.db(whisksDb).ensureExists();
  t.teardown(async () => {
    for (const name of [whisksDb, activationsDb]) await server.call('DELETE', `/${name}`).catch(() => undefined);
  });
  await server.db(whisksDb).put(helloDoc);

  const invoker = await startFakeInvoker(0, { token: 'push-token' });
  t.teardown(() => invoker.close());
  const controller = await startController(t, {
    whisksDb,
    activationsDb,
    invokerUrls: [invoker.url],
    extra: { CONTROLLER_ID: '5', INVOKER_USER_MEMORY_MB: '512', CONTROLLER_INVOKE_TOKEN: 'push-token' },
  });
  const { lines } = controller;
  const address = controller.url;
  t.match(address, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.notMatch(JSON.stringify(lines), /push-token/, 'the token is never logged');

  await until(() => lines.some((l) => l['msg'] === 'invoker0 is up'), 10_000, 'invoker0 up');
  const invokers = await fetch(`${address}/invokers`);
  t.same(await invokers.json(), { invoker0: 'up' });

  const url = `${address}/api/v1/namespaces/guest/actions/hello?blocking=true`;
  const unauthenticated = await fetch(url, { method: 'POST' });
  t.equal(unauthenticated.status, 401, 'no credentials, no invocation');
  const answer = fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(GUEST_API_KEY).toString('base64')}` },
    body: JSON.stringify({ name: 'World' }),
  });
  await until(() => invoker.received.length === 1, 10_000, 'the push');
  const received = invoker.received[0];
  t.same(received?.msg.content?.value(), { greeting: 'Hello', name: 'World' });
  t.match(received?.msg, {
    rootControllerIndex: { asString: '5' },
    blocking: true,
    user: { subject: 'guest', namespace: { name: 'guest', uuid: '23bc46b1-71f6-4ed5-8c54-816aa4f8c502' }, authkey: { api_key: GUEST_API_KEY } },
  });
  received?.release();
  const res = await answer;
  t.equal(res.status, 200);
  t.match(await res.json(), { activationId: received?.msg.activationId, response: { success: true, result: { greeting: 'Hello', name: 'World' } } });

  controller.child.kill('SIGTERM');
  t.equal(await controller.exited, 0, 'clean exit on SIGTERM');
  t.ok(lines.some((l) => l['msg'] === 'controller stopped'));
  t.ok(lines.every((l) => typeof l['level'] === 'string' && typeof l['time'] === 'string'), 'structured JSON lines');
});

t.test('main.ts: a bad configuration names the variable and exits 2', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'controller-lb/main.ts'], {
    cwd: new URL('../../../', import.meta.url).pathname,
    env: { PATH: process.env.PATH, CONTROLLER_PORT: 'eighty' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 2);
  t.match(stderr, /CONTROLLER_PORT: expected an integer/);
  t.match(stderr, /INVOKER_URLS: required without KAFKA_BROKERS/);
});
