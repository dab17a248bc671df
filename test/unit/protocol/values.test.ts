import t from 'tap';
import {
  ACTION_NOT_FETCHED,
  STATUS_APPLICATION_ERROR,
  STATUS_DEVELOPER_ERROR,
  STATUS_SUCCESS,
  STATUS_WHISK_ERROR,
  ackActivationId,
  activationDocId,
  activationDocument,
  activationDocumentJson,
  applicationError,
  byteSize,
  byteSizeBytes,
  combinedAck,
  completedTopic,
  completionAck,
  developerError,
  formatByteSize,
  generateActivationId,
  generateTransactionId,
  invokerTopic,
  isActivationId,
  isSystemError,
  isTruthy,
  megabytes,
  parseAcknowledgement,
  parseActivationDocument,
  parseActivationMessage,
  parseByteSize,
  parseInvokerInstanceId,
  parsePingMessage,
  parseTransactionId,
  parseWhiskActivation,
  resultAck,
  sameTransaction,
  serializeAcknowledgement,
  serializeActivationDocument,
  serializeActivationMessage,
  RawJson,
  serializeInvokerInstanceId,
  serializePingMessage,
  serializeTransactionId,
  serializeWhiskActivation,
  shrinkAck,
  statusName,
  storesActivations,
  success,
  whiskError,
  type ActivationMessage,
  type InvokerInstanceId,
  type WhiskActivation,
} from '../../../protocol/index.js';
import { fixture } from '../../fixtures/protocol/codecs.js';

const invoker: InvokerInstanceId = {
  instance: 0,
  userMemory: byteSize(2147483648),
  tags: [],
  dedicatedNamespaces: [],
  uniqueName: 'u0',
  displayedName: 'invoker-host-0',
};

function activation(): WhiskActivation {
  return {
    namespace: 'guest',
    name: 'hello',
    subject: 'guest',
    activationId: 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c',
    start: 1717171717200,
    end: 1717171717350,
    response: success({ payload: 'Hello, World!' }, 27),
    logs: ['2024-05-31T15:28:37.251871463Z stdout: hello'],
    version: '0.0.1',
    publish: false,
    annotations: [
      { key: 'limits', value: { timeout: 60000, memory: 256, logs: 10, concurrency: 1 } },
      { key: 'path', value: 'guest/hello' },
      { key: 'kind', value: 'nodejs:20' },
      { key: 'timeout', value: false },
      { key: 'initTime', value: 42 },
      { key: 'waitTime', value: 12 },
    ],
    duration: 150,
  };
}

t.test('byte sizes', async (t) => {
  t.equal(byteSizeBytes('2147483648 B'), 2147483648);
  t.equal(byteSizeBytes('1024 MB'), 1073741824);
  t.equal(byteSizeBytes('0 g'), 0);
  t.equal(byteSizeBytes('2k'), 2048);
  t.equal(byteSizeBytes(' 3 KB '), 3072);
  t.equal(byteSizeBytes('1gb'), 1073741824);
  for (const bad of ['', 'B', '1', '1 TB', '-1 B', '1.5 MB', '1  MB', '1 B B', `${'9'.repeat(70)} B`]) {
    t.type(byteSizeBytes(bad), 'string', `rejects ${JSON.stringify(bad.slice(0, 20))}`);
  }
  t.same(parseByteSize('2147483648 B'), { bytes: 2147483648 }, 'canonical text is not kept');
  t.same(parseByteSize('1024 MB'), { bytes: 1073741824, text: '1024 MB' });
  t.equal(formatByteSize(parseByteSize('1024 MB')), '1024 MB', 'original text written back');
  t.equal(formatByteSize({ bytes: 5, text: '1024 MB' }), '5 B', 'stale text is not written');
  t.equal(formatByteSize(megabytes(256)), '268435456 B');
  t.throws(() => byteSize(-1), RangeError);
  t.throws(() => parseByteSize('lots'), RangeError);
});

