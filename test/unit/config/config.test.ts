import t from 'tap';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../../invoker/config/env-schema.js';
import { deriveInvokerId, INVOKER_SETTINGS, loadInvokerConfig, ordinalFromPodName } from '../../../invoker/config/config.js';
import { describeSettings } from '../../../invoker/config/env-schema.js';

t.test('defaults apply when only the invoker id is given', async (t) => {
  const config = loadInvokerConfig({ env: { INVOKER_ID: '3' } });
  t.equal(config.invokerId, 3);
  t.equal(config.userMemoryMb, 2048);
  t.equal(config.httpPort, 8080);
  t.same(config.kafkaBrokers, [], 'no brokers: HTTP only');
  t.equal(config.tls, undefined);
  t.equal(config.payloadLimitBytes, 1_048_576);
});

t.test('the invoker id comes from the StatefulSet pod name (downward API metadata.name)', async (t) => {
  t.equal(ordinalFromPodName('invoker-12'), 12);
  t.equal(ordinalFromPodName('invoker'), undefined);
  t.equal(ordinalFromPodName('invoker-7x9kq'), undefined, 'a DaemonSet pod name has no ordinal');
  t.equal(loadInvokerConfig({ env: { INVOKER_POD_NAME: 'owdev-invoker-2' } }).invokerId, 2);
});

t.test('the pod-index label (INVOKER_ID) and the pod name, as the StatefulSet overlay sets them', async (t) => {
  // Kubernetes >= 1.28 sets apps.kubernetes.io/pod-index; the downward API
  // passes it as INVOKER_ID, and metadata.name as INVOKER_POD_NAME.
  t.equal(loadInvokerConfig({ env: { INVOKER_ID: '4', INVOKER_POD_NAME: 'invoker-4' } }).invokerId, 4);
  // Without the label (older clusters) the env var is empty: the pod name decides.
  t.equal(loadInvokerConfig({ env: { INVOKER_ID: '', INVOKER_POD_NAME: 'invoker-4' } }).invokerId, 4);
  t.throws(
    () => loadInvokerConfig({ env: { INVOKER_ID: '1', INVOKER_POD_NAME: 'invoker-4' } }),
    /INVOKER_ID 1 and INVOKER_POD_NAME "invoker-4" \(ordinal 4\) disagree/,
  );
  t.throws(() => loadInvokerConfig({ env: { INVOKER_POD_NAME: 'invoker-7x9kq' } }), /INVOKER_POD_NAME "invoker-7x9kq" does not end in -<ordinal>/);
});

t.test('with hostNetwork the hostname is the node name, and it no longer decides the id', async (t) => {
  // Before, an unset INVOKER_ID was taken from the hostname: on a node named
  // worker-2, pods invoker-0 and invoker-1 both claimed id 2. The hostname is
  // not read any more; the pod name wins.
  const previousHostname = process.env['HOSTNAME'];
  process.env['HOSTNAME'] = 'worker-2';
  t.teardown(() => {
    if (previousHostname === undefined) delete process.env['HOSTNAME'];
    else process.env['HOSTNAME'] = previousHostname;
  });
  const ids = ['invoker-0', 'invoker-1'].map((pod) => loadInvokerConfig({ env: { HOSTNAME: 'worker-2', INVOKER_POD_NAME: pod } }).invokerId);
  t.same(ids, [0, 1], 'distinct ids from the pod names, not 2 from the node');
  t.throws(() => loadInvokerConfig({ env: { HOSTNAME: 'worker-2' } }), /the invoker id is unset: set INVOKER_ID, or INVOKER_POD_NAME/, 'no silent fallback');
});

