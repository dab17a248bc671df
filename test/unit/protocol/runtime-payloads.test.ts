import t from 'tap';
import {
  envString,
  initBody,
  parseActivationMessage,
  providesApiKey,
  runBody,
  type ActivationMessage,
  type RuntimeAction,
} from '../../../protocol/index.js';
import { fixture } from '../../fixtures/protocol/codecs.js';

const DEADLINE = 1717171777200;
const action: RuntimeAction = {
  name: 'hello',
  binary: false,
  code: 'function main(p){return {payload: "Hello, " + p.name + "!"}}',
  annotations: [],
};

function message(content: string, initArgs = '[]'): ActivationMessage {
  return parseActivationMessage(
    fixture('activation-message.json').replace('"content":{"name":"World"},"initArgs":[]', `"content":${content},"initArgs":${initArgs}`),
  );
}

t.test('/run body matches the spec example', async (t) => {
  const msg = message('{"name":"World"}');
  const body = runBody({ msg, content: msg.content, action, deadline: 1717171777210 });
  t.equal(
    body,
    '{"value":{"name":"World"},"api_key":"23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZ","namespace":"guest",' +
      '"action_name":"/guest/hello","action_version":"0.0.1","activation_id":"a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c",' +
      '"transaction_id":"kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa","deadline":"1717171777210"}',
  );
});

t.test('/init body matches the spec example', async (t) => {
  const msg = message('{"MY_INIT_PARAM":"v","name":"World"}', '["MY_INIT_PARAM"]');
  const body = initBody({ msg, content: msg.content, action, deadline: DEADLINE });
  t.equal(
    body,
    '{"value":{"name":"hello","binary":false,"main":"main","code":"function main(p){return {payload: \\"Hello, \\" + p.name + \\"!\\"}}",' +
      '"env":{"MY_INIT_PARAM":"v","__OW_API_KEY":"23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZ","__OW_NAMESPACE":"guest",' +
      '"__OW_ACTION_NAME":"/guest/hello","__OW_ACTION_VERSION":"0.0.1","__OW_ACTIVATION_ID":"a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c",' +
      '"__OW_TRANSACTION_ID":"kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa","__OW_DEADLINE":"1717171777200"}}}',
  );
  // ...and init arguments do not reach /run.
  const run = JSON.parse(runBody({ msg, content: msg.content, action, deadline: DEADLINE })) as { value: unknown };
  t.same(run.value, { name: 'World' });
});

t.test('env values are strings', async (t) => {
  t.equal(envString('s'), 's');
  t.equal(envString(null), '');
  t.equal(envString(3), '3');
  t.equal(envString(true), 'true');
  t.equal(envString({ a: [1, 'x'] }), '{"a":[1,"x"]}');
  const msg = message('{"n":1.5,"o":{"k":null},"z":null,"b":false,"__OW_NAMESPACE":"spoofed"}', '["n","o","z","b","__OW_NAMESPACE"]');
  const init = JSON.parse(initBody({ msg, content: msg.content, action, deadline: DEADLINE })) as { value: { env: Record<string, string> } };
  const env = init.value.env;
  t.same([env['n'], env['o'], env['z'], env['b']], ['1.5', '{"k":null}', '', 'false']);
  t.equal(env['__OW_NAMESPACE'], 'guest', 'the platform value wins over an init argument of the same name');
  t.ok(Object.keys(env).indexOf('__OW_NAMESPACE') > Object.keys(env).indexOf('b'), 'and it sits with the other __OW_ keys');
  const run = JSON.parse(runBody({ msg, content: msg.content, action, deadline: DEADLINE })) as { value: unknown };
  t.same(run.value, {}, 'all parameters were init arguments');
});

