/**
 * The background Kafka join against a fake side: it retries until the side
 * starts, reports `joined` / `problem` for readiness, probes the broker once
 * joined, and a stop neither waits out the backoff nor leaves a probe running.
 */
import t from 'tap';
import type { Admin, Kafka } from 'kafkajs';
import { createKafkaJoin } from '../../../invoker/kafka/join.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// The join's timers are unref'd (in the invoker the HTTP server keeps the
// process up); here a ref'd one does, for the length of the file.
const keepAlive = setInterval(() => undefined, 1000);
t.teardown(() => clearInterval(keepAlive));

function fakeSide(options: { failures: number }) {
  let starts = 0;
  let closed = 0;
  let brokerAnswers = true;
  let describes = 0;
  let adminDisconnected = false;
  const admin = {
    connect: async () => undefined,
    disconnect: async () => void (adminDisconnected = true),
    describeCluster: async () => {
      describes++;
      if (!brokerAnswers) throw new Error('connection refused');
      return { brokers: [], controller: null, clusterId: 'c' };
    },
  };
  const side = {
    kafka: { admin: () => admin as unknown as Admin } as unknown as Kafka,
    start: async () => {
      starts++;
      if (starts <= options.failures) throw new Error(`broker unreachable (${starts})`);
    },
    close: async () => void closed++,
  };
  return {
    side,
    starts: () => starts,
    closed: () => closed,
    describes: () => describes,
    adminDisconnected: () => adminDisconnected,
    setBrokerAnswers: (answers: boolean) => void (brokerAnswers = answers),
  };
}

t.test('retries until the side starts, then reports joined and resolves whenJoined', async (t) => {
  const fake = fakeSide({ failures: 2 });
  const join = createKafkaJoin({ side: fake.side, logger: silentLogger(), retryDelayMs: () => 5, probeIntervalMs: 1000 });
  t.equal(join.joined(), false);
  t.equal(join.problem(), 'not yet connected', 'a problem before the first attempt');
  join.begin();
  join.begin();
  await sleep(1);
  t.equal(join.joined(), false);
  t.match(join.problem(), /broker unreachable \(1\)/, 'the failed attempt is the problem');
  await join.whenJoined();
  t.equal(fake.starts(), 3, 'two failures, one success; begin twice starts one loop');
  t.equal(join.joined(), true);
  t.equal(join.problem(), undefined);
  await join.stop();
  await join.close();
  t.ok(fake.adminDisconnected(), 'the probe admin is disconnected');
  t.equal(fake.closed(), 1, 'the side is closed');
});

t.test('once joined, the probe reports a broker that stops answering, and its return', async (t) => {
  const fake = fakeSide({ failures: 0 });
  const join = createKafkaJoin({ side: fake.side, logger: silentLogger(), probeIntervalMs: 10 });
  join.begin();
  await join.whenJoined();
  fake.setBrokerAnswers(false);
  await sleep(50);
  t.match(join.problem(), /^the broker does not answer: connection refused/);
  t.equal(join.joined(), true, 'still joined: the problem is separate');
  fake.setBrokerAnswers(true);
  await sleep(50);
  t.equal(join.problem(), undefined);
  await join.stop();
  const count = fake.describes();
  await sleep(50);
  t.equal(fake.describes(), count, 'no probe after stop');
});

t.test('a stop during the backoff ends the attempts at once; whenJoined never resolves', async (t) => {
  const fake = fakeSide({ failures: Number.POSITIVE_INFINITY });
  const join = createKafkaJoin({ side: fake.side, logger: silentLogger(), retryDelayMs: () => 60_000 });
  join.begin();
  await sleep(5);
  const began = Date.now();
  await join.stop();
  t.ok(Date.now() - began < 500, 'the 60 s backoff is not sat out');
  t.equal(fake.starts(), 1, 'no attempt after the stop');
  t.equal(join.joined(), false);
  const settled = await Promise.race([join.whenJoined().then(() => 'joined'), sleep(30).then(() => 'pending')]);
  t.equal(settled, 'pending');
});
