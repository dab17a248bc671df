/**
 * The overload path against the real broker: the activation lands on
 * `invoker<N>` byte for byte, and a completion on `completed<C>` answers the
 * caller and frees the slot.
 */
import t from 'tap';
import { logLevel, type Consumer } from 'kafkajs';
import { serializeAcknowledgement, serializeActivationMessage, type AcknowledgementMessage } from '../../../protocol/index.js';
import { InvokerPool } from '../../../controller-lb/invoker-state.js';
import { KafkaPath } from '../../../controller-lb/kafka-path.js';
import { LoadBalancer } from '../../../controller-lb/load-balancer.js';
import { testEnvironment, uniqueName } from '../../helpers/env.js';
import { capturingLogger, combined, FakePusher, helloAction, invokerId, message, until } from '../../unit/controller-lb/fixtures.js';
import { testKafka } from '../../helpers/kafka.js';

const env = testEnvironment();

t.test('overload -> invoker<N>; completed<C> -> caller answered, slot released', async (t) => {
  const kafka = testKafka({ brokers: env.kafkaBrokers, clientId: 'controller-lb-test', logLevel: logLevel.NOTHING });
  // A unique invoker number (the pool fills 0..N-1 with placeholders that stay down) and controller id.
  const n = 2000 + Math.floor(Math.random() * 8000);
  const controllerId = uniqueName('lbtest').replace(/[^a-zA-Z0-9._-]/g, '-');
  const invokerTopicName = `invoker${n}`;
  const completedTopicName = `completed${controllerId}`;
  const readerGroup = uniqueName('lbtest-reader');

  const admin = kafka.admin();
  await admin.connect();
  // Teardowns run last-registered first: this one runs after every client is disconnected.
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [invokerTopicName, completedTopicName] }).catch(() => undefined);
    await admin.deleteGroups([completedTopicName, readerGroup]).catch(() => undefined);
    await admin.disconnect();
  });
  await admin.createTopics({ topics: [{ topic: invokerTopicName, numPartitions: 1 }], waitForLeaders: true });

  const { logger, lines } = capturingLogger();
  const pool = new InvokerPool({ controllerCount: 1 });
  pool.recordPing(invokerId(n, 128), Date.now());
  let lb: LoadBalancer | undefined;
  const received: AcknowledgementMessage[] = [];
  const path = await KafkaPath.start({
    kafka,
    controller: { asString: controllerId },
    logger,
    fromBeginning: true,
    onAcknowledgement: (ack) => {
      received.push(ack);
      lb?.handleAcknowledgement(ack);
    },
  });
  t.teardown(() => path.close());
  const pusher = new FakePusher();
  lb = new LoadBalancer({
    controller: { asString: controllerId },
    pool,
    pusher,
    kafka: path,
    invokerUrl: () => 'http://invoker.test:8080',
    logger,
    healthTests: false,
    // Invoker N is the last one: without this it would be in the blackbox share only.
    scheduler: { blackboxFraction: 0 },
  });
  t.teardown(() => lb?.close());

  const first = lb.publish({ ...helloAction, memoryMb: 128 }, message());
  t.match(first, { invoker: n, overloaded: false, transport: 'http' });
  const msg = message({ rootControllerIndex: { asString: controllerId } });
  const published = lb.publish({ ...helloAction, memoryMb: 128 }, msg);
  t.match(published, { invoker: n, overloaded: true, transport: 'kafka' });
  await published.acknowledged;
  t.equal(pool.get(n)?.slots.availableMb, 0, 'overflow holds no slot: it waits in the topic');

  // What an invoker consuming invoker<N> gets.
  const consumer: Consumer = kafka.consumer({ groupId: readerGroup });
  await consumer.connect();
  t.teardown(() => consumer.disconnect());
  await consumer.subscribe({ topic: invokerTopicName, fromBeginning: true });
  const values: Buffer[] = [];
  await consumer.run({
    eachMessage: async ({ message: m }) => {
      if (m.value !== null) values.push(m.value);
    },
  });
  await until(() => values.length === 1, 30_000, `the message on ${invokerTopicName}`);
  t.equal(values[0]?.toString('utf8'), serializeActivationMessage(msg), 'byte-equal to serializeActivationMessage');

  // The invoker answers on completed<C>; junk first, which must only be logged.
  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  await producer.send({
    topic: completedTopicName,
    acks: -1,
    messages: [{ value: '{"not":"an ack"}' }, { value: serializeAcknowledgement(combined(msg, n)) }],
  });
  const done = await published.completion;
  t.match(done, { status: 'completed', activationId: msg.activationId, invoker: n, activation: { response: { statusCode: 0 } } });
  t.equal(pool.get(n)?.slots.availableMb, 0, 'released: only the first (HTTP) activation holds memory');
  t.equal(received.length, 1);
  t.ok(lines.some((l) => l['msg'] === 'ignored an invalid acknowledgement' && /AcknowledgementMessage/.test(String(l['error']))), 'junk logged with the field path');
});
