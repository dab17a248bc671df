/**
 * Topic names under upstream's `whisk.kafka.topics.prefix`, and the prefix
 * setting of the invoker and the controller (KAFKA_TOPIC_PREFIX).
 */
import t from 'tap';
import { topicNames, topicPrefixProblem } from '../../../invoker/kafka/topics.js';
import { loadInvokerConfig } from '../../../invoker/config/config.js';
import { loadConfig } from '../../../controller-lb/config.js';
import { megabytes } from '../../../protocol/index.js';

t.test('names as upstream builds them: prefix + name, no separator', async (t) => {
  const names = topicNames('ow1-');
  t.equal(names.invoker(3), 'ow1-invoker3');
  t.equal(names.invoker({ instance: 4, userMemory: megabytes(1024), tags: [], dedicatedNamespaces: [] }), 'ow1-invoker4');
  t.equal(names.completed('0'), 'ow1-completed0');
  t.equal(names.completed({ asString: 'c7' }), 'ow1-completedc7');
  t.equal(names.health, 'ow1-health');
  t.equal(names.healthGroup({ asString: '0' }), 'ow1-health0');
  const plain = topicNames();
  t.same([plain.invoker(0), plain.completed('0'), plain.health, plain.healthGroup('0')], ['invoker0', 'completed0', 'health', 'health0'], 'upstream default: no prefix');
});

t.test('a prefix Kafka cannot name topics with is refused by both processes', async (t) => {
  t.equal(topicPrefixProblem('a.b_c-9'), undefined);
  t.match(topicPrefixProblem('a b'), /may only contain/);
  t.match(topicPrefixProblem('x'.repeat(201)), /longer than 200/);
  t.throws(() => topicNames('a/b'), RangeError);
  const env = { INVOKER_ID: '0' };
  t.equal(loadInvokerConfig({ env: { ...env, KAFKA_TOPIC_PREFIX: 'p-' } }).kafkaTopicPrefix, 'p-');
  t.equal(loadInvokerConfig({ env }).kafkaTopicPrefix, '', 'default empty, as upstream');
  t.throws(() => loadInvokerConfig({ env: { ...env, KAFKA_TOPIC_PREFIX: 'p/' } }), /KAFKA_TOPIC_PREFIX may only contain/);
  const controller = loadConfig({ KAFKA_BROKERS: 'k:9092', KAFKA_TOPIC_PREFIX: 'p-' });
  t.equal(controller.kafkaTopicPrefix, 'p-');
  t.equal(controller.healthTopic, 'p-health', 'the health topic under the prefix');
  t.equal(loadConfig({ KAFKA_BROKERS: 'k:9092', KAFKA_TOPIC_PREFIX: 'p-', CONTROLLER_HEALTH_TOPIC: 'custom' }).healthTopic, 'custom', 'an explicit name wins');
  t.throws(() => loadConfig({ KAFKA_BROKERS: 'k:9092', KAFKA_TOPIC_PREFIX: 'p q' }), /KAFKA_TOPIC_PREFIX: may only contain/);
});
