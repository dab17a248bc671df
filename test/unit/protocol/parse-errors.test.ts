import t, { type Test } from 'tap';
import {
  ProtocolParseError,
  parseAcknowledgement,
  parseActivationMessage,
  parseControllerInstanceId,
  parseInvokerInstanceId,
  parsePingMessage,
  parseTransactionId,
  parseWhiskActivation,
  serializeActivationMessage,
} from '../../../protocol/index.js';
import { fixture } from '../../fixtures/protocol/codecs.js';

type Mutable = Record<string, unknown>;
const base = (): Mutable => JSON.parse(fixture('activation-message.json')) as Mutable;

/** Asserts that `fn` throws a ProtocolParseError whose message starts with `prefix`. */
function rejects(t: Test, fn: () => unknown, prefix: string, name = prefix): void {
  try {
    fn();
    t.fail(`${name}: accepted`);
  } catch (err) {
    t.type(err, ProtocolParseError, `${name}: ProtocolParseError`);
    t.ok((err as Error).message.startsWith(prefix), `${name}: "${(err as Error).message}"`);
  }
}

t.test('invalid JSON and non-objects', async (t) => {
  rejects(t, () => parseActivationMessage('{"transid":'), 'ActivationMessage: invalid JSON: ');
  rejects(t, () => parseActivationMessage(''), 'ActivationMessage: invalid JSON: ');
  rejects(t, () => parseActivationMessage(Buffer.from([0xff, 0xfe])), 'ActivationMessage: invalid JSON: ');
  rejects(t, () => parseActivationMessage('[]'), 'ActivationMessage: expected a JSON object, got an array');
  rejects(t, () => parseActivationMessage('null'), 'ActivationMessage: expected a JSON object, got null');
  rejects(t, () => parseActivationMessage('"x"'), 'ActivationMessage: expected a JSON object, got a string');
  rejects(t, () => parseAcknowledgement('42'), 'AcknowledgementMessage: expected a JSON object');
  rejects(t, () => parseActivationMessage(42 as unknown as string), 'ActivationMessage: expected a string or bytes');
  // V8 quotes the input in its message; an API key must not reach the logs that way.
  for (const bad of ['SECRETKEY', `{"authkey":{"api_key":"uuid:SECRETKEY"}}x`, `[${'"SECRETKEY",'.repeat(20)}`, '{"a":"SECRETKEY" x}']) {
    try {
      parseActivationMessage(bad);
      t.fail('accepted');
    } catch (err) {
      t.notMatch((err as Error).message, 'SECRETKEY', (err as Error).message);
      t.equal((err as Error).cause, undefined);
    }
  }
});

t.test('nesting depth is capped so that accepted messages can be serialized again', async (t) => {
  const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n);
  const msg = (content: string): string => fixture('activation-message.json').replace('{"name":"World"}', content);
  // 1000 levels in all: the message object, content, and 998 arrays.
  const ok = parseActivationMessage(msg(`{"x":${nest(998)}}`));
  t.ok(serializeActivationMessage(ok).length > 0, '1000 levels accepted and serializable');
  rejects(t, () => parseActivationMessage(msg(`{"x":${nest(999)}}`)), 'ActivationMessage: JSON nested deeper than 1000 levels');
  rejects(t, () => parseActivationMessage(msg(`{"x":${nest(2_000_000)}}`)), 'ActivationMessage: JSON nested deeper than 1000 levels', 'very deep');
  // Brackets and escaped quotes inside strings do not count.
  const tricky = `{"s":"${'['.repeat(3000)}\\\\","t":"\\"${'{'.repeat(3000)}"}`;
  t.same(parseActivationMessage(msg(tricky)).content?.members()?.map((m) => m.key), ['s', 't']);
  rejects(t, () => parseActivationMessage(`{"transid":${nest(1001)}}`), 'ActivationMessage: JSON nested deeper', 'unterminated-looking but valid');
});

