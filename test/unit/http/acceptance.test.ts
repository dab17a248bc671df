/**
 * When a push counts as accepted (see invoke-route.ts): an activation runs
 * only if its `200` went out on an open connection; a second push of an id
 * the invoker runs or has just run is refused (409); names that upstream
 * refuses, or that would pick a reserved CouchDB id, are refused (400).
 */
import t, { type Test } from 'tap';
import { connect, type Socket } from 'node:net';
import { Agent, request } from 'undici';
import { eventually, MESSAGE_ACTIVATION_ID, MESSAGE_BYTES, messageWithId, startHarness, type Harness } from './fixtures/harness.js';

const agent = new Agent();
t.teardown(() => agent.close());

async function withServer(t: Test): Promise<Harness> {
  const h = await startHarness();
  t.teardown(() => h.server.close());
  return h;
}

function post(h: Harness, body: Buffer | string) {
  return request(`${h.base}/invoke`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, dispatcher: agent });
}

function rawRequest(body: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`POST /invoke HTTP/1.1\r\nHost: invoker\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`),
    body,
  ]);
}

/** Opens a socket, writes `bytes` in one go, and collects what comes back until the server closes it. */
function exchange(h: Harness, bytes: Buffer, then: (socket: Socket) => void = () => undefined): Promise<string> {
  const url = new URL(h.base);
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(bytes);
      then(socket);
    });
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(answer));
  });
}

function edited(edit: (message: Record<string, any>) => void, id = 'f'.repeat(32)): Buffer {
  const message = JSON.parse(messageWithId(id).toString('utf8')) as Record<string, any>;
  edit(message);
  return Buffer.from(JSON.stringify(message));
}

const settle = () => new Promise((r) => setTimeout(r, 200));

t.test('the same activation id pushed twice at once runs once: the second push gets 409', async (t) => {
  const h = await withServer(t);
  const [first, second] = await Promise.all([post(h, MESSAGE_BYTES), post(h, MESSAGE_BYTES)]);
  const statuses = [first.statusCode, second.statusCode].sort();
  t.same(statuses, [200, 409]);
  const refused = first.statusCode === 409 ? first : second;
  t.match(await refused.body.json(), { error: `activation ${MESSAGE_ACTIVATION_ID} is already running on this invoker` });
  await settle();
  t.equal(h.handler.calls.length, 1, 'one run');
  const accepted = first.statusCode === 200 ? first : second;
  (await h.handler.next()).resolve();
  await accepted.body.text();

  // Finished: still refused for a while (bounded memory of recent ids).
  const again = await post(h, MESSAGE_BYTES);
  t.equal(again.statusCode, 409);
  t.match(await again.body.json(), { error: /is finished on this invoker/ });
  t.equal(h.handler.calls.length, 1);
});

t.test('a valid /invoke followed by garbage on the same connection: 400, and nothing runs', async (t) => {
  const h = await withServer(t);
  const answer = await exchange(h, Buffer.concat([rawRequest(messageWithId('1'.repeat(32))), Buffer.from('\x00garbage that is no request\r\n\r\n')]));
  t.match(answer, /^HTTP\/1\.1 400/, 'node answers 400 for the connection');
  t.notMatch(answer, /HTTP\/1\.1 200/, 'no acknowledgement');
  await settle();
  t.equal(h.handler.calls.length, 0, 'not acknowledged, so not run');
  t.ok(
    await eventually(() => h.lines.some((l) => l.msg === 'POST /invoke: the connection closed before the acknowledgement; not running the activation')),
    'logged',
  );
  // The id was not used up: the caller may push it again.
  const retry = await post(h, messageWithId('1'.repeat(32)));
  t.equal(retry.statusCode, 200);
  (await h.handler.next()).resolve();
  await retry.body.text();
});

