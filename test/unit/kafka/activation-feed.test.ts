/**
 * The feed's own logic against a scripted kafkajs consumer: the paths a real
 * broker does not produce on demand (non-retriable crashes, redeliveries of
 * offsets already taken, a handler that breaks its promise not to reject).
 * The Kafka contract itself is tested against the real broker in
 * test/integration/kafka.
 */
import t from 'tap';
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { parseAcknowledgement, serializeActivationMessage } from '../../../protocol/index.js';
import { createActivationFeed, type CompletionRecord } from '../../../invoker/kafka/activation-feed.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { ActivationIds } from '../../../invoker/invocation/activation-ids.js';
import { InvokerMetrics } from '../../../invoker/telemetry/metrics.js';
import { StubCore, activationMessage, instanceId, sleep } from '../../integration/kafka/helpers.js';

const EVENTS = {
  GROUP_JOIN: 'consumer.group_join',
  REBALANCING: 'consumer.rebalancing',
  CRASH: 'consumer.crash',
} as const;

class ScriptedConsumer {
  readonly events = EVENTS;
  eachBatch: ((payload: EachBatchPayload) => Promise<void>) | undefined;
  disconnected = false;
  pauses: string[] = [];
  private readonly listeners = new Map<string, Array<(event: { payload: unknown }) => void>>();

  on(name: string, listener: (event: { payload: unknown }) => void): () => void {
    this.listeners.set(name, [...(this.listeners.get(name) ?? []), listener]);
    return () => undefined;
  }
  emit(name: string, payload: unknown): void {
    for (const l of this.listeners.get(name) ?? []) l({ payload });
  }
  async connect(): Promise<void> {}
  async subscribe(): Promise<void> {}
  async run(config: { eachBatch: (payload: EachBatchPayload) => Promise<void> }): Promise<void> {
    this.eachBatch = config.eachBatch;
    this.emit(EVENTS.GROUP_JOIN, { groupId: 'g', memberId: 'm', memberAssignment: {}, duration: 1 });
  }
  pause(): void {
    this.pauses.push('pause');
  }
  resume(): void {
    this.pauses.push('resume');
  }
  async disconnect(): Promise<void> {
    this.disconnected = true;
  }
}

function setup(slots: number, extra: { ids?: ActivationIds } = {}) {
  const consumers: ScriptedConsumer[] = [];
  const kafka = {
    consumer: () => {
      const c = new ScriptedConsumer();
      consumers.push(c);
      return c as unknown as Consumer;
    },
  } as unknown as Kafka;
  const instance = instanceId(42);
  const core = new StubCore(slots, instance);
  const sent: CompletionRecord[] = [];
  const metrics = new InvokerMetrics({ invokerId: 42, processMetrics: false });
  const feed = createActivationFeed({
    kafka,
    instance,
    handler: core,
    admission: core,
    completions: { send: async (c) => void sent.push(c) },
    logger: silentLogger(),
    metrics,
    consumer: { heartbeatInterval: 50 },
    restartBackoff: { initialMs: 20, maxMs: 40 },
    ...extra,
  });
  return { consumers, core, sent, feed, metrics };
}

interface ScriptedPass {
  payload: EachBatchPayload;
  resolved: string[];
  commits: string[];
  heartbeats: number;
}

function pass(values: Array<string | null>, firstOffset = 0, stale = () => false): ScriptedPass {
  const messages = values.map(
    (value, i): KafkaMessage => ({
      key: null,
      value: value === null ? null : Buffer.from(value),
      timestamp: '0',
      attributes: 0,
      offset: String(firstOffset + i),
      headers: {},
    }),
  );
  const result: ScriptedPass = { resolved: [], commits: [], heartbeats: 0, payload: undefined as unknown as EachBatchPayload };
  result.payload = {
    batch: {
      topic: 'invoker42',
      partition: 0,
      highWatermark: String(firstOffset + values.length),
      messages,
      isEmpty: () => messages.length === 0,
      firstOffset: () => String(firstOffset),
      lastOffset: () => String(firstOffset + values.length - 1),
      offsetLag: () => '0',
      offsetLagLow: () => '0',
    },
    resolveOffset: (offset) => void result.resolved.push(offset),
    heartbeat: async () => void result.heartbeats++,
    pause: () => () => undefined,
    commitOffsetsIfNecessary: async (offsets) => {
      for (const topic of offsets?.topics ?? []) for (const p of topic.partitions) result.commits.push(p.offset);
    },
    uncommittedOffsets: () => ({ topics: [] }),
    isRunning: () => true,
    isStale: stale,
  };
  return result;
}

