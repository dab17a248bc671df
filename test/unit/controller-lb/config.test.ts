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
    activationsDb: 'activations',
    subjectsDb: 'subjects',
    actionLimits: { memoryMb: { min: 128, max: 512, std: 256 }, timeoutMs: { min: 100, max: 300_000, std: 60_000 }, inlineCodeMaxBytes: 16384 },
    payloadMaxBytes: 1048576,
    invocationsPerMinute: 0,
    requestTimeoutMs: 30_000,
    connectionTimeoutMs: 90_000,
  });
  t.equal(config.runtimes.resolveKind('nodejs:default').kind, 'nodejs:20');
});

t.test('API limits and runtimes', async (t) => {
  const config = loadConfig({
    INVOKER_URLS: 'http://127.0.0.1:8080',
    CONTROLLER_LIMIT_MEMORY_MAX_MB: '2048',
    CONTROLLER_LIMIT_CONCURRENCY_MAX_COUNT: '100',
    RUNTIMES_MANIFEST: JSON.stringify({ runtimes: { python: [{ kind: 'python:3', default: true, image: { name: 'py' } }] } }),
  });
  t.equal(config.actionLimits.memoryMb.max, 2048);
  t.equal(config.actionLimits.concurrency.max, 100);
  t.same([...config.runtimes.kinds.keys()], ['python:3']);
  t.throws(() => loadConfig({ INVOKER_URLS: 'http://a:1', CONTROLLER_LIMIT_MEMORY_MIN_MB: '1024' }), /CONTROLLER_LIMIT_MEMORY_MIN\/STD\/MAX_MB/);
  t.throws(() => loadConfig({ INVOKER_URLS: 'http://a:1', RUNTIMES_MANIFEST: '{' }), /RUNTIMES_MANIFEST/);
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
