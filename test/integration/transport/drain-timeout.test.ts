/**
 * SIGTERM with activations that outlast the drain timeout, on both
 * transports: when INVOKER_DRAIN_TIMEOUT_MS passes, each one ends at once as
 * an explicit system error (the HTTP body, the Kafka completion on
 * completed<C>, the stored record), and the process exits 0 well within
 * shutdownBoundMs, leaving no containers behind.
 */
import t from 'tap';
import { request } from 'undici';
import { ackActivationId, parseAcknowledgement, serializeActivationMessage } from '../../../protocol/index.js';
import { INVOKER_STOPPED } from '../../../invoker/invocation/invocation-core.js';
import { shutdownBoundMs } from '../../../invoker/invoker.js';
import { InvokerTestbed, responseOf } from '../../helpers/invoker-harness.js';
import { env, invokerContainers, kafkaTransportFixture, sleepingAction, waitUntil, withTimeout } from './helpers.js';

const DRAIN_TIMEOUT_MS = 1500;
/** The action would run far longer than any bound here. */
const ACTION_MS = 60_000;

const bed = new InvokerTestbed(t);
const { controller, invokerTopic, completions, producer } = await kafkaTransportFixture(t, bed, 'transport-drain-timeout-test');
const slow = {
  name: 'slow',
  ...(await bed.putAction({ name: 'slow', code: sleepingAction(ACTION_MS), limits: { timeout: 2 * ACTION_MS } })),
};

t.test('the shutdown bound is the drain timeout plus 55 s (as README and the setting say)', async (t) => {
  t.equal(shutdownBoundMs(0), 55_000);
  t.equal(shutdownBoundMs(60_000), 115_000);
});

t.test('activations still running at the drain timeout end as system errors, promptly', async (t) => {
  const { invoker, child, exited } = await bed.spawn({
    KAFKA_BROKERS: env.kafkaBrokers.join(','),
    INVOKER_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
  });
  const output = () => invoker.output?.() ?? '';
  let exitCode: number | null | undefined;
  let exitedAt: number | undefined;
  void exited.then((code) => {
    exitCode = code;
    exitedAt = Date.now();
  });
  t.teardown(() => {
    if (exitCode !== 0) t.comment(`invoker output:\n${output()}`);
  });

  const viaHttp = bed.message(slow, { controller, content: { name: 'http' } });
  const viaKafka = bed.message(slow, { controller, content: { name: 'kafka' } });
  const response = await request(`${invoker.url}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: serializeActivationMessage(viaHttp),
  });
  t.equal(response.statusCode, 200, 'the HTTP activation is acknowledged');
  let httpAnsweredAt: number | undefined;
  const httpBody = response.body.text().then((text) => {
    httpAnsweredAt = Date.now();
    return text;
  });
  httpBody.catch(() => undefined); // awaited below
  await producer.send({ topic: invokerTopic, acks: -1, messages: [{ value: serializeActivationMessage(viaKafka) }] });
  // Both containers created and leased (cold starts take 0.3-2 s on a busy
  // machine); a moment later both actions are sleeping in /run.
  await waitUntil(async () => {
    const pool = JSON.parse((await invoker.get('/pool')).body) as { containers: Array<{ id: string | null; inFlight: number }> };
    return pool.containers.filter((c) => c.id !== null && c.inFlight === 1).length >= 2;
  }, 'both activations in their containers', 30_000);
  await new Promise((resolve) => setTimeout(resolve, 300));

  const signalledAt = Date.now();
  child.kill('SIGTERM');

  const ack = parseAcknowledgement(await withTimeout(httpBody, 15_000, 'the HTTP completion'));
  const httpMs = httpAnsweredAt! - signalledAt;
  t.ok(httpMs >= DRAIN_TIMEOUT_MS - 100, `the drain timeout was waited for (answered ${httpMs} ms after SIGTERM)`);
  t.ok(httpMs < DRAIN_TIMEOUT_MS + 5000, `answered soon after the drain timeout (${httpMs} ms, timeout ${DRAIN_TIMEOUT_MS} ms)`);
  t.equal(ackActivationId(ack), viaHttp.activationId, 'the HTTP body is its completion');
  t.same(responseOf(ack), { statusCode: 3, result: { error: INVOKER_STOPPED } }, 'an explicit system error');

  const kafkaAck = parseAcknowledgement(
    await completions.waitFor((v) => ackActivationId(parseAcknowledgement(v)) === viaKafka.activationId, 'the Kafka completion', {
      timeoutMs: 15_000,
    }),
  );
  t.equal(kafkaAck.kind, 'combined');
  t.same(responseOf(kafkaAck), { statusCode: 3, result: { error: INVOKER_STOPPED } }, 'the Kafka completion is the same system error');

  const code = await withTimeout(exited, shutdownBoundMs(DRAIN_TIMEOUT_MS), 'the invoker to exit within its shutdown bound');
  const exitMs = exitedAt! - signalledAt;
  t.equal(code, 0, 'the process exits 0');
  t.ok(exitMs < DRAIN_TIMEOUT_MS + 15_000, `exited ${exitMs} ms after SIGTERM (bound ${shutdownBoundMs(DRAIN_TIMEOUT_MS)} ms)`);

  for (const message of [viaHttp, viaKafka]) {
    const record = await bed.waitForRecord('guest', message.activationId, 5000);
    const stored = record.response as { statusCode: number; result: unknown };
    t.equal(stored.statusCode, 3, `record of ${message.activationId}: system error`);
    t.same(stored.result, { error: INVOKER_STOPPED });
    t.ok((record.duration as number) < ACTION_MS, `the record ends at the shutdown (duration ${String(record.duration)} ms)`);
    t.ok(
      (record.annotations as Array<{ key: string }>).some((a) => a.key === 'waitTime'),
      'the record shows the activation had started in its container',
    );
  }
  t.equal((await bed.allRecords()).length, 2, 'one record per activation');
  t.same(await invokerContainers(bed.invokerId), [], 'no container of this invoker remains');
  t.match(output(), /"drain timed out: ending the activations in flight as system errors"/);
  t.match(output(), /"ended":2/);
  t.match(output(), /"invoker stopped"/);
});
