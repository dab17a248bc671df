import t from 'tap';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../../invoker/config/env-schema.js';
import { INVOKER_SETTINGS, loadInvokerConfig, ordinalFromHostname } from '../../../invoker/config/config.js';
import { describeSettings } from '../../../invoker/config/env-schema.js';

t.test('defaults apply when only the invoker id is given', async (t) => {
  const config = loadInvokerConfig({ env: { INVOKER_ID: '3' }, hostname: 'laptop' });
  t.equal(config.invokerId, 3);
  t.equal(config.userMemoryMb, 2048);
  t.equal(config.httpPort, 8080);
  t.same(config.kafkaBrokers, [], 'no brokers: HTTP only');
  t.equal(config.tls, undefined);
  t.equal(config.payloadLimitBytes, 1_048_576);
});

t.test('the invoker id comes from a StatefulSet hostname', async (t) => {
  t.equal(ordinalFromHostname('invoker-12'), 12);
  t.equal(ordinalFromHostname('invoker'), undefined);
  t.equal(loadInvokerConfig({ env: {}, hostname: 'owdev-invoker-2' }).invokerId, 2);
});

t.test('every bad value is reported at once, naming its variable', async (t) => {
  const error = t.throws(() =>
    loadInvokerConfig({
      env: { INVOKER_USER_MEMORY_MB: 'lots', INVOKER_HTTP_PORT: '70000', LOG_LEVEL: 'loud' },
      hostname: 'laptop',
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
    loadInvokerConfig({ env: { INVOKER_TLS_CERT_FILE: '/x', INVOKER_ADMIN_USER: 'admin' }, hostname: 'laptop' }),
  ) as ConfigError;
  t.equal(error.problems.length, 3);
  t.match(error.message, /INVOKER_TLS_CERT_FILE and INVOKER_TLS_KEY_FILE must be set together/);
  t.match(error.message, /INVOKER_ADMIN_USER and INVOKER_ADMIN_PASSWORD must be set together/);
  t.match(error.message, /INVOKER_ID is unset and the hostname "laptop"/);
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