t.test('a client that drops before its body is complete: nothing runs; one that half-closes after it: acknowledged and run', async (t) => {
  const h = await withServer(t);
  const whole = rawRequest(messageWithId('2'.repeat(32)));
  const answer = await exchange(h, whole.subarray(0, whole.length - 10), (socket) => socket.destroy());
  t.equal(answer, '');
  await settle();
  t.equal(h.handler.calls.length, 0);

  // Only half-closed (it can still read): the acknowledgement reaches it, and the activation runs.
  const halfClosed = exchange(h, rawRequest(messageWithId('3'.repeat(32))), (socket) => socket.end());
  (await h.handler.next()).resolve();
  t.match(await halfClosed, /^HTTP\/1\.1 200/);
});

t.test('names as upstream allows them; none may pick a reserved CouchDB id', async (t) => {
  const h = await withServer(t);
  const cases: Array<[string, (m: Record<string, any>) => void, RegExp]> = [
    ['namespace _design', (m) => (m.user.namespace.name = '_design'), /user\.namespace\.name: must not start with "_"/],
    ['namespace _', (m) => (m.user.namespace.name = '_'), /user\.namespace\.name: must not start with "_"/],
    ['namespace with a slash', (m) => (m.user.namespace.name = 'a/b'), /user\.namespace\.name: expected upstream's EntityName/],
    ['namespace with a trailing blank', (m) => (m.user.namespace.name = 'guest '), /user\.namespace\.name/],
    ['path _design', (m) => (m.action.path = '_design'), /action\.path: must not start with "_"/],
    ['path with an empty segment', (m) => (m.action.path = 'guest//pkg'), /action\.path: expected names/],
    ['name with a slash', (m) => (m.action.name = 'x/y'), /action\.name: expected upstream's EntityName/],
    ['name too long', (m) => (m.action.name = 'a'.repeat(257)), /action\.name/],
    ['binding with a bad character', (m) => (m.action.binding = 'guest/p#kg'), /action\.binding/],
  ];
  for (const [what, edit, error] of cases) {
    const response = await post(h, edited(edit));
    t.equal(response.statusCode, 400, what);
    t.match(await response.body.json(), { error }, what);
  }
  t.equal(h.handler.calls.length, 0);

  for (const [i, edit] of [
    (m: Record<string, any>) => (m.action.path = 'guest/my-pkg'),
    (m: Record<string, any>) => (m.action.name = 'hello world@v1.0&x-y'),
    (m: Record<string, any>) => (m.user.namespace.name = 'user_ns@example.com'),
  ].entries()) {
    const response = await post(h, edited(edit, `${i + 4}`.repeat(32)));
    t.equal(response.statusCode, 200, 'upstream allows it');
    (await h.handler.next()).resolve();
    await response.body.text();
  }
});

t.test('a stalled request body is cut off (408) instead of holding the connection; a long response is not', async (t) => {
  const h = await startHarness({ requestTimeoutMs: 400, headersTimeoutMs: 300, timeoutCheckIntervalMs: 100 });
  t.teardown(() => h.server.close());
  const whole = rawRequest(messageWithId('7'.repeat(32)));
  const started = Date.now();
  const stalledBody = await exchange(h, whole.subarray(0, whole.length - 20));
  const waited = Date.now() - started;
  t.match(stalledBody, /^HTTP\/1\.1 408/, 'the server answers 408 and closes');
  t.ok(waited < 3_000, `closed after ${waited} ms`);

  const stalledHeaders = await exchange(h, Buffer.from('POST /invoke HTTP/1.1\r\nHost: invoker\r\n'));
  t.match(stalledHeaders, /^HTTP\/1\.1 408/);
  t.equal(h.handler.calls.length, 0);

  // An activation that runs longer than the request timeout keeps its response.
  const response = await post(h, messageWithId('8'.repeat(32)));
  t.equal(response.statusCode, 200);
  const call = await h.handler.next();
  await new Promise((r) => setTimeout(r, 800));
  call.resolve();
  t.ok((await response.body.text()).length > 0, 'the completion arrives after the request timeout');
});
