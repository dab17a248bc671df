/**
 * The REST API as real clients use it: the `openwhisk` npm client against a
 * real controller-lb (main.ts as a process), a real invoker running actions
 * in Docker, and CouchDB. Covers authentication, entitlement, the actions
 * API (create/get/list/update/delete, every refusal upstream makes),
 * invocation (blocking, result, non-blocking), activations (get, list, logs,
 * result) and namespaces, and sequences.
 */
import t from 'tap';
import realOpenwhisk from 'openwhisk';
import { InvokerTestbed, sleep } from '../../helpers/invoker-harness.js';
import { GUEST_API_KEY, startController, waitInvokerUp } from '../../helpers/controller-harness.js';
import { zipArchive, zipCode } from '../../fixtures/upstream-action-docs.js';

const HELLO = "function main() { console.log('Hello World'); return { hello: 'world' }; }";

// The client's typings are narrower than what it sends and answers; the tests check the wire.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const openwhisk = (options: { apihost: string; api_key: string }): any => realOpenwhisk(options);

interface OwError extends Error {
  statusCode?: number;
  error?: { error?: string; code?: string };
}

async function refusal(promise: Promise<unknown>): Promise<OwError> {
  try {
    await promise;
  } catch (error) {
    return error as OwError;
  }
  throw new Error('expected the call to be refused');
}

