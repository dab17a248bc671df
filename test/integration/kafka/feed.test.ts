/**
 * The invoker<N> feed against the real broker: hand-over, completions,
 * unreadable messages, flow control by free slots, admission, offsets, stop.
 * One feed (one group join) serves the subtests, which run in order.
 */
import t from 'tap';
import type { Admin, Producer } from 'kafkajs';
import { parseAcknowledgement, serializeAcknowledgement, type WhiskActivation } from '../../../protocol/index.js';
import { createActivationFeed, type ActivationFeed } from '../../../invoker/kafka/activation-feed.js';
import { createCompletionProducer } from '../../../invoker/kafka/completion-producer.js';
import { createTopicManager } from '../../../invoker/kafka/topics.js';
import { InvokerMetrics } from '../../../invoker/telemetry/metrics.js';
import {
  StubCore,
  TopicReader,
  activationMessage,
  committedOffset,
  connectedProducer,
  deleteGroups,
  instanceId,
  produce,
  sleep,
  successOutcome,
  testKafka,
  testLogger,
  uniqueIds,
  wire,
} from './helpers.js';

const { invokerId, controllerId } = uniqueIds();
const instance = instanceId(invokerId);
const logger = testLogger();
const kafka = testKafka(`feed-test-${invokerId}`);
const topics = createTopicManager({ kafka, logger });
const invokerTopic = `invoker${invokerId}`;
const completedTopic = `completed${controllerId}`;
const healthTopic = `health-feed-test-${invokerId}`;
const metrics = new InvokerMetrics({ invokerId, processMetrics: false });
const core = new StubCore(2, instance);
const completions = createCompletionProducer({ kafka, logger, topics });
const consumerSettings = { sessionTimeout: 6000, heartbeatInterval: 300, maxWaitTimeInMs: 100 };
const newFeed = (): ActivationFeed =>
  createActivationFeed({
    kafka,
    instance,
    handler: core,
    admission: core,
    completions,
    logger,
    metrics,
    consumer: consumerSettings,
  });
let feed: ActivationFeed;
let reader: TopicReader;
let producer: Producer;
let admin: Admin;

/** Waits until the group's committed offset equals `expected`. */
async function committedReaches(expected: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const committed = await committedOffset(admin, invokerTopic, invokerTopic);
    if (committed === expected) return;
    if (Date.now() > deadline) throw new Error(`committed offset is ${committed}, expected ${expected}`);
    await sleep(50);
  }
}

t.before(async () => {
  await topics.ensureInvokerTopics({ invokerTopic, healthTopic });
  await topics.ensureTopic('completed', completedTopic);
  admin = kafka.admin();
  await admin.connect();
  producer = await connectedProducer(kafka);
  reader = await TopicReader.open(kafka, completedTopic);
  await completions.start();
  feed = newFeed();
  await feed.start();
});

t.teardown(async () => {
  core.finishAll();
  await feed.stop();
  await feed.whenIdle();
  await completions.stop();
  await reader.close();
  await producer.disconnect();
  await topics.deleteTopics([invokerTopic, completedTopic, healthTopic]).catch(() => undefined);
  await deleteGroups(kafka, [invokerTopic]);
  await admin.disconnect();
  await topics.close();
});

t.test('a valid message is handed over, committed at once, and its completion arrives byte-exact', async (t) => {
  const message = activationMessage(controllerId);
  await produce(producer, invokerTopic, [wire(message)]);
  await core.waitForCalls(1);
  const call = core.calls[0];
  t.ok(call);
  t.same(call?.request.message, message, 'the handler gets the parsed message');
  t.equal(call?.request.transport, 'kafka');
  t.type(call?.request.receivedAt, 'number');

  // Committed on hand-over, before the activation has ended.
  await committedReaches(1);
  t.equal(reader.values.length, 0, 'no completion before the activation ends');

  call?.finish();
  const values = await reader.waitFor((v) => v.length === 1, 'the completion');
  t.equal(values[0], successOutcome(message, instance).completion, 'byte-exact completion on completed<C>');
});

t.test('unreadable messages never block the partition and get a system-error completion when possible', async (t) => {
  const before = core.calls.length;
  const completionsBefore = reader.values.length;
  const shrunkOnly = activationMessage(controllerId);
  const identified = activationMessage(controllerId);
  const valid = activationMessage(controllerId);
  const identifiedWithoutRevision: Record<string, unknown> = JSON.parse(wire(identified));
  delete identifiedWithoutRevision['revision'];
  await produce(producer, invokerTopic, [
    '{"activationId": not json',
    // Only what is needed to answer: activation id, controller, transid.
    JSON.stringify({
      activationId: shrunkOnly.activationId,
      rootControllerIndex: { asString: controllerId, instanceType: 'controller' },
      transid: ['abcdefghijklmnopqrstuvwxyz012345', 1717171717171],
    }),
    // Complete but for one field: blocking, with the identity fields, so the answer carries a whisk-error activation.
    JSON.stringify(identifiedWithoutRevision),
    Buffer.alloc(0),
    wire(valid),
  ]);
  await core.waitForCalls(before + 1);
  t.equal(core.calls[before]?.request.message.activationId, valid.activationId, 'the next valid message is handed over');
  await committedReaches(1 + 5);

  const answers = await reader.waitFor((v) => v.length >= completionsBefore + 2, 'two system-error completions');
  const acks = answers.slice(completionsBefore).map((v) => parseAcknowledgement(v));
  const shrunk = acks.find((a) => a.kind === 'combined' && a.response === shrunkOnly.activationId);
  t.ok(shrunk, 'shrunk system-error completion for the message with only an id and a controller');
  t.match(shrunk, {
    kind: 'combined',
    isSystemError: true,
    transid: { id: 'abcdefghijklmnopqrstuvwxyz012345', start: 1717171717171 },
    instance: { instance: invokerId },
  });

  const full = acks.find((a) => a.kind === 'combined' && typeof a.response !== 'string');
  t.ok(full, 'full system-error completion for the blocking message whose identity is readable');
  const activation = (full?.kind === 'combined' ? full.response : undefined) as WhiskActivation | undefined;
  t.match(activation, {
    activationId: identified.activationId,
    namespace: 'guest',
    name: 'hello',
    subject: 'guest',
    response: { statusCode: 3, result: { error: /could not read the activation message: ActivationMessage\.revision/ } },
  });
  t.same(full?.transid, identified.transid, 'transid echoed');
  t.equal(serializeAcknowledgement(full!), answers.slice(completionsBefore).find((v) => v.includes(identified.activationId)), 'serialized upstream-style');

  const rejected = await metrics.kafkaMessagesRejected.get();
  const byReason = Object.fromEntries(rejected.values.map((v) => [v.labels.reason, v.value]));
  t.same(byReason, { invalid_json: 1, invalid_message: 2, empty: 1 }, 'counted by reason');

  core.calls[before]?.finish();
  await reader.waitFor((v) => v.some((x) => x.includes(valid.activationId)), 'the valid message’s completion');
});

