import t from 'tap';
import { ControllerConfigError, controllerVariables, describeConfig, expandInvokerUrl, invokerUrlFor, loadConfig } from '../../../controller-lb/config.js';

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

t.test('INVOKER_URL_TEMPLATE: one URL per invoker id, with or without a count', async (t) => {
  const template = 'http://invoker-{id}.invoker.openwhisk.svc.cluster.local:8080';
  const config = loadConfig({ INVOKER_URL_TEMPLATE: template, INVOKER_COUNT: '3' });
  t.same(config.invokerUrls, [
    'http://invoker-0.invoker.openwhisk.svc.cluster.local:8080',
    'http://invoker-1.invoker.openwhisk.svc.cluster.local:8080',
    'http://invoker-2.invoker.openwhisk.svc.cluster.local:8080',
  ]);
  // An invoker beyond the count (a scaled-up StatefulSet, known from its pings) has a URL too.
  t.equal(invokerUrlFor(config, 7), 'http://invoker-7.invoker.openwhisk.svc.cluster.local:8080');
  t.equal(expandInvokerUrl('https://h/{id}/x{id}', 12), 'https://h/12/x12');

  const withKafka = loadConfig({ INVOKER_URL_TEMPLATE: template, KAFKA_BROKERS: 'k:9092' });
  t.same(withKafka.invokerUrls, [], 'with Kafka the count may be left out: ids come from the pings');
  t.equal(invokerUrlFor(withKafka, 0), 'http://invoker-0.invoker.openwhisk.svc.cluster.local:8080');

  const literal = loadConfig({ INVOKER_URLS: 'http://a:8080' });
  t.equal(invokerUrlFor(literal, 0), 'http://a:8080');
  t.equal(invokerUrlFor(literal, 1), undefined, 'without a template an unlisted id has no URL (Kafka only)');
});

t.test('INVOKER_URL_TEMPLATE is validated at startup', async (t) => {
  const problemsOf = (env: NodeJS.ProcessEnv): string => {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ControllerConfigError) return error.problems.join('\n');
      throw error;
    }
    return '';
  };
  t.match(problemsOf({ INVOKER_URL_TEMPLATE: 'http://invoker.local:8080', INVOKER_COUNT: '1' }), /INVOKER_URL_TEMPLATE: must contain \{id\}/);
  t.match(problemsOf({ INVOKER_URL_TEMPLATE: 'ftp://invoker-{id}', INVOKER_COUNT: '1' }), /INVOKER_URL_TEMPLATE: is not an http\(s\) URL/);
  t.match(problemsOf({ INVOKER_URL_TEMPLATE: 'http://i-{id}', INVOKER_URLS: 'http://a' , INVOKER_COUNT: '1' }), /set it or INVOKER_URLS, not both/);
  t.match(problemsOf({ INVOKER_URL_TEMPLATE: 'http://i-{id}' }), /INVOKER_COUNT: required with INVOKER_URL_TEMPLATE without KAFKA_BROKERS/);
  t.match(problemsOf({ INVOKER_URL_TEMPLATE: 'http://i-{id}', INVOKER_COUNT: '0' }), /INVOKER_COUNT: expected an integer from 1/);
  t.match(problemsOf({ INVOKER_URLS: 'http://a', INVOKER_COUNT: '2' }), /INVOKER_COUNT: only meaningful with INVOKER_URL_TEMPLATE/);
  t.equal(problemsOf({ INVOKER_URL_TEMPLATE: 'http://i-{id}', INVOKER_COUNT: '2' }), '');
});

t.test('controllerVariables lists what loadConfig reads', async (t) => {
  const variables = controllerVariables();
  for (const name of ['INVOKER_URLS', 'INVOKER_URL_TEMPLATE', 'INVOKER_COUNT', 'KAFKA_BROKERS', 'CONTROLLER_INVOKE_TOKEN', 'CONTROLLER_PORT', 'INVOKER_TLS_CA_FILE']) {
    t.ok(variables.includes(name), name);
  }
  t.notOk(variables.includes('INVOKER_INVOKE_TOKEN'), 'the invoker-side name is not read by the controller');
});
