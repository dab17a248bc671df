import t, { type Test } from 'tap';
import { parseActivationMessage, serializeActivationMessage } from '../../../protocol/index.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { actionFromDocument, type ActionDocuments, type ActionRecord } from '../../../controller-lb/action-store.js';
import type { ActivationQuery } from '../../../controller-lb/activation-store.js';
import type { IdentityLookup } from '../../../controller-lb/identity-store.js';
import type { JsonObject } from '../../../protocol/index.js';
import { buildApi, mergeArguments } from '../../../controller-lb/api.js';
import { InvokerPool } from '../../../controller-lb/invoker-state.js';
import { LoadBalancer } from '../../../controller-lb/load-balancer.js';
import { combined, completion, FakePusher, invokerId, settle } from './fixtures.js';

const helloDoc = {
  _id: 'guest/hello',
  _rev: '3-abc',
  entityType: 'action',
  namespace: 'guest',
  name: 'hello',
  version: '0.0.2',
  publish: false,
  exec: { kind: 'nodejs:20', code: 'function main(p) { return p; }', binary: false },
  parameters: [
    { key: 'greeting', value: 'Hello' },
    { key: 'DB_URL', value: 'http://db', init: true },
    { key: 'secret', value: 'c2VjcmV0', encryption: 'aes-256' },
  ],
  limits: { timeout: 3000, memory: 128, logs: 10, concurrency: 1 },
  annotations: [{ key: 'exec', value: 'nodejs:20' }],
  updated: 1,
};

t.test('action documents: fields, defaults and named errors', async (t) => {
  const action = actionFromDocument(helloDoc, 'guest/hello');
  t.match(action, { path: 'guest', name: 'hello', version: '0.0.2', revision: '3-abc', kind: 'nodejs:20' });
  t.same(action.limits, { timeoutMs: 3000, memoryMb: 128, concurrency: 1 });
  t.same(action.parameters[1], { key: 'DB_URL', value: 'http://db', init: true });
  t.same(action.parameters[2], { key: 'secret', value: 'c2VjcmV0', init: false, encryption: 'aes-256' });

  const minimal = actionFromDocument({ _rev: '1-x', exec: { kind: 'blackbox' } }, 'guest/pkg/act');
  t.match(minimal, { path: 'guest/pkg', name: 'act', version: '0.0.1', limits: { timeoutMs: 60_000, memoryMb: 256, concurrency: 1 } });
  t.throws(() => actionFromDocument({ _rev: '1-x' }, 'guest/x'), /action guest\/x: exec.kind/);
  t.throws(() => actionFromDocument({ ...helloDoc, limits: { memory: -1 } }, 'guest/hello'), /limits.memory must be a positive integer/);
  t.throws(() => actionFromDocument({ ...helloDoc, parameters: [{ value: 1 }] }, 'guest/hello'), /parameters\[0\].key/);
});

t.test('arguments: request overrides defaults, init and locked arguments, final', async (t) => {
  const action = actionFromDocument(helloDoc, 'guest/hello');
  const merged = mergeArguments(action, { name: 'World', greeting: 'Hi' });
  t.same(merged?.content, { greeting: 'Hi', DB_URL: 'http://db', secret: 'c2VjcmV0', name: 'World' });
  t.same(merged?.initArgs, ['DB_URL']);
  t.same(merged?.lockedArgs, { secret: 'aes-256' });
  t.same(mergeArguments(action, { secret: 'plain' })?.lockedArgs, {}, 'a replaced locked value is no longer locked');
  const proto = mergeArguments(action, JSON.parse('{"__proto__": {"x": 1}}') as Record<string, never>);
  t.same(Object.keys(proto?.content ?? {}).includes('__proto__'), true, '__proto__ is a parameter like any other');

  const final: ActionRecord = { ...action, annotations: [{ key: 'final', value: true }] };
  t.equal(mergeArguments(final, { greeting: 'Hi' }), undefined);
  t.ok(mergeArguments(final, { name: 'World' }), 'new keys are fine');
});

