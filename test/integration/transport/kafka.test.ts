/**
 * The Kafka transport end to end: a real invoker in this process reads
 * `invoker<N>`, runs the activation in a real container, stores the record,
 * answers on `completed<C>` and pings on `health`, all against the real broker.
 */
import t from 'tap';
import {
  ackActivationId,
  parseAcknowledgement,
  parsePingMessage,
  serializeActivationMessage,
  type AcknowledgementMessage,
  type PingMessage,
} from '../../../protocol/index.js';
import { InvokerTestbed, responseOf } from '../../helpers/invoker-harness.js';
import {
  ADMIN_AUTH,
  ADMIN_ENV,
  env,
  parseExposition,
  samplesOf,
  sleep,
  TopicReader,
  valueOf,
  kafkaTransportFixture,
} from './helpers.js';
import { request } from 'undici';

const bed = new InvokerTestbed(t);
const { controller, invokerTopic, completedTopic, healthTopic, kafka, completions, producer } = await kafkaTransportFixture(t, bed, 'transport-kafka-test');

const invoker = await bed.start({
  ...ADMIN_ENV,
  KAFKA_BROKERS: env.kafkaBrokers.join(','),
  INVOKER_HEALTH_PING_INTERVAL_MS: '250',
});
// After the invoker created `<prefix>health` with its settings; only pings from now on.
const health = await TopicReader.open(kafka, healthTopic, { fromBeginning: false });
t.teardown(() => health.close());

const echo = { name: 'echo', ...(await bed.putAction({ name: 'echo', code: 'function main(p) { return { got: p.name ?? null }; }' })) };

async function send(...messages: ReturnType<typeof bed.message>[]): Promise<void> {
  await producer.send({ topic: invokerTopic, acks: -1, messages: messages.map((m) => ({ value: serializeActivationMessage(m) })) });
}

async function completionOf(activationId: string, timeoutMs = 20_000): Promise<AcknowledgementMessage> {
  const value = await completions.waitFor(
    (v) => ackActivationId(parseAcknowledgement(v)) === activationId,
    `the completion of ${activationId} on ${completedTopic}`,
    { timeoutMs },
  );
  return parseAcknowledgement(value);
}

/** A test for pings of this invoker with the given `isEnabled`. */
function ourPing(isEnabled: boolean): (value: string) => boolean {
  return (value) => {
    let ping: PingMessage;
    try {
      ping = parsePingMessage(value);
    } catch {
      return false; // someone else's garbage on the shared topic
    }
    return ping.instance.instance === bed.invokerId && ping.isEnabled === isEnabled;
  };
}

const adminPost = async (path: string) => {
  const response = await request(`${invoker.url}${path}`, { method: 'POST', headers: ADMIN_AUTH });
  return { status: response.statusCode, text: await response.body.text() };
};

t.test('an activation produced to invoker<N>: completion on completed<C>, record stored', async (t) => {
  const message = bed.message(echo, { controller, content: { name: 'kafka' } });
  await send(message);
  const ack = await completionOf(message.activationId);
  t.equal(ack.kind, 'combined', 'a combined completion-and-result message');
  t.equal(ackActivationId(ack), message.activationId);
  if (ack.kind === 'combined') t.same(ack.instance.instance, bed.invokerId, 'names this invoker');
  t.same(responseOf(ack).result, { got: 'kafka' }, 'blocking: the full activation');
  const record = await bed.waitForRecord('guest', message.activationId);
  t.same((record.response as { result: unknown }).result, { got: 'kafka' }, 'the record is stored');
});

t.test('a non-blocking activation: the completion carries only the activation id', async (t) => {
  const message = bed.message(echo, { controller, blocking: false, content: { name: 'async' } });
  await send(message);
  const ack = await completionOf(message.activationId);
  t.equal(ack.kind, 'combined');
  if (ack.kind === 'combined') t.equal(ack.response, message.activationId, 'shrunk: the id, not the activation');
  const record = await bed.waitForRecord('guest', message.activationId);
  t.same((record.response as { result: unknown }).result, { got: 'async' }, 'the result is in the record');
});