t.test('numbers beyond the double range are rejected rather than written back as null, except in content', async (t) => {
  const limits = (value: string): string => fixture('activation-message.json').replace('"limits":{}', `"limits":${value}`);
  rejects(t, () => parseActivationMessage(limits('{"x":1e400}')), 'ActivationMessage: JSON number out of range');
  rejects(t, () => parseActivationMessage(limits(`{"x":[-${'9'.repeat(400)}]}`)), 'ActivationMessage: JSON number out of range');
  rejects(t, () => parseActivationMessage(limits(`{"x":${'9'.repeat(250)}.5e99}`)), 'ActivationMessage: JSON number out of range', 'long mantissa, short exponent');
  rejects(t, () => parseActivationMessage(limits('{"x":1E+0400 }')), 'ActivationMessage: JSON number out of range', 'E+0400');
  t.equal(parseActivationMessage(limits('{"x":1e308,"y":"e400","z":1e-400}')).user.limits['x'], 1e308, 'large but finite, and look-alikes in strings');
  // content is kept as text: any number passes, exactly as written (upstream reads it as a BigDecimal).
  const content = (value: string): string => fixture('activation-message.json').replace('{"name":"World"}', value);
  for (const text of ['{"x":1e400}', `{"x":[-${'9'.repeat(400)}]}`, '{"x":1E+0400 }', '[1E+400]']) {
    t.equal(parseActivationMessage(content(text)).content?.text, text, text.slice(0, 20));
  }
});

t.test('each required field of ActivationMessage', async (t) => {
  for (const field of ['transid', 'action', 'revision', 'user', 'activationId', 'rootControllerIndex', 'blocking']) {
    const m = base();
    delete m[field];
    rejects(t, () => parseActivationMessage(JSON.stringify(m)), `ActivationMessage.${field}: missing`, `without ${field}`);
  }
});

t.test('wrong types name the field path', async (t) => {
  const cases: [string, (m: Mutable) => void, string][] = [
    ['transid object', (m) => (m['transid'] = { id: 'x' }), 'ActivationMessage.transid: expected [id, startMillis]'],
    ['transid short', (m) => (m['transid'] = ['x']), 'ActivationMessage.transid: expected [id, startMillis]'],
    ['transid start string', (m) => (m['transid'] = ['x', '1']), 'ActivationMessage.transid[1]: expected startMillis'],
    ['transid start float', (m) => (m['transid'] = ['x', 1.5]), 'ActivationMessage.transid[1]: expected startMillis'],
    ['transid parent', (m) => (m['transid'] = ['x', 1, 'p']), 'ActivationMessage.transid[2]: expected a parent'],
    ['transid flag', (m) => (m['transid'] = ['x', 1, 'p', ['y', 2]]), 'ActivationMessage.transid[2]: expected the extra-logging flag'],
    ['action.name', (m) => ((m['action'] as Mutable)['name'] = 7), 'ActivationMessage.action.name: expected a non-empty string, got a number'],
    ['action.path empty', (m) => ((m['action'] as Mutable)['path'] = ''), 'ActivationMessage.action.path: must not be empty'],
    ['action.binding', (m) => ((m['action'] as Mutable)['binding'] = null), 'ActivationMessage.action.binding: expected a string, got null'],
    ['revision', (m) => (m['revision'] = 3), 'ActivationMessage.revision: expected a string or null'],
    ['user.namespace.uuid', (m) => (((m['user'] as Mutable)['namespace'] as Mutable)['uuid'] = null), 'ActivationMessage.user.namespace.uuid: expected a string, got null'],
    ['user.authkey', (m) => ((m['user'] as Mutable)['authkey'] = 'k'), 'ActivationMessage.user.authkey: expected an object'],
    ['user.rights', (m) => ((m['user'] as Mutable)['rights'] = ['READ', 1]), 'ActivationMessage.user.rights[1]: expected a string'],
    ['activationId length', (m) => (m['activationId'] = 'abc'), 'ActivationMessage.activationId: expected an activation id of 32 characters, got 3'],
    ['activationId upper', (m) => (m['activationId'] = 'A8B3C0F1D2E34F5A9B6C7D8E9F0A1B2C'), 'ActivationMessage.activationId: expected an activation id of lowercase hex'],
    ['rootControllerIndex chars', (m) => (m['rootControllerIndex'] = { asString: 'a/b', instanceType: 'controller' }), 'ActivationMessage.rootControllerIndex.asString: expected 1 to 128 characters'],
    ['rootControllerIndex type', (m) => (m['rootControllerIndex'] = { asString: '0', instanceType: 'invoker' }), 'ActivationMessage.rootControllerIndex.instanceType: expected "controller"'],
    ['blocking', (m) => (m['blocking'] = 'true'), 'ActivationMessage.blocking: expected a boolean, got a string'],
    ['initArgs', (m) => (m['initArgs'] = 'a'), 'ActivationMessage.initArgs: expected an array of strings'],
    ['lockedArgs value', (m) => (m['lockedArgs'] = { p: 1 }), 'ActivationMessage.lockedArgs.p: expected a string'],
    ['cause', (m) => (m['cause'] = 'nope'), 'ActivationMessage.cause: expected an activation id'],
    ['traceContext', (m) => (m['traceContext'] = { a: 1 }), 'ActivationMessage.traceContext.a: expected a string'],
  ];
  for (const [name, mutate, prefix] of cases) {
    const m = base();
    mutate(m);
    rejects(t, () => parseActivationMessage(JSON.stringify(m)), prefix, name);
  }
});

