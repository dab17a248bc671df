/**
 * The system under test, as an operator runs it: one controller-lb and two
 * invokers as real processes (`node --import tsx ...`), on the real Docker
 * engine and CouchDB-compatible server, and on a private Kafka broker
 * (kafka-broker.ts). Between the processes and the services sit TCP proxies
 * the test controls, so outages can be injected without stopping anything
 * shared:
 *
 *   processes --> couchProxy --> the shared CouchDB-compatible server
 *   processes --> kafkaProxy --> the private broker (advertised at the proxy)
 *
 * The invokers are ids 2 and 3 (other tests' invokers use ids from 100, the
 * demo 0), of `INVOKER_COUNT=4`: with upstream's blackbox share (the last
 * 10 % of `n`, at least one) every id of 4 runs managed actions. Their HTTP
 * ports are `<base><id>` for a random free base
 * (`INVOKER_URL_TEMPLATE=http://127.0.0.1:<base>{id}`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logLevel } from 'kafkajs';
import { request } from 'undici';
import { createTopicManager, HEALTH_TOPIC } from '../../invoker/kafka/topics.js';
import { silentLogger } from '../../invoker/telemetry/logger.js';
import { CouchServer } from '../../controller-lb/couch-db.js';
import { GUEST_KEY, GUEST_UUID } from '../../controller-lb/identity-store.js';
import { runIdentityCommand } from '../../controller-lb/identity.js';
import { testEnvironment, uniqueName } from '../helpers/env.js';
import { kafkaLibs, PrivateKafka, REPO_ROOT } from './kafka-broker.js';
import { freePort, portIsFree } from './ports.js';
import { TcpProxy } from './tcp-proxy.js';
import { testKafka } from '../helpers/kafka.js';

export const NAMESPACE = 'guest';
export const AUTH = `Basic ${Buffer.from(`${GUEST_UUID}:${GUEST_KEY}`).toString('base64')}`;

export interface SystemOptions {
  /** User memory of each invoker (small: slots fill and the balancer overflows to Kafka). */
  invokerMemoryMb?: number;
  /** Blocking calls answer 202 after this (the controller's CONTROLLER_BLOCKING_TIMEOUT_MS). */
  blockingTimeoutMs?: number;
  /** The "+ 1 min" of the forced-completion timer. */
  forcedCompletionExtraMs?: number;
  /** Extra environment for every process. */
  env?: Record<string, string>;
}

interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

export class InvokerProcess {
  proc: Proc | undefined;
  constructor(
    readonly id: number,
    readonly journalDir: string,
    private readonly system: SystemUnderTest,
  ) {}

  get port(): number {
    return this.system.portBase * 10 + this.id;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.child.pid;
  }

  async start(): Promise<void> {
    this.proc = this.system.spawnProcess(`invoker${this.id}`, 'invoker/main.ts', this.system.invokerEnv(this));
    await this.system.waitHttp(`invoker${this.id}`, `${this.url}/health/ready`, 120_000, this.proc);
  }

  /** kill -9: no drain, no disabled ping, the journal left as it is. */
  async kill9(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined) return;
    proc.child.kill('SIGKILL');
    await proc.exited;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 30_000);
    await proc.exited;
    clearTimeout(timer);
  }

  alive(): boolean {
    return this.proc !== undefined && this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }
}

export class SystemUnderTest {
  readonly env = testEnvironment();
  readonly dir = mkdtempSync(join(tmpdir(), 'system-test-'));
  readonly whisksDb = uniqueName('sys-whisks');
  readonly activationsDb = uniqueName('sys-activations');
  readonly subjectsDb = uniqueName('sys-subjects');
  readonly couchProxy = new TcpProxy(new URL(this.env.couchdbUrl).hostname, Number(new URL(this.env.couchdbUrl).port || 5984));
  kafkaProxy: TcpProxy | undefined;
  kafka: PrivateKafka | undefined;
  controllerPort = 0;
  /** Invoker `id` listens on `portBase * 10 + id`. */
  portBase = 0;
  controller: Proc | undefined;
  invokers: InvokerProcess[] = [];
  readonly couch = new CouchServer({ url: this.env.couchdbUrl });
  readonly #procs: Proc[] = [];