t.test('health pings; /disable sends a disabled ping and holds the feed; /enable resumes both', async (t) => {
  await health.waitFor(ourPing(true), `an enabled ping of invoker ${bed.invokerId}`);
  t.pass('enabled pings on health');

  const ready = JSON.parse((await invoker.get('/health/ready')).body) as { checks: Array<{ name: string; ok: boolean }> };
  t.same(ready.checks.map((c) => c.name).sort(), ['docker', 'kafka', 'startup', 'store'], 'readiness checks Kafka too');
  t.ok(ready.checks.every((c) => c.ok));

  let from = health.values.length;
  const disabled = await adminPost('/disable');
  t.equal(disabled.status, 200);
  t.equal(disabled.text, `invoker${bed.invokerId} is now disabled.`);
  await health.waitFor(ourPing(false), 'a disabled ping', { from });
  t.pass('a ping with isEnabled false');

  // While disabled the feed holds: nothing is taken off invoker<N>.
  const held = bed.message(echo, { controller, content: { name: 'held' } });
  await send(held);
  await sleep(1500);
  const seen = completions.values.filter((v) => ackActivationId(parseAcknowledgement(v)) === held.activationId);
  t.equal(seen.length, 0, 'no completion while disabled');
  const ours = health.values.slice(from).filter((v) => ourPing(true)(v) || ourPing(false)(v));
  const disabledAt = ours.findIndex(ourPing(false));
  t.notOk(ours.slice(disabledAt + 1).some(ourPing(true)), 'no enabled ping after the disabled one');

  from = health.values.length;
  const enabled = await adminPost('/enable');
  t.equal(enabled.status, 200);
  t.equal(enabled.text, `invoker${bed.invokerId} is now enabled.`);
  await health.waitFor(ourPing(true), 'an enabled ping after /enable', { from });
  t.pass('enabled pings again');
  const ack = await completionOf(held.activationId);
  t.same(responseOf(ack).result, { got: 'held' }, 'the held message runs after /enable');
});

t.test('an unreadable message with an id, controller and namespace: system-error completion and record', async (t) => {
  const { action: _action, ...broken } = JSON.parse(serializeActivationMessage(bed.message(echo, { controller }))) as Record<string, unknown>;
  const activationId = broken.activationId as string;
  await producer.send({ topic: invokerTopic, acks: -1, messages: [{ value: JSON.stringify(broken) }] });
  const ack = await completionOf(activationId);
  t.equal(ack.kind, 'combined');
  if (ack.kind === 'combined') t.equal(ack.isSystemError, true, 'a system error');
  const record = await bed.waitForRecord('guest', activationId);
  const response = record.response as { statusCode: number; result: { error: string } };
  t.equal(response.statusCode, 3, 'the record is a whisk error');
  t.match(response.result.error, /^The invoker could not read the activation message: ActivationMessage\.action/, 'it names the missing field');
});

t.test('GET /metrics counts the Kafka activations under transport="kafka"', async (t) => {
  const samples = parseExposition((await invoker.get('/metrics')).body);
  const own = { invoker: String(bed.invokerId) };
  t.equal(valueOf(samples, 'invoker_activations_total', { ...own, transport: 'kafka', status: 'success' }), 3, 'three successes over Kafka');
  t.same(samplesOf(samples, 'invoker_activations_total', { transport: 'http' }), [], 'none over HTTP');
  t.equal(valueOf(samples, 'invoker_activation_seconds_count', { ...own, transport: 'kafka' }), 3, 'each timed from receipt to completion');
  t.equal(valueOf(samples, 'invoker_kafka_consumer_lag', { ...own, partition: '0' }), 0, 'no lag left on invoker<N>');
});
