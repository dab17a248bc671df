/**
 * POST /invoke and the operations routes end to end: a real invoker in this
 * process, real action containers, records in the CouchDB-compatible server.
 */
import t from 'tap';
import { request } from 'undici';
import { ackActivationId, parseAcknowledgement, serializeActivationMessage } from '../../../protocol/index.js';
import { InvokerTestbed, responseOf, type TestInvoker } from '../../helpers/invoker-harness.js';
import { ADMIN_AUTH, ADMIN_ENV, memoryLogger, removeContainersAtTeardown, sleepingAction, waitUntil } from './helpers.js';

const BODY_LIMIT = 4096;

const bed = new InvokerTestbed(t);
removeContainersAtTeardown(t, bed.invokerId);
await bed.createDatabases();
const log = memoryLogger('info');
const invoker: TestInvoker = await bed.start(
  { ...ADMIN_ENV, INVOKER_INVOKE_BODY_LIMIT_BYTES: String(BODY_LIMIT) },
  { logger: log.logger },
);
const sleeper = { name: 'sleeper', ...(await bed.putAction({ name: 'sleeper', code: sleepingAction(1500) })) };
const echo = { name: 'echo', ...(await bed.putAction({ name: 'echo', code: 'function main(p) { return { got: p.name ?? null }; }' })) };

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Raw> {
  const response = await request(`${invoker.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: response.statusCode, headers: response.headers, text: await response.body.text() };
}

function errorOf(raw: Raw): string {
  const parsed = JSON.parse(raw.text) as { error?: unknown };
  if (typeof parsed.error !== 'string') throw new Error(`not an error body: ${raw.text}`);
  return parsed.error;
}

t.test('the 200 and its headers arrive before the activation ends; the body is the completion', async (t) => {
  const message = bed.message(sleeper, { content: { name: 'early' } });
  const result = await invoker.invoke(message);
  t.equal(result.status, 200);
  t.ok(result.headersMs < 500, `headers after ${Math.round(result.headersMs)} ms`);
  t.ok(result.totalMs >= 1500, `body after ${Math.round(result.totalMs)} ms (the action sleeps 1.5 s)`);
  const ack = parseAcknowledgement(result.body);
  t.equal(ack.kind, 'combined', 'a combined completion-and-result message');
  t.equal(ackActivationId(ack), message.activationId);
  const response = responseOf(ack);
  t.equal(response.statusCode, 0, 'success');
  t.same(response.result, { slept: 1500, echo: 'early' }, 'blocking: the full activation with its result');

  const record = await bed.waitForRecord('guest', message.activationId);
  t.equal(record.activationId, message.activationId, 'the record is stored');
  t.same((record.response as { result: unknown }).result, { slept: 1500, echo: 'early' });
});

t.test('the Functions-* headers are accepted and end up as request tags in the activation log line', async (t) => {
  const message = bed.message(echo, { content: { name: 'tags' } });
  const headers = {
    'Functions-Activation-Id': message.activationId,
    'Functions-Transaction-Id': message.transid.id,
    'Functions-Account': 'guest',
    'Functions-Namespace': 'guest',
    'Functions-Function': 'guest/echo',
  };
  const result = await invoker.invoke(message, headers);
  t.equal(result.status, 200);
  t.same(responseOf(result.ack).result, { got: 'tags' });
  await waitUntil(() => log.lines().some((l) => l.event === 'activation' && l.activationId === message.activationId), 'the activation log line');
  const line = log.lines().find((l) => l.event === 'activation' && l.activationId === message.activationId);
  t.same(line?.request, headers, 'every Functions-* header is in the wide event');
});

t.test('the media types a controller sends are accepted, with parameters', async (t) => {
  for (const type of ['application/json; charset=utf-8', 'text/plain; charset=UTF-8']) {
    const result = await invoker.invoke(bed.message(echo, { content: { name: type } }), { 'content-type': type });
    t.equal(result.status, 200, type);
    t.same(responseOf(result.ack).result, { got: type });
  }
});

t.test('refusals before the acknowledgement: each with its status and an {"error"} body', async (t) => {
  const get = await request(`${invoker.url}/invoke`);
  const getText = await get.body.text();
  t.equal(get.statusCode, 405, 'GET /invoke');
  t.equal(get.headers.allow, 'POST');
  t.match(JSON.parse(getText), { error: /method GET not allowed on \/invoke/ });

  const valid = serializeActivationMessage(bed.message(echo));
  const xml = await post('/invoke', valid, { 'content-type': 'application/xml' });
  t.equal(xml.status, 415, 'unsupported content type');
  t.match(errorOf(xml), /unsupported Content-Type/);

  const big = await post('/invoke', serializeActivationMessage(bed.message(echo, { content: { name: 'x'.repeat(BODY_LIMIT * 2) } })));
  t.equal(big.status, 413, 'body over INVOKER_INVOKE_BODY_LIMIT_BYTES');
  t.match(big.headers['content-type'], /application\/json/);
  t.match(errorOf(big), new RegExp(`larger than the limit of ${BODY_LIMIT} bytes`));

  const malformed = await post('/invoke', '{"transid": ');
  t.equal(malformed.status, 400, 'malformed JSON');
  t.match(errorOf(malformed), /invalid JSON/);

  const { activationId: _dropped, ...withoutId } = JSON.parse(valid) as Record<string, unknown>;
  const missing = await post('/invoke', JSON.stringify(withoutId));
  t.equal(missing.status, 400, 'a required field missing');
  t.match(errorOf(missing), /activationId/, 'the error names the missing field');

  for (const raw of [xml, big, malformed, missing]) t.notMatch(raw.text, /123zO3xZ/, 'no part of the body is echoed back');
});

t.test('a client that disconnects mid-activation: the activation still completes and is recorded', async (t) => {
  const message = bed.message(sleeper, { content: { name: 'gone' } });
  const controller = new AbortController();
  const response = await request(`${invoker.url}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: serializeActivationMessage(message),
    signal: controller.signal,
  });
  t.equal(response.statusCode, 200, 'acknowledged');
  controller.abort();
  await t.rejects(response.body.text(), 'the body is cut off on the client side');

  const record = await bed.waitForRecord('guest', message.activationId);
  t.same((record.response as { result: unknown }).result, { slept: 1500, echo: 'gone' }, 'the record holds the full result');
  await waitUntil(
    () => log.lines().some((l) => l.activationId === message.activationId && /disconnected before the completion/.test(String(l.msg))),
    'the disconnect warning',
  );
  const after = await invoker.invoke(bed.message(echo, { content: { name: 'still' } }));
  t.equal(after.status, 200, 'the invoker serves the next request');
});

