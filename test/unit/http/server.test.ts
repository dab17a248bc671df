import t, { type Test } from 'tap';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import {
  COMPLETION,
  eventually,
  MESSAGE_ACTIVATION_ID,
  MESSAGE_BYTES,
  messageWithId,
  startHarness,
  type Harness,
} from './fixtures/harness.js';

// One client per file; closed at the end so no keep-alive socket outlives the tests.
const agent = new Agent();
t.teardown(() => agent.close());

const JSON_TYPE = { 'content-type': 'application/json' };

async function withServer(
  t: Test,
  ...args: Parameters<typeof startHarness>
): Promise<Harness> {
  const h = await startHarness(...args);
  t.teardown(() => h.server.close());
  return h;
}

function post(h: Harness, path: string, body: Buffer | string, headers: Record<string, string> = JSON_TYPE, signal?: AbortSignal) {
  return request(`${h.base}${path}`, { method: 'POST', body, headers, dispatcher: agent, ...(signal ? { signal } : {}) });
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

t.test('POST /invoke: 200 and headers arrive before the activation ends, then the completion is the body', async (t) => {
  const h = await withServer(t);
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const response = await post(h, '/invoke', MESSAGE_BYTES, {
    ...JSON_TYPE,
    traceparent,
    'functions-activation-id': MESSAGE_ACTIVATION_ID,
    'functions-namespace': 'guest',
    'functions-function': 'hello',
  });
  // request() resolves on the response head: the acknowledgement is out while the handler still runs.
  t.equal(response.statusCode, 200);
  t.match(response.headers['content-type'], /^application\/json/);
  t.equal(response.headers['transfer-encoding'], 'chunked', 'no Content-Length: the completion follows later');

  const call = await h.handler.next();
  let settled = false;
  void call.settled.then(() => (settled = true));
  t.equal(settled, false, 'the handler has not finished when the headers arrive');
  t.equal(call.request.transport, 'http');
  t.equal(call.request.message.activationId, MESSAGE_ACTIVATION_ID);
  t.equal(call.request.message.blocking, true);
  t.type(call.request.receivedAt, 'number');
  t.equal(call.request.traceparent, traceparent);
  t.same(call.request.requestTags, {
    'Functions-Activation-Id': MESSAGE_ACTIVATION_ID,
    'Functions-Namespace': 'guest',
    'Functions-Function': 'hello',
  });

  const bodyText = response.body.text();
  call.resolve();
  t.equal(await bodyText, COMPLETION);
  const histogram = await h.metrics.activationSeconds.get();
  t.ok(histogram.values.some((v) => v.metricName === 'invoker_activation_seconds_count' && v.labels.transport === 'http' && v.value === 1));
});

t.test('POST /invoke accepts text/plain (what Akka HTTP sends for a String entity) and a charset', async (t) => {
  const h = await withServer(t);
  for (const [i, type] of ['text/plain; charset=UTF-8', 'application/json; charset=utf-8'].entries()) {
    const response = await post(h, '/invoke', messageWithId(`${i}`.repeat(32)), { 'content-type': type });
    t.equal(response.statusCode, 200, type);
    (await h.handler.next()).resolve();
    t.equal(await response.body.text(), COMPLETION);
  }
});

t.test('other methods on /invoke: 405 with Allow: POST and a JSON error', async (t) => {
  const h = await withServer(t);
  for (const method of ['GET', 'PUT', 'DELETE', 'PATCH'] as const) {
    const response = await request(`${h.base}/invoke`, { method, dispatcher: agent, headers: JSON_TYPE, ...(method === 'GET' ? {} : { body: MESSAGE_BYTES }) });
    t.equal(response.statusCode, 405, method);
    t.equal(response.headers.allow, 'POST');
    t.match(await response.body.json(), { error: /not allowed.*\/invoke/ });
  }
  t.equal(h.handler.calls.length, 0);
});

t.test('unsupported or missing content type: 415 JSON error', async (t) => {
  const h = await withServer(t);
  for (const headers of [{ 'content-type': 'text/html' }, { 'content-type': 'application/x-www-form-urlencoded' }, {}] as Array<Record<string, string>>) {
    const response = await post(h, '/invoke', MESSAGE_BYTES, headers);
    t.equal(response.statusCode, 415, JSON.stringify(headers));
    t.match(response.headers['content-type'], /^application\/json/);
    t.match(await response.body.json(), { error: /Content-Type.*application\/json/ });
  }
  t.equal(h.handler.calls.length, 0);
});

t.test('a body over the limit: 413 JSON error naming the limit', async (t) => {
  const h = await withServer(t, { invokeBodyLimitBytes: 2048 });
  const big = Buffer.alloc(10_000, 0x20);
  const response = await post(h, '/invoke', big);
  t.equal(response.statusCode, 413);
  t.same(await response.body.json(), { error: 'request body is larger than the limit of 2048 bytes' });

  // Also without a Content-Length (chunked upload): the limit applies while reading.
  const chunked = await request(`${h.base}/invoke`, {
    method: 'POST',
    headers: JSON_TYPE,
    body: Readable.from([big]),
    dispatcher: agent,
  });
  t.equal(chunked.statusCode, 413);
  await chunked.body.dump();
  t.equal(h.handler.calls.length, 0);
});

t.test('malformed JSON and missing fields: 400 naming the problem', async (t) => {
  const h = await withServer(t);
  const malformed = await post(h, '/invoke', '{"transid": [');
  t.equal(malformed.statusCode, 400);
  t.match(await malformed.body.json(), { error: /^ActivationMessage: invalid JSON/ });

  const message = JSON.parse(MESSAGE_BYTES.toString('utf8')) as Record<string, unknown>;
  delete message.activationId;
  const missing = await post(h, '/invoke', JSON.stringify(message));
  t.equal(missing.statusCode, 400);
  const body = (await missing.body.json()) as { error: string };
  t.match(body.error, /ActivationMessage\.activationId/);
  t.notMatch(body.error, /123zO3xZ/, 'never echoes the body (it carries the API key)');

  const empty = await request(`${h.base}/invoke`, { method: 'POST', dispatcher: agent });
  t.equal(empty.statusCode, 400);
  t.match(await empty.body.json(), { error: /needs a body/ });
  t.equal(h.handler.calls.length, 0);
  t.ok(h.lines.some((l) => l.msg === 'refused POST /invoke: invalid ActivationMessage'));
});

t.test('a client disconnect does not cancel the activation', async (t) => {
  const h = await withServer(t);
  const abort = new AbortController();
  const response = await post(h, '/invoke', MESSAGE_BYTES, { ...JSON_TYPE, 'functions-activation-id': 'gone' }, abort.signal);
  t.equal(response.statusCode, 200);
  const call = await h.handler.next();
  response.body.on('error', () => {});
  abort.abort();
  // Let the server see the socket close before the activation ends.
  await new Promise((r) => setTimeout(r, 50));
  call.resolve();
  const outcome = await call.settled;
  t.equal(outcome.activationId, MESSAGE_ACTIVATION_ID, 'the handler ran to its end');
  t.ok(
    await eventually(() => h.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('HTTP client disconnected'))),
    'the lost completion is logged',
  );
  const live = await request(`${h.base}/health/live`, { dispatcher: agent });
  t.equal(live.statusCode, 200, 'the server still serves');
  t.same(await live.body.json(), { status: 'live' });
});

