/**
 * Shared by the Kafka integration tests: unique ids, a controllable stub
 * handler and admission (these tests are about the Kafka contract; the
 * end-to-end test with the real core lives elsewhere), readers of the topics
 * the invoker writes, and ways to look at the group's committed offsets.
 */
import { guestIdentity } from '../../helpers/identity.js';
import { randomInt } from 'node:crypto';
import { Kafka, Partitioners, type Admin, type Consumer, type Producer } from 'kafkajs';
import {
  combinedAck,
  generateActivationId,
  megabytes,
  RawJson,
  serializeAcknowledgement,
  serializeActivationMessage,
  shrinkAck,
  success,
  type ActivationDocument,
  type ActivationMessage,
  type InvokerInstanceId,
} from '../../../protocol/index.js';
import type {
  ActivationOutcome,
  ActivationRejection,
  ActivationRequest,
  Admission,
  RejectingActivationHandler,
} from '../../../invoker/invocation/activation-handler.js';
import { InvocationCore, type RunnableContainer } from '../../../invoker/invocation/invocation-core.js';
import { InvokerMetrics } from '../../../invoker/telemetry/metrics.js';
import { defaultTracer } from '../../../invoker/telemetry/tracing.js';
import { createKafkaClient } from '../../../invoker/kafka/client.js';
import { createLogger, silentLogger, type Logger } from '../../../invoker/telemetry/logger.js';
import { testEnvironment } from '../../helpers/env.js';

export const env = testEnvironment();

/** TEST_LOG_LEVEL=debug shows (on stderr) what the Kafka side logs during a test. */
export function testLogger(): Logger {
  const level = process.env.TEST_LOG_LEVEL;
  return level ? createLogger({ level: level as 'debug', destination: process.stderr }) : silentLogger();
}

export function testKafka(clientId: string): Kafka {
  return createKafkaClient({ brokers: env.kafkaBrokers, clientId, logger: testLogger() });
}

/** Invoker ids 1000-9999 and a random controller id keep topics apart across test files. */
export function uniqueIds(): { invokerId: number; controllerId: string } {
  return { invokerId: randomInt(1000, 10_000), controllerId: `t${randomInt(1000, 10_000)}x${process.pid}` };
}

export function instanceId(invokerId: number): InvokerInstanceId {
  return { instance: invokerId, userMemory: megabytes(1024), tags: [], dedicatedNamespaces: [] };
}

export function activationMessage(controllerId: string, overrides: Partial<ActivationMessage> = {}): ActivationMessage {
  return {
    transid: { id: 'kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa', start: 1717171717171 },
    action: { path: 'guest', name: 'hello', version: '0.0.1' },
    revision: '1-6b0c4c2f8a3e',
    user: guestIdentity(),
    activationId: generateActivationId(),
    rootControllerIndex: { asString: controllerId },
    blocking: true,
    content: RawJson.of({ name: 'World' }),
    initArgs: [],
    lockedArgs: {},
    ...overrides,
  };
}

/** The completion a real core would produce for a successful run. */
export function successOutcome(message: ActivationMessage, instance: InvokerInstanceId): ActivationOutcome {
  const ack = combinedAck(
    message.transid,
    {
      namespace: message.user.namespace.name,
      name: message.action.name,
      subject: message.user.subject,
      activationId: message.activationId,
      start: 1717171717200,
      end: 1717171717250,
      response: success({ greeting: 'Hello World' }, 26),
      logs: ['2024-05-31T16:08:37.2Z stdout: hi'],
      version: '0.0.1',
      publish: false,
      annotations: [{ key: 'path', value: 'guest/hello' }],
      duration: 50,
    },
    instance,
  );
  return {
    activationId: message.activationId,
    controller: message.rootControllerIndex,
    statusCode: 0,
    completion: serializeAcknowledgement(ack),
    shrunkCompletion: serializeAcknowledgement(shrinkAck(ack)),
  };
}

interface Call {
  request: ActivationRequest;
  finish(outcome?: ActivationOutcome): void;
}

/**
 * A handler whose activations end when the test says so, and an admission
 * whose capacity is `slots` minus the activations running, as the contract
 * requires (`freeSlots()` counts an activation from the moment it is handed over).
 * Unreadable messages go to a real InvocationCore's `reject` (it never needs a
 * container or an action for them), so the records in `stored` and the
 * completions are the invoker's own.
 */
export class StubCore implements RejectingActivationHandler, Admission {
  readonly calls: Call[] = [];
  /** The records `reject` stored. */
  readonly stored: ActivationDocument[] = [];
  readonly rejections: ActivationRejection[] = [];
  private readonly core: InvocationCore<RunnableContainer>;
  running = 0;
  maxRunning = 0;
  private open = true;
  private readonly listeners = new Set<() => void>();
  private readonly callWaiters: Array<{ count: number; resolve: () => void }> = [];

