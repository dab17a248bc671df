/**
 * What a crash does to the messages of invoker<N>: the process is killed
 * (no leave-group, no final commit). Messages handed over before are not
 * redelivered (at most once, like upstream: the controller's timer answers
 * for them); messages not yet handed over go to the group's next consumer.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createActivationFeed } from '../../../invoker/kafka/activation-feed.js';
import { createTopicManager } from '../../../invoker/kafka/topics.js';
import { InvokerMetrics } from '../../../invoker/telemetry/metrics.js';
import {
  StubCore,
  activationMessage,
  committedOffset,
  connectedProducer,
  deleteGroups,
  instanceId,
  produce,
  sleep,
  testKafka,
  testLogger,
  uniqueIds,
  withTimeout,
  wire,
} from './helpers.js';

t.test('killed with un-handed messages: the next consumer of the group gets exactly those', async (t) => {
  const { invokerId, controllerId } = uniqueIds();
  const instance = instanceId(invokerId);
  const logger = testLogger();
  const kafka = testKafka(`crash-test-${invokerId}`);
  const topics = createTopicManager({ kafka, logger });
  const topic = `invoker${invokerId}`;
  await topics.ensureTopic('invoker', topic);
  t.teardown(async () => {
    await topics.deleteTopics([topic]).catch(() => undefined);
    await deleteGroups(kafka, [topic]);
    await topics.close();
  });
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());

  const messages = Array.from({ length: 6 }, () => activationMessage(controllerId));
  const producer = await connectedProducer(kafka);
  await produce(producer, topic, messages.map(wire));
  await producer.disconnect();

  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./fixtures/feed-child.ts', import.meta.url))], {
    env: { ...process.env, INVOKER_ID: String(invokerId), SLOTS: '2' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const handedInChild: string[] = [];
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    if (line.startsWith('handed ')) handedInChild.push(line.slice('handed '.length));
  });
  await withTimeout(
    (async () => {
      while (handedInChild.length < 2) await sleep(20);
    })(),
    20_000,
    'for the child to take two messages',
  );
  // Committed right after hand-over, and never beyond it.
  await withTimeout(
    (async () => {
      while ((await committedOffset(admin, topic, topic)) !== 2) await sleep(50);
    })(),
    5000,
    'for the child to commit the two handed-over messages',
  );
  await sleep(300);
  t.same(handedInChild, messages.slice(0, 2).map((m) => m.activationId), 'the child took two (its free slots)');

  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;

  const core = new StubCore(10, instance);
  const feed = createActivationFeed({
    kafka,
    instance,
    handler: core,
    admission: core,
    completions: { send: async () => undefined },
    logger,
    metrics: new InvokerMetrics({ invokerId, processMetrics: false }),
    consumer: { sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100 },
  });
  t.teardown(async () => {
    core.finishAll();
    await feed.stop();
  });
  await feed.start();
  // The dead member holds the partition until its session times out (6 s).
  await core.waitForCalls(4, 20_000);
  await sleep(300);
  t.same(
    core.activationIds(),
    messages.slice(2).map((m) => m.activationId),
    'the four never handed over are delivered; the two handed over are not redelivered',
  );
  t.equal(await committedOffset(admin, topic, topic), 6);
});