t.test('provide-api-key', async (t) => {
  const msg = message('{}');
  t.ok(providesApiKey([]), 'absent means provide');
  for (const [value, expected] of [[true, true], [false, false], ['', false], [0, false], [null, false], ['yes', true]] as const) {
    const a = { ...action, annotations: [{ key: 'provide-api-key', value }] };
    t.equal(providesApiKey(a.annotations), expected, `annotation ${JSON.stringify(value)}`);
    const run = JSON.parse(runBody({ msg, content: msg.content, action: a, deadline: DEADLINE })) as Record<string, unknown>;
    t.equal('api_key' in run, expected, `/run api_key with ${JSON.stringify(value)}`);
    const init = JSON.parse(initBody({ msg, content: msg.content, action: a, deadline: DEADLINE })) as { value: { env: Record<string, string> } };
    t.equal('__OW_API_KEY' in init.value.env, expected, `/init __OW_API_KEY with ${JSON.stringify(value)}`);
  }
});

t.test('init body details', async (t) => {
  const msg = parseActivationMessage(fixture('activation-message-health.json'));
  t.equal(msg.content, undefined);
  const blackbox = JSON.parse(
    initBody({ msg, content: undefined, action: { name: 'img', binary: true, code: null, main: 'run', annotations: [] }, deadline: DEADLINE }),
  ) as { value: Record<string, unknown> };
  t.same(Object.keys(blackbox.value), ['name', 'binary', 'main', 'env'], 'code left out when null');
  t.equal(blackbox.value['main'], 'run');
  t.equal(blackbox.value['binary'], true);
  const run = JSON.parse(runBody({ msg, content: undefined, action, deadline: DEADLINE })) as Record<string, unknown>;
  t.same(run['value'], {}, 'no content -> empty parameters');
  t.equal(run['namespace'], 'whisk.system');
  t.equal(run['action_name'], '/whisk.system/invokerHealthTestAction0');

  const noVersion = parseActivationMessage(fixture('activation-message-no-version-limits.json'));
  const r1 = JSON.parse(runBody({ msg: noVersion, content: noVersion.content, action, deadline: DEADLINE })) as Record<string, unknown>;
  t.equal(r1['action_version'], null, 'no version anywhere -> null');
  const r2 = JSON.parse(runBody({ msg: noVersion, content: noVersion.content, action: { ...action, version: '1.2.3' }, deadline: DEADLINE })) as Record<string, unknown>;
  t.equal(r2['action_version'], '1.2.3', "falls back to the action's version");
  const i1 = JSON.parse(initBody({ msg: noVersion, content: noVersion.content, action, deadline: DEADLINE })) as { value: { env: Record<string, string> } };
  t.equal(i1.value.env['__OW_ACTION_VERSION'], '');
});

t.test('authkey fields are passed on, without clobbering the fixed fields', async (t) => {
  const msg = message('{"a":1}');
  msg.user.authkey = { api_key: 'k', namespace: 'evil', extra: 5 };
  const body = runBody({ msg, content: msg.content, action, deadline: DEADLINE });
  const run = JSON.parse(body) as Record<string, unknown>;
  t.equal(run['namespace'], 'guest');
  t.equal(run['extra'], 5);
  t.equal(body.split('"namespace"').length, 2, 'no duplicate key');
  const init = JSON.parse(initBody({ msg, content: msg.content, action, deadline: DEADLINE })) as { value: { env: Record<string, string> } };
  t.equal(init.value.env['__OW_EXTRA'], '5');
  t.equal(init.value.env['__OW_NAMESPACE'], 'guest');
});

t.test('init arguments and odd keys', async (t) => {
  const msg = message('{"__proto__":{"p":1},"i":"x","r":2}', '["i"]');
  const run = runBody({ msg, content: msg.content, action, deadline: DEADLINE });
  t.ok(run.startsWith('{"value":{"__proto__":{"p":1},"r":2},'));
  const init = JSON.parse(initBody({ msg, content: msg.content, action, deadline: DEADLINE })) as { value: { env: Record<string, string> } };
  t.same(Object.keys(init.value.env).filter((k) => !k.startsWith('__OW_')), ['i']);
});