  constructor(readonly options: SystemOptions = {}) {}

  get controllerUrl(): string {
    return `http://127.0.0.1:${this.controllerPort}`;
  }

  async start(): Promise<void> {
    const libs = kafkaLibs();
    if (libs === undefined) throw new Error('no Kafka jars: run scripts/services.sh up kafka first (it fetches them into .cache/kafka)');
    const brokerPort = await freePort();
    this.kafkaProxy = new TcpProxy('127.0.0.1', brokerPort);
    await this.kafkaProxy.start();
    this.kafka = new PrivateKafka(this.dir, libs, this.kafkaProxy.port);
    await this.couchProxy.start();
    this.portBase = await freePortBase();
    this.invokers = INVOKER_IDS.map((id) => new InvokerProcess(id, join(this.dir, `journal-${id}`), this));
    this.controllerPort = await freePort();
    // The broker takes the longest: start it while the databases are made.
    const broker = this.kafka.start(brokerPort);
    for (const db of [this.whisksDb, this.activationsDb, this.subjectsDb]) {
      const res = await request(`${this.env.couchdbUrl}/${encodeURIComponent(db)}`, { method: 'PUT' });
      await res.body.dump();
      if (res.statusCode !== 201 && res.statusCode !== 412) throw new Error(`creating database ${db}: ${res.statusCode}`);
    }
    const created = await runIdentityCommand(this.couch.db(this.subjectsDb), ['create', 'guest']);
    if (created.code !== 0) throw new Error(`creating the guest identity: ${created.out}`);
    await broker;
    await this.#createTopics();
    await Promise.all(this.invokers.map((invoker) => invoker.start()));
    this.controller = this.spawnProcess('controller', 'controller-lb/main.ts', this.controllerEnv());
    await this.waitHttp('controller', `${this.controllerUrl}/invokers`, 120_000, this.controller);
    await this.waitAllUp(120_000);
  }