const auth = { authorization: `Basic ${Buffer.from(`23bc46b1-71f6-4ed5-8c54-816aa4f8c502:${'k'.repeat(64)}`).toString('base64')}` };

function fixture(t: Test) {
  const pool = new InvokerPool({ controllerCount: 1 });
  pool.recordPing(invokerId(0, 512), Date.now());
  const pusher = new FakePusher();
  const controller = { asString: '7' };
  const lb = new LoadBalancer({ controller, pool, pusher, invokerUrl: () => 'http://invoker0:8080', logger: silentLogger(), healthTests: false });
  // Forces whatever a failed assertion left in flight, so no request waits for minutes.
  t.teardown(() => lb.close());
  const docs = new Map<string, unknown>([
    ['guest/hello', helloDoc],
    ['guest/final', { ...helloDoc, name: 'final', annotations: [{ key: 'final', value: true }] }],
  ]);
  const actions: ActionDocuments = {
    async get(path, name) {
      const doc = docs.get(`${path}/${name}`);
      if (name === 'broken') throw new Error('reading action guest/broken: ECONNREFUSED');
      return doc === undefined ? undefined : actionFromDocument(doc, `${path}/${name}`);
    },
    async getDocument(id) {
      return docs.get(id) as JsonObject | undefined;
    },
    async putDocument(doc) {
      docs.set(String(doc['_id']), { ...doc, _rev: '1-new' });
      return '1-new';
    },
    async deleteDocument(id) {
      docs.delete(id);
    },
    async list() {
      return [];
    },
    async count() {
      return docs.size;
    },
  };
  const records = new Map<string, JsonObject>();
  const activations = {
    async get(ns: string, id: string) {
      return records.get(`${ns}/${id}`);
    },
    async list(_q: ActivationQuery) {
      return [...records.values()];
    },
    async count() {
      return records.size;
    },
    async put(doc: JsonObject) {
      records.set(String(doc['_id']), doc);
    },
  };
  const identity = {
    subject: 'guest',
    namespace: { name: 'guest', uuid: '23bc46b1-71f6-4ed5-8c54-816aa4f8c502' },
    authkey: { api_key: `23bc46b1-71f6-4ed5-8c54-816aa4f8c502:${'k'.repeat(64)}` },
    rights: ['READ', 'PUT', 'DELETE', 'ACTIVATE'],
    limits: {},
  };
  const identities: IdentityLookup = {
    async authenticate(uuid, key) {
      return `${uuid}:${key}` === identity.authkey.api_key ? identity : undefined;
    },
  };
  const deps = { balancer: lb, pool, actions, activations, identities, controller, logger: silentLogger() };
  return { pool, pusher, lb, actions, identity, controller, deps };
}

t.test('blocking invoke: builds the message, waits, answers with the activation', async (t) => {
  const { pool, pusher, identity, lb, deps } = fixture(t);
  const app = await buildApi(deps);
  t.teardown(() => app.close());

  const answer = app.inject({ method: 'POST', headers: auth, url: '/api/v1/namespaces/_/actions/hello?blocking=true', payload: { name: 'World' } });
  await settleUntil(() => pusher.pushes.length === 1);
  const push = pusher.last();
  // The message is what protocol/ would parse on the invoker side.
  const wire = parseActivationMessage(serializeActivationMessage(push.msg));
  t.match(wire, {
    action: { path: 'guest', name: 'hello', version: '0.0.2' },
    revision: '3-abc',
    user: identity,
    rootControllerIndex: { asString: '7' },
    blocking: true,
    initArgs: ['DB_URL'],
    lockedArgs: { secret: 'aes-256' },
  });
  t.same(wire.content?.value(), { greeting: 'Hello', DB_URL: 'http://db', secret: 'c2VjcmV0', name: 'World' });
  t.match(wire.transid.id, /^[A-Za-z0-9]{32}$/);
  t.equal(pool.get(0)?.slots.availableMb, 384, '128 MB taken');

  push.acknowledge();
  push.complete({ ok: true, ack: combined(push.msg, 0) });
  const res = await answer;
  t.equal(res.statusCode, 200);
  t.equal(res.headers['x-openwhisk-activation-id'], push.msg.activationId);
  t.match(res.json(), { activationId: push.msg.activationId, response: { success: true, status: 'success', result: { payload: 'Hello, World!' } } });
  t.notOk('statusCode' in (res.json() as { response: object }).response, 'upstream toExtendedJson: no statusCode');
  t.equal(pool.get(0)?.slots.availableMb, 512);
});