t.test('activation ids', async (t) => {
  const ids = Array.from({ length: 1000 }, () => generateActivationId());
  t.ok(ids.every((id) => /^[0-9a-f]{32}$/.test(id) && isActivationId(id)), '32 lowercase hex characters');
  t.equal(new Set(ids).size, 1000, 'unique');
  t.ok(isActivationId('a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c'));
  t.notOk(isActivationId('A8B3C0F1D2E34F5A9B6C7D8E9F0A1B2C'), 'uppercase rejected like upstream');
  t.notOk(isActivationId('a8b3c0f1-d2e3-4f5a-9b6c-7d8e9f0a1b2c'));
  t.notOk(isActivationId('g8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c'));
  t.notOk(isActivationId(42));
});

t.test('transaction ids', async (t) => {
  const tid = generateTransactionId(1717171717171);
  t.match(tid.id, /^[A-Za-z0-9]{32}$/);
  t.equal(tid.start, 1717171717171);
  t.equal(serializeTransactionId(tid), `["${tid.id}",1717171717171]`);
  const explicitFalse = parseTransactionId('["a",1,false]');
  t.equal(serializeTransactionId(explicitFalse), '["a",1,false]', 'an explicit false flag is echoed');
  const child = { id: 'c', start: 2, extraLogging: true, parent: { id: 'p', start: 1 } };
  t.same(parseTransactionId(serializeTransactionId(child)), child);
  t.ok(sameTransaction(parseTransactionId('["a",1,true]'), { id: 'a', start: 1 }), 'flag does not matter');
  t.notOk(sameTransaction({ id: 'a', start: 1 }, { id: 'a', start: 2 }));
  t.notOk(sameTransaction({ id: 'a', start: 1, parent: { id: 'p', start: 0 } }, { id: 'a', start: 1 }));
});

t.test('activation responses', async (t) => {
  t.same(success({ a: 1 }), { statusCode: 0, result: { a: 1 } });
  t.same(success(), { statusCode: 0 });
  t.same(applicationError('bad', 9), { statusCode: 1, result: { error: 'bad' }, size: 9 });
  t.same(developerError({ code: 1 }), { statusCode: 2, result: { error: { code: 1 } } });
  t.same(whiskError(ACTION_NOT_FETCHED), { statusCode: 3, result: { error: 'Action could not be fetched.' } });
  t.same([STATUS_SUCCESS, STATUS_APPLICATION_ERROR, STATUS_DEVELOPER_ERROR, STATUS_WHISK_ERROR], [0, 1, 2, 3]);
  t.ok(isSystemError(whiskError('x')));
  t.notOk(isSystemError(developerError('x')));
  t.equal(statusName(2), 'action_developer_error');
});

t.test('whisk activations and the stored document', async (t) => {
  const a = activation();
  t.equal(serializeWhiskActivation(a), fixture('whisk-activation.json'), 'built activation matches the fixture');
  t.same(parseWhiskActivation(serializeWhiskActivation(a)), a);
  const doc = activationDocument(a, 1717171717400);
  t.equal(doc._id, 'guest/a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c');
  t.equal(activationDocId(a), doc._id);
  t.equal(serializeActivationDocument(doc), fixture('activation-record.json'), 'stored document matches the spec example');
  t.same(parseActivationDocument(serializeActivationDocument(doc)), doc);
  const json = activationDocumentJson(doc);
  t.same(Object.keys(json).slice(0, 5), ['_id', 'entityType', 'updated', 'namespace', 'name']);
  t.equal(JSON.stringify(json), fixture('activation-record.json'), 'object form has the same field order');
});

