/**
 * A Kafka outage takes away the overflow, not the invokers: on a private
 * broker (never the shared one) behind a proxy this test cuts, the Kafka path
 * notices within seconds, the balancer refuses what would overflow with
 * KafkaUnavailableError (the API's 503 + Retry-After) while HTTP push goes
 * on, the controller's /health says degraded, and everything resumes when the
 * broker is back.
 */
import t from 'tap';
import fastify from 'fastify';
import { logLevel } from 'kafkajs';
import { InvokerPool } from '../../../controller-lb/invoker-state.js';
import { KafkaPath } from '../../../controller-lb/kafka-path.js';
import { KafkaUnavailableError, LoadBalancer } from '../../../controller-lb/load-balancer.js';
import { registerHealthRoute } from '../../../controller-lb/health-route.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { PrivateKafka } from '../../helpers/fault-proxy.js';
import { combined, FakePusher, helloAction, invokerId, message, settle, until } from '../../unit/controller-lb/fixtures.js';
import { testKafka } from '../../helpers/kafka.js';

const broker = await PrivateKafka.start();
t.teardown(() => broker.destroy());

t.test('Kafka cut: overflow refused, HTTP push continues, health degraded; back: overflow resumes', async (t) => {
  const kafka = testKafka({ brokers: broker.brokers, clientId: 'outage-test', logLevel: logLevel.NOTHING });
  const pool = new InvokerPool({ controllerCount: 1 });
  pool.recordPing(invokerId(0, 256), Date.now(), true, 'probe');
  const pusher = new FakePusher();
  let lb: LoadBalancer | undefined;
  const path = await KafkaPath.start({
    kafka,
    controller: { asString: 'outage' },
    logger: silentLogger(),
    fromBeginning: true,
    probeIntervalMs: 300,
    onAcknowledgement: (ack) => lb?.handleAcknowledgement(ack),
  });
  t.teardown(() => path.close());
  lb = new LoadBalancer({
    controller: { asString: 'outage' },
    pool,
    pusher,
    kafka: path,
    invokerUrl: () => 'http://invoker0.test:8080',
    logger: silentLogger(),
    healthTests: false,
  });
  t.teardown(() => lb?.close());
  const app = fastify();
  registerHealthRoute(app, { pool, kafka: path });
  t.teardown(() => app.close());

  // Kafka up: the second activation overflows to it.
  t.equal(lb.publish(helloAction, message()).transport, 'http');
  const overflow = lb.publish(helloAction, message());
  t.equal(overflow.transport, 'kafka');
  await overflow.acknowledged;
  t.match((await app.inject('/health')).json(), { status: 'ok', kafka: { configured: true, available: true } });

  await broker.proxy.cut();
  await until(() => !path.available(), 10_000, 'the Kafka path to notice the outage');
  t.throws(() => lb.publish(helloAction, message()), KafkaUnavailableError, 'what would overflow is refused');
  t.match((await app.inject('/health')).json(), { status: 'degraded', kafka: { available: false }, invokers: { invoker0: 'up' } });

  // HTTP push does not need Kafka.
  const first = pusher.pushes[0];
  first?.complete({ ok: true, ack: combined(first.msg, 0) });
  await settle();
  const pushed = lb.publish(helloAction, message());
  t.equal(pushed.transport, 'http', 'a freed slot is pushed over HTTP during the outage');
  pusher.last().acknowledge();
  await pushed.acknowledged;

  await broker.proxy.restore();
  await until(() => path.available(), 30_000, 'the Kafka path to see the broker again');
  const again = lb.publish(helloAction, message());
  t.equal(again.transport, 'kafka');
  await again.acknowledged;
  t.match((await app.inject('/health')).json(), { status: 'ok' });
});