t.test('optional-by-default fields of older controllers', async (t) => {
  const m = base();
  delete m['initArgs'];
  delete m['lockedArgs'];
  const parsed = parseActivationMessage(JSON.stringify(m));
  t.same(parsed.initArgs, []);
  t.same(parsed.lockedArgs, {});
  const c = parseControllerInstanceId('{"asString":"7"}');
  t.same(c, { asString: '7' });
});

t.test('parent transaction chains are capped', async (t) => {
  let tid: unknown = ['root', 1];
  for (let i = 0; i < 15; i++) tid = [`t${i}`, i + 2, tid];
  t.equal(parseTransactionId(JSON.stringify(tid)).id, 't14', '16 levels are fine');
  tid = ['over', 99, tid];
  rejects(t, () => parseTransactionId(JSON.stringify(tid)), 'TransactionId', 'over the cap');
  rejects(t, () => parseTransactionId('{"id":1}'), 'TransactionId: expected [id, startMillis]');
  rejects(t, () => parseTransactionId('["a",1,true,["b",2],5]'), 'TransactionId: expected [id, startMillis]');
  rejects(t, () => parseTransactionId('["a",1e400]'), 'TransactionId: JSON number out of range');
  rejects(t, () => parseTransactionId('["a",1e300]'), 'TransactionId[1]: expected startMillis');
});

t.test('acknowledgements', async (t) => {
  const ack = JSON.parse(fixture('ack-completion.json')) as Mutable;
  delete ack['instance'];
  rejects(t, () => parseAcknowledgement(JSON.stringify(ack)), 'AcknowledgementMessage: expected "instance" and/or "response"');
  // The Go invoker's key: not silently treated as a result message.
  const goStyle = JSON.parse(fixture('ack-completion.json')) as Mutable;
  goStyle['invoker'] = goStyle['instance'];
  delete goStyle['instance'];
  rejects(t, () => parseAcknowledgement(JSON.stringify(goStyle)), 'AcknowledgementMessage.invoker: unsupported field');
  const combined = JSON.parse(fixture('ack-combined-full.json')) as Mutable;
  ((combined['response'] as Mutable)['response'] as Mutable)['statusCode'] = 4;
  rejects(t, () => parseAcknowledgement(JSON.stringify(combined)), 'AcknowledgementMessage(combined).response.response.statusCode: expected 0, 1, 2 or 3');
  const shrunk = JSON.parse(fixture('ack-combined-shrunk.json')) as Mutable;
  shrunk['response'] = 12;
  rejects(t, () => parseAcknowledgement(JSON.stringify(shrunk)), 'AcknowledgementMessage(combined).response: expected an activation or an activation id');
  shrunk['response'] = 'short';
  rejects(t, () => parseAcknowledgement(JSON.stringify(shrunk)), 'AcknowledgementMessage(combined).response: expected an activation id of 32');
  const completion = JSON.parse(fixture('ack-completion.json')) as Mutable;
  completion['isSystemError'] = 'no';
  rejects(t, () => parseAcknowledgement(JSON.stringify(completion)), 'AcknowledgementMessage(completion).isSystemError: expected a boolean');
});

