/**
 * Shared by the transport end-to-end tests (not a test file): Kafka readers
 * and writers of our own, topic and group cleanup, admin credentials, the
 * containers an invoker id left behind, and a Prometheus exposition reader.
 */
import { randomInt } from 'node:crypto';
import { Writable } from 'node:stream';
import Dockerode from 'dockerode';
import { Partitioners, type Consumer, type Kafka, type Producer } from 'kafkajs';
import { createKafkaClient } from '../../../invoker/kafka/client.js';
import { topicNames } from '../../../invoker/kafka/topics.js';
import { createLogger, silentLogger, type Logger } from '../../../invoker/telemetry/logger.js';
import { testEnvironment } from '../../helpers/env.js';
import type { InvokerTestbed } from '../../helpers/invoker-harness.js';

export const env = testEnvironment();
export const docker = new Dockerode();

export const ADMIN_USER = 'ops';
export const ADMIN_PASSWORD = 'tr4nsp0rt-s3cret';
export const ADMIN_ENV = { INVOKER_ADMIN_USER: ADMIN_USER, INVOKER_ADMIN_PASSWORD: ADMIN_PASSWORD };
export const ADMIN_AUTH = { authorization: `Basic ${Buffer.from(`${ADMIN_USER}:${ADMIN_PASSWORD}`).toString('base64')}` };

/** The secret part of the API key the harness puts in every message. */
export const API_KEY_SECRET = '123zO3xZ';

/** An action that answers after `ms` milliseconds. */
export function sleepingAction(ms: number): string {
  return `function main(p) { return new Promise((r) => setTimeout(() => r({ slept: ${ms}, echo: p.name ?? null }), ${ms})); }`;
}

/** A controller index of our own, so that `completed<C>` holds only our completions. */
export function uniqueController(): string {
  return `9${randomInt(100_000, 1_000_000)}`;
}

export function testKafka(clientId: string): Kafka {
  return createKafkaClient({ brokers: env.kafkaBrokers, clientId, logger: silentLogger() });
}

interface TapLike {
  teardown(fn: () => unknown): void;
}

/** Reads one topic into `values` (raw strings) with a group of its own, removed at close. */
export class TopicReader {
  readonly values: string[] = [];
  private constructor(
    private readonly kafka: Kafka,
    private readonly consumer: Consumer,
    readonly groupId: string,
  ) {}

  /** `fromBeginning: false`: only messages produced after the group joined. Resolves once it has joined. */
  static async open(kafka: Kafka, topic: string, options: { fromBeginning: boolean }): Promise<TopicReader> {
    const groupId = `transport-test-${topic}-${randomInt(1e9)}`;
    const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100 });
    const reader = new TopicReader(kafka, consumer, groupId);
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: options.fromBeginning });
    await consumer.run({
      eachMessage: async ({ message }) => {
        reader.values.push(message.value?.toString('utf8') ?? '');
      },
    });
    await withTimeout(joined, 20_000, `joining a group on ${topic}`);
    return reader;
  }

  /** Resolves with the first value (at index >= `from`) that `predicate` accepts. */
  async waitFor(predicate: (value: string) => boolean, what: string, options: { from?: number; timeoutMs?: number } = {}): Promise<string> {
    const timeoutMs = options.timeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.values.slice(options.from ?? 0).find(predicate);
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; have ${this.values.length} messages`);
      await sleep(25);
    }
  }

  async close(): Promise<void> {
    await this.consumer.disconnect().catch(() => undefined);
    await deleteGroups(this.kafka, [this.groupId]);
  }
}

export async function connectedProducer(kafka: Kafka): Promise<Producer> {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  return producer;
}

/** Creates `topics` (1 partition) unless they exist, e.g. `completed<C>` before anybody reads it. */
export async function createTopics(kafka: Kafka, topics: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: topics.map((topic) => ({ topic, numPartitions: 1 })) });
  } finally {
    await admin.disconnect();
  }
}

/** Removes topics and consumer groups this test made; missing ones are fine. */
export async function deleteTopicsAndGroups(kafka: Kafka, topics: string[], groups: string[] = []): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
    const existing = new Set(await admin.listTopics());
    const ours = topics.filter((topic) => existing.has(topic));
    if (ours.length > 0) await admin.deleteTopics({ topics: ours });
  } finally {
    await admin.disconnect();
  }
}

export async function deleteGroups(kafka: Kafka, groups: string[]): Promise<void> {
  await deleteTopicsAndGroups(kafka, [], groups).catch(() => undefined);
}

/** Containers (any state) labelled as belonging to invoker `invokerId`. */
export async function invokerContainers(invokerId: number): Promise<Dockerode.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`whisk.invoker=${invokerId}`] } });
}

/** Removes whatever containers an invoker id left behind (a failed test must not leak them). */
export function removeContainersAtTeardown(t: TapLike, invokerId: number): void {
  t.teardown(async () => {
    for (const info of await invokerContainers(invokerId)) {
      await docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
    }
  });
}

/** A pino logger writing into memory; `lines()` parses what it wrote. */
export function memoryLogger(level: 'info' | 'debug' = 'info'): { logger: Logger; text: () => string; lines: () => Array<Record<string, unknown>> } {
  let text = '';
  const destination = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  const logger = createLogger({ level, destination });
  return {
    logger,
    text: () => text,
    lines: () =>
      text
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition. */
export function parseExposition(body: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) throw new Error(`unexpected exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The samples named `name` whose labels include `labels`. */
export function samplesOf(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one sample named `name` with `labels`; undefined when absent. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samplesOf(samples, name, labels);
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

import { withTimeout } from '../../helpers/timeout.js';
export { withTimeout };

export async function waitUntil(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * What a Kafka end-to-end test needs around its invoker: a controller index
 * and completed<C> topic of its own, a reader on it and a producer, all
 * removed at teardown (with invoker<N>, its group, the health topic and the
 * invoker's containers). Every name is under the testbed's topic prefix, as
 * the invoker names them.
 */
export async function kafkaTransportFixture(t: TapLike, bed: InvokerTestbed, name: string) {
  const controller = uniqueController();
  const names = topicNames(bed.topicPrefix);
  const invokerTopic = names.invoker(bed.invokerId);
  const completedTopic = names.completed(controller);
  const healthTopic = names.health;
  const kafka = testKafka(`${name}-${bed.invokerId}`);
  // Teardowns run last-registered first: the invoker stops before its topics go.
  t.teardown(() => deleteTopicsAndGroups(kafka, [invokerTopic, completedTopic, healthTopic], [invokerTopic]));
  removeContainersAtTeardown(t, bed.invokerId);
  await bed.createDatabases();
  await createTopics(kafka, [completedTopic]);
  const completions = await TopicReader.open(kafka, completedTopic, { fromBeginning: true });
  t.teardown(() => completions.close());
  const producer = await connectedProducer(kafka);
  t.teardown(() => producer.disconnect());
  return { controller, invokerTopic, completedTopic, healthTopic, kafka, completions, producer };
}
