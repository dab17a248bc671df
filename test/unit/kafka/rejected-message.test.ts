import t from 'tap';
import {
  megabytes,
  parseAcknowledgement,
  salvageRejectedMessage,
  serializeActivationMessage,
  type ActivationMessage,
  type InvokerInstanceId,
} from '../../../protocol/index.js';
import { systemErrorCompletion, unreadableMessageError } from '../../../invoker/invocation/system-error.js';
import { isTooLarge } from '../../../invoker/kafka/completion-producer.js';

const instance: InvokerInstanceId = { instance: 7, userMemory: megabytes(2048), tags: [], dedicatedNamespaces: [] };
const message: ActivationMessage = {
  transid: { id: 'kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa', start: 1717171717171, parent: { id: 'parent', start: 1717171717100 } },
  action: { path: 'guest/pkg', name: 'hello', version: '0.0.3' },
  revision: '1-abc',
  user: {
    subject: 'alice',
    namespace: { name: 'guest', uuid: 'u' },
    authkey: { api_key: 'secret' },
    rights: [],
    limits: {},
  },
  activationId: 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c',
  rootControllerIndex: { asString: 'controller-1' },
  blocking: true,
  initArgs: [],
  lockedArgs: {},
};
const raw = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));

t.test('salvage: what can be read from a rejected message', async (t) => {
  t.same(salvageRejectedMessage(null), { reason: 'empty' });
  t.same(salvageRejectedMessage(Buffer.alloc(0)), { reason: 'empty' });
  t.same(salvageRejectedMessage(raw('{"activationId":')), { reason: 'invalid_json' });
  t.same(salvageRejectedMessage(raw('[1,2]')), { reason: 'invalid_message' });

  const full = JSON.parse(serializeActivationMessage(message)) as Record<string, unknown>;
  delete full['user'];
  t.same(salvageRejectedMessage(raw(full)), {
    reason: 'invalid_message',
    activationId: message.activationId,
    controller: { asString: 'controller-1' },
    transid: message.transid,
    blocking: true,
    actionPath: 'guest/pkg',
    actionName: 'hello',
    version: '0.0.3',
  });

  t.same(
    salvageRejectedMessage(
      raw({
        activationId: 'A8B3C0F1D2E34F5A9B6C7D8E9F0A1B2C', // upper case: not an activation id
        rootControllerIndex: { asString: '../etc' }, // not a valid topic suffix
        transid: 'nope',
      }),
    ),
    { reason: 'invalid_message' },
    'invalid ids are not used',
  );
});

t.test('system-error completion: full for blocking calls with a readable identity, else shrunk', async (t) => {
  const base = {
    activationId: message.activationId,
    controller: message.rootControllerIndex,
    transid: message.transid,
    instance,
    error: unreadableMessageError('ActivationMessage.revision: missing (expected a string or null)'),
    now: 1717171717999,
  };
  const full = systemErrorCompletion({
    ...base,
    blocking: true,
    namespace: 'guest',
    actionPath: 'guest/pkg',
    actionName: 'hello',
    version: '0.0.3',
    subject: 'alice',
  });
  t.equal(full.activationId, message.activationId);
  t.same(full.controller, { asString: 'controller-1' });
  t.equal(
    full.completion,
    '{"transid":["kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa",1717171717171,["parent",1717171717100]],' +
      '"response":{"namespace":"guest","name":"hello","subject":"alice","activationId":"a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c",' +
      '"start":1717171717999,"end":1717171717999,"response":{"statusCode":3,"result":{"error":"The invoker could not read the activation message: ActivationMessage.revision: missing (expected a string or null)"}},' +
      '"logs":[],"version":"0.0.3","publish":false,"annotations":[{"key":"path","value":"guest/pkg/hello"}],"duration":0},' +
      '"isSystemError":true,"instance":{"instance":7,"userMemory":"2147483648 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}}',
  );
  t.equal(
    full.shrunkCompletion,
    '{"transid":["kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa",1717171717171,["parent",1717171717100]],"response":"a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c",' +
      '"isSystemError":true,"instance":{"instance":7,"userMemory":"2147483648 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}}',
  );
  t.match(parseAcknowledgement(full.completion), { kind: 'combined', isSystemError: true });

  const nonBlocking = systemErrorCompletion({ ...base, blocking: false, namespace: 'guest', actionName: 'hello', subject: 'alice' });
  t.equal(nonBlocking.completion, nonBlocking.shrunkCompletion, 'non-blocking: shrunk, like every non-blocking ack');
  const anonymous = systemErrorCompletion({ ...base, blocking: true });
  t.equal(anonymous.completion, anonymous.shrunkCompletion, 'identity unknown: shrunk');

  const { transid: _omit, ...withoutTransid } = base;
  const fresh = parseAcknowledgement(systemErrorCompletion(withoutTransid).completion);
  t.match(fresh.transid, { id: /^[A-Za-z0-9]{32}$/, start: 1717171717999 }, 'a fresh transid when none could be read');
});

t.test('isTooLarge finds the broker refusal however kafkajs wraps it', async (t) => {
  const refusal = Object.assign(new Error('too large'), { type: 'MESSAGE_TOO_LARGE' });
  t.ok(isTooLarge(refusal));
  t.ok(isTooLarge(Object.assign(new Error('x'), { type: 'RECORD_LIST_TOO_LARGE' })));
  t.ok(isTooLarge(new Error('retries exceeded', { cause: refusal })));
  t.ok(isTooLarge(Object.assign(new Error('aggregate'), { errors: [new Error('other'), refusal] })));
  t.notOk(isTooLarge(Object.assign(new Error('x'), { type: 'NOT_LEADER_FOR_PARTITION' })));
  t.notOk(isTooLarge(undefined));
});