t.test('blocking invoke: ?result=true, error statuses, forced completion', async (t) => {
  const { pool, pusher, identity, lb, deps } = fixture(t);
  const app = await buildApi(deps);
  t.teardown(() => app.close());
  const url = '/api/v1/namespaces/guest/actions/hello?blocking=true';

  let answer = app.inject({ method: 'POST', headers: auth, url: `${url}&result=true` });
  await settleUntil(() => pusher.pushes.length === 1);
  pusher.last().complete({ ok: true, ack: combined(pusher.last().msg, 0) });
  let res = await answer;
  t.equal(res.statusCode, 200);
  t.same(res.json(), { payload: 'Hello, World!' }, 'no body: no parameters');

  answer = app.inject({ method: 'POST', headers: auth, url, payload: {} });
  await settleUntil(() => pusher.pushes.length === 2);
  pusher.last().complete({ ok: true, ack: combined(pusher.last().msg, 0, 2) });
  t.equal((await answer).statusCode, 502, 'developer error: 502');

  answer = app.inject({ method: 'POST', headers: auth, url, payload: {} });
  await settleUntil(() => pusher.pushes.length === 3);
  pusher.last().complete({ ok: true, ack: combined(pusher.last().msg, 0, 3) });
  t.equal((await answer).statusCode, 500, 'system error: 500');

  answer = app.inject({ method: 'POST', headers: auth, url, payload: {} });
  await settleUntil(() => pusher.pushes.length === 4);
  pusher.last().refuse('connect ECONNREFUSED');
  res = await answer;
  t.equal(res.statusCode, 500);
  t.match(res.json(), { error: /did not complete: the invoker could not be reached/, code: /^[A-Za-z0-9]{32}$/ });
  t.equal(res.headers['x-openwhisk-activation-id'], pusher.last().msg.activationId);
});

t.test('non-blocking invoke: 202 once acknowledged, 503 when refused', async (t) => {
  const { pool, pusher, identity, lb, deps } = fixture(t);
  const app = await buildApi(deps);
  t.teardown(() => app.close());
  const url = '/api/v1/namespaces/guest/actions/hello';

  let answer = app.inject({ method: 'POST', headers: auth, url, payload: { a: 1 } });
  await settleUntil(() => pusher.pushes.length === 1);
  t.equal(pusher.last().msg.blocking, false);
  pusher.last().acknowledge();
  let res = await answer;
  t.equal(res.statusCode, 202);
  t.same(res.json(), { activationId: pusher.last().msg.activationId });
  pusher.last().complete({ ok: true, ack: completion(pusher.last().msg, 0) });
  await settle();
  t.equal(lb.inFlight, 0);

  answer = app.inject({ method: 'POST', headers: auth, url, payload: {} });
  await settleUntil(() => pusher.pushes.length === 2);
  pusher.last().refuse('HTTP 503');
  res = await answer;
  t.equal(res.statusCode, 503);
  t.match(res.json(), { error: 'The server is currently unavailable (because it is overloaded or down for maintenance).', code: /^[A-Za-z0-9]{32}$/ });
});