t.test('not accepting (disabled, draining): 503 with Retry-After, the handler is never called', async (t) => {
  const h = await withServer(t);
  h.admission.enabled = false;
  const disabled = await post(h, '/invoke', MESSAGE_BYTES);
  t.equal(disabled.statusCode, 503);
  t.equal(disabled.headers['retry-after'], '5');
  t.same(await disabled.body.json(), { error: 'invoker is not accepting activations: disabled' });

  h.admission.enabled = true;
  h.admission.draining = true;
  const draining = await post(h, '/invoke', MESSAGE_BYTES);
  t.equal(draining.statusCode, 503);
  t.match(await draining.body.json(), { error: /draining/ });
  t.equal(h.handler.calls.length, 0);
});

t.test('bearer token on /invoke when configured', async (t) => {
  const h = await withServer(t, { invokeToken: 's3cret-token' });
  for (const authorization of [undefined, 'Bearer wrong', 'Basic czNjcmV0LXRva2Vu', 'Bearer s3cret-token-and-more']) {
    const response = await post(h, '/invoke', MESSAGE_BYTES, { ...JSON_TYPE, ...(authorization ? { authorization } : {}) });
    t.equal(response.statusCode, 401, String(authorization));
    t.equal(response.headers['www-authenticate'], 'Bearer');
    t.match(await response.body.json(), { error: /bearer token/ });
  }
  t.equal(h.handler.calls.length, 0);
  t.notOk(JSON.stringify(h.lines).includes('s3cret-token'), 'the token never reaches the log');

  const ok = await post(h, '/invoke', MESSAGE_BYTES, { ...JSON_TYPE, authorization: 'Bearer s3cret-token' });
  t.equal(ok.statusCode, 200);
  (await h.handler.next()).resolve();
  t.equal(await ok.body.text(), COMPLETION);
});

