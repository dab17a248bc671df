/**
 * The completion producer against scripted kafkajs producers: the failure
 * paths. (Acknowledged sends and the broker's own MESSAGE_TOO_LARGE are tested
 * on the real broker in test/integration/kafka/producer-and-pings.test.ts.)
 */
import t from 'tap';
import type { Kafka, ProducerConfig, ProducerRecord } from 'kafkajs';
import { createCompletionProducer } from '../../../invoker/kafka/completion-producer.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';

type Script = (record: ProducerRecord) => Promise<void>;

function scriptedKafka(scripts: Script[]) {
  const producers: Array<{ config: ProducerConfig | undefined; sent: string[]; acks: Array<number | undefined>; disconnected: boolean }> = [];
  const kafka = {
    producer: (config?: ProducerConfig) => {
      const state = { config, sent: [] as string[], acks: [] as Array<number | undefined>, disconnected: false };
      producers.push(state);
      return {
        connect: async () => undefined,
        disconnect: async () => void (state.disconnected = true),
        send: async (record: ProducerRecord) => {
          const script = scripts.shift();
          if (script) await script(record);
          state.sent.push(String(record.messages[0]?.value));
          state.acks.push(record.acks);
        },
      };
    },
  } as unknown as Kafka;
  return { kafka, producers };
}

const completion = (id: string, size = 10) => ({
  activationId: id,
  controller: { asString: '0' },
  completion: `{"full":"${'x'.repeat(size)}"}`,
  shrunkCompletion: `{"shrunk":"${id}"}`,
});
const ok: Script = async () => undefined;
const fail = (type: string): Script => async () => {
  throw Object.assign(new Error(`broker said ${type}`), { type });
};

t.test('idempotent, acks -1; a final failure rejects with context and replaces the producer', async (t) => {
  const { kafka, producers } = scriptedKafka([ok, fail('REQUEST_TIMED_OUT'), ok]);
  const completions = createCompletionProducer({ kafka, logger: silentLogger() });
  await completions.start();
  t.match(producers[0]?.config, { idempotent: true, maxInFlightRequests: 1 });

  t.equal(await completions.send(completion('a')), 'full');
  t.same(producers[0]?.acks, [-1], 'acknowledged by all in-sync replicas');
  // retryUntil in the past: one attempt only.
  await t.rejects(completions.send({ ...completion('b'), retryUntil: 0 }), /sending the full completion of b to completed0: broker said REQUEST_TIMED_OUT/);
  t.equal(producers.length, 2, 'a new producer (new producer id) for what follows');
  t.ok(producers[0]?.disconnected, 'the old one is closed');
  t.equal(await completions.send(completion('c')), 'full');
  t.same(producers[1]?.sent, ['{"full":"xxxxxxxxxx"}']);
  await completions.stop();
  t.ok(producers[1]?.disconnected);
});

t.test('refused as too large: re-sent shrunk on the same producer', async (t) => {
  const { kafka, producers } = scriptedKafka([fail('MESSAGE_TOO_LARGE'), ok]);
  const completions = createCompletionProducer({ kafka, logger: silentLogger() });
  await completions.start();
  t.equal(await completions.send(completion('a')), 'shrunk');
  t.same(producers[0]?.sent, ['{"shrunk":"a"}']);
  t.equal(producers.length, 1);
  await completions.stop();
});

t.test('larger than maxMessageBytes: shrunk without trying the full one', async (t) => {
  const { kafka, producers } = scriptedKafka([]);
  const completions = createCompletionProducer({ kafka, logger: silentLogger(), maxMessageBytes: 500 });
  await completions.start();
  t.equal(await completions.send(completion('a', 400)), 'shrunk', 'with the record overhead it does not fit');
  t.equal(await completions.send(completion('b', 300)), 'full');
  t.same(producers[0]?.sent.map((v) => v.slice(0, 10)), ['{"shrunk":', '{"full":"x']);
  await completions.stop();
});

t.test('stop waits for sends under way, including ones that start while stopping', async (t) => {
  let release: () => void = () => undefined;
  const slow: Script = () => new Promise<void>((r) => (release = r));
  const { kafka, producers } = scriptedKafka([slow, ok]);
  const completions = createCompletionProducer({ kafka, logger: silentLogger() });
  await completions.start();
  const first = completions.send(completion('a'));
  const stopping = completions.stop();
  const second = completions.send(completion('b'));
  let stopped = false;
  void stopping.then(() => (stopped = true));
  await new Promise((r) => setTimeout(r, 20));
  t.notOk(stopped, 'still sending');
  release();
  await stopping;
  t.equal(await first, 'full');
  t.equal(await second, 'full');
  t.ok(producers[0]?.disconnected);
  await t.rejects(completions.send(completion('c')), /completion producer is stopped/);
});

t.test('a failing broker: retried with backoff until the controller\'s deadline, not given up after a few seconds', async (t) => {
  const { kafka, producers } = scriptedKafka([fail('NETWORK'), fail('NETWORK'), fail('NETWORK'), fail('NETWORK'), ok]);
  const completions = createCompletionProducer({ kafka, logger: silentLogger(), retryBackoff: { initialMs: 20, maxMs: 80 } });
  await completions.start();
  t.equal(await completions.send({ ...completion('a'), retryUntil: Date.now() + 10_000 }), 'full', 'delivered on the fifth attempt');
  t.same(producers.at(-1)?.sent, ['{"full":"xxxxxxxxxx"}']);
  t.equal(producers.length, 5, 'a fresh producer after each failed attempt');

  // Past the deadline it gives up (the controller has forced the activation by then).
  const failing = scriptedKafka(Array.from({ length: 100 }, () => fail('NETWORK')));
  const doomed = createCompletionProducer({ kafka: failing.kafka, logger: silentLogger(), retryBackoff: { initialMs: 20, maxMs: 40 } });
  await doomed.start();
  const started = Date.now();
  await t.rejects(doomed.send({ ...completion('b'), retryUntil: Date.now() + 300 }), /broker said NETWORK/);
  const took = Date.now() - started;
  t.ok(took >= 200 && took < 2_000, `gave up at the deadline (${took} ms)`);
  t.ok(failing.producers.length > 3, 'after several attempts');
  await completions.stop();
  await doomed.stop();
});
