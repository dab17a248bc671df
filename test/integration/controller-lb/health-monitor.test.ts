/**
 * Invoker health from real pings on a real broker (a topic of our own), and
 * from readiness probes without Kafka.
 */
import t from 'tap';
import { logLevel } from 'kafkajs';
import { serializePingMessage } from '../../../protocol/index.js';
import { startKafkaHealthMonitor, startStaticHealthMonitor } from '../../../controller-lb/health-monitor.js';
import { InvokerPool } from '../../../controller-lb/invoker-state.js';
import { testEnvironment, uniqueName } from '../../helpers/env.js';
import { capturingLogger, invokerId, sleep, until } from '../../unit/controller-lb/fixtures.js';
import { refusedUrl, startFakeInvoker } from './fake-invoker.js';
import { testKafka } from '../../helpers/kafka.js';

const env = testEnvironment();

t.test('Kafka pings: up on pings, down after the offline window, down when disabled', async (t) => {
  const kafka = testKafka({ brokers: env.kafkaBrokers, clientId: 'controller-lb-health-test', logLevel: logLevel.NOTHING });
  const topic = uniqueName('health-lbtest');
  const controllerId = uniqueName('lbtest').replace(/[^a-zA-Z0-9._-]/g, '-');
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.deleteGroups([`health${controllerId}`]).catch(() => undefined);
    await admin.disconnect();
  });

  const { logger, lines } = capturingLogger();
  const offlineAfterMs = 1_500;
  const pool = new InvokerPool({ controllerCount: 2, health: { offlineAfterMs } });
  const monitor = await startKafkaHealthMonitor({ kafka, controller: { asString: controllerId }, pool, logger, topic, fromBeginning: true, observeIntervalMs: 100 });
  t.teardown(() => monitor.stop());

  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  // A ping from a minute ago (a controller restarting replays its group's backlog):
  // it must not register invoker7 as up. The statuses check below sees no invoker7.
  await producer.send({
    topic,
    acks: -1,
    messages: [{ value: serializePingMessage({ instance: invokerId(7, 1024), isEnabled: true }), timestamp: String(Date.now() - 60_000) }],
  });
  const ping = (isEnabled: boolean) =>
    producer.send({ topic, acks: -1, messages: [{ value: serializePingMessage({ instance: invokerId(1, 1024), isEnabled }) }] });

  // Ping like an invoker (more often than once a second, to keep the test short).
  let pinging = true;
  const pinger = (async () => {
    while (pinging) {
      await ping(true);
      await sleep(250);
    }
  })();
  await until(() => pool.status(1, Date.now()) === 'up', 30_000, 'invoker1 up');
  t.same(pool.statuses(Date.now()), { invoker0: 'down', invoker1: 'up' }, 'invoker0 is a placeholder');
  t.equal(pool.get(1)?.slots.totalMb, 512, 'sized from the ping: 1024 MB / 2 controllers');
  pinging = false;
  await pinger;

  const stoppedAt = Date.now();
  await until(() => pool.status(1, Date.now()) === 'down', 10_000, 'invoker1 down');
  t.ok(Date.now() - stoppedAt >= offlineAfterMs - 300, 'not before the offline window');
  await until(() => lines.some((l) => l['msg'] === 'invoker1 is down'), 2_000, 'the down transition logged');
  t.ok(lines.some((l) => l['msg'] === 'invoker1 is up'), 'the up transition logged');

  await ping(true);
  await until(() => pool.status(1, Date.now()) === 'up', 10_000, 'invoker1 up again');
  await ping(false);
  await until(() => pool.status(1, Date.now()) === 'down', 10_000, 'invoker1 disabled');
  t.ok(pool.get(1)?.health.disabled);

  await producer.send({ topic, messages: [{ value: '{"name":{"instance":-1}}' }] });
  await until(() => lines.some((l) => l['msg'] === 'ignored an invalid health ping'), 10_000, 'invalid ping logged');
  t.match(lines.find((l) => l['msg'] === 'ignored an invalid health ping'), { error: /PingMessage\.name/ });
});

t.test('without Kafka: up while /health/ready answers 200', async (t) => {
  const invoker = await startFakeInvoker(0);
  t.teardown(() => invoker.close());
  const nowhere = await refusedUrl();
  const { logger, lines } = capturingLogger();
  const pool = new InvokerPool({ controllerCount: 1 });
  const monitor = startStaticHealthMonitor({
    invokers: [
      { url: invoker.url, userMemoryMb: 1024 },
      { url: nowhere, userMemoryMb: 512 },
    ],
    pool,
    logger,
    intervalMs: 50,
    probeTimeoutMs: 500,
  });
  t.teardown(() => monitor.stop());

  await until(() => pool.status(0, Date.now()) === 'up', 5_000, 'invoker0 up');
  t.same(pool.statuses(Date.now()), { invoker0: 'up', invoker1: 'down' });
  t.equal(pool.get(1)?.slots.totalMb, 512, 'configured memory');

  invoker.ready = 503;
  await until(() => pool.status(0, Date.now()) === 'down', 5_000, 'invoker0 down on 503');
  invoker.ready = 200;
  await until(() => pool.status(0, Date.now()) === 'up', 5_000, 'invoker0 back');

  const failures = lines.filter((l) => l['msg'] === 'readiness probe failed');
  t.ok(failures.some((l) => /answered HTTP 503/.test(String(l['problem']))));
  t.equal(failures.filter((l) => l['invoker'] === 'invoker1').length, 1, 'a lasting failure is logged once');
});
