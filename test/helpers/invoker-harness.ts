/**
 * End-to-end harness: a real invoker (in this process, or as a child process
 * for signal and crash tests) against the real Docker engine, CouchDB-compatible
 * server and (optionally) Kafka, on databases and an invoker id of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import nano from 'nano';
import { request } from 'undici';
import {
  generateActivationId,
  generateTransactionId,
  parseAcknowledgement,
  serializeActivationMessage,
  type AcknowledgementMessage,
  type ActivationMessage,
  type JsonValue,
  RawJson,
} from '../../protocol/index.js';
import { loadInvokerConfig, type InvokerConfig } from '../../invoker/config/config.js';
import { startInvoker, type RunningInvoker } from '../../invoker/invoker.js';
import { createLogger, silentLogger, type Logger } from '../../invoker/telemetry/logger.js';
import type { Tracer } from '@opentelemetry/api';
import { TEST_TOPIC_PREFIX, testEnvironment, uniqueName } from './env.js';
import { guestIdentity } from './identity.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface ActionSpec {
  name: string;
  /** JavaScript source for the `nodejs:20` kind. */
  code?: string;
  kind?: string;
  /** For blackbox actions. */
  image?: string;
  namespace?: string;
  limits?: Partial<{ timeout: number; memory: number; logs: number; concurrency: number }>;
  annotations?: Array<{ key: string; value: unknown }>;
  /** Replace the whole `exec` (e.g. to store a malformed one). */
  exec?: unknown;
}

export interface InvokeResult {
  status: number;
  /** ms from sending the request to receiving the headers. */
  headersMs: number;
  /** ms from sending the request to the end of the body. */
  totalMs: number;
  body: string;
  ack: AcknowledgementMessage | undefined;
}

/** The databases and settings one test file's invoker(s) use. */
export class InvokerTestbed {
  readonly env = testEnvironment();
  readonly invokerId: number;
  readonly whisksDb: string;
  readonly activationsDb: string;
  readonly journalDir: string;
  readonly couch: nano.ServerScope;
  /** KAFKA_TOPIC_PREFIX of the invokers started here: this process's own (see TEST_TOPIC_PREFIX). */
  readonly topicPrefix = TEST_TOPIC_PREFIX;

  constructor(
    private readonly t: Teardown,
    options: { couchdbUrl?: string; invokerId?: number } = {},
  ) {
    this.invokerId = options.invokerId ?? 100 + Math.floor(Math.random() * 9000);
    this.whisksDb = uniqueName('whisks');
    this.activationsDb = uniqueName('activations');
    this.journalDir = mkdtempSync(join(tmpdir(), 'invoker-journal-'));
    this.couchdbUrl = options.couchdbUrl ?? this.env.couchdbUrl;
    this.couch = nano(this.couchdbUrl);
    t.teardown(() => rmSync(this.journalDir, { recursive: true, force: true }));
  }

  couchdbUrl: string;

  async createDatabases(): Promise<void> {
    for (const db of [this.whisksDb, this.activationsDb]) {
      await this.couch.db.create(db).catch((e: { statusCode?: number }) => {
        if (e.statusCode !== 412) throw e;
      });
    }
    this.t.teardown(async () => {
      for (const db of [this.whisksDb, this.activationsDb]) await this.couch.db.destroy(db).catch(() => undefined);
    });
  }

  /** Environment for an invoker process (child) or the config loader (in-process). */
  invokerEnv(overrides: Record<string, string> = {}): Record<string, string> {
    return {
      INVOKER_ID: String(this.invokerId),
      INVOKER_HTTP_HOST: '127.0.0.1',
      INVOKER_HTTP_PORT: '0',
      INVOKER_USER_MEMORY_MB: '1024',
      INVOKER_DOCKER_NETWORK: this.env.dockerNetwork,
      ACTION_IMAGE_NODEJS20: this.env.actionImageNodejs,
      INVOKER_PREWARM_COUNT: '0',
      COUCHDB_URL: this.couchdbUrl,
      COUCHDB_WHISKS_DB: this.whisksDb,
      COUCHDB_ACTIVATIONS_DB: this.activationsDb,
      INVOKER_JOURNAL_DIR: this.journalDir,
      INVOKER_DRAIN_TIMEOUT_MS: '30000',
      KAFKA_TOPIC_PREFIX: this.topicPrefix,
      LOG_LEVEL: 'warn',
      ...overrides,
    };
  }

  config(overrides: Record<string, string> = {}): InvokerConfig {
    return loadInvokerConfig({ env: this.invokerEnv(overrides) });
  }

  /** Starts an invoker in this process; shut down at teardown. */
  async start(overrides: Record<string, string> = {}, options: { tracer?: Tracer; logger?: Logger } = {}): Promise<TestInvoker> {
    const invoker = await startInvoker(this.config(overrides), {
      logger: options.logger ?? (process.env.TEST_INVOKER_LOGS ? createLogger({ level: 'debug' }) : silentLogger()),
      ...(options.tracer ? { tracer: options.tracer } : {}),
    });
    const handle = new TestInvoker(invoker.port, this, invoker);
    this.t.teardown(() => invoker.shutdown());
    // Ready for HTTP before Kafka has joined; the tests here want both.
    await invoker.kafkaStarted();
    return handle;
  }

