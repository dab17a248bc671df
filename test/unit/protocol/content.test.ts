/**
 * ActivationMessage `content`: any JSON value, and the exact text of every
 * parameter from the message to the /run and /init bodies.
 *
 * Upstream rules these follow (apache/openwhisk):
 * - Message.scala: `content: Option[JsValue]`, read by spray-json, whose
 *   option reader turns `null` into None; numbers are BigDecimal.
 * - ContainerProxy.scala partitionArguments: None -> `{}`, an array is the
 *   /run value as it is (no init arguments), an object is split by initArgs.
 * - WhiskAction.scala containerInitializer: env values are strings; a
 *   JsNumber becomes `v.toString` (Java BigDecimal.toString), an object or
 *   array `compactPrint` (keys sorted: spray-json reads objects into a TreeMap).
 */
import t from 'tap';
import {
  bigDecimalString,
  initBody,
  parseActivationMessage,
  RawJson,
  rawEnvString,
  runBody,
  serializeActivationMessage,
  upstreamCompact,
  type ActivationMessage,
  type RuntimeAction,
} from '../../../protocol/index.js';
import { fixture } from '../../fixtures/protocol/codecs.js';

const DEADLINE = 1717171777200;
const action: RuntimeAction = { name: 'hello', binary: false, code: 'function main(p){return p}', annotations: [] };
const TAIL =
  ',"api_key":"23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZ","namespace":"guest","action_name":"/guest/hello",' +
  '"action_version":"0.0.1","activation_id":"a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c","transaction_id":"kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa",' +
  '"deadline":"1717171777200"}';

/** The spec example message with `content` (and initArgs) replaced by the given texts. */
function message(content: string, initArgs = '[]'): ActivationMessage {
  return parseActivationMessage(
    fixture('activation-message.json').replace('"content":{"name":"World"},"initArgs":[]', `"content":${content},"initArgs":${initArgs}`),
  );
}

function run(msg: ActivationMessage): string {
  return runBody({ msg, content: msg.content, action, deadline: DEADLINE });
}

function initEnv(msg: ActivationMessage): Record<string, string> {
  const body = JSON.parse(initBody({ msg, content: msg.content, action, deadline: DEADLINE })) as { value: { env: Record<string, string> } };
  return Object.fromEntries(Object.entries(body.value.env).filter(([k]) => !k.startsWith('__OW_')));
}

const NUMBERS = ['12345678901234567890', '9007199254740993', '0.12345678901234567890123', '1E+400', '-1E-400', '1.0', '1E+21'];

t.test('array content is accepted and is the /run value, byte for byte', async (t) => {
  const text = `[${NUMBERS.join(',')},"s",null,{"b":1,"a":2}]`;
  const msg = message(text, '["a"]');
  t.equal(msg.content?.text, text);
  t.equal(msg.content?.type, 'array');
  t.equal(run(msg), `{"value":${text}${TAIL}`);
  t.same(initEnv(msg), {}, 'initArgs do not apply to an array');
  t.equal(serializeActivationMessage(msg), fixture('activation-message.json').replace('{"name":"World"},"initArgs":[]', `${text},"initArgs":["a"]`));
  const fromFixture = parseActivationMessage(fixture('activation-message-array-content.json'));
  t.equal(fromFixture.content?.type, 'array');
});

t.test('null content means none: /run gets {}', async (t) => {
  const msg = message('null');
  t.equal(msg.content, undefined);
  t.equal(run(msg), `{"value":{}${TAIL}`);
  t.notMatch(serializeActivationMessage(msg), '"content"', 'written back as absent, as upstream writes None');
});

t.test('other JSON values are passed on unchanged', async (t) => {
  for (const text of ['"text"', '42', '1E+400', 'true', '{}', '[]', '{ "spaced" : [ 1 , 2 ] }']) {
    const msg = message(text);
    t.equal(msg.content?.text, text);
    t.equal(run(msg), `{"value":${text}${TAIL}`, text);
  }
});

t.test('numbers reach /run exactly as sent', async (t) => {
  for (const n of NUMBERS) {
    const text = `{"n":${n},"list":[${n}],"deep":{"x":${n}}}`;
    t.equal(run(message(text)), `{"value":${text}${TAIL}`, n);
    // With an init argument the object is rebuilt from its members' texts: still exact.
    t.equal(run(message(`{"i":0,"n":${n}}`, '["i"]')), `{"value":{"n":${n}}${TAIL}`, `${n}, split`);
  }
  const msg = parseActivationMessage(fixture('activation-message-numbers.json'));
  t.equal(
    run(msg).slice(0, run(msg).indexOf(',"api_key"')),
    '{"value":{"big":12345678901234567890,"odd":9007199254740993,"fine":0.12345678901234567890123,"huge":1E+400,"one":1.0,"sci":1E+21}',
  );
});