t.test('a DaemonSet pod finds its id by node name (downward API spec.nodeName)', async (t) => {
  const table = JSON.stringify({ 'worker-a': 0, 'worker-b': 1, 'worker-7': 2 });
  t.equal(loadInvokerConfig({ env: { INVOKER_NODE_NAME: 'worker-b', INVOKER_ID_BY_NODE: table } }).invokerId, 1);
  t.equal(loadInvokerConfig({ env: { INVOKER_NODE_NAME: 'worker-7', INVOKER_ID_BY_NODE: table } }).invokerId, 2, 'the node name suffix means nothing');
  t.same(deriveInvokerId({ invokerId: undefined, podName: undefined, nodeName: 'worker-c', idByNode: table }), {
    problem: 'INVOKER_ID_BY_NODE has no id for node "worker-c" (add the node to it)',
  });
  t.same(deriveInvokerId({ invokerId: undefined, podName: undefined, nodeName: 'toString', idByNode: table }), {
    problem: 'INVOKER_ID_BY_NODE has no id for node "toString" (add the node to it)',
  });
  t.match(deriveInvokerId({ invokerId: undefined, podName: undefined, nodeName: 'a', idByNode: '{"a":0,"b":0}' }), {
    problem: /nodes "a" and "b" both have id 0/,
  });
  t.match(deriveInvokerId({ invokerId: undefined, podName: undefined, nodeName: 'a', idByNode: '{"a":-1}' }), { problem: /whole number >= 0/ });
  t.match(deriveInvokerId({ invokerId: undefined, podName: undefined, nodeName: 'a', idByNode: '[0]' }), { problem: /must be a JSON object/ });
  t.match(deriveInvokerId({ invokerId: undefined, podName: undefined, nodeName: 'a', idByNode: '{' }), { problem: /is not JSON/ });
  t.match(deriveInvokerId({ invokerId: undefined, podName: undefined, nodeName: 'a', idByNode: undefined }), { problem: /must be set together/ });
});

t.test('every bad value is reported at once, naming its variable', async (t) => {
  const error = t.throws(() =>
    loadInvokerConfig({
      env: { INVOKER_USER_MEMORY_MB: 'lots', INVOKER_HTTP_PORT: '70000', LOG_LEVEL: 'loud' },
    }),
  ) as ConfigError;
  t.type(error, ConfigError);
  t.equal(error.problems.length, 3);
  t.match(error.message, /INVOKER_USER_MEMORY_MB must be a whole number, got "lots"/);
  t.match(error.message, /INVOKER_HTTP_PORT must be at most 65535, got 70000/);
  t.match(error.message, /LOG_LEVEL must be one of/);
});

t.test('settings that only make sense together are checked together', async (t) => {
  const error = t.throws(() =>
    loadInvokerConfig({ env: { INVOKER_TLS_CERT_FILE: '/x', INVOKER_ADMIN_USER: 'admin' } }),
  ) as ConfigError;
  t.equal(error.problems.length, 3);
  t.match(error.message, /INVOKER_TLS_CERT_FILE and INVOKER_TLS_KEY_FILE must be set together/);
  t.match(error.message, /INVOKER_ADMIN_USER and INVOKER_ADMIN_PASSWORD must be set together/);
  t.match(error.message, /the invoker id is unset/);
});

t.test('unreadable TLS files are reported with the variable and path', async (t) => {
  t.throws(
    () =>
      loadInvokerConfig({
        env: { INVOKER_ID: '0', INVOKER_TLS_CERT_FILE: '/nope/cert.pem', INVOKER_TLS_KEY_FILE: '/nope/key.pem' },
        readFile: (path) => {
          throw new Error(`ENOENT: ${path}`);
        },
      }),
    /INVOKER_TLS_CERT_FILE: cannot read \/nope\/cert.pem/,
  );
});

t.test('a malformed locked-args key map is reported without its value', async (t) => {
  const secret = '{"k1": "c2VjcmV0IGtleSBtYXRlcmlhbA=="';
  const error = t.throws(() => loadInvokerConfig({ env: { INVOKER_ID: '0', INVOKER_LOCKED_ARGS_KEYS: secret } })) as Error;
  t.match(error.message, /INVOKER_LOCKED_ARGS_KEYS must be a JSON object/);
  t.notMatch(error.message, /c2VjcmV0/);
});

t.test('secrets are shown only as set/unset', async (t) => {
  const shown = describeSettings(INVOKER_SETTINGS, { INVOKER_ADMIN_PASSWORD: 'hunter2', INVOKER_INVOKE_TOKEN: 'tok' });
  t.equal(shown.INVOKER_ADMIN_PASSWORD, '[set]');
  t.equal(shown.INVOKER_INVOKE_TOKEN, '[set]');
  t.equal(shown.INVOKER_LOCKED_ARGS_KEYS, '[unset]');
  t.notMatch(JSON.stringify(shown), /hunter2|"tok"/);
});

t.test('the README documents every setting', async (t) => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  for (const setting of Object.values(INVOKER_SETTINGS)) {
    t.ok(readme.includes(`\`${setting.variable}\``), `${setting.variable} is in the README`);
  }
});
