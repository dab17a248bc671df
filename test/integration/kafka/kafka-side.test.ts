/**
 * createKafkaSide wires the parts in the invoker's order: topics, producer,
 * group, pings; and takes them down in the drain's order.
 */
import t from 'tap';
import { serializePingMessage } from '../../../protocol/index.js';
import { createKafkaSide, createTopicManager } from '../../../invoker/kafka/index.js';
import { InvokerMetrics } from '../../../invoker/telemetry/metrics.js';
import {
  StubCore,
  TopicReader,
  activationMessage,
  connectedProducer,
  deleteGroups,
  env,
  instanceId,
  produce,
  successOutcome,
  testKafka,
  testLogger,
  uniqueIds,
  wire,
} from './helpers.js';
import { TEST_TOPIC_PREFIX } from '../../helpers/env.js';

t.test('no brokers: no Kafka side', async (t) => {
  const core = new StubCore(1, instanceId(1));
  const side = createKafkaSide({
    brokers: [],
    clientId: 'invoker',
    instance: instanceId(1),
    handler: core,
    admission: core,
    logger: testLogger(),
    metrics: new InvokerMetrics({ invokerId: 1, processMetrics: false }),
  });
  t.equal(side, undefined);
});

t.test('start, run one activation, stop intake, close', async (t) => {
  const { invokerId, controllerId } = uniqueIds();
  const instance = instanceId(invokerId);
  const logger = testLogger();
  // Named by createKafkaSide under the prefix, as upstream names them.
  const topicPrefix = `${TEST_TOPIC_PREFIX}side-`;
  const healthTopic = `${topicPrefix}health`;
  const invokerTopic = `${topicPrefix}invoker${invokerId}`;
  const completedTopic = `${topicPrefix}completed${controllerId}`;
  const kafka = testKafka(`side-test-${invokerId}`);
  const topics = createTopicManager({ kafka, logger });
  t.teardown(async () => {
    await topics.deleteTopics([invokerTopic, completedTopic, healthTopic]).catch(() => undefined);
    await deleteGroups(kafka, [invokerTopic]);
    await topics.close();
  });

  const core = new StubCore(4, instance);
  const side = createKafkaSide({
    brokers: env.kafkaBrokers,
    clientId: 'side-test-',
    instance,
    handler: core,
    admission: core,
    logger,
    metrics: new InvokerMetrics({ invokerId, processMetrics: false }),
    healthPingIntervalMs: 200,
    topicPrefix,
    consumer: { sessionTimeout: 6000, heartbeatInterval: 300, maxWaitTimeInMs: 100 },
  });
  t.ok(side);
  if (!side) return;
  await side.start();
  t.teardown(() => side.close());

  const pings = await TopicReader.open(kafka, healthTopic);
  t.teardown(() => pings.close());
  await topics.ensureTopic('completed', completedTopic);
  const completions = await TopicReader.open(kafka, completedTopic);
  t.teardown(() => completions.close());
  const producer = await connectedProducer(kafka);
  t.teardown(() => producer.disconnect());

  const message = activationMessage(controllerId);
  await produce(producer, invokerTopic, [wire(message)]);
  await core.waitForCalls(1);
  await pings.waitFor((v) => v.length >= 2, 'pings');

  await side.stopIntake();
  await pings.waitFor((v) => v.at(-1) === serializePingMessage({ instance, isEnabled: false }), 'the disabled ping');
  core.finishAll();
  await side.feed.whenIdle();
  await completions.waitFor((v) => v.length === 1, 'the completion after stopIntake');
  t.equal(completions.values[0], successOutcome(message, instance).completion);
  await side.close();
  t.equal(pings.values.at(-1), serializePingMessage({ instance, isEnabled: false }), 'last word: disabled');
});
