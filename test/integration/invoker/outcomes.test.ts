/**
 * The outcome matrix of one activation, end to end: a real invoker (in this
 * process) over HTTP, real action containers, a real CouchDB-compatible store.
 * Every case checks the completion (the /invoke body) and the stored record,
 * against the exact upstream texts (protocol/error-texts.ts).
 */
import t, { type Test } from 'tap';
import {
  ACTION_NO_VALID_RESPONSE_EXITED,
  ACTION_NOT_FETCHED,
  ACTION_NOT_FOUND,
  imagePullFailed,
  MEMORY_EXHAUSTED,
  responseTooLarge,
  timeLimitExceeded,
  type ActivationMessage,
  type JsonObject,
  type WhiskActivation,
} from '../../../protocol/index.js';
import { InvokerTestbed, sleep, type ActionSpec } from '../../helpers/invoker-harness.js';
import { activationOf, annotation, hasAnnotation, logLinePattern, type StoredRecord } from './helpers.js';

const PAYLOAD_LIMIT = 65_536;

const bed = new InvokerTestbed(t);
await bed.createDatabases();
const invoker = await bed.start({ INVOKER_PAYLOAD_LIMIT_BYTES: String(PAYLOAD_LIMIT) });

interface Outcome {
  message: ActivationMessage;
  activation: WhiskActivation;
  record: StoredRecord;
  isSystemError: boolean | undefined;
}

/** Stores `spec` (unless `rev` is given), invokes it blocking, returns the completion and the stored record. */
async function activate(
  spec: ActionSpec,
  options: { content?: JsonObject; rev?: string } = {},
): Promise<Outcome> {
  const rev = options.rev ?? (await bed.putAction(spec)).rev;
  const message = bed.message({ name: spec.name, rev }, options.content ? { content: options.content } : {});
  const answer = await invoker.invoke(message);
  if (answer.status !== 200) throw new Error(`POST /invoke answered ${answer.status}: ${answer.body}`);
  const activation = activationOf(answer.ack);
  const record = (await bed.waitForRecord('guest', message.activationId)) as StoredRecord;
  const isSystemError = answer.ack?.kind === 'combined' ? answer.ack.isSystemError : undefined;
  return { message, activation, record, isSystemError };
}

/** The completion and the record agree, and both carry `statusCode` and `result`. */
function expectResponse(t: Test, o: Outcome, statusCode: number, result: unknown): void {
  t.equal(o.activation.response.statusCode, statusCode, 'completion statusCode');
  t.same(o.activation.response.result, result, 'completion result');
  t.equal(o.record.response.statusCode, statusCode, 'record statusCode');
  t.same(o.record.response.result, result, 'record result');
  t.equal(o.isSystemError, statusCode === 3, 'isSystemError');
  t.match(o.record._rev, /^1-/, 'record written once');
  t.equal(o.record.activationId, o.message.activationId);
}

function errorText(o: { response: { result?: unknown } }): string {
  const error = (o.response.result as { error?: unknown } | undefined)?.error;
  return typeof error === 'string' ? error : '';
}