t.test('refusals: unknown action, bad body, store down, final parameters, no invokers, blocking timeout', async (t) => {
  const { pool, pusher, identity, lb, deps } = fixture(t);
  const app = await buildApi({ ...deps, blockingTimeoutMs: 50 });
  t.teardown(() => app.close());
  const post = (url: string, payload?: unknown, contentType = 'application/json') =>
    app.inject({ method: 'POST', url, headers: { ...auth, 'content-type': contentType }, ...(payload !== undefined ? { payload: payload as string } : {}) });

  t.equal((await post('/api/v1/namespaces/guest/actions/nope', {})).statusCode, 404);
  t.equal((await post('/api/v1/namespaces/guest/actions/hello', '[1]')).statusCode, 400);
  t.equal((await post('/api/v1/namespaces/guest/actions/hello', '{oops')).statusCode, 400);
  t.equal((await post('/api/v1/namespaces/guest/actions/broken', {})).statusCode, 500);
  const final = await post('/api/v1/namespaces/guest/actions/final', { greeting: 'Hi' });
  t.equal(final.statusCode, 400);
  t.match(final.json(), { error: /parameters that are not allowed/ });

  // Still running after the blocking wait: 202 with the id.
  const slow = await post('/api/v1/namespaces/guest/actions/hello?blocking=true', {});
  t.equal(slow.statusCode, 202);
  t.same(slow.json(), { activationId: pusher.last().msg.activationId });

  pool.recordPing(invokerId(0, 512), Date.now(), false);
  const none = await post('/api/v1/namespaces/guest/actions/hello', {});
  t.equal(none.statusCode, 503);
  t.match(none.json(), { error: /currently unavailable/ });

  t.same((await app.inject({ method: 'GET', url: '/invokers' })).json(), { invoker0: 'down' });
  t.match((await app.inject({ method: 'GET', url: '/invokers/slots' })).json(), { invoker0: { status: 'down', slotMemoryMb: 512 } });
});

async function settleUntil(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (!condition()) throw new Error('condition not reached');
}

