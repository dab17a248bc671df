/**
 * The pinger against a producer that answers when the test says: a slow
 * broker must not pile pings up, and shutdown must not hang on a dead one.
 * (Pings on the real broker: test/integration/kafka/producer-and-pings.test.ts.)
 */
import t from 'tap';
import { Writable } from 'node:stream';
import type { Kafka, LogEntry, ProducerRecord } from 'kafkajs';
import { logLevel } from 'kafkajs';
import { megabytes, parsePingMessage } from '../../../protocol/index.js';
import { createHealthPinger } from '../../../invoker/kafka/health-pinger.js';
import { pinoLogCreator } from '../../../invoker/kafka/client.js';
import { createLogger, silentLogger } from '../../../invoker/telemetry/logger.js';

const instance = { instance: 3, userMemory: megabytes(512), tags: [], dedicatedNamespaces: [] };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function slowBroker() {
  const sends: Array<{ record: ProducerRecord; answer: () => void }> = [];
  let disconnected = false;
  const producer = {
    connect: async () => undefined,
    disconnect: async () => void (disconnected = true),
    send: (record: ProducerRecord) => new Promise<void>((resolve) => sends.push({ record, answer: resolve })),
  };
  const kafka = { producer: () => producer } as unknown as Kafka;
  const pings = () => sends.map((s) => parsePingMessage(String(s.record.messages[0]?.value)).isEnabled);
  return { kafka, sends, pings, isDisconnected: () => disconnected };
}

t.test('a tick whose predecessor is unanswered is skipped', async (t) => {
  const broker = slowBroker();
  const pinger = createHealthPinger({ kafka: broker.kafka, instance, logger: silentLogger(), intervalMs: 10, sendTimeoutMs: 50 });
  await pinger.start();
  await sleep(100);
  t.equal(broker.sends.length, 1, 'ten ticks, one ping pending, no pile-up');
  t.match(broker.sends[0]?.record, { topic: 'health', acks: 1 });
  broker.sends[0]?.answer();
  await sleep(30);
  t.equal(broker.sends.length, 2, 'the next tick sends again');
  broker.sends[1]?.answer();

  // The broker stops answering: stop still ends, after a bounded wait, with a disabled ping last.
  await sleep(30);
  const started = Date.now();
  await pinger.stop();
  t.ok(Date.now() - started < 500, 'stop does not hang on an unanswered ping');
  t.equal(broker.pings().at(-1), false, 'the final ping says disabled');
  t.ok(broker.isDisconnected());
  const count = broker.sends.length;
  await sleep(40);
  t.equal(broker.sends.length, count, 'no pings after stop');
});

t.test('disable sends one disabled ping and stops the periodic ones; enable resumes', async (t) => {
  const broker = slowBroker();
  const pinger = createHealthPinger({ kafka: broker.kafka, instance, logger: silentLogger(), intervalMs: 10, sendTimeoutMs: 50 });
  const answerAll = setInterval(() => broker.sends.forEach((s) => s.answer()), 2);
  t.teardown(() => clearInterval(answerAll));
  await pinger.start();
  await sleep(50);
  await pinger.disable();
  const atDisable = broker.sends.length;
  t.equal(broker.pings().at(-1), false);
  await sleep(50);
  t.equal(broker.sends.length, atDisable, 'silent while disabled');
  pinger.enable();
  await sleep(50);
  t.ok(broker.sends.length > atDisable + 2);
  t.equal(broker.pings().at(-1), true);
  await pinger.stop();
  t.equal(broker.pings().at(-1), false);
});

t.test('kafkajs log lines land in the structured log, protocol error responses as debug', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const log = pinoLogCreator(createLogger({ level: 'info', destination }))(logLevel.INFO);
  const entry = (namespace: string, level: logLevel, message: string): LogEntry => ({
    namespace,
    level,
    label: 'x',
    log: { timestamp: 'now', message, broker: '127.0.0.1:9092' },
  });
  log(entry('Connection', logLevel.ERROR, 'Response Produce(key: 0, version: 7)'));
  log(entry('Consumer', logLevel.INFO, 'Starting'));
  log(entry('Consumer', logLevel.ERROR, 'Crash: KafkaJSNumberOfRetriesExceeded'));
  log(entry('Producer', logLevel.WARN, 'retrying'));
  await sleep(10);
  t.same(
    lines.map((l) => [l['level'], l['msg'], l['namespace'], l['component']]),
    [
      ['error', 'Crash: KafkaJSNumberOfRetriesExceeded', 'Consumer', 'kafkajs'],
      ['warn', 'retrying', 'Producer', 'kafkajs'],
    ],
  );
  t.equal(lines[0]?.['broker'], '127.0.0.1:9092', 'extra fields kept');
});