t.test('success: result, logs, size, cold then warm timing annotations', async (t) => {
  const spec: ActionSpec = {
    name: 'hello',
    code: `function main(p) { console.log('hello from ' + p.name); return { greeting: 'Hello, ' + p.name + '!' }; }`,
  };
  const cold = await activate(spec, { content: { name: 'World' } });
  const result = { greeting: 'Hello, World!' };
  expectResponse(t, cold, 0, result);
  const body = JSON.stringify(result);
  t.equal(cold.record.response.size, body.length, 'response.size is the length of the runtime body');
  t.equal(cold.activation.response.size, body.length);
  t.equal(cold.record.logs.length, 1, 'one log line');
  t.match(cold.record.logs[0], logLinePattern('stdout', 'hello from World'));
  t.same(cold.activation.logs, cold.record.logs, 'the completion carries the same logs');

  // Cold: initTime present; start is init start (waitTime = init start - transid start).
  const initTime = annotation(cold.record, 'initTime');
  const waitTime = annotation(cold.record, 'waitTime');
  t.type(initTime, 'number', 'cold start has initTime');
  t.type(waitTime, 'number', 'waitTime present');
  t.equal(cold.record.start, cold.message.transid.start + (waitTime as number), 'start = init start');
  t.ok(cold.record.duration >= (initTime as number), 'duration spans init and run');
  t.equal(cold.record.duration, cold.record.end - cold.record.start);
  t.equal(annotation(cold.record, 'timeout'), false);
  t.equal(annotation(cold.record, 'path'), 'guest/hello');
  t.equal(annotation(cold.record, 'kind'), 'nodejs:20');
  t.same(annotation(cold.record, 'limits'), { timeout: 10_000, memory: 128, logs: 10, concurrency: 1 });

  // Warm: same revision, the container is reused: no initTime; start is run start.
  const warm = await activate(spec, { content: { name: 'again' }, rev: cold.message.revision as string });
  expectResponse(t, warm, 0, { greeting: 'Hello, again!' });
  t.notOk(hasAnnotation(warm.record, 'initTime'), 'warm start has no initTime');
  const warmWait = annotation(warm.record, 'waitTime');
  t.type(warmWait, 'number', 'waitTime present on a warm start');
  t.equal(warm.record.start, warm.message.transid.start + (warmWait as number), 'start = run start');
  t.match(warm.record.logs[0], logLinePattern('stdout', 'hello from again'));
});

t.test('application error: code 1 with the action error', async (t) => {
  const o = await activate({ name: 'apperror', code: `function main() { return { error: 'boom' }; }` });
  expectResponse(t, o, 1, { error: 'boom' });
  t.equal(annotation(o.record, 'timeout'), false);
});

t.test('thrown error: code 2 with the runtime text', async (t) => {
  const o = await activate({ name: 'thrower', code: `function main() { throw new Error('kaboom'); }` });
  expectResponse(t, o, 2, { error: 'An error has occurred: Error: kaboom' });
});

t.test('non-object result: code 2', async (t) => {
  const o = await activate({ name: 'answer', code: `function main() { return 42; }` });
  expectResponse(t, o, 2, { error: 'The action did not return a dictionary.' });
});

t.test('init failure (syntax error): code 2, the runtime text', async (t) => {
  const o = await activate({ name: 'syntax', code: `function main( { return {}; }` });
  t.equal(o.activation.response.statusCode, 2);
  t.equal(o.record.response.statusCode, 2);
  t.ok(errorText(o.record).startsWith('Initialization has failed due to: SyntaxError'), 'result.error is the runtime\'s init failure text');
  t.equal(errorText(o.activation), errorText(o.record));
  t.equal(o.isSystemError, false);
  t.type(annotation(o.record, 'initTime'), 'number', 'a failed init still reports initTime');
});

t.test('time limit during init: code 2, init text, timeout annotation', async (t) => {
  const o = await activate({
    name: 'slowinit',
    code: `const end = Date.now() + 4000; while (Date.now() < end); function main() { return {}; }`,
    limits: { timeout: 1000 },
  });
  expectResponse(t, o, 2, { error: timeLimitExceeded(1000, true) });
  t.equal(errorText(o.record), 'The action exceeded its time limits of 1000 milliseconds during initialization.');
  t.equal(annotation(o.record, 'timeout'), true);
  t.equal(annotation(o.activation, 'timeout'), true);
});

t.test('time limit during run: code 2, run text, timeout annotation', async (t) => {
  const o = await activate({
    name: 'slowrun',
    code: `function main() { console.log('started'); return new Promise(() => {}); }`,
    limits: { timeout: 1000 },
  });
  expectResponse(t, o, 2, { error: 'The action exceeded its time limits of 1000 milliseconds.' });
  t.equal(annotation(o.record, 'timeout'), true);
  t.match(o.record.logs[0], logLinePattern('stdout', 'started'), 'output before the timeout is kept');
});

t.test('memory exhausted: code 2', async (t) => {
  const o = await activate({
    name: 'hog',
    code: `function main() { const keep = []; for (;;) keep.push(Buffer.alloc(1 << 20, 1)); }`,
    limits: { memory: 128 },
  });
  expectResponse(t, o, 2, { error: MEMORY_EXHAUSTED });
});

