/**
 * InvocationCore.reject over in-memory fakes: the activation of a message
 * the Kafka feed could not read ends through the core's own finish path, so
 * its record, its completion, its metric and its wide event are those of
 * every other system error. The byte-exact completion is the one
 * test/unit/kafka/rejected-message.test.ts expects of systemErrorCompletion
 * (what the feed used to build itself).
 */
import t from 'tap';
import { Writable } from 'node:stream';
import {
  megabytes,
  parseAcknowledgement,
  type ActivationDocument,
  type InvokerInstanceId,
  type SalvagedMessage,
} from '../../../protocol/index.js';
import { InvocationCore, type RunnableContainer } from '../../../invoker/invocation/invocation-core.js';
import type { ActivationRejection } from '../../../invoker/invocation/activation-handler.js';
import { createLogger } from '../../../invoker/telemetry/logger.js';
import { InvokerMetrics } from '../../../invoker/telemetry/metrics.js';
import { defaultTracer } from '../../../invoker/telemetry/tracing.js';

const NOW = 1717171717999;
const instance: InvokerInstanceId = { instance: 7, userMemory: megabytes(2048), tags: [], dedicatedNamespaces: [] };
const activationId = 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c';
const problem = 'ActivationMessage.revision: missing (expected a string or null)';
const transid = { id: 'kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa', start: 1717171717171, parent: { id: 'parent', start: 1717171717100 } };
const readable: SalvagedMessage = {
  reason: 'invalid_message',
  activationId,
  controller: { asString: 'controller-1' },
  transid,
  blocking: true,
  namespace: 'guest',
  actionPath: 'guest/pkg',
  actionName: 'hello',
  version: '0.0.3',
  subject: 'alice',
};

function fixture(options: { store?: (doc: ActivationDocument) => Promise<void> } = {}) {
  const stored: ActivationDocument[] = [];
  const lines: Array<Record<string, unknown>> = [];
  const touched: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const metrics = new InvokerMetrics({ invokerId: 7, processMetrics: false });
  // An unreadable message never gets as far as an action, an image or a container.
  const untouchable = (what: string) => () => {
    touched.push(what);
    return Promise.reject(new Error(`${what} must not be used`));
  };
  const core = new InvocationCore<RunnableContainer>({
    instance,
    actions: { get: untouchable('actions') },
    containers: { acquire: untouchable('containers') },
    images: {
      imageFor: () => {
        touched.push('images');
        return undefined;
      },
      ensureImage: untouchable('images'),
    },
    records: { store: options.store ?? (async (doc) => void stored.push(doc)) },
    decryptor: undefined,
    payloadLimitBytes: 1024 * 1024,
    metrics,
    tracer: defaultTracer(),
    logger: createLogger({ level: 'info', destination }),
    clock: () => NOW,
  });
  const rejection = (salvaged: SalvagedMessage): ActivationRejection => ({ salvaged, problem, transport: 'kafka', receivedAt: NOW - 5 });
  const activationsCounted = async () =>
    Object.fromEntries(
      (await metrics.activations.get()).values.map((v) => [`${v.labels.transport}/${v.labels.status}`, v.value]),
    );
  return { core, stored, lines, touched, rejection, activationsCounted };
}

t.test('a readable id, controller and identity: one system-error record and one full completion with the problem', async (t) => {
  const f = fixture();
  const outcome = await f.core.reject(f.rejection(readable));
  t.ok(outcome, 'answered');
  t.equal(outcome?.activationId, activationId);
  t.same(outcome?.controller, { asString: 'controller-1' });
  t.equal(outcome?.statusCode, 3, 'a system error');
  t.equal(
    outcome?.completion,
    '{"transid":["kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa",1717171717171,["parent",1717171717100]],' +
      '"response":{"namespace":"guest","name":"hello","subject":"alice","activationId":"a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c",' +
      '"start":1717171717999,"end":1717171717999,"response":{"statusCode":3,"result":{"error":"The invoker could not read the activation message: ActivationMessage.revision: missing (expected a string or null)"}},' +
      '"logs":[],"version":"0.0.3","publish":false,"annotations":[{"key":"path","value":"guest/pkg/hello"}],"duration":0},' +
      '"isSystemError":true,"instance":{"instance":7,"userMemory":"2147483648 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}}',
    'the full completion, byte for byte what the feed answered before',
  );
  t.equal(
    outcome?.shrunkCompletion,
    '{"transid":["kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa",1717171717171,["parent",1717171717100]],"response":"a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c",' +
      '"isSystemError":true,"instance":{"instance":7,"userMemory":"2147483648 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}}',
  );
  t.notOk(outcome && 'retryUntil' in outcome, "no retryUntil: the action's time limit is unknown, the transport's default window applies");

  t.equal(f.stored.length, 1, 'one record');
  const doc = f.stored[0]!;
  t.equal(doc._id, `guest/${activationId}`);
  t.equal(doc.updated, NOW);
  t.match(doc.activation, {
    activationId,
    namespace: 'guest',
    name: 'hello',
    subject: 'alice',
    response: { statusCode: 3, result: { error: `The invoker could not read the activation message: ${problem}` } },
    annotations: [{ key: 'path', value: 'guest/pkg/hello' }],
  });
  const ack = parseAcknowledgement(outcome!.completion);
  t.match(ack, { kind: 'combined', isSystemError: true });
  t.same(ack.kind === 'combined' ? ack.response : undefined, doc.activation, 'the record is the activation answered');

  t.same(await f.activationsCounted(), { 'kafka/system_error': 1 }, 'counted like every activation');
  const finished = f.lines.filter((l) => l.msg === 'activation finished');
  t.equal(finished.length, 1, 'one wide event');
  t.match(finished[0], {
    level: 'warn',
    event: 'activation',
    activationId,
    transid: transid.id,
    action: 'guest/pkg/hello',
    namespace: 'guest',
    transport: 'kafka',
    blocking: true,
    statusCode: 3,
    durationMs: 0,
    totalMs: 5,
    reason: `unreadable message (invalid_message): ${problem}`,
  });
  t.same(f.touched, [], 'no action fetched, no image, no container');
  t.equal(f.core.inFlight(), 0);
});