  constructor(
    private slots: number,
    private readonly instance: InvokerInstanceId,
  ) {
    const unused = (what: string) => () => Promise.reject(new Error(`the stub core's reject path needs no ${what}`));
    this.core = new InvocationCore<RunnableContainer>({
      instance,
      actions: { get: unused('action') },
      containers: { acquire: unused('container') },
      images: { imageFor: () => undefined, ensureImage: unused('image') },
      records: { store: async (doc) => void this.stored.push(doc) },
      decryptor: undefined,
      payloadLimitBytes: 1024 * 1024,
      metrics: new InvokerMetrics({ invokerId: instance.instance, processMetrics: false }),
      tracer: defaultTracer(),
      logger: silentLogger(),
    });
  }

  reject(rejection: ActivationRejection): Promise<ActivationOutcome | undefined> {
    this.rejections.push(rejection);
    return this.core.reject(rejection);
  }

  handle(request: ActivationRequest): Promise<ActivationOutcome> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    return new Promise((resolve) => {
      let done = false;
      this.calls.push({
        request,
        finish: (outcome) => {
          if (done) return;
          done = true;
          this.running--;
          resolve(outcome ?? successOutcome(request.message, this.instance));
          this.emit();
        },
      });
      for (const w of this.callWaiters.filter((w) => this.calls.length >= w.count)) {
        this.callWaiters.splice(this.callWaiters.indexOf(w), 1);
        w.resolve();
      }
    });
  }

  accepting(): boolean {
    return this.open;
  }
  refusalReason(): string | undefined {
    return this.open ? undefined : 'disabled';
  }
  freeSlots(): number {
    return Math.max(0, this.slots - this.running);
  }
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setSlots(slots: number): void {
    this.slots = slots;
    this.emit();
  }
  setAccepting(open: boolean): void {
    this.open = open;
    this.emit();
  }
  /** Ends the oldest running activations. */
  finishOldest(count: number): void {
    let left = count;
    for (const call of this.calls) {
      if (left === 0) break;
      const before = this.running;
      call.finish();
      if (this.running < before) left--;
    }
  }
  finishAll(): void {
    for (const call of this.calls) call.finish();
  }
  activationIds(): string[] {
    return this.calls.map((c) => c.request.message.activationId);
  }
  async waitForCalls(count: number, timeoutMs = 15_000): Promise<void> {
    if (this.calls.length >= count) return;
    await withTimeout(
      new Promise<void>((resolve) => this.callWaiters.push({ count, resolve })),
      timeoutMs,
      `waiting for ${count} handler calls (have ${this.calls.length})`,
    );
  }
  private emit(): void {
    for (const l of this.listeners) l();
  }
}

import { withTimeout } from '../../helpers/timeout.js';
export { withTimeout };

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Reads a topic from the beginning into `values`, as raw strings. */
export class TopicReader {
  readonly values: string[] = [];
  private constructor(
    private readonly kafka: Kafka,
    private readonly consumer: Consumer,
    private readonly groupId: string,
  ) {}

  static async open(kafka: Kafka, topic: string): Promise<TopicReader> {
    const groupId = `reader-${topic}-${randomInt(1e9)}`;
    const consumer = kafka.consumer({
      groupId,
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      maxWaitTimeInMs: 100,
    });
    const reader = new TopicReader(kafka, consumer, groupId);
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        reader.values.push(message.value?.toString('utf8') ?? '');
      },
    });
    return reader;
  }

  async waitFor(predicate: (values: string[]) => boolean, what: string, timeoutMs = 15_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.values)) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; have ${JSON.stringify(this.values)}`);
      await sleep(20);
    }
    return this.values;
  }

  async close(): Promise<void> {
    await this.consumer.disconnect();
    await deleteGroups(this.kafka, [this.groupId]);
  }
}

export async function connectedProducer(kafka: Kafka): Promise<Producer> {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  return producer;
}

export async function produce(producer: Producer, topic: string, values: Array<string | Buffer>): Promise<void> {
  await producer.send({ topic, acks: -1, messages: values.map((value) => ({ value })) });
}

export function wire(message: ActivationMessage): string {
  return serializeActivationMessage(message);
}

/** The group's committed offset on partition 0 (-1: nothing committed). */
export async function committedOffset(admin: Admin, groupId: string, topic: string): Promise<number> {
  const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] });
  const offset = entry?.partitions.find((p) => p.partition === 0)?.offset ?? '-1';
  return Number(offset);
}

/** Removes the consumer groups a test made (they would otherwise linger on the broker for days). */
export async function deleteGroups(kafka: Kafka, groupIds: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.deleteGroups(groupIds);
  } catch {
    // A group still in use or already gone: nothing to clean.
  } finally {
    await admin.disconnect();
  }
}
