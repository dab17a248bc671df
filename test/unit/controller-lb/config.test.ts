import t from 'tap';
import { ControllerConfigError, describeConfig, loadConfig } from '../../../controller-lb/config.js';

t.test('defaults with one invoker URL', async (t) => {
  const config = loadConfig({ INVOKER_URLS: 'http://127.0.0.1:8080' });
  t.match(config, {
    controllerId: '0',
    controllerCount: 1,
    port: 3233,
    invokerUrls: ['http://127.0.0.1:8080'],
    invokerUserMemoryMb: 2048,
    kafkaBrokers: undefined,
    couchdbUrl: 'http://127.0.0.1:5984',
    whisksDb: 'whisks',
    invokeToken: undefined,
    identity: { subject: 'guest', namespace: { name: 'guest' } },
  });
});

t.test('lists, numbers and secrets', async (t) => {
  const config = loadConfig({
    CONTROLLER_ID: 'c1',
    CONTROLLER_PORT: '0',
    INVOKER_URLS: ' http://a:8080 , https://b:8443/base ',
    INVOKER_USER_MEMORY_MB: '4096',
    KAFKA_BROKERS: 'k1:9092,k2:9092',
    CONTROLLER_INVOKE_TOKEN: 's3cret',
  });
  t.same(config.invokerUrls, ['http://a:8080', 'https://b:8443/base']);
  t.same(config.kafkaBrokers, ['k1:9092', 'k2:9092']);
  t.equal(config.invokerUserMemoryMb, 4096);
  const described = JSON.stringify(describeConfig(config));
  t.notMatch(described, /s3cret/, 'the token is not logged');
  t.notMatch(described, /123zO3xZ/, 'nor the auth key');
  t.match(described, /"invokeToken":"set"/);
});

t.test('every problem is reported, naming its variable', async (t) => {
  let error: unknown;
  try {
    loadConfig({ CONTROLLER_ID: 'no spaces', CONTROLLER_PORT: '70000', INVOKER_USER_MEMORY_MB: 'lots', INVOKER_TLS_CERT_FILE: '/nonexistent.pem' });
  } catch (e) {
    error = e;
  }
  t.type(error, ControllerConfigError);
  const problems = (error as ControllerConfigError).problems.join('\n');
  for (const variable of ['CONTROLLER_ID', 'CONTROLLER_PORT', 'INVOKER_USER_MEMORY_MB', 'INVOKER_URLS', 'INVOKER_TLS_CERT_FILE']) {
    t.match(problems, new RegExp(`^${variable}:`, 'm'), variable);
  }
  t.throws(() => loadConfig({ INVOKER_URLS: 'ftp://x' }), /INVOKER_URLS: entry 0 \(invoker0\) is not an http\(s\) URL/);
  t.doesNotThrow(() => loadConfig({ KAFKA_BROKERS: '127.0.0.1:9092' }), 'Kafka alone is enough');
});
