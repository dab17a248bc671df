/**
 * SIGTERM drain of a real invoker process with activations in flight on both
 * transports: new work is refused, both activations complete (the HTTP body,
 * the Kafka completion), both records are stored, the process exits 0 and
 * leaves no containers behind.
 */
import t from 'tap';
import { request } from 'undici';
import { ackActivationId, parseAcknowledgement, parsePingMessage, serializeActivationMessage } from '../../../protocol/index.js';
import { InvokerTestbed, responseOf } from '../../helpers/invoker-harness.js';
import {
  ADMIN_AUTH,
  ADMIN_ENV,
  env,
  invokerContainers,
  sleepingAction,
  TopicReader,
  waitUntil,
  withTimeout,
  kafkaTransportFixture,
} from './helpers.js';

const bed = new InvokerTestbed(t);
const { controller, invokerTopic, healthTopic, kafka, completions, producer } = await kafkaTransportFixture(t, bed, 'transport-drain-test');
const sleeper = { name: 'sleeper', ...(await bed.putAction({ name: 'sleeper', code: sleepingAction(2000) })) };

t.test('SIGTERM with an HTTP and a Kafka activation in flight', async (t) => {
  const { invoker, child, exited } = await bed.spawn({ ...ADMIN_ENV, KAFKA_BROKERS: env.kafkaBrokers.join(',') });
  const output = () => invoker.output?.() ?? '';
  // Opened after the invoker created `<prefix>health`; only pings from now on.
  const health = await TopicReader.open(kafka, healthTopic, { fromBeginning: false });
  t.teardown(() => health.close());
  const ourPing = (isEnabled: boolean) => (value: string) => {
    try {
      const ping = parsePingMessage(value);
      return ping.instance.instance === bed.invokerId && ping.isEnabled === isEnabled;
    } catch {
      return false;
    }
  };
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  t.teardown(() => {
    if (exitCode !== 0) t.comment(`invoker output:\n${output()}`);
  });

  const viaHttp = bed.message(sleeper, { controller, content: { name: 'http' } });
  const viaKafka = bed.message(sleeper, { controller, content: { name: 'kafka' } });

  const response = await request(`${invoker.url}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: serializeActivationMessage(viaHttp),
  });
  t.equal(response.statusCode, 200, 'the HTTP activation is acknowledged');
  const httpBody = response.body.text();
  httpBody.catch(() => undefined); // awaited below; a failure must not be an unhandled rejection meanwhile
  await producer.send({ topic: invokerTopic, acks: -1, messages: [{ value: serializeActivationMessage(viaKafka) }] });

  // Both activations hold a container: the Kafka one has been taken off the topic.
  await waitUntil(async () => {
    const pool = JSON.parse((await invoker.get('/pool')).body) as { totals: { inFlight: number } };
    return pool.totals.inFlight >= 2;
  }, 'two activations in flight');
  t.equal(exitCode, undefined, 'still running before the signal');

  child.kill('SIGTERM');
  const signalledAt = health.values.length;
  await waitUntil(async () => (await invoker.get('/health/ready')).status === 503, 'readiness to report the drain', 5000);
  const refused = await request(`${invoker.url}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: serializeActivationMessage(bed.message(sleeper, { controller })),
  });
  const refusedText = await refused.body.text();
  t.equal(refused.statusCode, 503, 'a new /invoke during the drain is refused');
  t.equal(refused.headers['retry-after'], '5');
  t.match(JSON.parse(refusedText), { error: /not accepting activations: the invoker is shutting down/ });
  t.equal(exitCode, undefined, 'still draining while the activations run');

  // An operator toggling the invoker during the drain must not bring it back into scheduling.
  for (const path of ['/disable', '/enable']) {
    const toggled = await request(`${invoker.url}${path}`, { method: 'POST', headers: ADMIN_AUTH });
    await toggled.body.text();
    t.equal(toggled.statusCode, 200, `POST ${path} during the drain`);
  }
  const stillRefused = await request(`${invoker.url}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: serializeActivationMessage(bed.message(sleeper, { controller })),
  });
  await stillRefused.body.text();
  t.equal(stillRefused.statusCode, 503, '/enable does not end the drain');

  const ack = parseAcknowledgement(await withTimeout(httpBody, 20_000, 'the HTTP completion'));
  t.equal(ackActivationId(ack), viaHttp.activationId, 'the HTTP body is the completion');
  t.same(responseOf(ack).result, { slept: 2000, echo: 'http' });

  const kafkaValue = await completions.waitFor(
    (v) => ackActivationId(parseAcknowledgement(v)) === viaKafka.activationId,
    'the Kafka completion',
  );
  const kafkaAck = parseAcknowledgement(kafkaValue);
  t.equal(kafkaAck.kind, 'combined');
  t.same(responseOf(kafkaAck).result, { slept: 2000, echo: 'kafka' }, 'the Kafka completion arrives on completed<C>');

  const code = await withTimeout(exited, 30_000, 'the invoker to exit');
  t.equal(code, 0, 'the process exits 0 after the drain');

  await health.waitFor(ourPing(false), 'a disabled ping after SIGTERM', { from: signalledAt, timeoutMs: 5000 });
  const after = health.values.slice(signalledAt).filter((v) => ourPing(true)(v) || ourPing(false)(v));
  const firstDisabled = after.findIndex(ourPing(false));
  t.notOk(after.slice(firstDisabled).some(ourPing(true)), 'the drain announced itself on health: no enabled ping after the disabled one');

  for (const message of [viaHttp, viaKafka]) {
    const record = await bed.waitForRecord('guest', message.activationId, 5000);
    t.equal((record.response as { statusCode: number }).statusCode, 0, `record of ${message.activationId} stored`);
  }
  const records = await bed.allRecords();
  t.equal(records.length, 2, 'only the two admitted activations left records');
  t.same(await invokerContainers(bed.invokerId), [], `no container labelled whisk.invoker=${bed.invokerId} remains`);
  t.match(output(), /"signal received: draining"/);
  t.notMatch(output(), /123zO3xZ/, 'the API key never reaches the log');
});