t.test('crash mid-run (process.exit): code 2', async (t) => {
  const o = await activate({ name: 'quitter', code: `function main() { process.exit(1); }` });
  expectResponse(t, o, 2, { error: ACTION_NO_VALID_RESPONSE_EXITED });
  t.equal(errorText(o.record), 'The action did not produce a valid response and exited unexpectedly.');
});

t.test('response too large: code 1, truncated text', async (t) => {
  const o = await activate({ name: 'big', code: `function main() { return { s: 'x'.repeat(100000) }; }` });
  t.equal(o.activation.response.statusCode, 1);
  t.equal(o.record.response.statusCode, 1);
  t.equal(o.isSystemError, false);
  const text = errorText(o.record);
  t.ok(text.startsWith('The action produced a response that exceeded the allowed length: '), text.slice(0, 120));
  t.ok(text.includes(`> ${PAYLOAD_LIMIT} bytes`), 'names the limit');
  const body = JSON.stringify({ s: 'x'.repeat(100000) });
  t.equal(text, responseTooLarge(body.length, PAYLOAD_LIMIT, body.slice(0, PAYLOAD_LIMIT)), 'full length, limit, and the first 64 KiB');
  t.equal(errorText(o.activation), text);
});

t.test('action not found: code 1', async (t) => {
  const message = bed.message({ name: 'never-stored', rev: '1-0123456789abcdef0123456789abcdef' });
  const answer = await invoker.invoke(message);
  const activation = activationOf(answer.ack);
  t.same(activation.response.result, { error: ACTION_NOT_FOUND });
  t.equal(activation.response.statusCode, 1);
  t.equal(answer.ack?.kind === 'combined' && answer.ack.isSystemError, false);
  const record = (await bed.waitForRecord('guest', message.activationId)) as StoredRecord;
  t.equal(record.response.statusCode, 1);
  t.same(record.response.result, { error: 'Action could not be found or may have been deleted.' });
});

t.test('fetch failure (malformed action document): code 3, system error', async (t) => {
  const o = await activate({ name: 'malformed', exec: { kind: 'nodejs:20', binary: false } });
  expectResponse(t, o, 3, { error: ACTION_NOT_FETCHED });
  t.equal(o.isSystemError, true);
  t.equal(errorText(o.record), 'Action could not be fetched.');
});

t.test('image pull failure (blackbox): code 2', async (t) => {
  const image = 'whisk/does-not-exist:nope';
  const o = await activate({ name: 'ghost', image });
  expectResponse(t, o, 2, { error: imagePullFailed(image) });
  t.equal(errorText(o.record), "Failed to pull container image 'whisk/does-not-exist:nope'.");
});

t.test('non-blocking: the completion is shrunk to the activation id', async (t) => {
  const { rev } = await bed.putAction({ name: 'async', code: `function main() { return { ok: true }; }` });
  const message = bed.message({ name: 'async', rev }, { blocking: false });
  const answer = await invoker.invoke(message);
  t.equal(answer.status, 200);
  t.equal(answer.ack?.kind, 'combined');
  t.equal(answer.ack?.kind === 'combined' && answer.ack.response, message.activationId, 'response is the activation id');
  t.equal(answer.ack?.kind === 'combined' && answer.ack.isSystemError, false);
  t.same(JSON.parse(answer.body).response, message.activationId, 'on the wire too');
  const record = (await bed.waitForRecord('guest', message.activationId)) as StoredRecord;
  t.same(record.response.result, { ok: true }, 'the record is still complete');
});

t.test('storeActivations: false: a completion, no record', async (t) => {
  const { rev } = await bed.putAction({ name: 'unstored', code: `function main() { return { secret: 1 }; }` });
  const message = bed.message({ name: 'unstored', rev });
  message.user.limits = { storeActivations: false };
  const answer = await invoker.invoke(message);
  t.same(activationOf(answer.ack).response.result, { secret: 1 });
  // A record stored after it proves the writer has caught up with it.
  const later = bed.message({ name: 'unstored', rev });
  await invoker.invoke(later);
  await bed.waitForRecord('guest', later.activationId);
  await sleep(500);
  const ids = (await bed.allRecords()).map((r) => r.id);
  t.notOk(ids.includes(`guest/${message.activationId}`), 'no record for the unstored activation');
  t.ok(ids.includes(`guest/${later.activationId}`));
});