  /**
   * The topics the processes would create, created first with the same
   * settings (invoker/kafka/topics.ts): on a broker seconds old, two
   * invokers creating theirs at once can meet UNKNOWN_TOPIC_OR_PARTITION,
   * which stops an invoker's start.
   */
  async #createTopics(): Promise<void> {
    const kafka = testKafka({ brokers: (this.kafka as PrivateKafka).brokers, clientId: 'system-test-setup', logLevel: logLevel.NOTHING });
    const topics = createTopicManager({ kafka, logger: silentLogger() });
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          for (const invoker of this.invokers) await topics.ensureTopic('invoker', `invoker${invoker.id}`);
          await topics.ensureTopic('health', HEALTH_TOPIC);
          await topics.ensureTopic('completed', 'completed0');
          return;
        } catch (error) {
          if (attempt >= 10) throw error;
          await sleep(1000);
        }
      }
    } finally {
      await topics.close();
    }
  }

  invokerEnv(invoker: InvokerProcess): Record<string, string> {
    return {
      INVOKER_ID: String(invoker.id),
      INVOKER_HTTP_HOST: '127.0.0.1',
      INVOKER_HTTP_PORT: String(invoker.port),
      INVOKER_USER_MEMORY_MB: String(this.options.invokerMemoryMb ?? 256),
      INVOKER_PREWARM_COUNT: '0',
      INVOKER_JOURNAL_DIR: invoker.journalDir,
      INVOKER_DOCKER_NETWORK: this.env.dockerNetwork,
      KAFKA_BROKERS: (this.kafka as PrivateKafka).brokers.join(','),
      COUCHDB_URL: this.couchProxy.url,
      COUCHDB_WHISKS_DB: this.whisksDb,
      COUCHDB_ACTIVATIONS_DB: this.activationsDb,
      ACTION_IMAGE_NODEJS20: this.env.actionImageNodejs,
      ACTION_IMAGE_NODEJS24: this.env.actionImageNodejs24,
      LOG_LEVEL: 'info',
      ...this.options.env,
    };
  }

  controllerEnv(): Record<string, string> {
    return {
      CONTROLLER_ID: '0',
      CONTROLLER_HOST: '127.0.0.1',
      CONTROLLER_PORT: String(this.controllerPort),
      INVOKER_URL_TEMPLATE: `http://127.0.0.1:${this.portBase}{id}`,
      INVOKER_COUNT: String(INVOKER_COUNT),
      INVOKER_USER_MEMORY_MB: String(this.options.invokerMemoryMb ?? 256),
      KAFKA_BROKERS: (this.kafka as PrivateKafka).brokers.join(','),
      COUCHDB_URL: this.couchProxy.url,
      COUCHDB_WHISKS_DB: this.whisksDb,
      COUCHDB_ACTIVATIONS_DB: this.activationsDb,
      COUCHDB_SUBJECTS_DB: this.subjectsDb,
      CONTROLLER_JOURNAL_DIR: join(this.dir, 'controller-journal'),
      CONTROLLER_BLOCKING_TIMEOUT_MS: String(this.options.blockingTimeoutMs ?? 30_000),
      CONTROLLER_FORCED_COMPLETION_EXTRA_MS: String(this.options.forcedCompletionExtraMs ?? 5_000),
      LOG_LEVEL: 'info',
      ...this.options.env,
    };
  }

  spawnProcess(name: string, entry: string, env: Record<string, string>): Proc {
    const log = join(this.dir, `${name}.log`);
    const fd = openSync(log, 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, entry)], {
      cwd: REPO_ROOT,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...(process.env['DOCKER_HOST'] ? { DOCKER_HOST: process.env['DOCKER_HOST'] } : {}), ...env },
      stdio: ['ignore', fd, fd],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const proc = { name, child, log, exited };
    this.#procs.push(proc);
    return proc;
  }

  async waitHttp(what: string, url: string, timeoutMs: number, proc: Proc): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (proc.child.exitCode !== null) throw new Error(`${what} exited with ${proc.child.exitCode} while starting:\n${this.logTail(proc.log)}`);
      try {
        const res = await request(url, { headersTimeout: 2000, bodyTimeout: 2000 });
        await res.body.dump();
        if (res.statusCode === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > until) throw new Error(`${what} did not answer ${url} within ${timeoutMs} ms:\n${this.logTail(proc.log)}`);
      await sleep(300);
    }
  }

  logTail(file: string, lines = 30): string {
    try {
      return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** The controller's `GET /invokers`. */
  async invokerStatuses(): Promise<Record<string, string>> {
    const res = await request(`${this.controllerUrl}/invokers`, { headersTimeout: 5000, bodyTimeout: 5000 });
    return (await res.body.json()) as Record<string, string>;
  }

  /** Our invokers' statuses (the pool also lists ids below ours, never pinged, as `down`). */
  async ownStatuses(): Promise<Record<string, string>> {
    const all = await this.invokerStatuses();
    return Object.fromEntries(this.invokers.map((invoker) => [`invoker${invoker.id}`, all[`invoker${invoker.id}`] ?? 'absent']));
  }

  /** Resolves with the ms until every one of our invokers shows `up` at the controller. */
  async waitAllUp(timeoutMs: number): Promise<number> {
    const started = Date.now();
    for (;;) {
      try {
        const statuses = await this.ownStatuses();
        if (Object.values(statuses).every((s) => s === 'up')) return Date.now() - started;
        if (Date.now() - started > timeoutMs) throw new Error(`invokers not all up after ${timeoutMs} ms: ${JSON.stringify(statuses)}`);
      } catch (error) {
        if (Date.now() - started > timeoutMs) throw error;
      }
      await sleep(250);
    }
  }

  /** `PUT` an action through the controller's API, as `wsk action create` does. */
  async createAction(name: string, code: string, limits: { memory?: number; timeout?: number } = {}): Promise<void> {
    const res = await request(`${this.controllerUrl}/api/v1/namespaces/${NAMESPACE}/actions/${name}?overwrite=true`, {
      method: 'PUT',
      headers: { authorization: AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ exec: { kind: 'nodejs:20', code }, limits: { memory: limits.memory ?? 128, timeout: limits.timeout ?? 60_000 } }),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`creating action ${name}: ${res.statusCode} ${text}`);
  }

  /** Every record in the activations database whose id is `<namespace>/<activationId>`, by activation id (count per id). */
  async storedRecords(): Promise<Map<string, { count: number; doc: Record<string, unknown> }>> {
    const res = await request(`${this.env.couchdbUrl}/${encodeURIComponent(this.activationsDb)}/_all_docs?include_docs=true`, { headersTimeout: 30_000, bodyTimeout: 60_000 });
    const body = (await res.body.json()) as { rows?: Array<{ id: string; doc?: Record<string, unknown> }> };
    const out = new Map<string, { count: number; doc: Record<string, unknown> }>();
    for (const row of body.rows ?? []) {
      if (row.id.startsWith('_design/') || row.doc === undefined) continue;
      const activationId = String(row.doc['activationId'] ?? row.id.split('/').pop());
      const seen = out.get(activationId);
      out.set(activationId, { count: (seen?.count ?? 0) + 1, doc: row.doc });
    }
    return out;
  }

  /** Action containers of one invoker (label `whisk.invoker=<id>`). */
  containerIds(invokerId: number): Promise<string[]> {
    return new Promise((resolve) => {
      const child = spawn('docker', ['ps', '-q', '--filter', `label=whisk.invoker=${invokerId}`]);
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.once('exit', () => resolve(out.split('\n').filter((line) => line.trim() !== '')));
    });
  }

  processesAlive(): Record<string, boolean> {
    return Object.fromEntries(this.#procs.filter((p) => p === this.controller || this.invokers.some((i) => i.proc === p)).map((p) => [p.name, p.child.exitCode === null && p.child.signalCode === null]));
  }

  /** Runs per activation id, from the invokers' `"event":"activation"` log lines (all incarnations): transports. */
  invokerRuns(): Map<string, string[]> {
    const runs = new Map<string, string[]>();
    for (const invoker of this.invokers) {
      let text = '';
      try {
        text = readFileSync(join(this.dir, `invoker${invoker.id}.log`), 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n')) {
        if (!line.includes('"event":"activation"')) continue;
        try {
          const entry = JSON.parse(line) as { activationId?: string; transport?: string };
          if (entry.activationId === undefined) continue;
          runs.set(entry.activationId, [...(runs.get(entry.activationId) ?? []), entry.transport ?? '?']);
        } catch {
          // a line cut by kill -9
        }
      }
    }
    return runs;
  }

  /** Lines of the controller's JSON log whose msg matches. */
  controllerLog(match: RegExp): Array<Record<string, unknown>> {
    if (this.controller === undefined) return [];
    const out: Array<Record<string, unknown>> = [];
    for (const line of readFileSync(this.controller.log, 'utf8').split('\n')) {
      if (!match.test(line)) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    const controller = this.controller;
    if (controller !== undefined && controller.child.exitCode === null) {
      controller.child.kill('SIGTERM');
      const timer = setTimeout(() => controller.child.kill('SIGKILL'), 15_000);
      await controller.exited;
      clearTimeout(timer);
    }
    await Promise.all(this.invokers.map((invoker) => invoker.stop()));
    for (const proc of this.#procs) if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
    await this.kafka?.stop();
    await this.kafkaProxy?.close();
    await this.couchProxy.close();
    for (const db of [this.whisksDb, this.activationsDb, this.subjectsDb]) {
      await request(`${this.env.couchdbUrl}/${encodeURIComponent(db)}`, { method: 'DELETE' }).then((r) => r.body.dump(), () => undefined);
    }
    await this.couch.close();
    if (process.env['SYSTEM_TEST_KEEP'] === undefined) rmSync(this.dir, { recursive: true, force: true });
  }
}

export const INVOKER_IDS = [2, 3] as const;
const INVOKER_COUNT = 4;

/** A base b (2000-6499) such that ports b0 .. b<INVOKER_COUNT - 1> are free. */
async function freePortBase(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 2000 + Math.floor(Math.random() * 4500);
    let free = true;
    for (let id = 0; id < INVOKER_COUNT && free; id++) free = await portIsFree(base * 10 + id);
    if (free) return base;
  }
  throw new Error('no free port range for the invokers');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