t.test('admin routes: basic auth, upstream texts', async (t) => {
  const h = await withServer(t, { adminUser: 'admin', adminPassword: 'pa:ss' });
  for (const [method, path] of [['POST', '/enable'], ['POST', '/disable'], ['GET', '/isEnabled']] as const) {
    for (const authorization of [undefined, basic('admin', 'wrong'), basic('other', 'pa:ss'), 'Bearer pa:ss']) {
      const response = await request(`${h.base}${path}`, { method, dispatcher: agent, headers: authorization ? { authorization } : {} });
      t.equal(response.statusCode, 401, `${method} ${path} ${String(authorization)}`);
      t.equal(response.headers['www-authenticate'], 'Basic realm="invoker"');
      t.match(await response.body.json(), { error: /admin credentials/ });
    }
  }
  t.equal(h.enabled.value, true, 'nothing changed without credentials');

  const auth = { authorization: basic('admin', 'pa:ss') };
  const call = async (method: 'GET' | 'POST', path: string) => {
    const response = await request(`${h.base}${path}`, { method, dispatcher: agent, headers: auth });
    return { status: response.statusCode, type: response.headers['content-type'], text: await response.body.text() };
  };
  t.match(await call('GET', '/isEnabled'), { status: 200, type: /^application\/json/, text: '{"enabled":true}' });
  t.match(await call('POST', '/disable'), { status: 200, type: /^text\/plain/, text: 'invoker0 is now disabled.' });
  t.equal(h.admission.accepting(), false);
  t.match(await call('POST', '/disable'), { status: 200, text: 'invoker0 is already disabled.' });
  t.match(await call('GET', '/isEnabled'), { status: 200, text: '{"enabled":false}' });
  t.match(await call('POST', '/enable'), { status: 200, text: 'invoker0 is now enabled.' });
  t.match(await call('POST', '/enable'), { status: 200, text: 'invoker0 is already enabled.' });
  t.equal(h.admission.accepting(), true);

  const wrongMethod = await request(`${h.base}/enable`, { method: 'GET', dispatcher: agent, headers: auth });
  t.equal(wrongMethod.statusCode, 405);
  t.equal(wrongMethod.headers.allow, 'POST');
  await wrongMethod.body.dump();
});

