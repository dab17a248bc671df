/**
 * The completion producer and the health pinger against the real broker.
 */
import t from 'tap';
import { parsePingMessage, serializePingMessage } from '../../../protocol/index.js';
import { createCompletionProducer } from '../../../invoker/kafka/completion-producer.js';
import { createHealthPinger } from '../../../invoker/kafka/health-pinger.js';
import { createTopicManager } from '../../../invoker/kafka/topics.js';
import { TopicReader, activationMessage, instanceId, sleep, successOutcome, testKafka, testLogger, uniqueIds } from './helpers.js';

const { invokerId, controllerId } = uniqueIds();
const instance = instanceId(invokerId);
const logger = testLogger();
const kafka = testKafka(`producer-test-${invokerId}`);
// completed<C> with a small message limit, to see the broker refuse a completion as too large.
const smallLimit = 4096;
const topics = createTopicManager({
  kafka,
  logger,
  configOverrides: { completed: { 'max.message.bytes': String(smallLimit), 'retention.ms': '3600000' } },
});
const completedTopic = `completed${controllerId}`;
const healthTopic = `health-test-${invokerId}`;

t.teardown(async () => {
  await topics.deleteTopics([completedTopic, healthTopic]).catch(() => undefined);
  await topics.close();
});

t.test('completions: acknowledged by the broker; too large ones re-sent shrunk', async (t) => {
  const completions = createCompletionProducer({ kafka, logger, topics });
  await completions.start();
  t.teardown(() => completions.stop());
  await topics.ensureCompletedTopic(completedTopic);
  const reader = await TopicReader.open(kafka, completedTopic);
  t.teardown(() => reader.close());

  const small = successOutcome(activationMessage(controllerId), instance);
  t.equal(await completions.send(small), 'full', 'an ordinary completion goes out in full');

  const bigMessage = activationMessage(controllerId);
  const big = successOutcome(bigMessage, instance);
  big.completion = big.completion.replace('"Hello World"', JSON.stringify('x'.repeat(smallLimit * 2)));
  t.ok(Buffer.byteLength(big.completion) > smallLimit, 'larger than the topic takes');
  t.equal(await completions.send(big), 'shrunk', 'refused by the broker as too large, re-sent shrunk');

  const values = await reader.waitFor((v) => v.length === 2, 'two completions');
  t.equal(values[0], small.completion, 'full completion, byte-exact');
  t.equal(values[1], big.shrunkCompletion, 'shrunk completion, byte-exact');

  await completions.stop();
  await t.rejects(completions.send(small), /sending the completion of [0-9a-f]{32} to completed.*stopped/, 'no sends after stop');
});

t.test('completions larger than the configured limit go out shrunk without a broker round trip', async (t) => {
  const completions = createCompletionProducer({ kafka, logger, topics, maxMessageBytes: 1000 });
  await completions.start();
  t.teardown(() => completions.stop());
  const outcome = successOutcome(activationMessage(controllerId), instance);
  outcome.completion = outcome.completion.replace('"Hello World"', JSON.stringify('y'.repeat(2000)));
  t.equal(await completions.send(outcome), 'shrunk');
});

t.test('health pings: every interval while enabled, one disabled ping on disable and on stop', async (t) => {
  await topics.ensureTopic('health', healthTopic);
  const reader = await TopicReader.open(kafka, healthTopic);
  t.teardown(() => reader.close());
  const pinger = createHealthPinger({ kafka, instance, logger, topic: healthTopic, intervalMs: 200 });
  t.teardown(() => pinger.stop());
  const enabledPing = serializePingMessage({ instance, isEnabled: true });
  const disabledPing = serializePingMessage({ instance, isEnabled: false });
  t.equal(enabledPing, `{"name":{"instance":${invokerId},"userMemory":"1073741824 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]},"isEnabled":true}`);

  const started = Date.now();
  await pinger.start();
  await reader.waitFor((v) => v.length >= 5, 'five pings');
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 700 && elapsed < 3000, `five pings at a 200 ms interval took ${elapsed} ms`);
  t.ok(reader.values.every((v) => v === enabledPing), 'all enabled pings, upstream bytes');

  await pinger.disable();
  t.equal(pinger.isEnabled(), false);
  const afterDisable = (await reader.waitFor((v) => v.includes(disabledPing), 'the disabled ping')).length;
  await sleep(600);
  t.equal(reader.values.length, afterDisable, 'no pings while disabled');
  t.equal(reader.values.at(-1), disabledPing);

  pinger.enable();
  await reader.waitFor((v) => v.length >= afterDisable + 2, 'pings again after enable');
  t.equal(reader.values.at(-1), enabledPing);

  await pinger.stop();
  await sleep(400);
  t.equal(reader.values.at(-1), disabledPing, 'the last ping says disabled');
  t.same(parsePingMessage(reader.values.at(-1) ?? ''), { instance, isEnabled: false });
  const count = reader.values.length;
  await sleep(400);
  t.equal(reader.values.length, count, 'nothing after stop');
});
