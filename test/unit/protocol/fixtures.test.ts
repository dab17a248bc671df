import t from 'tap';
import {
  INVOKER_HEALTH_TRANSACTION,
  type AcknowledgementMessage,
  type ActivationDocument,
  type ActivationMessage,
  type InvokerInstanceId,
  type PingMessage,
  type TransactionId,
} from '../../../protocol/index.js';
import { CODECS, fixture, loadFixtures } from '../../fixtures/protocol/codecs.js';
import { upstreamCompact } from '../../../protocol/index.js';

const fixtures = loadFixtures();

t.test('our serialization is stable: every fixture round-trips byte for byte', async (t) => {
  t.ok(fixtures.length >= 25, `${fixtures.length} fixtures`);
  for (const { file, text, codec } of fixtures) {
    t.notOk(text.endsWith('\n'), `${file} has no trailing newline`);
    const fromString = codec.parse(text);
    t.equal(codec.serialize(fromString as never), text, `${file}: serialize(parse(string)) === input`);

    const bytes = Buffer.from(text, 'utf8');
    t.equal(codec.serialize(codec.parse(bytes) as never), text, `${file}: from a Buffer`);
    // A view into a larger buffer at an offset, as a Kafka client may hand out.
    const big = new Uint8Array(bytes.length + 10);
    big.set(bytes, 5);
    const view = big.subarray(5, 5 + bytes.length);
    t.same(codec.parse(view), fromString, `${file}: from a Uint8Array view`);

    t.same(codec.parse(codec.serialize(fromString as never)), fromString, `${file}: parse(serialize(x)) deep-equals x`);
  }
});

t.test("upstream's bytes: keys sorted, numbers as BigDecimal; they read as the same values", async (t) => {
  // upstreamCompact prints a document the way spray-json (1.3.5+) re-prints one it parsed:
  // every object a TreeMap, so keys sorted; numbers as BigDecimal.toString.
  for (const { file, text, codec } of fixtures) {
    const upstream = upstreamCompact(text);
    const ours = codec.serialize(codec.parse(upstream) as never);
    t.equal(upstreamCompact(ours), upstream, `${file}: same values, whatever the key order`);
    // Only documents without unsorted objects are byte-identical with upstream.
    if (/^(transid-|controller-instance-id)/.test(file)) t.equal(text, upstream, `${file}: byte-identical with upstream`);
  }
  // For example: the same message, not the same bytes.
  const message = fixture('activation-message.json');
  t.not(upstreamCompact(message), message);
  t.ok(upstreamCompact(message).startsWith('{"action":{"name":"hello","path":"guest","version":"0.0.1"},"activationId":'));
});

t.test('a trailing newline (e.g. from an editor) is accepted but not written back', async (t) => {
  const text = fixture('activation-message.json');
  const msg = CODECS.activationMessage.parse(`${text}\n`);
  t.equal(CODECS.activationMessage.serialize(msg as never), text);
});