t.test('admin routes without configured credentials refuse everyone (and say so at startup)', async (t) => {
  const h = await withServer(t);
  const response = await request(`${h.base}/isEnabled`, { dispatcher: agent, headers: { authorization: basic('admin', 'admin') } });
  t.equal(response.statusCode, 401);
  await response.body.dump();
  t.ok(h.lines.some((l) => l.level === 'warn' && typeof l.msg === 'string' && l.msg.includes('/enable, /disable and /isEnabled refuse')));
});

t.test('/health/live and /health/ready', async (t) => {
  const h = await withServer(t);
  const ready = await request(`${h.base}/health/ready`, { dispatcher: agent });
  t.equal(ready.statusCode, 200);
  t.same(await ready.body.json(), { status: 'ready', checks: [{ name: 'docker', ok: true }] });

  h.checks.push({ name: 'couchdb', ok: false, detail: 'connect ECONNREFUSED 127.0.0.1:5984' });
  const failing = await request(`${h.base}/health/ready`, { dispatcher: agent });
  t.equal(failing.statusCode, 503);
  t.same(await failing.body.json(), {
    status: 'not ready',
    checks: [
      { name: 'docker', ok: true },
      { name: 'couchdb', ok: false, detail: 'connect ECONNREFUSED 127.0.0.1:5984' },
    ],
    draining: false,
  });

  h.checks.pop();
  h.draining.value = true;
  const draining = await request(`${h.base}/health/ready`, { dispatcher: agent });
  t.equal(draining.statusCode, 503);
  t.match(await draining.body.json(), { status: 'not ready', draining: true });

  const live = await request(`${h.base}/health/live`, { dispatcher: agent });
  t.equal(live.statusCode, 200, 'live while draining: the process still serves');
  t.same(await live.body.json(), { status: 'live' });
});

t.test('a readiness check that throws is a failed check', async (t) => {
  const h = await withServer(t, {}, {
    health: {
      checks: async () => {
        throw new Error('docker socket unreachable');
      },
      draining: () => false,
    },
  });
  const response = await request(`${h.base}/health/ready`, { dispatcher: agent });
  t.equal(response.statusCode, 503);
  t.match(await response.body.json(), { status: 'not ready', checks: [{ ok: false, detail: /docker socket unreachable/ }] });
});

t.test('/ping, /metrics, /pool, unknown routes', async (t) => {
  const h = await withServer(t);
  const ping = await request(`${h.base}/ping`, { dispatcher: agent });
  t.equal(ping.statusCode, 200);
  t.match(ping.headers['content-type'], /^text\/plain/);
  t.equal(await ping.body.text(), 'pong');

  const metrics = await request(`${h.base}/metrics`, { dispatcher: agent });
  t.equal(metrics.statusCode, 200);
  t.match(metrics.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  t.match(await metrics.body.text(), /# TYPE invoker_activations_total counter/);

  const pool = await request(`${h.base}/pool`, { dispatcher: agent });
  t.equal(pool.statusCode, 200);
  t.match(pool.headers['content-type'], /^application\/json/);
  t.same(await pool.body.json(), { containers: [{ state: 'warm', action: 'guest/hello' }], freeMb: 1792 });

  const missing = await request(`${h.base}/nope?token=abc`, { dispatcher: agent });
  t.equal(missing.statusCode, 404);
  t.same(await missing.body.json(), { error: 'no route for GET /nope' }, 'the query string is not echoed');
});

t.test('close() waits for an in-flight activation to deliver its completion', async (t) => {
  const h = await startHarness();
  const response = await post(h, '/invoke', MESSAGE_BYTES);
  const call = await h.handler.next();
  let closed = false;
  const closing = h.server.close().then(() => (closed = true));
  await new Promise((r) => setTimeout(r, 50));
  t.equal(closed, false, 'still open while the activation runs');
  const body = response.body.text();
  call.resolve();
  t.equal(await body, COMPLETION);
  await closing;
  t.equal(closed, true);
});