t.test('commits each hand-over before waiting for the next free slot', async (t) => {
  const { consumers, core, feed } = setup(1);
  await feed.start();
  const messages = [activationMessage('c0'), activationMessage('c0'), activationMessage('c0')];
  const p = pass(messages.map(serializeActivationMessage));
  const running = consumers[0]!.eachBatch!(p.payload);
  await core.waitForCalls(1);
  await sleep(120);
  t.same(p.commits, ['1'], 'offset 0 committed while the pass waits for a slot');
  t.ok(p.heartbeats >= 1, 'heartbeats while holding the batch');
  t.equal(core.calls.length, 1);
  core.finishOldest(1);
  await core.waitForCalls(2);
  core.finishOldest(1);
  await core.waitForCalls(3);
  await running;
  t.same(p.resolved, ['0', '1', '2']);
  t.same(p.commits, ['1', '2', '3']);
  core.finishAll();
  await feed.stop();
  await feed.whenIdle();
});

t.test('offsets this process already handed over are skipped when redelivered', async (t) => {
  const { consumers, core, feed } = setup(10);
  await feed.start();
  const messages = [activationMessage('c0'), activationMessage('c0'), activationMessage('c0')];
  const wire = messages.map(serializeActivationMessage);
  await consumers[0]!.eachBatch!(pass(wire.slice(0, 2)).payload);
  t.equal(core.calls.length, 2);
  // A rebalance (or a failed commit) makes kafkajs fetch from the last committed offset again.
  const again = pass(wire, 0);
  await consumers[0]!.eachBatch!(again.payload);
  t.same(core.activationIds(), messages.map((m) => m.activationId), 'each message handed over once');
  t.same(again.resolved, ['0', '1', '2'], 'the skipped ones are still resolved');
  t.same(again.commits, ['3']);
  core.finishAll();
  await feed.stop();
});

t.test('a handler that rejects still gets its controller an answer', async (t) => {
  const { consumers, feed, sent, core } = setup(10);
  core.handle = async () => {
    throw new Error('bug');
  };
  await feed.start();
  const message = activationMessage('c7');
  await consumers[0]!.eachBatch!(pass([serializeActivationMessage(message)]).payload);
  await feed.whenIdle();
  t.equal(sent.length, 1);
  t.same(sent[0]?.controller, { asString: 'c7' });
  t.match(parseAcknowledgement(sent[0]!.completion), {
    kind: 'combined',
    isSystemError: true,
    response: { activationId: message.activationId, response: { statusCode: 3 } },
  });
  t.equal(feed.inFlight(), 0);
  await feed.stop();
});

t.test('closed admission pauses the topic and ends the pass; reopening resumes', async (t) => {
  const { consumers, core, feed } = setup(10);
  await feed.start();
  core.setAccepting(false);
  const p = pass([serializeActivationMessage(activationMessage('c0'))]);
  await consumers[0]!.eachBatch!(p.payload);
  t.same(p.resolved, [], 'nothing resolved');
  t.same(consumers[0]!.pauses, ['pause']);
  core.setAccepting(true);
  t.same(consumers[0]!.pauses, ['pause', 'resume']);
  await feed.stop();
});

t.test('stop ends a pass that waits for capacity, without taking more', async (t) => {
  const { consumers, core, feed } = setup(1);
  await feed.start();
  const p = pass([activationMessage('c0'), activationMessage('c0')].map(serializeActivationMessage));
  const running = consumers[0]!.eachBatch!(p.payload);
  await core.waitForCalls(1);
  const stopped = feed.stop();
  await running;
  await stopped;
  t.equal(core.calls.length, 1);
  t.same(p.resolved, ['0']);
  t.ok(consumers[0]!.disconnected, 'the consumer left');
  core.finishAll();
});

t.test('a non-retriable crash restarts the consumer with backoff; a retriable one is left to kafkajs', async (t) => {
  const { consumers, feed } = setup(1);
  await feed.start();
  t.equal(consumers.length, 1);
  consumers[0]!.emit(EVENTS.CRASH, { error: new Error('retriable'), groupId: 'g', restart: true });
  await sleep(60);
  t.equal(consumers.length, 1, 'kafkajs restarts retriable crashes itself');

  consumers[0]!.emit(EVENTS.CRASH, { error: new Error('fatal'), groupId: 'g', restart: false });
  t.equal(consumers.length, 1, 'not at once');
  await sleep(60);
  t.equal(consumers.length, 2, 'a new consumer after the backoff');
  t.ok(consumers[0]!.disconnected, 'the crashed one is disconnected');
  await feed.whenJoined();

  await feed.stop();
  consumers[1]!.emit(EVENTS.CRASH, { error: new Error('fatal'), groupId: 'g', restart: false });
  await sleep(60);
  t.equal(consumers.length, 2, 'no restart after stop');
});