t.test('disabled: 503 with Retry-After; enabled again: 200', async (t) => {
  const unauthenticated = await post('/disable', '');
  t.equal(unauthenticated.status, 401, 'admin routes need credentials');
  t.equal(unauthenticated.headers['www-authenticate'], 'Basic realm="invoker"');

  const disabled = await request(`${invoker.url}/disable`, { method: 'POST', headers: ADMIN_AUTH });
  t.equal(disabled.statusCode, 200);
  t.equal(await disabled.body.text(), `invoker${bed.invokerId} is now disabled.`);

  const refused = await post('/invoke', serializeActivationMessage(bed.message(echo)));
  t.equal(refused.status, 503, 'refused while disabled');
  t.equal(refused.headers['retry-after'], '5');
  t.match(errorOf(refused), /not accepting activations: .*disabled/);

  const ready = await invoker.get('/health/ready');
  t.equal(ready.status, 200, 'disabled is not unready: the process is fine, it just takes no work');

  const enabled = await request(`${invoker.url}/enable`, { method: 'POST', headers: ADMIN_AUTH });
  t.equal(enabled.statusCode, 200);
  t.equal(await enabled.body.text(), `invoker${bed.invokerId} is now enabled.`);
  const again = await invoker.invoke(bed.message(echo, { content: { name: 'back' } }));
  t.equal(again.status, 200, 'accepted again');
  t.same(responseOf(again.ack).result, { got: 'back' });
});

t.test('/health/ready, /health/live and /ping', async (t) => {
  const ready = await invoker.get('/health/ready');
  t.equal(ready.status, 200);
  const body = JSON.parse(ready.body) as { status: string; checks: Array<{ name: string; ok: boolean }> };
  t.equal(body.status, 'ready');
  t.same(
    body.checks.map((c) => c.name).sort(),
    ['docker', 'startup', 'store'],
    'the checks of an invoker without Kafka',
  );
  t.ok(body.checks.every((c) => c.ok), 'every check passes');
  t.same(JSON.parse((await invoker.get('/health/live')).body), { status: 'live' });
  const ping = await invoker.get('/ping');
  t.equal(ping.status, 200);
  t.equal(ping.body, 'pong');
});