t.test('instance ids and pings', async (t) => {
  const inv = JSON.parse(fixture('invoker-instance-id.json')) as Mutable;
  rejects(t, () => parseInvokerInstanceId(JSON.stringify({ ...inv, instanceType: 'controller' })), 'InvokerInstanceId.instanceType: expected "invoker"');
  rejects(t, () => parseInvokerInstanceId(JSON.stringify({ ...inv, instance: -1 })), 'InvokerInstanceId.instance: expected a non-negative integer');
  rejects(t, () => parseInvokerInstanceId(JSON.stringify({ ...inv, userMemory: '2 TB' })), 'InvokerInstanceId.userMemory: expected a size');
  rejects(t, () => parseInvokerInstanceId(JSON.stringify({ ...inv, userMemory: 2147483648 })), 'InvokerInstanceId.userMemory: expected a byte size string');
  rejects(t, () => parseInvokerInstanceId(JSON.stringify({ ...inv, userMemory: '99999999999999999999 G' })), 'InvokerInstanceId.userMemory: size too large');
  rejects(t, () => parseInvokerInstanceId(JSON.stringify({ ...inv, tags: [1] })), 'InvokerInstanceId.tags[0]: expected a string');
  rejects(t, () => parseInvokerInstanceId(JSON.stringify({ ...inv, uniqueName: 5 })), 'InvokerInstanceId.uniqueName: expected a string');
  rejects(t, () => parsePingMessage(JSON.stringify({ instance: inv })), 'PingMessage.name: missing (expected an object)');
  rejects(t, () => parsePingMessage(JSON.stringify({ name: inv, isEnabled: 1 })), 'PingMessage.isEnabled: expected a boolean');
  const minimal = parseInvokerInstanceId('{"instance":1,"userMemory":"1 G","instanceType":"invoker"}');
  t.same(minimal, { instance: 1, userMemory: { bytes: 1073741824, text: '1 G' }, tags: [], dedicatedNamespaces: [] }, 'older invokers without tags');
});

t.test('activations', async (t) => {
  const a = JSON.parse(fixture('whisk-activation.json')) as Mutable;
  rejects(t, () => parseWhiskActivation(JSON.stringify({ ...a, logs: 'x' })), 'WhiskActivation.logs: expected an array of strings');
  rejects(t, () => parseWhiskActivation(JSON.stringify({ ...a, annotations: [{ value: 1 }] })), 'WhiskActivation.annotations[0].key: expected a string');
  rejects(t, () => parseWhiskActivation(JSON.stringify({ ...a, annotations: {} })), 'WhiskActivation.annotations: expected an array');
  rejects(t, () => parseWhiskActivation(JSON.stringify({ ...a, start: '2024-05-31' })), 'WhiskActivation.start: expected an integer');
  rejects(t, () => parseWhiskActivation(JSON.stringify({ ...a, response: { result: {} } })), 'WhiskActivation.response.statusCode: missing');
  rejects(t, () => parseWhiskActivation(JSON.stringify({ ...a, response: { statusCode: 0, size: -1 } })), 'WhiskActivation.response.size: expected a non-negative integer');
});