t.test('acknowledgement builders', async (t) => {
  const tid = { id: 'kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa', start: 1717171717171 };
  const a = activation();
  const combined = combinedAck(tid, a, invoker);
  t.equal(serializeAcknowledgement(combined), fixture('ack-combined-full.json'));
  t.equal(serializeAcknowledgement(shrinkAck(combined)), fixture('ack-combined-shrunk.json'));
  t.equal(serializeAcknowledgement(completionAck(tid, a, invoker)), fixture('ack-completion.json'));
  t.equal(serializeAcknowledgement(shrinkAck(resultAck(tid, a))), fixture('ack-result-shrunk.json'));
  const failed = { ...a, response: whiskError('x') };
  t.equal(combinedAck(tid, failed, invoker).isSystemError, true);
  t.equal(completionAck(tid, failed, invoker).isSystemError, true);
  for (const ack of [combined, shrinkAck(combined), completionAck(tid, a, invoker), resultAck(tid, a)]) {
    t.equal(ackActivationId(ack), a.activationId);
    t.same(parseAcknowledgement(serializeAcknowledgement(ack)), ack, `${ack.kind} round-trips`);
  }
  const completion = completionAck(tid, a, invoker);
  t.equal(shrinkAck(completion), completion, 'completion has nothing to shrink');
});

t.test('instance ids, pings and topics', async (t) => {
  t.equal(serializeInvokerInstanceId(invoker), fixture('invoker-instance-id.json'));
  t.same(parseInvokerInstanceId(serializeInvokerInstanceId(invoker)), invoker);
  const { uniqueName: _u, displayedName: _d, ...minimal } = invoker;
  t.equal(serializePingMessage({ instance: minimal, isEnabled: true }), fixture('ping-enabled.json'));
  t.same(parsePingMessage('{"name":' + fixture('invoker-instance-id-minimal.json') + '}'), { instance: minimal }, 'isEnabled optional');
  t.equal(serializePingMessage({ instance: minimal }), '{"name":' + fixture('invoker-instance-id-minimal.json') + '}');
  t.equal(invokerTopic(invoker), 'invoker0');
  t.equal(completedTopic({ asString: '0' }), 'completed0');
});

t.test('activation messages built in code', async (t) => {
  const msg: ActivationMessage = {
    transid: { id: 'kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa', start: 1717171717171 },
    action: { path: 'guest', name: 'hello', version: '0.0.1' },
    revision: '1-6b0c4c2f8a3e',
    user: {
      subject: 'guest',
      namespace: { name: 'guest', uuid: '23bc46b1-71f6-4ed5-8c54-816aa4f8c502' },
      authkey: { api_key: '23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZ' },
      rights: ['READ', 'PUT', 'DELETE', 'ACTIVATE'],
      limits: {},
    },
    activationId: 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c',
    rootControllerIndex: { asString: '0' },
    blocking: true,
    content: RawJson.of({ name: 'World' }),
    initArgs: [],
    lockedArgs: {},
  };
  t.equal(serializeActivationMessage(msg), fixture('activation-message.json'));
  t.same(parseActivationMessage(serializeActivationMessage(msg)), msg);
  t.ok(storesActivations(msg.user));
  t.notOk(storesActivations({ ...msg.user, limits: { storeActivations: false } }));
  // content is written back as it came, including a "__proto__" key, non-ASCII text and escapes.
  const oddText = fixture('activation-message.json').replace('{"name":"World"}', '{"__proto__":{"x":1},"ü":"\\u2028"}');
  const odd = parseActivationMessage(oddText);
  t.same(odd.content?.members()?.map((m) => m.key), ['__proto__', 'ü']);
  t.equal(serializeActivationMessage(odd), oddText);
});

t.test('annotations', async (t) => {
  const anns = [
    { key: 'a', value: true },
    { key: 'b', value: 0 },
    { key: 'c', value: '' },
    { key: 'd', value: null },
    { key: 'e', value: 'yes' },
    { key: 'f', value: {} },
  ];
  t.same(['a', 'b', 'c', 'd', 'e', 'f', 'missing'].map((k) => isTruthy(anns, k)), [true, false, false, false, true, true, false]);
  t.equal(isTruthy(anns, 'missing', true), true);
});