t.test('/init env values are upstream strings: BigDecimal.toString, compactPrint', async (t) => {
  const msg = parseActivationMessage(fixture('activation-message-numbers.json'));
  t.same(initEnv(msg), { INIT_ONE: '1.0', INIT_SCI: '1E+21', INIT_OBJ: '{"a":[1E+400],"z":1.50}' });
  const args = NUMBERS.map((n, i) => `"n${i}":${n}`).join(',');
  const env = initEnv(message(`{${args},"s":"a\\u00e9","z":null,"t":true,"o":{"b":[1e2, "x"],"a":{}}}`, JSON.stringify([...NUMBERS.map((_, i) => `n${i}`), 's', 'z', 't', 'o'])));
  t.same(env, {
    n0: '12345678901234567890',
    n1: '9007199254740993',
    n2: '0.12345678901234567890123',
    n3: '1E+400',
    n4: '-1E-400',
    n5: '1.0',
    n6: '1E+21',
    s: 'aé',
    z: '',
    t: 'true',
    o: '{"a":{},"b":[1E+2,"x"]}',
  });
});

t.test('Java BigDecimal.toString', async (t) => {
  // Expected values are what `new java.math.BigDecimal(s).toString()` prints.
  const cases: [string, string][] = [
    ['0', '0'],
    ['-0', '0'],
    ['-0.0', '0.0'],
    ['1.0', '1.0'],
    ['1.50', '1.50'],
    ['100', '100'],
    ['1e2', '1E+2'],
    ['1E+21', '1E+21'],
    ['1e21', '1E+21'],
    ['1.5e3', '1.5E+3'],
    ['1234.5e-2', '12.345'],
    ['0.000001', '0.000001'],
    ['0.0000001', '1E-7'],
    ['0.00001234', '0.00001234'],
    ['0.0000000', '0E-7'],
    ['0E+3', '0E+3'],
    ['-12.5E-10', '-1.25E-9'],
    ['12345678901234567890', '12345678901234567890'],
    ['0.12345678901234567890123', '0.12345678901234567890123'],
    ['1E+400', '1E+400'],
    ['007', '7'],
  ];
  for (const [input, expected] of cases) t.equal(bigDecimalString(input), expected, input);
});

t.test('upstream compactPrint of raw values', async (t) => {
  t.equal(upstreamCompact('{ "b" : 1 , "a" : [ 2 , { "d" : null , "c" : "\\u0041\\n" } ] }'), '{"a":[2,{"c":"A\\n","d":null}],"b":1}');
  t.equal(upstreamCompact('{"a":1,"a":2}'), '{"a":2}', 'the last of repeated keys');
  t.equal(upstreamCompact('{"é":1,"Z":2,"a":3,"10":4,"9":5}'), '{"10":4,"9":5,"Z":2,"a":3,"é":1}', 'sorted as strings');
  t.equal(rawEnvString('"\\ud83d\\ude00"'), '😀');
});

t.test('RawJson', async (t) => {
  const v = RawJson.parse(' {"a":1,"b":[2]} ');
  t.equal(v.text, '{"a":1,"b":[2]}');
  t.same(v.members(), [
    { key: 'a', keyText: '"a"', text: '1' },
    { key: 'b', keyText: '"b"', text: '[2]' },
  ]);
  t.equal(RawJson.parse('[1]').members(), undefined);
  t.same(RawJson.parse('{"\\u0061":1}').members(), [{ key: 'a', keyText: '"\\u0061"', text: '1' }]);
  t.throws(() => RawJson.parse('{'), SyntaxError);
  t.same(JSON.parse(JSON.stringify({ c: RawJson.of({ x: [1] }) })), { c: { x: [1] } }, 'JSON.stringify writes the value');
  // An escaped "content" key at the top level is the content, as JSON.parse reads it; a nested one is not.
  const text = fixture('activation-message.json').replace('"content":{"name":"World"}', '"content":{"content":1},"\\u0063ontent":[7]');
  t.equal(parseActivationMessage(text).content?.text, '[7]');
});