  /** Starts an invoker as a child process (`node --import tsx invoker/main.ts`). */
  async spawn(overrides: Record<string, string> = {}): Promise<{ invoker: TestInvoker; child: ChildProcess; exited: Promise<number | null> }> {
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'invoker/main.ts'], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: { ...process.env, ...this.invokerEnv({ INVOKER_HTTP_PORT: String(port), LOG_LEVEL: 'info', ...overrides }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    this.t.teardown(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    const invoker = new TestInvoker(port, this, undefined, () => output);
    await invoker.waitReady(60_000, exited);
    return { invoker, child, exited };
  }

  async putAction(spec: ActionSpec): Promise<{ rev: string; namespace: string }> {
    const namespace = spec.namespace ?? 'guest';
    const db = this.couch.use(this.whisksDb);
    const id = `${namespace}/${spec.name}`;
    const existing = await db.get(id).catch(() => undefined);
    const doc = {
      _id: id,
      ...(existing ? { _rev: existing._rev } : {}),
      entityType: 'action',
      namespace,
      name: spec.name,
      version: '0.0.1',
      publish: false,
      exec:
        spec.exec ??
        (spec.image
          ? { kind: 'blackbox', image: spec.image, binary: false, ...(spec.code ? { code: spec.code } : {}) }
          : { kind: spec.kind ?? 'nodejs:20', code: spec.code ?? 'function main(p){return p}', binary: false }),
      limits: { timeout: 10_000, memory: 128, logs: 10, concurrency: 1, ...spec.limits },
      parameters: [],
      annotations: spec.annotations ?? [],
    };
    const result = await db.insert(doc);
    return { rev: result.rev, namespace };
  }

  message(
    action: { name: string; rev: string | null; namespace?: string },
    options: { content?: JsonValue | RawJson; blocking?: boolean; invocationNamespace?: string; controller?: string; traceContext?: Record<string, string> } = {},
  ): ActivationMessage {
    const path = action.namespace ?? 'guest';
    const ns = options.invocationNamespace ?? path;
    return {
      transid: generateTransactionId(),
      action: { path, name: action.name, version: '0.0.1' },
      revision: action.rev,
      user: guestIdentity(ns),
      activationId: generateActivationId(),
      rootControllerIndex: { asString: options.controller ?? '0' },
      blocking: options.blocking ?? true,
      content: options.content instanceof RawJson ? options.content : RawJson.of(options.content ?? {}),
      initArgs: [],
      lockedArgs: {},
      ...(options.traceContext ? { traceContext: options.traceContext } : {}),
    };
  }

  /** Polls the activations database until the record appears (or `timeoutMs`). */
  async waitForRecord(namespace: string, activationId: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const db = this.couch.use<Record<string, unknown>>(this.activationsDb);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await db.get(`${namespace}/${activationId}`);
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`record ${namespace}/${activationId} not stored within ${timeoutMs} ms`, { cause: error });
        await sleep(100);
      }
    }
  }

  /** Every record in the activations database, with its revision count. */
  async allRecords(): Promise<Array<{ id: string; rev: string }>> {
    const db = this.couch.use(this.activationsDb);
    const list = await db.list();
    return list.rows.map((r) => ({ id: r.id, rev: r.value.rev }));
  }
}

export class TestInvoker {
  readonly url: string;

  constructor(
    readonly port: number,
    readonly testbed: InvokerTestbed,
    readonly running?: RunningInvoker,
    readonly output?: () => string,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  async invoke(message: ActivationMessage | string, headers: Record<string, string> = {}): Promise<InvokeResult> {
    const body = typeof message === 'string' ? message : serializeActivationMessage(message);
    const started = performance.now();
    const response = await request(`${this.url}/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
    });
    const headersMs = performance.now() - started;
    const text = await response.body.text();
    let ack: AcknowledgementMessage | undefined;
    if (response.statusCode === 200) ack = parseAcknowledgement(text);
    return { status: response.statusCode, headersMs, totalMs: performance.now() - started, body: text, ack };
  }

  async get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    const response = await request(`${this.url}${path}`, { headers });
    return { status: response.statusCode, body: await response.body.text() };
  }

  async waitReady(timeoutMs: number, exited?: Promise<number | null>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let gone = false;
    void exited?.then(() => (gone = true));
    for (;;) {
      if (gone) throw new Error(`invoker exited during startup:\n${this.output?.() ?? ''}`);
      const ready = await this.get('/health/ready').catch(() => undefined);
      // Fully started: ready, and nothing degraded (Kafka joined, when configured).
      if (ready?.status === 200 && !ready.body.includes('"degraded"')) return;
      if (Date.now() > deadline) throw new Error(`invoker not ready within ${timeoutMs} ms:\n${this.output?.() ?? ''}`);
      await sleep(200);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** The result object of a record or a full ack's activation. */
export function responseOf(ack: AcknowledgementMessage | undefined): { statusCode: number; result?: unknown; size?: number } {
  if (!ack || ack.kind === 'completion' || typeof ack.response === 'string') throw new Error('expected a full acknowledgement');
  return ack.response.response;
}
