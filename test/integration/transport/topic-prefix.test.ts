/**
 * Kafka topic names under a prefix (KAFKA_TOPIC_PREFIX, upstream's
 * `whisk.kafka.topics.prefix`), against the real broker: an invoker with
 * prefix P creates and consumes `P + invoker<N>` (group of the same name),
 * pings on `P + health` and answers on `P + completed<C>`; the controller's
 * health monitor and Kafka path with prefix P see it and drive it, and a
 * controller with another prefix sees nothing of it.
 */
import t from 'tap';
import { megabytes, serializeActivationMessage, parsePingMessage, type AcknowledgementMessage } from '../../../protocol/index.js';
import { startKafkaHealthMonitor } from '../../../controller-lb/health-monitor.js';
import { InvokerPool } from '../../../controller-lb/invoker-state.js';
import { KafkaPath } from '../../../controller-lb/kafka-path.js';
import { topicNames } from '../../../invoker/kafka/topics.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { InvokerTestbed, responseOf } from '../../helpers/invoker-harness.js';
import { deleteTopicsAndGroups, env, kafkaTransportFixture, sleep, TopicReader, waitUntil } from './helpers.js';

const bed = new InvokerTestbed(t);
const names = topicNames(bed.topicPrefix);
const { controller, invokerTopic, completedTopic, healthTopic, kafka, completions, producer } = await kafkaTransportFixture(t, bed, 'topic-prefix-test');
const invoker = await bed.start({ KAFKA_BROKERS: env.kafkaBrokers.join(','), INVOKER_HEALTH_PING_INTERVAL_MS: '250' });
const echo = { name: 'echo', ...(await bed.putAction({ name: 'echo', code: 'function main(p) { return { got: p.name ?? null }; }' })) };
const logger = silentLogger();

t.test('the invoker creates, joins and pings only prefixed topics', async (t) => {
  t.ok(bed.topicPrefix.length > 0, `this process's prefix: ${bed.topicPrefix}`);
  t.equal(invokerTopic, `${bed.topicPrefix}invoker${bed.invokerId}`, 'prefix + "invoker" + id, no separator (upstream)');
  t.equal(healthTopic, `${bed.topicPrefix}health`);
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  const topics = new Set(await admin.listTopics());
  t.ok(topics.has(invokerTopic), `${invokerTopic} created`);
  t.ok(topics.has(healthTopic), `${healthTopic} created`);
  t.notOk(topics.has(`invoker${bed.invokerId}`), 'no unprefixed invoker<N>');
  const groups = (await admin.listGroups()).groups.map((g) => g.groupId);
  t.ok(groups.includes(invokerTopic), `consumer group ${invokerTopic}, named after its topic as upstream`);

  const pings = await TopicReader.open(kafka, healthTopic, { fromBeginning: false });
  t.teardown(() => pings.close());
  await pings.waitFor((v) => parsePingMessage(v).instance.instance === bed.invokerId, `a ping of invoker ${bed.invokerId} on ${healthTopic}`);
  t.pass(`pings on ${healthTopic}`);
});

t.test('an activation on P+invoker<N> is answered on P+completed<C>', async (t) => {
  const message = bed.message(echo, { controller, content: { name: 'prefixed' } });
  await producer.send({ topic: invokerTopic, acks: -1, messages: [{ value: serializeActivationMessage(message) }] });
  const ack = await completions.waitFor((v) => v.includes(message.activationId), `the completion on ${completedTopic}`, { timeoutMs: 30_000 });
  t.match(ack, /"got":"prefixed"/);
});

t.test('a controller with the same prefix sees the invoker and drives it over Kafka; one with another prefix sees nothing', async (t) => {
  const ours = new InvokerPool({ controllerCount: 1 });
  const theirs = new InvokerPool({ controllerCount: 1 });
  const otherPrefix = `${bed.topicPrefix}other-`;
  const ourController = { asString: `${controller}p` };
  const otherController = { asString: `${controller}q` };
  t.teardown(() =>
    deleteTopicsAndGroups(
      kafka,
      [topicNames(otherPrefix).health, names.completed(ourController), topicNames(otherPrefix).completed(otherController)],
      [names.healthGroup(ourController), topicNames(otherPrefix).healthGroup(otherController), names.completed(ourController)],
    ),
  );
  const sameMonitor = await startKafkaHealthMonitor({ kafka, controller: ourController, pool: ours, logger, topicPrefix: bed.topicPrefix, observeIntervalMs: 100 });
  t.teardown(() => sameMonitor.stop());
  const otherMonitor = await startKafkaHealthMonitor({ kafka, controller: otherController, pool: theirs, logger, topicPrefix: otherPrefix, observeIntervalMs: 100 });
  t.teardown(() => otherMonitor.stop());

  await waitUntil(() => ours.status(bed.invokerId, Date.now()) === 'up', `invoker ${bed.invokerId} up for the controller with prefix ${bed.topicPrefix}`, 30_000);
  t.pass('same prefix: the invoker is up');
  await sleep(2000); // eight ping intervals
  t.equal(theirs.get(bed.invokerId), undefined, `prefix ${otherPrefix}: no trace of invoker ${bed.invokerId}`);

  const acks: AcknowledgementMessage[] = [];
  const path = await KafkaPath.start({ kafka, controller: ourController, logger, topicPrefix: bed.topicPrefix, fromBeginning: true, onAcknowledgement: (ack) => acks.push(ack) });
  t.teardown(() => path.close());
  const message = bed.message(echo, { controller: ourController.asString, content: { name: 'via the controller' } });
  await path.publish({ instance: bed.invokerId, userMemory: megabytes(1024), tags: [], dedicatedNamespaces: [] }, message);
  await waitUntil(() => acks.some((a) => a.kind === 'combined' && JSON.stringify(a).includes(message.activationId)), 'the ack on the prefixed completed<C>', 30_000);
  const ack = acks.find((a) => JSON.stringify(a).includes(message.activationId));
  t.same(responseOf(ack).result, { got: 'via the controller' }, `published to ${names.invoker(bed.invokerId)}, answered on ${names.completed(ourController)}`);
});

t.test('the invoker refuses a prefix Kafka cannot name topics with', async (t) => {
  t.throws(() => bed.config({ KAFKA_TOPIC_PREFIX: 'bad prefix/' }), /KAFKA_TOPIC_PREFIX may only contain letters, digits/);
  void invoker;
});