t.test('unreadable messages: committed, counted, answered when possible', async (t) => {
  const { consumers, feed, sent, core, metrics } = setup(10);
  await feed.start();
  const valid = activationMessage('c0');
  const p = pass([
    null,
    '{"broken',
    JSON.stringify({ activationId: valid.activationId.replace(/^./, 'b'), rootControllerIndex: { asString: 'c9' } }),
    serializeActivationMessage(valid),
  ]);
  await consumers[0]!.eachBatch!(p.payload);
  t.same(p.resolved, ['0', '1', '2', '3']);
  t.equal(core.calls.length, 1);
  await sleep(10);
  t.same(sent.map((s) => s.controller.asString), ['c9'], 'one answer so far, to the controller named in the message');
  t.same(
    core.rejections.map((r) => [r.salvaged.reason, r.salvaged.controller?.asString, r.transport]),
    [
      ['empty', undefined, 'kafka'],
      ['invalid_json', undefined, 'kafka'],
      ['invalid_message', 'c9', 'kafka'],
    ],
    'every unreadable message goes to handler.reject; only the addressable one is answered',
  );
  t.match(core.rejections[2]?.problem, /^ActivationMessage\./, "the parser's complaint, naming the field");
  t.match(parseAcknowledgement(sent[0]!.completion), { kind: 'combined', isSystemError: true, response: valid.activationId.replace(/^./, 'b') });
  core.finishAll();
  await feed.stop();
  await feed.whenIdle();
  t.same(sent.map((s) => s.activationId).at(-1), valid.activationId, 'then the valid one’s completion');
  const rejected = await metrics.kafkaMessagesRejected.get();
  t.same(
    Object.fromEntries(rejected.values.map((v) => [v.labels.reason, v.value])),
    { empty: 1, invalid_json: 1, invalid_message: 1 },
  );
});

t.test('a message whose activation id runs here (or just ran) is skipped, whichever transport took it first', async (t) => {
  const ids = new ActivationIds();
  const { consumers, core, feed, sent } = setup(10, { ids });
  await feed.start();
  const message = activationMessage('c0');
  t.ok(ids.claim(message.activationId), 'taken over HTTP meanwhile');
  const p = pass([serializeActivationMessage(message), serializeActivationMessage(message)]);
  await consumers[0]!.eachBatch!(p.payload);
  t.equal(core.calls.length, 0, 'not run a second time');
  t.same(p.resolved, ['0', '1'], 'committed all the same');
  ids.finish(message.activationId);
  const again = activationMessage('c0');
  await consumers[0]!.eachBatch!(pass([serializeActivationMessage(again), serializeActivationMessage(again)], 2).payload);
  t.equal(core.calls.length, 1, 'two copies in Kafka run once');
  core.finishAll();
  await feed.stop();
  await feed.whenIdle();
  t.equal(ids.state(again.activationId), 'finished');
  t.same(sent.map((c) => c.activationId), [again.activationId]);
});

t.test('names upstream refuses, or that pick a reserved CouchDB id, are rejected; no record under _design', async (t) => {
  const { consumers, core, feed, sent } = setup(10);
  await feed.start();
  const design = activationMessage('c3', { user: { ...activationMessage('c3').user, namespace: { name: '_design', uuid: 'u' } } });
  const badPath = activationMessage('c3', { action: { path: '_design', name: 'x' } });
  await consumers[0]!.eachBatch!(pass([serializeActivationMessage(design), serializeActivationMessage(badPath)]).payload);
  await feed.whenIdle();
  t.equal(core.calls.length, 0);
  t.same(sent.map((c) => c.activationId), [design.activationId, badPath.activationId], 'the controller is told at once');
  t.match(parseAcknowledgement(sent[0]!.completion), { isSystemError: true });
  t.same(core.stored.map((d) => d._id), [`guest/${badPath.activationId}`], 'a record only under a namespace that may start an id');
  await feed.stop();
});

t.test('HTTP push filling the invoker does not starve the overflow: one reserved slot for the feed', async (t) => {
  const { consumers, core, feed } = setup(0); // no free slot at all: HTTP push holds them
  await feed.start();
  const p = pass([activationMessage('c0'), activationMessage('c0')].map(serializeActivationMessage));
  const running = consumers[0]!.eachBatch!(p.payload);
  await core.waitForCalls(1);
  await sleep(100);
  t.equal(core.calls.length, 1, 'one runs on the reserved slot, the next waits');
  core.finishOldest(1);
  await core.waitForCalls(2);
  t.equal(core.calls.length, 2, 'the next one once the reserved slot is free again');
  core.finishAll();
  await feed.stop();
  await running;
});