t.test('only an id and a controller: the shrunk completion, a fresh transid, no record', async (t) => {
  const f = fixture();
  const outcome = await f.core.reject(f.rejection({ reason: 'invalid_message', activationId, controller: { asString: 'c9' } }));
  t.equal(outcome?.completion, outcome?.shrunkCompletion, 'nothing to show the caller but the id');
  const ack = parseAcknowledgement(outcome!.completion);
  t.match(ack, { kind: 'combined', isSystemError: true, response: activationId, transid: { id: /^[A-Za-z0-9]{32}$/, start: NOW } });
  t.same(f.stored, [], 'no namespace to store a record under');
  t.same(await f.activationsCounted(), { 'kafka/system_error': 1 });
});

t.test('blocking but anonymous, or readable but non-blocking: shrunk, with the record when the namespace is known', async (t) => {
  const f = fixture();
  const { subject: _subject, ...anonymous } = readable;
  const a = await f.core.reject(f.rejection(anonymous));
  t.equal(a?.completion, a?.shrunkCompletion, 'no subject: shrunk');
  const b = await f.core.reject(f.rejection({ ...readable, blocking: false }));
  t.equal(b?.completion, b?.shrunkCompletion, 'non-blocking: shrunk, like every non-blocking ack');
  t.same(f.stored.map((d) => [d._id, d.activation.subject]), [[`guest/${activationId}`, '_'], [`guest/${activationId}`, 'alice']]);
});

t.test('no activation id or no controller to answer: nothing stored, counted or logged, undefined', async (t) => {
  const f = fixture();
  const { controller: _controller, ...noController } = readable;
  const { activationId: _id, ...noId } = readable;
  t.equal(await f.core.reject(f.rejection({ reason: 'empty' })), undefined);
  t.equal(await f.core.reject(f.rejection({ reason: 'invalid_json' })), undefined);
  t.equal(await f.core.reject(f.rejection(noController)), undefined, 'an id without a controller');
  t.equal(await f.core.reject(f.rejection(noId)), undefined, 'a controller without an id');
  t.same(f.stored, []);
  t.same(await f.activationsCounted(), {});
  t.same(f.lines, []);
  t.equal(f.core.inFlight(), 0);
});

t.test('the record is durable before the completion is returned, and the rejection is in flight until then', async (t) => {
  let release: () => void = () => undefined;
  const stored: ActivationDocument[] = [];
  const f = fixture({
    store: (doc) =>
      new Promise<void>((resolve) => {
        stored.push(doc);
        release = resolve;
      }),
  });
  let finishes = 0;
  f.core.onFinish(() => finishes++);
  let settled = false;
  const outcome = f.core.reject(f.rejection(readable)).then((o) => {
    settled = true;
    return o;
  });
  t.equal(f.core.inFlight(), 1, 'counted at once');
  await new Promise((r) => setImmediate(r));
  t.equal(stored.length, 1, 'storing');
  t.notOk(settled, 'no completion while the record is not durable');
  release();
  t.equal((await outcome)?.statusCode, 3);
  t.equal(f.core.inFlight(), 0);
  t.equal(finishes, 1, 'capacity listeners told');
  t.equal(await f.core.whenIdle(10), true);
});

t.test('a failing store still yields the completion; the wide event says why there is no record', async (t) => {
  const f = fixture({ store: () => Promise.reject(new Error('journal full')) });
  const outcome = await f.core.reject(f.rejection(readable));
  t.equal(outcome?.statusCode, 3);
  t.match(f.lines.find((l) => l.msg === 'activation finished'), { storeError: 'journal full' });
});
