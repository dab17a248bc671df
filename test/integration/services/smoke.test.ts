/**
 * The three real services answer the clients the invoker uses, exactly as the
 * invoker uses them: kafkajs through a consumer group, nano with bulk writes,
 * dockerode over the engine API.
 */
import t from 'tap';
import Docker from 'dockerode';
import { logLevel } from 'kafkajs';
import nano from 'nano';
import { testEnvironment, uniqueName } from '../../helpers/env.js';
import { testKafka } from '../../helpers/kafka.js';

const env = testEnvironment();

t.test('kafkajs produces and consumes through the real broker', async (t) => {
  const kafka = testKafka({ brokers: env.kafkaBrokers, clientId: 'smoke', logLevel: logLevel.NOTHING });
  const topic = uniqueName('smoke');
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  t.teardown(() => admin.deleteTopics({ topics: [topic] }).catch(() => undefined));

  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  await producer.send({ topic, acks: -1, messages: [{ value: 'first' }, { value: 'second' }] });

  const consumer = kafka.consumer({ groupId: topic });
  await consumer.connect();
  t.teardown(() => consumer.disconnect());
  await consumer.subscribe({ topic, fromBeginning: true });
  const received: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no messages within 30 s')), 30_000);
    void consumer.run({
      eachMessage: async ({ message }) => {
        received.push(message.value?.toString() ?? '');
        if (received.length === 2) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  t.same(received, ['first', 'second']);
});

t.test('nano creates, writes, reads and bulk-writes on the real CouchDB-compatible server', async (t) => {
  const server = nano(env.couchdbUrl);
  const name = uniqueName('smoke');
  await server.db.create(name);
  t.teardown(() => server.db.destroy(name).catch(() => undefined));
  const db = server.use<{ value: number }>(name);

  const written = await db.insert({ _id: 'guest/one', value: 1 });
  t.ok(written.ok, 'single write acknowledged');
  const read = await db.get('guest/one');
  t.equal(read.value, 1, 'reads back the document with a slash in its id');

  const bulk = await db.bulk({ docs: [{ _id: 'guest/two', value: 2 }, { _id: 'guest/three', value: 3 }] });
  t.same(
    bulk.map((r) => [r.id, r.error ?? 'ok']),
    [
      ['guest/two', 'ok'],
      ['guest/three', 'ok'],
    ],
  );
  const conflict = await db.bulk({ docs: [{ _id: 'guest/two', value: 9 }] });
  t.equal(conflict[0]?.error, 'conflict', 'a second write without _rev is a per-document conflict');
  const info = await db.info();
  t.equal(info.doc_count, 3);
});

t.test('dockerode lists containers on the real engine', async (t) => {
  const docker = new Docker();
  const version = await docker.version();
  t.match(version.ApiVersion, /^1\.\d+$/, 'engine reports its API version');
  const containers = await docker.listContainers({ all: true });
  t.ok(Array.isArray(containers), 'lists containers');
  const networks = await docker.listNetworks({ filters: { name: [env.dockerNetwork] } });
  t.ok(
    networks.some((n) => n.Name === env.dockerNetwork),
    `the action network ${env.dockerNetwork} exists`,
  );
});
