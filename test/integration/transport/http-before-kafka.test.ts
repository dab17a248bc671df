/**
 * HTTP push does not wait for Kafka: an invoker whose Kafka broker does not
 * answer (a restarted invoker waiting out its group's old member looks the
 * same for 18-30 s) is ready for `/invoke` as soon as its pool and store are
 * up, reports Kafka as degraded, and runs pushed activations meanwhile.
 * With INVOKER_READINESS_KAFKA=required it stays unready instead.
 */
import t from 'tap';
import { createServer, type Socket } from 'node:net';
import { startInvoker } from '../../../invoker/invoker.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { InvokerTestbed, responseOf, TestInvoker } from '../../helpers/invoker-harness.js';
import { removeContainersAtTeardown } from './helpers.js';

/** A "broker" that accepts connections and never answers. */
const sockets = new Set<Socket>();
const silent = createServer((socket) => {
  sockets.add(socket);
  socket.on('error', () => undefined);
});
await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
const silentPort = (silent.address() as { port: number }).port;
t.teardown(() => {
  for (const socket of sockets) socket.destroy();
  silent.close();
});

const bed = new InvokerTestbed(t);
await bed.createDatabases();
removeContainersAtTeardown(t, bed.invokerId);
const echo = { name: 'echo', ...(await bed.putAction({ name: 'echo', code: 'function main(p) { return { got: p.name ?? null }; }' })) };

t.test('Kafka silent: ready for HTTP at once (Kafka degraded), and /invoke runs', async (t) => {
  const started = Date.now();
  const running = await startInvoker(bed.config({ KAFKA_BROKERS: `127.0.0.1:${silentPort}` }), { logger: silentLogger() });
  t.teardown(() => running.shutdown());
  const invoker = new TestInvoker(running.port, bed, running);
  t.ok(Date.now() - started < 15_000, `started in ${Date.now() - started} ms without waiting for Kafka`);

  // The store's first CouchDB call may still be under way; Kafka would not answer for minutes.
  let ready = await invoker.get('/health/ready');
  for (let i = 0; i < 50 && ready.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 200));
    ready = await invoker.get('/health/ready');
  }
  t.equal(ready.status, 200, `ready for HTTP work: ${ready.body}`);
  const body = JSON.parse(ready.body) as { status: string; degraded?: string[]; checks: Array<{ name: string; ok: boolean }> };
  t.same(body.degraded, ['kafka'], 'says Kafka is degraded');
  t.match(body.checks.find((c) => c.name === 'kafka'), { ok: false, optional: true });

  const result = await invoker.invoke(bed.message(echo, { content: { name: 'no kafka yet' } }));
  t.equal(result.status, 200);
  t.same(responseOf(result.ack).result, { got: 'no kafka yet' });
  await bed.waitForRecord('guest', result.ack === undefined ? '' : (result.ack as { response: { activationId: string } }).response.activationId);
});

t.test('INVOKER_READINESS_KAFKA=required: not ready while Kafka is silent', async (t) => {
  const running = await startInvoker(bed.config({ KAFKA_BROKERS: `127.0.0.1:${silentPort}`, INVOKER_READINESS_KAFKA: 'required' }), {
    logger: silentLogger(),
  });
  t.teardown(() => running.shutdown());
  const ready = await new TestInvoker(running.port, bed, running).get('/health/ready');
  t.equal(ready.status, 503);
  t.match(JSON.parse(ready.body), { status: 'not ready', checks: [{}, {}, {}, { name: 'kafka', ok: false }] });
});