t.test('API surface: auth, foreign namespace, upstream error bodies, body limits', async (t) => {
  const { pusher, deps } = fixture(t);
  const app = await buildApi({ ...deps, blockingTimeoutMs: 50 });
  t.teardown(() => app.close());
  const url = '/api/v1/namespaces/_/actions/hello';
  const body = (res: { json(): unknown }) => res.json() as { error: string; code: string };

  let res = await app.inject({ method: 'POST', url });
  t.equal(res.statusCode, 401);
  t.equal(res.headers['www-authenticate'], 'Basic realm="OpenWhisk secure realm"');
  t.same(Object.keys(body(res)).sort(), ['code', 'error']);
  t.equal(body(res).error, 'The resource requires authentication, which was not supplied with the request');
  t.equal(body(res).code, res.headers['x-request-id']);
  res = await app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`23bc46b1-71f6-4ed5-8c54-816aa4f8c502:${'x'.repeat(64)}`).toString('base64')}` } });
  t.equal(res.statusCode, 401);
  t.equal(body(res).error, 'The supplied authentication is invalid');

  res = await app.inject({ method: 'POST', url: '/api/v1/namespaces/other/actions/hello', headers: auth });
  t.equal(res.statusCode, 403);
  t.equal(body(res).error, "The supplied authentication is not authorized to access 'other/hello'.");

  const post = (payload: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, headers: { ...auth, 'content-type': 'application/json', ...headers }, payload });
  const nested = (depth: number) => `{"p":${'['.repeat(depth)}${']'.repeat(depth)}}`;
  for (const depth of [1500, 50_000]) {
    res = await post(nested(depth));
    t.equal(res.statusCode, 400, `${depth} levels refused`);
    t.match(body(res), { error: /^The request content was malformed:\nJSON nested deeper than 1000 levels$/, code: /^[A-Za-z0-9]{32}$/ });
  }
  res = await post('{"n": 1e400}');
  t.equal(res.statusCode, 400, '1e400 is refused, not turned into null');
  t.match(body(res).error, /number out of range/);
  res = await post('{oops');
  t.equal(res.statusCode, 400);
  t.match(body(res).error, /^The request content was malformed:\n/);

  res = await post(JSON.stringify({ big: 'x'.repeat(1024 * 1024) }));
  t.equal(res.statusCode, 413);
  t.match(body(res).error, /^Request larger than allowed: \d+ > 1048576 bytes\.$/);

  res = await app.inject({ method: 'POST', url, headers: { ...auth, 'content-type': 'text/plain' }, payload: 'hi' });
  t.equal(res.statusCode, 415);
  t.match(body(res).error, /^The request's Content-Type \[text\/plain\] is not supported\. Expected:\napplication\/json$/);

  res = await app.inject({ method: 'GET', url: '/api/v1/nothing/here', headers: auth });
  t.equal(res.statusCode, 404);
  t.same(Object.keys(body(res)).sort(), ['code', 'error']);

  res = await app.inject({ method: 'POST', url: `${url}?blocking=maybe`, headers: auth });
  t.equal(res.statusCode, 400);
  t.equal(body(res).error, "The query parameter 'blocking' was malformed:\n'maybe' is not a valid Boolean value");
  res = await app.inject({ method: 'POST', url: `${url}?blocking=true&timeout=70000`, headers: auth });
  t.equal(body(res).error, "The query parameter 'timeout' was malformed:\nTimeout must be number of milliseconds up to 50.");
  t.equal(pusher.pushes.length, 0, 'nothing refused reached an invoker');

  res = await app.inject({ method: 'GET', url: '/api/v1/namespaces/_/actions/pkg/act', headers: auth });
  t.equal(res.statusCode, 400);
  t.match(body(res).error, /Packages are not supported/);
  t.same((await app.inject({ method: 'GET', url: '/api/v1/namespaces', headers: auth })).json(), ['guest']);
  t.match((await app.inject({ method: 'GET', url: '/api/v1' })).json(), { api_version: '1.0.0', api_version_path: 'v1' });
});

t.test('throttles: per minute and concurrent, upstream texts, a namespace limits document wins', async (t) => {
  const { createThrottle } = await import('../../../controller-lb/api/throttles.js');
  let now = 0;
  const throttle = createThrottle({ invocationsPerMinute: 2, concurrentInvocations: 1 }, () => now);
  const user = { subject: 'u', namespace: { name: 'u', uuid: 'x' }, authkey: {}, rights: [], limits: {} };
  const release = throttle.admit(user);
  t.throws(() => throttle.admit(user), { status: 429, message: 'Too many concurrent requests in flight (count: 2, allowed: 1).' });
  release();
  // As upstream, the refused request still counted against the minute.
  t.throws(() => throttle.admit(user), { status: 429, message: 'Too many requests in the last minute (count: 3, allowed: 2).' });
  now += 60_000;
  throttle.admit(user)();
  const generous = { ...user, namespace: { name: 'g', uuid: 'y' }, limits: { invocationsPerMinute: 0, concurrentInvocations: 0 } };
  for (let i = 0; i < 5; i++) throttle.admit(generous);
  t.pass('0 in the limits document turns a throttle off');
});

t.test('a stalled request body does not stay open', async (t) => {
  const { deps } = fixture(t);
  const app = await buildApi({ ...deps, timeouts: { requestTimeoutMs: 300, headersTimeoutMs: 300 } });
  t.teardown(() => app.close());
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = new URL(address);
  const net = await import('node:net');
  const started = Date.now();
  const answer = await new Promise<string>((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      socket.write(`POST /api/v1/namespaces/_/actions/hello HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.authorization}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":`);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('close', () => resolve(data));
  });
  t.match(answer, /^HTTP\/1\.1 408/, 'request timeout');
  t.ok(Date.now() - started < 5_000, `closed after ${Date.now() - started} ms`);
});
