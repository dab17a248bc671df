/**
 * Metrics, spans and the structured log after a known sequence of activations
 * through a real invoker (in this process, with an in-memory span exporter and
 * an in-memory log). Nothing is registered globally.
 */
import t from 'tap';
import { SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { randomBytes } from 'node:crypto';
import { InvokerTestbed, responseOf } from '../../helpers/invoker-harness.js';
import { API_KEY_SECRET, memoryLogger, parseExposition, removeContainersAtTeardown, samplesOf, valueOf, waitUntil } from './helpers.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
t.teardown(() => provider.shutdown());
const tracer = provider.getTracer('transport-telemetry-test');
const log = memoryLogger('info');

const bed = new InvokerTestbed(t);
removeContainersAtTeardown(t, bed.invokerId);
await bed.createDatabases();
const invoker = await bed.start({}, { tracer, logger: log.logger });
const ok = { name: 'ok', ...(await bed.putAction({ name: 'ok', code: 'function main() { return { fine: true }; }' })) };
const fails = { name: 'fails', ...(await bed.putAction({ name: 'fails', code: "function main() { return { error: 'x' }; }" })) };
const missing = { name: 'missing', rev: null };

const activationIds: string[] = [];

async function invoke(message: ReturnType<typeof bed.message>, headers: Record<string, string> = {}) {
  activationIds.push(message.activationId);
  const result = await invoker.invoke(message, headers);
  if (result.status !== 200) throw new Error(`invoke answered ${result.status}: ${result.body}`);
  return responseOf(result.ack);
}

const rootOf = (activationId: string): ReadableSpan | undefined =>
  exporter.getFinishedSpans().find((s) => s.name === 'activation' && s.attributes['whisk.activation_id'] === activationId);

async function spansOf(activationId: string): Promise<{ root: ReadableSpan; children: ReadableSpan[] }> {
  await waitUntil(() => rootOf(activationId) !== undefined, `the root span of ${activationId}`, 5000);
  const root = rootOf(activationId)!;
  const { traceId, spanId } = root.spanContext();
  const children = exporter
    .getFinishedSpans()
    .filter((s) => s.spanContext().traceId === traceId && s.parentSpanContext?.spanId === spanId);
  return { root, children };
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

t.test('a known sequence: 2 successes (cold, warm), 1 application error, 1 action not found', async (t) => {
  const first = bed.message(ok);
  const second = bed.message(ok);
  const failing = bed.message(fails);
  const notFound = bed.message(missing);
  t.equal((await invoke(first)).statusCode, 0);
  t.equal((await invoke(second)).statusCode, 0);
  t.equal((await invoke(failing)).statusCode, 1, 'return {error} is an application error');
  t.equal((await invoke(notFound)).statusCode, 1, 'an action missing at the invoker is an application error (as upstream)');

  t.test('GET /metrics', async (t) => {
    const metrics = await invoker.get('/metrics');
    t.equal(metrics.status, 200);
    const samples = parseExposition(metrics.body);
    const own = { invoker: String(bed.invokerId) };
    const activations = (status: string) => valueOf(samples, 'invoker_activations_total', { ...own, transport: 'http', status });
    t.equal(activations('success'), 2, 'invoker_activations_total{transport="http",status="success"} 2');
    t.equal(activations('application_error'), 2, 'application_error 2: the {error} result and the missing action');
    t.equal(activations('developer_error') ?? 0, 0);
    t.equal(activations('system_error') ?? 0, 0);
    t.same(samplesOf(samples, 'invoker_activations_total', { transport: 'kafka' }), [], 'nothing over Kafka');

    const count = (name: string, labels: Record<string, string> = {}) => valueOf(samples, `${name}_count`, { ...own, ...labels });
    t.equal(count('invoker_activation_run_seconds'), 3, 'three /run calls (the missing action never ran)');
    t.equal(count('invoker_activation_wait_seconds'), 3, 'a wait per run');
    t.equal(count('invoker_activation_init_seconds'), 2, 'two cold /init calls (ok, fails); the warm run had none');
    t.equal(count('invoker_log_collection_seconds'), 3, 'logs collected after each run');
    t.equal(count('invoker_activation_seconds', { transport: 'http' }), 4, 'every HTTP activation timed end to end');
    t.equal(valueOf(samples, 'invoker_container_starts_total', { origin: 'cold' }), 2);
    t.equal(valueOf(samples, 'invoker_container_starts_total', { origin: 'warm' }), 1);
    // Two cold starts: each created and started one container through the engine.
    t.equal(count('invoker_docker_operation_seconds', { operation: 'create', outcome: 'ok' }), 2, 'Docker creates are timed');
    t.equal(count('invoker_docker_operation_seconds', { operation: 'start', outcome: 'ok' }), 2, 'Docker starts are timed');
    const runSum = valueOf(samples, 'invoker_activation_run_seconds_sum', own) ?? -1;
    t.ok(runSum > 0 && runSum < 30, `run seconds sum ${runSum}`);

    const pool = JSON.parse((await invoker.get('/pool')).body) as {
      containers: Array<{ state: string }>;
      totals: { usedMb: number; byState: Record<string, number> };
    };
    const containers = samplesOf(samples, 'invoker_containers', own);
    t.ok(containers.length > 0, 'invoker_containers is exposed, by state');
    t.equal(
      containers.reduce((sum, s) => sum + s.value, 0),
      pool.containers.length,
      'invoker_containers adds up to the containers /pool lists',
    );
    for (const sample of containers) t.equal(sample.value, pool.totals.byState[sample.labels.state ?? ''], `state ${sample.labels.state}`);
    const used = valueOf(samples, 'invoker_memory_used_mb', own);
    t.equal(used, pool.totals.usedMb, 'invoker_memory_used_mb matches /pool');
    t.ok((used ?? 0) >= 128, `a warm 128 MiB container is kept (${used} MiB)`);
    t.ok(valueOf(samples, 'invoker_memory_free_mb', own) !== undefined, 'invoker_memory_free_mb');
  });

  t.test('spans: one root per activation, a child per phase', async (t) => {
    const expectations: Array<[string, string, string[]]> = [
      ['cold success', first.activationId, ['acquire', 'fetch', 'init', 'logs', 'run', 'store']],
      ['warm success', second.activationId, ['acquire', 'fetch', 'logs', 'run', 'store']],
      ['application error', failing.activationId, ['acquire', 'fetch', 'init', 'logs', 'run', 'store']],
      ['not found', notFound.activationId, ['fetch', 'store']],
    ];
    for (const [what, id, phases] of expectations) {
      const { root, children } = await spansOf(id);
      t.equal(root.parentSpanContext, undefined, `${what}: the activation span is a root`);
      t.equal(root.attributes['whisk.activation_id'], id, `${what}: whisk.activation_id`);
      t.equal(root.attributes['whisk.transport'], 'http');
      t.same(children.map((s) => s.name).sort(), phases, `${what}: phases ${phases.join(', ')}`);
      t.ok(children.every((s) => s.endTime[0] > 0), 'every child ended');
    }
    const roots = exporter.getFinishedSpans().filter((s) => s.name === 'activation');
    t.equal(roots.length, 4, 'exactly one activation span per activation');
    const { root, children } = await spansOf(notFound.activationId);
    t.equal(root.attributes['whisk.status_code'], 1);
    t.equal(children.find((s) => s.name === 'fetch')?.status.code, SpanStatusCode.ERROR, 'the failed fetch is marked');
  });
});

t.test('trace context: the message traceContext, else the HTTP traceparent header', async (t) => {
  const check = async (what: string, activationId: string, traceId: string, spanId: string) => {
    const { root, children } = await spansOf(activationId);
    t.equal(root.spanContext().traceId, traceId, `${what}: the activation joins trace ${traceId}`);
    t.equal(root.parentSpanContext?.spanId, spanId, `${what}: its parent is the caller's span`);
    t.equal(root.parentSpanContext?.isRemote, true);
    t.ok(children.length >= 4, `${what}: the phases are in the same trace`);
  };

  const fromMessage = { traceId: hex(16), spanId: hex(8) };
  const withContext = bed.message(ok, { traceContext: { traceparent: `00-${fromMessage.traceId}-${fromMessage.spanId}-01` } });
  await invoke(withContext);
  await check('message traceContext', withContext.activationId, fromMessage.traceId, fromMessage.spanId);

  const fromHeader = { traceId: hex(16), spanId: hex(8) };
  const plain = bed.message(ok);
  await invoke(plain, { traceparent: `00-${fromHeader.traceId}-${fromHeader.spanId}-01` });
  await check('HTTP traceparent header', plain.activationId, fromHeader.traceId, fromHeader.spanId);

  const both = bed.message(ok, { traceContext: { traceparent: `00-${fromMessage.traceId}-${fromMessage.spanId}-01` } });
  await invoke(both, { traceparent: `00-${fromHeader.traceId}-${fromHeader.spanId}-01` });
  await check('both (the message wins)', both.activationId, fromMessage.traceId, fromMessage.spanId);
});

t.test('the structured log: one activation event per activation, never the API key', async (t) => {
  await waitUntil(
    () => activationIds.every((id) => log.lines().some((l) => l.event === 'activation' && l.activationId === id)),
    'an activation line for every activation',
    5000,
  );
  const lines = log.lines();
  const events = lines.filter((l) => l.event === 'activation');
  t.equal(events.length, activationIds.length, `${activationIds.length} activation lines in all`);
  for (const id of activationIds) {
    const mine = events.filter((l) => l.activationId === id);
    t.equal(mine.length, 1, `exactly one activation line for ${id}`);
    t.type(mine[0]?.statusCode, 'number', 'it carries the status code');
  }
  t.ok(lines.length > events.length, 'other lines were logged too (the check below covers them)');
  t.notOk(log.text().includes(API_KEY_SECRET), 'the API key is in no log line');
  const pool = await invoker.get('/pool');
  t.notOk(pool.body.includes(API_KEY_SECRET), 'nor in GET /pool');
  t.notOk(pool.body.includes('23bc46b1-71f6-4ed5-8c54-816aa4f8c502:'), 'nor the key id with it');
});
