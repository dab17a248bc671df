/**
 * The controller as a whole: main.ts started as a process with environment
 * configuration, actions read from the real CouchDB-compatible server, pushed
 * to a fake invoker; plus the action store on its own.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import nano from 'nano';
import { CouchActionStore } from '../../../controller-lb/action-store.js';
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

t.test('action store on CouchDB: read, missing, health test action', async (t) => {
  const server = nano(env.couchdbUrl);
  const db = uniqueName('whisks-lbtest');
  await server.db.create(db);
  t.teardown(() => server.db.destroy(db).catch(() => undefined));
  const written = await server.use(db).insert(helloDoc);

  const store = new CouchActionStore(server, db);
  const action = await store.get('guest', 'hello');
  t.match(action, { path: 'guest', name: 'hello', revision: written.rev, limits: { memoryMb: 256 } });
  t.equal(await store.get('guest', 'missing'), undefined);

  await store.ensureHealthTestAction({ asString: '3' }, 'nodejs:20');
  await store.ensureHealthTestAction({ asString: '3' }, 'nodejs:20'); // idempotent
  const health = await store.get('whisk.system', 'invokerHealthTestAction3');
  t.match(health, { path: 'whisk.system', kind: 'nodejs:20', limits: { memoryMb: 128 } });

  const unreachable = new CouchActionStore(nano('http://127.0.0.1:1'), db);
  await t.rejects(unreachable.get('guest', 'hello'), new RegExp(`reading action guest/hello from database ${db}`));
});

t.test('main.ts: env config, invoke over HTTP push, /invokers, SIGTERM', async (t) => {
  const server = nano(env.couchdbUrl);
  const db = uniqueName('whisks-lbtest');
  await server.db.create(db);
  t.teardown(() => server.db.destroy(db).catch(() => undefined));
  await server.use(db).insert(helloDoc);

  const invoker = await startFakeInvoker(0, { token: 'push-token' });
  t.teardown(() => invoker.close());

  const child = spawn(process.execPath, ['--import', 'tsx', 'controller-lb/main.ts'], {
    cwd: new URL('../../../', import.meta.url).pathname,
    env: {
      PATH: process.env.PATH,
      CONTROLLER_ID: '5',
      CONTROLLER_PORT: '0',
      INVOKER_URLS: invoker.url,
      INVOKER_USER_MEMORY_MB: '512',
      COUCHDB_URL: env.couchdbUrl,
      COUCHDB_WHISKS_DB: db,
      CONTROLLER_INVOKE_TOKEN: 'push-token',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      lines.push({ unparsed: line });
    }
  });

  await until(() => lines.some((l) => l['msg'] === 'controller listening') || child.exitCode !== null, 30_000, `the controller to listen (stderr: ${stderr})`);
  const address = String(lines.find((l) => l['msg'] === 'controller listening')?.['address']);
  t.match(address, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.notMatch(JSON.stringify(lines), /push-token/, 'the token is never logged');

  await until(() => lines.some((l) => l['msg'] === 'invoker0 is up'), 10_000, 'invoker0 up');
  const invokers = await fetch(`${address}/invokers`);
  t.same(await invokers.json(), { invoker0: 'up' });

  const answer = fetch(`${address}/api/v1/namespaces/guest/actions/hello?blocking=true`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'World' }),
  });
  await until(() => invoker.received.length === 1, 10_000, 'the push');
  const received = invoker.received[0];
  t.match(received?.msg, { rootControllerIndex: { asString: '5' }, content: { greeting: 'Hello', name: 'World' }, blocking: true });
  received?.release();
  const res = await answer;
  t.equal(res.status, 200);
  t.match(await res.json(), { activationId: received?.msg.activationId, response: { statusCode: 0, result: { greeting: 'Hello', name: 'World' } } });

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'clean exit on SIGTERM');
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