t.test('spec example ActivationMessage reads as expected', async (t) => {
  const m = CODECS.activationMessage.parse(fixture('activation-message.json')) as ActivationMessage;
  t.same(m.transid, { id: 'kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa', start: 1717171717171 });
  t.same(m.action, { path: 'guest', name: 'hello', version: '0.0.1' });
  t.equal(m.revision, '1-6b0c4c2f8a3e');
  t.equal(m.user.namespace.name, 'guest');
  t.equal(m.user.authkey['api_key'], '23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZ');
  t.equal(m.activationId, 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c');
  t.same(m.rootControllerIndex, { asString: '0' });
  t.equal(m.blocking, true);
  t.equal(m.content?.text, '{"name":"World"}');
  t.same(m.initArgs, []);
  t.same(m.lockedArgs, {});
  t.notOk('cause' in m);
  t.notOk('traceContext' in m);
});

t.test('health-test message: whisk.system, sid_invokerHealth, revision null, no content', async (t) => {
  const m = CODECS.activationMessage.parse(fixture('activation-message-health.json')) as ActivationMessage;
  t.equal(m.transid.id, INVOKER_HEALTH_TRANSACTION);
  t.equal(m.action.path, 'whisk.system');
  t.equal(m.action.name, 'invokerHealthTestAction0');
  t.equal(m.revision, null);
  t.equal(m.blocking, false);
  t.notOk('content' in m);
  t.same(m.user.rights, []);
});

t.test('binding, traceContext, initArgs and lockedArgs', async (t) => {
  const m = CODECS.activationMessage.parse(fixture('activation-message-binding-trace.json')) as ActivationMessage;
  t.equal(m.action.binding, 'guest/myutils');
  t.equal(m.action.path, 'guest/utils');
  t.same(m.initArgs, ['DB_URL']);
  t.same(m.lockedArgs, { secret: 'aes-256' });
  t.equal(m.traceContext?.['traceparent'], '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
});

t.test('transids with flag and parent', async (t) => {
  const seq = CODECS.activationMessage.parse(fixture('activation-message-sequence-cause.json')) as ActivationMessage;
  t.equal(seq.cause, 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c');
  t.same(seq.transid.parent, { id: 'kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa', start: 1717171717171 });
  const both = CODECS.transactionId.parse(fixture('transid-flag-parent.json')) as TransactionId;
  t.same(both, { id: 'child', start: 130, extraLogging: true, parent: { id: 'id', start: 123, parent: { id: 'parentId', start: 120 } } });
  const flag = CODECS.transactionId.parse(fixture('transid-extra-logging.json')) as TransactionId;
  t.equal(flag.extraLogging, true);
});

t.test('acknowledgement kinds follow the fields present', async (t) => {
  const kind = (file: string): string => (CODECS.acknowledgement.parse(fixture(file)) as AcknowledgementMessage).kind;
  t.equal(kind('ack-combined-full.json'), 'combined');
  t.equal(kind('ack-combined-shrunk.json'), 'combined');
  t.equal(kind('ack-combined-system-error.json'), 'combined');
  t.equal(kind('ack-completion.json'), 'completion');
  t.equal(kind('ack-completion-health.json'), 'completion');
  t.equal(kind('ack-result.json'), 'result');
  t.equal(kind('ack-result-shrunk.json'), 'result');
  const shrunk = CODECS.acknowledgement.parse(fixture('ack-combined-shrunk.json')) as AcknowledgementMessage;
  t.equal(shrunk.kind === 'combined' && shrunk.response, 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c');
});

t.test('pings and invoker ids', async (t) => {
  const on = CODECS.ping.parse(fixture('ping-enabled.json')) as PingMessage;
  t.equal(on.isEnabled, true);
  t.equal(on.instance.userMemory.bytes, 2147483648);
  t.notOk('uniqueName' in on.instance);
  const off = CODECS.ping.parse(fixture('ping-disabled.json')) as PingMessage;
  t.equal(off.isEnabled, false);
  t.same(off.instance.tags, ['gpu']);
  const busy = CODECS.invokerInstanceId.parse(fixture('invoker-instance-id-busy-memory.json')) as InvokerInstanceId;
  t.same(busy.userMemory, { bytes: 1024 * 1024 * 1024, text: '1024 MB' });
  t.same(busy.busyMemory, { bytes: 0, text: '0 g' });
  t.equal(busy.uniqueName, 'invoker-12');
  t.notOk('displayedName' in busy);
});

t.test('activation record', async (t) => {
  const doc = CODECS.activationDocument.parse(fixture('activation-record.json')) as ActivationDocument;
  t.equal(doc._id, 'guest/a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c');
  t.equal(doc.updated, 1717171717400);
  t.equal(doc.activation.response.size, 27);
  t.equal(doc.activation.duration, 150);
  t.equal(doc.activation.annotations.length, 6);
  const withRev = CODECS.activationDocument.parse(fixture('activation-record-with-rev.json')) as ActivationDocument;
  t.equal(withRev._rev, '1-967a00dff5e02add41819138abb3284d');
});