t.test('the REST API with the openwhisk npm client, a real controller and invoker', async (t) => {
  const testbed = new InvokerTestbed(t);
  await testbed.createDatabases();
  const invoker = await testbed.start({ INVOKER_PREWARM_COUNT: '0' });
  const controller = await startController(t, {
    whisksDb: testbed.whisksDb,
    activationsDb: testbed.activationsDb,
    invokerUrls: [invoker.url],
    extra: { CONTROLLER_EXEC_SIZE_LIMIT_BYTES: String(256 * 1024), CONTROLLER_SEQUENCE_MAX_LENGTH: '5' },
  });
  await waitInvokerUp(controller);
  const ow = openwhisk({ apihost: controller.url, api_key: GUEST_API_KEY });

  await t.test('authentication and entitlement', async (t) => {
    const wrongKey = openwhisk({ apihost: controller.url, api_key: `${GUEST_API_KEY.split(':')[0]}:${'x'.repeat(64)}` });
    let error = await refusal(wrongKey.actions.list());
    t.equal(error.statusCode, 401);
    t.equal(error.error?.error, 'The supplied authentication is invalid');
    t.match(error.error?.code, /^[A-Za-z0-9]{32}$/);
    const garbage = openwhisk({ apihost: controller.url, api_key: 'not-a-key' });
    t.equal((await refusal(garbage.namespaces.list())).statusCode, 401);

    error = await refusal(ow.actions.list({ namespace: 'someone-else' }));
    t.equal(error.statusCode, 403);
    t.equal(error.error?.error, "The supplied authentication is not authorized to access 'someone-else'.");
    error = await refusal(ow.actions.invoke({ name: '/someone-else/hello' }));
    t.equal(error.statusCode, 403);
    t.equal(error.error?.error, "The supplied authentication is not authorized to access 'someone-else/hello'.");

    // Another identity made with the identity CLI has a namespace of its own.
    const created = await controller.identity('create', 'alice');
    t.equal(created.code, 0);
    const alice = openwhisk({ apihost: controller.url, api_key: created.out });
    t.same(await alice.namespaces.list(), ['alice']);
    t.equal((await refusal(alice.actions.list({ namespace: 'guest' }))).statusCode, 403);
    await controller.identity('block', 'alice');
    await sleep(11_000); // past the identity cache's TTL
    t.equal((await refusal(alice.namespaces.list())).statusCode, 401, 'a blocked subject is refused');
  });

  await t.test('namespaces and version info', async (t) => {
    t.same(await ow.namespaces.list(), ['guest']);
    t.same(await ow.namespaces.get(), { actions: [], packages: [], triggers: [], rules: [] }, 'what `wsk list` lists');
    const info = (await fetch(`${controller.url}/api/v1`).then((r) => r.json())) as Record<string, unknown>;
    t.match(info, { description: 'OpenWhisk API', api_version_path: 'v1' });
  });

  await t.test('actions: refusals with upstream texts', async (t) => {
    let error = await refusal(ow.actions.get({ name: 'missing' }));
    t.equal(error.statusCode, 404);
    t.equal(error.error?.error, 'The requested resource does not exist.');
    error = await refusal(ow.actions.invoke({ name: 'missing', blocking: true }));
    t.equal(error.statusCode, 404);

    error = await refusal(ow.actions.create({ name: 'badkind', action: HELLO, kind: 'cobol:1' }));
    t.equal(error.statusCode, 400);
    t.equal(
      error.error?.error,
      "The request content was malformed:\nThe specified runtime 'cobol:1' is not supported by this platform. Valid values are: 'nodejs:20', 'nodejs:24', 'sequence', 'blackbox'.",
    );

    error = await refusal(ow.actions.create({ name: 'huge', action: `// ${'x'.repeat(300 * 1024)}\n${HELLO}` }));
    t.equal(error.statusCode, 413);
    t.match(error.error?.error, /^exec larger than allowed: \d+ > 262144 bytes\.$/);

    for (const [limits, text] of [
      [{ memory: 64 }, 'requirement failed: memory 64 MB below allowed threshold of 128 MB'],
      [{ memory: 4096 }, 'requirement failed: memory 4096 MB exceeds allowed threshold of 512 MB'],
      [{ timeout: 50 }, 'requirement failed: duration 50 milliseconds below allowed threshold of 100 milliseconds'],
      [{ timeout: 600_000 }, 'requirement failed: duration 600000 milliseconds exceeds allowed threshold of 300000 milliseconds'],
      [{ logs: 11 }, 'requirement failed: log size 11 MB exceeds allowed threshold of 10 MB'],
      [{ concurrency: 2 }, 'requirement failed: concurrency 2 exceeds allowed threshold of 1'],
    ] as const) {
      error = await refusal(ow.actions.create({ name: 'limits', action: HELLO, limits }));
      t.equal(error.statusCode, 400, JSON.stringify(limits));
      t.equal(error.error?.error, `The request content was malformed:\n${text}`);
    }
    error = await refusal(ow.actions.get({ name: 'pkg/act' }));
    t.equal(error.statusCode, 400);
    t.match(error.error?.error, /Packages are not supported/);
    t.same(await ow.actions.list(), [], 'nothing refused was stored');
  });

  await t.test('actions: create, get, list, update, delete; documents as upstream stores them', async (t) => {
    const created = (await ow.actions.create({ name: 'myAction', action: HELLO, params: { greeting: 'hi' } })) as Record<string, unknown>;
    t.match(created, {
      namespace: 'guest',
      name: 'myAction',
      version: '0.0.1',
      exec: { kind: 'nodejs:20', code: HELLO, binary: false },
      parameters: [{ key: 'greeting', value: 'hi' }],
      limits: { timeout: 60000, memory: 256, logs: 10, concurrency: 1 },
      annotations: [{ key: 'provide-api-key', value: false }, { key: 'exec', value: 'nodejs:20' }],
    });
    const conflict = await refusal(ow.actions.create({ name: 'myAction', action: HELLO }));
    t.equal(conflict.statusCode, 409);
    t.equal(conflict.error?.error, 'resource already exists');

    const doc = (await testbed.couch.use(testbed.whisksDb).get('guest/myAction')) as unknown as Record<string, any>;
    t.match(doc, { _id: 'guest/myAction', entityType: 'action', namespace: 'guest', name: 'myAction', publish: false, updated: Number });
    t.match(doc.exec.code, { attachmentName: /^mem:/, attachmentType: 'text/plain; charset=UTF-8', length: Buffer.byteLength(HELLO), digest: /^sha256-[0-9a-f]{64}$/ });
    t.notOk(doc._attachments, 'small code is inlined');

    t.match(await ow.actions.get({ name: 'myAction' }), { exec: { code: HELLO } });
    const meta = (await ow.actions.get({ name: 'myAction', code: false })) as { exec: Record<string, unknown> };
    t.same(meta.exec, { kind: 'nodejs:20', binary: false });

    const updated = (await ow.actions.update({ name: 'myAction', limits: { memory: 128 } })) as Record<string, unknown>;
    t.match(updated, { version: '0.0.2', limits: { memory: 128 }, exec: { code: HELLO }, parameters: [{ key: 'greeting' }] });

    const bigCode = `// ${'y'.repeat(20 * 1024)}\nfunction main(p) { return { big: true, n: p.n }; }`;
    await ow.actions.create({ name: 'bigAction', action: bigCode, kind: 'nodejs:default' });
    const big = (await testbed.couch.use(testbed.whisksDb).get('guest/bigAction')) as unknown as Record<string, any>;
    t.match(big.exec.code, { attachmentName: /^couch:[0-9a-f-]{36}$/, attachmentType: 'text/plain; charset=UTF-8' });
    t.ok(big._attachments[big.exec.code.attachmentName.slice(6)], 'large code is a CouchDB attachment');
    t.equal(((await ow.actions.get({ name: 'bigAction' })) as { exec: { code: string } }).exec.code, bigCode);
    t.same(await ow.actions.invoke({ name: 'bigAction', params: { n: 3 }, blocking: true, result: true }), { big: true, n: 3 }, 'the invoker runs it');

    // A zip, as clients send it (a Buffer becomes base64): stored as bytes, binary; and `main`.
    const zip = Buffer.from(zipCode('zipped'), 'base64');
    await ow.actions.create({ name: 'zipAction', action: zip, kind: 'nodejs:20' });
    const zipped = (await testbed.couch.use(testbed.whisksDb).get('guest/zipAction')) as unknown as Record<string, any>;
    t.match(zipped.exec, { binary: true, code: { attachmentName: /^mem:/, attachmentType: 'application/octet-stream', length: zip.length } });
    t.same(await ow.actions.invoke({ name: 'zipAction', params: { name: 'z' }, blocking: true, result: true }), { form: 'zipped', echo: 'z' });
    t.equal(((await ow.actions.get({ name: 'zipAction' })) as { exec: { code: string } }).exec.code, zip.toString('base64'));
    const withMain = zipArchive({ 'index.js': { data: Buffer.from('exports.run = () => ({ ran: "run" });\n'), deflate: true } });
    await ow.actions.create({ name: 'mainAction', action: { exec: { kind: 'nodejs:default', code: withMain.toString('base64'), main: 'run' } } });
    t.same(await ow.actions.invoke({ name: 'mainAction', blocking: true, result: true }), { ran: 'run' }, 'exec.main is the entry point');
    await ow.actions.delete({ name: 'zipAction' });
    await ow.actions.delete({ name: 'mainAction' });

    const list = (await ow.actions.list()) as Array<Record<string, unknown>>;
    t.same(list.map((a) => a['name']), ['bigAction', 'myAction'], 'newest first');
    t.match(list[1], { namespace: 'guest', version: '0.0.2', exec: { binary: false }, limits: { memory: 128 } });
    t.same(await ow.actions.list({ count: true }), { actions: 2 });
    t.same(((await ow.actions.list({ limit: 1, skip: 1 })) as Array<Record<string, unknown>>).map((a) => a['name']), ['myAction']);
    const badLimit = await refusal(ow.actions.list({ limit: 500 }));
    t.equal(badLimit.error?.error, "The query parameter 'limit' was malformed:\nThe value '500' is not in the range of 0 to 200 for actions.");

    t.match(await ow.actions.delete({ name: 'bigAction' }), { name: 'bigAction' });
    t.equal((await refusal(ow.actions.get({ name: 'bigAction' }))).statusCode, 404);
    t.equal((await refusal(ow.actions.invoke({ name: 'bigAction', blocking: true }))).statusCode, 404, 'a deleted action is not invocable');
  });

  await t.test('invoke: blocking, result, non-blocking; activations: get, list, logs, result', async (t) => {
    const full = (await ow.actions.invoke({ name: 'myAction', blocking: true })) as Record<string, any>;
    t.match(full, { namespace: 'guest', name: 'myAction', activationId: /^[0-9a-f]{32}$/, response: { status: 'success', success: true, result: { hello: 'world' } } });
    t.match(full.logs, [/stdout: Hello World$/]);
    t.same(await ow.actions.invoke({ name: 'myAction', blocking: true, result: true }), { hello: 'world' });

    const accepted = (await ow.actions.invoke({ name: 'myAction' })) as { activationId: string };
    t.match(accepted, { activationId: /^[0-9a-f]{32}$/ });
    let record: Record<string, any> | undefined;
    for (let i = 0; i < 100 && record === undefined; i++) {
      record = (await ow.activations.get({ name: accepted.activationId }).catch(() => undefined)) as Record<string, any> | undefined;
      if (record === undefined) await sleep(200);
    }
    t.match(record, { activationId: accepted.activationId, name: 'myAction', response: { success: true, result: { hello: 'world' } }, duration: Number });
    t.same(await ow.activations.logs({ name: accepted.activationId }), { logs: record?.logs });
    t.match(((await ow.activations.logs({ name: accepted.activationId })) as { logs: string[] }).logs, [/stdout: Hello World$/]);
    t.same(await ow.activations.result({ name: accepted.activationId }), { result: { hello: 'world' }, success: true, status: 'success', ...(record?.response.size !== undefined ? { size: record.response.size } : {}) });

    const list = (await ow.activations.list({ name: 'myAction', limit: 10 })) as Array<Record<string, unknown>>;
    t.ok(list.length >= 3, `listed ${list.length}`);
    t.equal(list[0]?.['activationId'], accepted.activationId, 'newest first');
    t.match(list[0], { namespace: 'guest', name: 'myAction', statusCode: 0, duration: Number, start: Number, end: Number });
    t.notOk('response' in (list[0] ?? {}), 'summaries without docs');
    const docs = (await ow.activations.list({ docs: true, limit: 1 })) as Array<Record<string, any>>;
    t.match(docs[0], { response: { success: true } });
    t.match(await ow.activations.list({ count: true }), { activations: Number });
    const since = (await ow.activations.list({ since: Date.now() + 60_000 })) as unknown[];
    t.same(since, [], 'since filters by start');
    t.equal((await refusal(ow.activations.get({ name: 'f'.repeat(32) }))).statusCode, 404);
    t.equal((await refusal(ow.activations.get({ name: 'nope' }))).error?.error, 'ActivationId length is 4 but must be 32.');
    t.equal((await refusal(ow.activations.list({ namespace: 'someone-else' }))).statusCode, 403);
  });

  await t.test('sequences: results feed the next component (arrays too), the first failure ends it', async (t) => {
    await ow.actions.create({ name: 'one', action: 'function main(p) { return { n: (p.n || 0) + 1 }; }' });
    await ow.actions.create({ name: 'two', action: 'function main(p) { return [p.n, p.n * 10]; }' });
    await ow.actions.create({ name: 'three', action: 'function main(p) { return { got: p }; }' });
    await ow.actions.create({ name: 'fails', action: "function main() { return { error: 'broken' }; }" });
    await ow.actions.create({ name: 'seq', sequence: ['/_/one', '/_/two', '/_/three'] });

    const seq = (await ow.actions.get({ name: 'seq' })) as Record<string, any>;
    t.match(seq.exec, { kind: 'sequence', components: ['/guest/one', '/guest/two', '/guest/three'] });
    t.match(seq.parameters, [{ key: '_actions', value: ['/guest/one', '/guest/two', '/guest/three'] }]);

    const activation = (await ow.actions.invoke({ name: 'seq', params: { n: 1 }, blocking: true })) as Record<string, any>;
    t.match(activation.response, { success: true, result: { got: [2, 20] } });
    t.equal(activation.logs.length, 3, 'logs are the components activation ids');
    t.match(activation.annotations, [
      { key: 'topmost', value: true },
      { key: 'path', value: 'guest/seq' },
      { key: 'kind', value: 'sequence' },
      { key: 'limits', value: { memory: 256 } },
    ]);
    const stored = (await ow.activations.get({ name: activation.activationId })) as Record<string, any>;
    t.equal(stored.activationId, activation.activationId, 'the sequence has its own record');
    const first = (await ow.activations.get({ name: activation.logs[0] })) as Record<string, any>;
    t.equal(first.cause, activation.activationId, 'components carry the cause');
    t.ok(
      (first.annotations as Array<{ key: string; value: unknown }>).some((a) => a.key === 'causedBy' && a.value === 'sequence'),
      'components are annotated causedBy: sequence',
    );

    await ow.actions.create({ name: 'broken-seq', sequence: ['/_/one', '/_/fails', '/_/three'] });
    const failed = await refusal(ow.actions.invoke({ name: 'broken-seq', blocking: true }));
    t.equal(failed.statusCode, 502, 'application error of a component');
    const body = failed.error as unknown as Record<string, any>;
    t.match(body.response, { success: false, status: 'application error', result: { error: 'broken' } });
    t.equal(body.logs.length, 2, 'stopped at the failing component');

    let error = await refusal(ow.actions.create({ name: 'long', sequence: Array(6).fill('/_/one') }));
    t.equal(error.error?.error, 'Too many actions in the sequence.');
    error = await refusal(ow.actions.create({ name: 'ghost', sequence: ['/_/nothing'] }));
    t.equal(error.error?.error, 'Sequence component does not exist.');
    error = await refusal(ow.actions.update({ name: 'seq', sequence: ['/_/one', '/_/seq'] }));
    t.equal(error.error?.error, 'Sequence may not refer to itself.');
  });
});