t.test('a backlog larger than capacity waits in Kafka: at most 2 in flight, commits never pass hand-overs', async (t) => {
  const base = core.calls.length;
  const committedBase = await committedOffset(admin, invokerTopic, invokerTopic);
  core.maxRunning = core.running;
  core.setSlots(2);
  const backlog = Array.from({ length: 10 }, () => activationMessage(controllerId));
  await produce(producer, invokerTopic, backlog.map(wire));

  await core.waitForCalls(base + 2);
  await committedReaches(committedBase + 2);
  await sleep(600); // several fetch and heartbeat rounds: nothing more may be taken
  t.equal(core.calls.length, base + 2, 'only two taken while two slots are busy');
  t.equal(await committedOffset(admin, invokerTopic, invokerTopic), committedBase + 2, 'committed exactly the two handed over');
  const lag = await metrics.kafkaConsumerLag.get();
  t.equal(lag.values.find((v) => v.labels.partition === '0')?.value, 8, 'lag counts the eight waiting messages');

  for (let handed = 2; handed < 10; handed++) {
    core.finishOldest(1);
    await core.waitForCalls(base + handed + 1);
    const committed = await committedOffset(admin, invokerTopic, invokerTopic);
    t.ok(committed <= committedBase + handed + 1, `${committed - committedBase} committed, ${handed + 1} handed over`);
    t.ok(core.running <= 2, 'never more than two running');
  }
  await committedReaches(committedBase + 10);
  t.equal(core.maxRunning, 2, 'the handler never had more than two in flight');
  t.same(
    core.activationIds().slice(base),
    backlog.map((m) => m.activationId),
    'handed over in partition order',
  );
  core.finishAll();
  await reader.waitFor((v) => backlog.every((m) => v.some((x) => x.includes(m.activationId))), 'all ten completions');
});

t.test('while admission is closed nothing is taken; reopening resumes at the next message', async (t) => {
  const base = core.calls.length;
  const committedBase = await committedOffset(admin, invokerTopic, invokerTopic);
  core.setSlots(1);
  const waiting = [activationMessage(controllerId), activationMessage(controllerId), activationMessage(controllerId)];
  await produce(producer, invokerTopic, waiting.map(wire));
  await core.waitForCalls(base + 1);
  // The pass now holds the rest of the batch waiting for a slot; closing
  // admission must make it let go of them (pause) rather than take them.
  core.setAccepting(false);
  core.finishAll();
  await sleep(800);
  t.equal(core.calls.length, base + 1, 'nothing more handed over while closed, though a slot is free');
  t.equal(await committedOffset(admin, invokerTopic, invokerTopic), committedBase + 1, 'nothing more committed while closed');
  const another = activationMessage(controllerId);
  await produce(producer, invokerTopic, [wire(another)]);
  await sleep(300);
  t.equal(core.calls.length, base + 1, 'new messages wait too');

  core.setSlots(5);
  core.setAccepting(true);
  await core.waitForCalls(base + 4);
  t.same(
    core.activationIds().slice(base),
    [...waiting, another].map((m) => m.activationId),
    'after reopening, fetching resumes at the first message not taken, in order',
  );
  await committedReaches(committedBase + 4);
  core.finishAll();
});

t.test('stop leaves the group; in-flight work completes; untaken messages go to the group’s next consumer', async (t) => {
  const base = core.calls.length;
  const committedBase = await committedOffset(admin, invokerTopic, invokerTopic);
  core.setSlots(1);
  const running = activationMessage(controllerId);
  const untaken = activationMessage(controllerId);
  await produce(producer, invokerTopic, [wire(running), wire(untaken)]);
  await core.waitForCalls(base + 1);
  await committedReaches(committedBase + 1);

  await feed.stop();
  t.equal(feed.inFlight(), 1, 'the in-flight activation survives stop');
  core.calls[base]?.finish();
  await feed.whenIdle();
  await reader.waitFor((v) => v.some((x) => x.includes(running.activationId)), 'the completion sent after stop');
  t.equal(await committedOffset(admin, invokerTopic, invokerTopic), committedBase + 1, 'the untaken message stayed uncommitted');

  feed = newFeed();
  await feed.start();
  await core.waitForCalls(base + 2);
  t.equal(core.calls[base + 1]?.request.message.activationId, untaken.activationId, 'the next consumer receives it');
  core.finishAll();
  await reader.waitFor((v) => v.some((x) => x.includes(untaken.activationId)), 'its completion');
});
