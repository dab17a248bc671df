import t, { type Test } from 'tap';
import {
  ACTION_NO_VALID_RESPONSE_EXITED,
  ANNOTATION_FORCED_COMPLETION,
  FAILED_TO_PROVISION,
  isForcedRecord,
  parseActivationDocument,
  serializeActivationDocument,
  type ActivationDocument,
} from '../../../protocol/index.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { InvokerPool } from '../../../controller-lb/invoker-state.js';
import { LoadBalancer, type LoadBalancerOptions } from '../../../controller-lb/load-balancer.js';
import { combined, FakePublisher, FakePusher, helloAction, invokerId, message, settle } from './fixtures.js';

class RecordingSink {
  readonly documents: ActivationDocument[] = [];
  async store(document: ActivationDocument): Promise<void> {
    // Through the bytes the writer journals, as CouchDB would read them back.
    this.documents.push(parseActivationDocument(serializeActivationDocument(document)));
  }
}

function setup(t: Test, options: Partial<LoadBalancerOptions> = {}) {
  const pool = new InvokerPool({ controllerCount: 1 });
  pool.recordPing(invokerId(0, 512), Date.now());
  const pusher = new FakePusher();
  const records = new RecordingSink();
  const lb = new LoadBalancer({
    controller: { asString: '0' },
    pool,
    pusher,
    records,
    invokerUrl: (index) => `http://invoker${index}.test:8080`,
    logger: silentLogger(),
    healthTests: false,
    ...options,
  });
  t.teardown(() => lb.close());
  return { pool, pusher, lb, records };
}

function forcedOf(doc: ActivationDocument | undefined): Record<string, unknown> | undefined {
  const value = doc?.activation.annotations.find((a) => a.key === ANNOTATION_FORCED_COMPLETION)?.value;
  return value as Record<string, unknown> | undefined;
}

t.test('acknowledged, then the body is cut: a system-error record <namespace>/<activationId>, marked as forced', async (t) => {
  const { pusher, lb, records } = setup(t);
  const msg = message();
  const published = lb.publish(helloAction, msg);
  pusher.last().acknowledge();
  await published.acknowledged;
  pusher.last().complete({ ok: false, acknowledged: true, error: 'reading the completion: other side closed' });
  t.match(await published.completion, { status: 'forced', reason: 'failed' });
  await settle();
  t.equal(records.documents.length, 1);
  const doc = records.documents[0] as ActivationDocument;
  t.equal(doc._id, `guest/${msg.activationId}`);
  t.match(doc.activation, {
    namespace: 'guest',
    name: 'hello',
    subject: 'guest',
    activationId: msg.activationId,
    response: { statusCode: 3, result: { error: ACTION_NO_VALID_RESPONSE_EXITED } },
    version: '0.0.1',
  });
  t.same(
    doc.activation.annotations.find((a) => a.key === 'path'),
    { key: 'path', value: 'guest/hello' },
    'the annotations of an invoker record',
  );
  t.match(forcedOf(doc), { controller: '0', reason: 'failed', acknowledged: true, error: /other side closed/ });
  t.ok(isForcedRecord(doc.activation), 'recognised as forced');
});

t.test('never acknowledged: "Failed to provision resources"', async (t) => {
  const { pusher, lb, records } = setup(t);
  const msg = message();
  const published = lb.publish(helloAction, msg);
  pusher.last().refuse('connect ECONNREFUSED');
  await published.completion;
  await settle();
  t.match(records.documents[0]?.activation.response, { statusCode: 3, result: { error: FAILED_TO_PROVISION } });
  t.match(forcedOf(records.documents[0]), { reason: 'failed', acknowledged: false });
});

t.test('nothing back in time: upstream\'s time-limit text, timeout annotation true', async (t) => {
  const { pusher, lb, records } = setup(t, { forcedCompletion: { minTimeLimitMs: 10, extraMs: 10 } });
  const msg = message();
  const published = lb.publish({ ...helloAction, timeoutMs: 5 }, msg);
  pusher.last().acknowledge();
  t.match(await published.completion, { status: 'forced', reason: 'timeout' });
  await settle();
  const doc = records.documents[0];
  t.match(doc?.activation.response, { statusCode: 3, result: { error: 'The action exceeded its time limits of 5 milliseconds.' } });
  t.same(doc?.activation.annotations.find((a) => a.key === 'timeout'), { key: 'timeout', value: true });
  // The invoker's completion after the forced one only logs: no second record from the controller.
  lb.handleAcknowledgement(combined(msg, 0));
  await settle();
  t.equal(records.documents.length, 1);
});

t.test('a failed Kafka publish and a shutdown write one too; storeActivations: false none', async (t) => {
  const publisher = new FakePublisher();
  publisher.fail = new Error('broker down');
  const { lb, records } = setup(t, { kafka: publisher, invokerUrl: () => undefined });
  const failed = lb.publish(helloAction, message());
  await failed.completion;
  const quiet = message();
  quiet.user = { ...quiet.user, limits: { storeActivations: false } };
  await lb.publish(helloAction, quiet).completion;
  await settle();
  t.equal(records.documents.length, 1, 'only the one that stores activations');

  publisher.fail = undefined;
  const running = lb.publish(helloAction, message());
  await running.acknowledged;
  await lb.close();
  t.match(await running.completion, { status: 'forced', reason: 'shutdown' });
  t.equal(records.documents.length, 2);
  t.match(forcedOf(records.documents[1]), { reason: 'shutdown', acknowledged: true });
});

t.test('a completed activation writes no record from the controller', async (t) => {
  const { pusher, lb, records } = setup(t);
  const msg = message();
  const published = lb.publish(helloAction, msg);
  pusher.last().acknowledge();
  pusher.last().complete({ ok: true, ack: combined(msg, 0) });
  await published.completion;
  await settle();
  t.equal(records.documents.length, 0);
});
