/**
 * A whole system for end-to-end tests and the load script
 * (scripts/e2e-load.ts): a real controller-lb and real invokers as child
 * processes (`node --import tsx`), on the real Docker engine and the shared
 * CouchDB-compatible server, with a Kafka broker of their own.
 *
 * Faults are injected without touching shared services: CouchDB is reached
 * through a FaultProxy this process can cut; Kafka is a private broker
 * (PrivateKafka) whose advertised listener is a FaultProxy; invokers are
 * killed with SIGKILL and restarted with the same id, port and journal;
 * their action containers carry an owner label of their own
 * (INVOKER_CONTAINER_OWNER), so `docker kill` hits only them and their
 * startup cleanup never touches anyone else's containers.
 *
 * Accounting (see `account`): every activation the controller handed an id
 * out for has exactly one completion at the controller, exactly one stored
 * record, ran at most once on the invokers, and every record that is not a
 * success is explained by an expected cause.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Dockerode from 'dockerode';
import { Agent, request } from 'undici';
import { ANNOTATION_FORCED_COMPLETION } from '../../protocol/index.js';
import { CouchServer } from '../../controller-lb/couch-db.js';
import { runIdentityCommand } from '../../controller-lb/identity.js';
import { GUEST_API_KEY } from '../helpers/controller-harness.js';
import { testEnvironment, uniqueName } from '../helpers/env.js';
import { FaultProxy, freeTcpPort, PrivateKafka } from '../helpers/fault-proxy.js';

const ROOT = new URL('../..', import.meta.url).pathname;

export interface Teardowns {
  teardown(fn: () => unknown): void;
}

/** A child process whose JSON log lines are kept. */
export class Proc {
  readonly lines: Array<Record<string, unknown>> = [];
  #text = '';
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue;
      createInterface({ input: stream }).on('line', (line) => {
        this.#text = (this.#text + line + '\n').slice(-50_000);
        if (line.startsWith('{')) {
          try {
            this.lines.push(JSON.parse(line) as Record<string, unknown>);
          } catch {
            // not a log line
          }
        }
      });
    }
  }

  static spawn(name: string, script: string, env: Record<string, string>): Proc {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new Proc(name, child);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines of output, for failure messages. */
  get tail(): string {
    return this.#text.slice(-4_000);
  }

  async kill9(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async stop(timeoutMs = 20_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}

export interface ClusterOptions {
  invokers?: number;
  /** Memory of each invoker (its own and the controller's view). 512: four 128 MB activations each. */
  invokerMemoryMb?: number;
  /** The forced-completion timer: max(timeLimit, minMs) * 2 + extraMs. */
  forcedMinMs?: number;
  forcedExtraMs?: number;
  log?: (line: string) => void;
}

/** One request of the load and what it got back. */
export interface Call {
  index: number;
  blocking: boolean;
  /** Epoch ms when the call was sent. */
  startedAt: number;
  status: number;
  /** The id the controller handed out (header `x-openwhisk-activation-id`): the activation is accepted. */
  activationId?: string;
  retryAfter?: string;
  body: string;
  ms: number;
}

export interface LoadOptions {
  count: number;
  concurrency: number;
  /** Share of blocking calls (every n-th call is non-blocking otherwise). */
  blockingShare?: number;
  /** How long each activation sleeps. */
  sleepMs?: number;
  /** Each caller starts at most one call per this many ms (default: back to back). */
  callIntervalMs?: number;
  /**
   * Open loop instead of callers: this many calls per second, whatever the
   * answers (a caller stuck on one call does not slow the offered load).
   * `concurrency` is then ignored.
   */
  ratePerSecond?: number;
  /** Injects a fault when this share of the calls has been sent; the load goes on meanwhile. */
  fault?: { at: number; inject: () => Promise<void> };
}

export interface LoadResult {
  calls: Call[];
  accepted: string[];
  /** The fault's own promise, settled by the end of the load. */
  faultError: unknown;
}

export interface Accounting {
  accepted: number;
  refused: number;
  /** Completions at the controller (its log), of accepted ids. */
  completions: number;
  forcedCompletions: number;
  records: number;
  /** Records the controller wrote (forced) and the invoker did not replace. */
  forcedRecords: number;
  /** Runs on the invokers (their "activation finished" lines). */
  runs: number;
  /** Activations by the transport they reached an invoker on. */
  http: number;
  kafka: number;
  /** Problems: each one a broken guarantee. */
  missingCompletions: string[];
  duplicateCompletions: string[];
  missingRecords: string[];
  duplicateRuns: string[];
  unexplained: Array<{ activationId: string; statusCode: number; error: string }>;
  /** Non-success records by cause. */
  explained: Record<string, number>;
}

export const SLEEP_ACTION = 'function main(p) { return new Promise((r) => setTimeout(() => r({ i: p.i ?? null }), p.ms ?? 200)); }';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Cluster {
  readonly env = testEnvironment();
  readonly docker = new Dockerode();
  readonly agent = new Agent({ connections: 64, headersTimeout: 120_000, bodyTimeout: 120_000 });
  readonly whisksDb = uniqueName('e2e-whisks');
  /** The controller's identities: upstream's guest, created as an operator would (the identity CLI). */
  readonly subjectsDb = uniqueName('e2e-subjects');
  readonly activationsDb = uniqueName('e2e-activations');
  readonly controllerId = uniqueName('e2e').replace(/[^a-zA-Z0-9._-]/g, '-');
  readonly owner = uniqueName('e2e').replace(/[^a-zA-Z0-9_.-]/g, '-');
  readonly dir = mkdtempSync(join(tmpdir(), 'e2e-cluster-'));
  readonly invokerCount: number;
  readonly invokerMemoryMb: number;
  readonly options: ClusterOptions;
  /** Every process ever started, killed ones too: their logs count. */
  readonly procs: Proc[] = [];
  controller: Proc | undefined;
  readonly invokers: Array<Proc | undefined> = [];
  controllerPort = 0;
  invokerPorts: number[] = [];
  kafka!: PrivateKafka;
  couch!: FaultProxy;

  private constructor(options: ClusterOptions) {
    this.options = options;
    this.invokerCount = options.invokers ?? 2;
    this.invokerMemoryMb = options.invokerMemoryMb ?? 512;
  }

  static async start(t: Teardowns, options: ClusterOptions = {}): Promise<Cluster> {
    const cluster = new Cluster(options);
    t.teardown(() => cluster.destroy());
    await cluster.#start();
    return cluster;
  }

  log(line: string): void {
    this.options.log?.(line);
  }

  get controllerUrl(): string {
    return `http://127.0.0.1:${this.controllerPort}`;
  }

  invokerUrl(index: number): string {
    return `http://127.0.0.1:${this.invokerPorts[index]}`;
  }

  containerOwner(index: number): string {
    return `${this.owner}-${index}`;
  }

  async #start(): Promise<void> {
    const started = Date.now();
    const couchUrl = new URL(this.env.couchdbUrl);
    [this.kafka, this.couch] = await Promise.all([
      PrivateKafka.prepare(),
      FaultProxy.start({ host: couchUrl.hostname, port: Number(couchUrl.port || 5984) }),
    ]);
    // The broker (Java) starts while the invokers do: they are ready for HTTP before Kafka answers.
    const broker = this.kafka.formatAndStart().then(() => this.log(`private Kafka up after ${Date.now() - started} ms`));
    broker.catch(() => undefined);
    for (const db of [this.whisksDb, this.activationsDb, this.subjectsDb]) await this.#couch('PUT', `/${db}`);
    const couch = new CouchServer({ url: this.env.couchdbUrl });
    const created = await runIdentityCommand(couch.db(this.subjectsDb), ['create', 'guest']).finally(() => couch.close());
    if (created.code !== 0) throw new Error(`creating the guest identity: ${created.out}`);
    await this.putAction('sleep', SLEEP_ACTION);
    this.controllerPort = await freeTcpPort();
    this.invokerPorts = await Promise.all(Array.from({ length: this.invokerCount }, () => freeTcpPort()));
    // Invokers first: the controller probes their readiness from its start.
    for (let i = 0; i < this.invokerCount; i++) this.startInvoker(i);
    await Promise.all(this.invokerPorts.map((_, i) => this.waitInvokerReady(i)));
    this.log(`invokers ready for HTTP after ${Date.now() - started} ms`);
    // The controller needs Kafka at its start (producer, consumers).
    await broker;
    this.startController();
    await this.waitController();
    await this.waitInvokersUp();
    this.log(`cluster up in ${Date.now() - started} ms`);
  }

  /** The service URL the processes under test use: through the proxy. */
  get couchUrlForProcesses(): string {
    return this.couch.url;
  }

  async #couch(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    const response = await request(`${this.env.couchdbUrl}${path}`, {
      method: method as 'GET',
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.body.text();
    return { status: response.statusCode, json: text === '' ? undefined : (JSON.parse(text) as unknown) };
  }

  async putAction(name: string, code: string, limits: Record<string, number> = {}): Promise<void> {
    const { status } = await this.#couch('PUT', `/${this.whisksDb}/${encodeURIComponent(`guest/${name}`)}`, {
      entityType: 'action',
      namespace: 'guest',
      name,
      version: '0.0.1',
      publish: false,
      exec: { kind: 'nodejs:20', code, binary: false },
      limits: { timeout: 5_000, memory: 128, logs: 10, concurrency: 1, ...limits },
      parameters: [],
      annotations: [],
    });
    if (status !== 201 && status !== 202) throw new Error(`storing action ${name}: HTTP ${status}`);
  }

  startInvoker(index: number): Proc {
    const proc = Proc.spawn(`invoker${index}`, 'invoker/main.ts', {
      INVOKER_ID: String(index),
      INVOKER_HTTP_HOST: '127.0.0.1',
      INVOKER_HTTP_PORT: String(this.invokerPorts[index]),
      INVOKER_USER_MEMORY_MB: String(this.invokerMemoryMb),
      INVOKER_CONTAINER_OWNER: this.containerOwner(index),
      INVOKER_DOCKER_NETWORK: this.env.dockerNetwork,
      ACTION_IMAGE_NODEJS20: this.env.actionImageNodejs,
      INVOKER_PREWARM_COUNT: '0',
      INVOKER_PAUSE_GRACE_MS: '60000',
      KAFKA_BROKERS: this.kafka.brokers.join(','),
      INVOKER_HEALTH_PING_INTERVAL_MS: '1000',
      COUCHDB_URL: this.couchUrlForProcesses,
      COUCHDB_WHISKS_DB: this.whisksDb,
      COUCHDB_ACTIVATIONS_DB: this.activationsDb,
      // The same journal across restarts: what a killed run journaled is replayed.
      INVOKER_JOURNAL_DIR: join(this.dir, `journal-invoker${index}`),
      INVOKER_DRAIN_TIMEOUT_MS: '10000',
      LOG_LEVEL: 'info',
    });
    this.procs.push(proc);
    this.invokers[index] = proc;
    return proc;
  }

  startController(): Proc {
    const proc = Proc.spawn('controller', 'controller-lb/main.ts', {
      CONTROLLER_ID: this.controllerId,
      CONTROLLER_HOST: '127.0.0.1',
      CONTROLLER_PORT: String(this.controllerPort),
      INVOKER_URLS: this.invokerPorts.map((_, i) => this.invokerUrl(i)).join(','),
      INVOKER_USER_MEMORY_MB: String(this.invokerMemoryMb),
      KAFKA_BROKERS: this.kafka.brokers.join(','),
      COUCHDB_URL: this.couchUrlForProcesses,
      COUCHDB_WHISKS_DB: this.whisksDb,
      COUCHDB_ACTIVATIONS_DB: this.activationsDb,
      COUCHDB_SUBJECTS_DB: this.subjectsDb,
      CONTROLLER_JOURNAL_DIR: join(this.dir, 'journal-controller'),
      CONTROLLER_BLOCKING_TIMEOUT_MS: '60000',
      CONTROLLER_FORCED_COMPLETION_MIN_MS: String(this.options.forcedMinMs ?? 15_000),
      CONTROLLER_FORCED_COMPLETION_EXTRA_MS: String(this.options.forcedExtraMs ?? 3_000),
      CONTROLLER_DRAIN_GRACE_MS: '5000',
      LOG_LEVEL: 'debug',
    });
    this.procs.push(proc);
    this.controller = proc;
    return proc;
  }

  async #waitFor(what: string, condition: () => Promise<boolean>, timeoutMs: number, proc?: Proc): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (proc !== undefined && !proc.running) throw new Error(`${proc.name} exited while waiting for ${what}:\n${proc.tail}`);
      if (await condition().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${proc ? `:\n${proc.tail}` : ''}`);
      await sleep(200);
    }
  }

  /** Ready for HTTP work (Kafka may still be joining: degraded is fine). */
  waitInvokerReady(index: number, timeoutMs = 60_000): Promise<void> {
    return this.#waitFor(
      `invoker${index} to be ready`,
      async () => (await request(`${this.invokerUrl(index)}/health/ready`)).statusCode === 200,
      timeoutMs,
      this.invokers[index],
    );
  }

  waitController(timeoutMs = 60_000): Promise<void> {
    return this.#waitFor('the controller to listen', async () => (await request(`${this.controllerUrl}/invokers`)).statusCode === 200, timeoutMs, this.controller);
  }

  async statuses(): Promise<Record<string, string>> {
    const response = await request(`${this.controllerUrl}/invokers`);
    return (await response.body.json()) as Record<string, string>;
  }

  async controllerHealth(): Promise<Record<string, unknown>> {
    const response = await request(`${this.controllerUrl}/health`);
    return (await response.body.json()) as Record<string, unknown>;
  }

  waitInvokersUp(timeoutMs = 60_000): Promise<void> {
    return this.#waitFor(
      'every invoker to be up at the controller',
      async () => {
        const statuses = await this.statuses();
        return this.invokerPorts.every((_, i) => statuses[`invoker${i}`] === 'up');
      },
      timeoutMs,
      this.controller,
    );
  }

  async killInvoker(index: number): Promise<void> {
    await this.invokers[index]?.kill9();
  }

  /** `docker kill` of the invoker's action containers (only its own: they carry its owner label). */
  async killContainers(index: number): Promise<number> {
    const list = await this.docker.listContainers({ filters: { label: [`whisk.invoker=${this.containerOwner(index)}`], status: ['running'] } });
    await Promise.all(list.map((c) => this.docker.getContainer(c.Id).kill().catch(() => undefined)));
    return list.length;
  }

  async invoke(index: number, blocking: boolean, params: Record<string, unknown>): Promise<Call> {
    const started = Date.now();
    try {
      const response = await request(`${this.controllerUrl}/api/v1/namespaces/guest/actions/sleep?blocking=${blocking}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(GUEST_API_KEY).toString('base64')}` },
        body: JSON.stringify(params),
        dispatcher: this.agent,
      });
      const body = await response.body.text();
      const id = response.headers['x-openwhisk-activation-id'];
      const retryAfter = response.headers['retry-after'];
      return {
        index,
        blocking,
        startedAt: started,
        status: response.statusCode,
        ...(typeof id === 'string' ? { activationId: id } : {}),
        ...(typeof retryAfter === 'string' ? { retryAfter } : {}),
        body: body.slice(0, 500),
        ms: Date.now() - started,
      };
    } catch (error) {
      return { index, blocking, startedAt: started, status: 0, body: (error as Error).message, ms: Date.now() - started };
    }
  }

  /** `count` calls, `concurrency` at a time; the fault, if any, is injected part way. */
  async load(options: LoadOptions): Promise<LoadResult> {
    const calls: Call[] = [];
    const blockingShare = options.blockingShare ?? 2 / 3;
    let next = 0;
    let fault: Promise<void> | undefined;
    let faultError: unknown;
    const worker = async (): Promise<void> => {
      for (;;) {
        const index = next++;
        if (index >= options.count) return;
        if (options.fault !== undefined && fault === undefined && index >= Math.floor(options.count * options.fault.at)) {
          this.log(`injecting the fault at call ${index} of ${options.count}`);
          fault = options.fault.inject().catch((error: unknown) => void (faultError = error));
        }
        // Spread evenly: call i is blocking when it completes another whole share.
        const blocking = Math.floor((index + 1) * blockingShare) > Math.floor(index * blockingShare);
        const started = Date.now();
        calls.push(await this.invoke(index, blocking, { i: index, ms: options.sleepMs ?? 200 }));
        const rest = (options.callIntervalMs ?? 0) - (Date.now() - started);
        if (rest > 0) await sleep(rest);
      }
    };
    if (options.ratePerSecond !== undefined) {
      const pending: Array<Promise<void>> = [];
      const started = Date.now();
      for (let index = 0; index < options.count; index++) {
        const due = started + (index * 1000) / options.ratePerSecond;
        if (due > Date.now()) await sleep(due - Date.now());
        if (options.fault !== undefined && fault === undefined && index >= Math.floor(options.count * options.fault.at)) {
          this.log(`injecting the fault at call ${index} of ${options.count}`);
          fault = options.fault.inject().catch((error: unknown) => void (faultError = error));
        }
        const blocking = Math.floor((index + 1) * blockingShare) > Math.floor(index * blockingShare);
        pending.push(this.invoke(index, blocking, { i: index, ms: options.sleepMs ?? 200 }).then((call) => void calls.push(call)));
      }
      await Promise.all(pending);
    } else {
      await Promise.all(Array.from({ length: options.concurrency }, () => worker()));
    }
    await fault;
    calls.sort((a, b) => a.index - b.index);
    return { calls, accepted: calls.flatMap((c) => (c.activationId === undefined ? [] : [c.activationId])), faultError };
  }

  controllerLines(): Array<Record<string, unknown>> {
    return this.procs.filter((p) => p.name === 'controller').flatMap((p) => p.lines);
  }

  invokerLines(): Array<Record<string, unknown>> {
    return this.procs.filter((p) => p.name.startsWith('invoker')).flatMap((p) => p.lines);
  }

  /** Completions of `ids` at the controller: completed or forced, from its debug/warn lines. */
  completionsOf(ids: readonly string[]): Map<string, Array<Record<string, unknown>>> {
    const wanted = new Set(ids);
    const out = new Map<string, Array<Record<string, unknown>>>();
    for (const line of this.controllerLines()) {
      const id = line['activationId'];
      if (typeof id !== 'string' || !wanted.has(id)) continue;
      if (line['msg'] !== 'completed activation' && line['msg'] !== 'forced completion of activation') continue;
      out.set(id, [...(out.get(id) ?? []), line]);
    }
    return out;
  }

  async records(ids: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
    const out = new Map<string, Record<string, unknown>>();
    for (let i = 0; i < ids.length; i += 500) {
      const keys = ids.slice(i, i + 500).map((id) => `guest/${id}`);
      const { json } = await this.#couch('POST', `/${this.activationsDb}/_all_docs?include_docs=true`, { keys });
      for (const row of ((json as { rows?: Array<{ id?: string; doc?: Record<string, unknown> }> }).rows ?? [])) {
        if (row.id !== undefined && row.doc !== undefined && row.doc !== null) out.set(row.id.slice('guest/'.length), row.doc);
      }
    }
    return out;
  }

  /** Waits until every id has its completion at the controller and its record. */
  async settle(ids: readonly string[], timeoutMs = 90_000): Promise<void> {
    await this.#waitFor(
      `completions and records of ${ids.length} activations`,
      async () => {
        const completions = this.completionsOf(ids);
        if (ids.some((id) => !completions.has(id))) return false;
        const records = await this.records(ids);
        return ids.every((id) => records.has(id));
      },
      timeoutMs,
    );
  }

  /**
   * The accounting of one scenario. `explain` names the cause of a record
   * that is not a success (undefined: unexplained).
   */
  async account(result: LoadResult, explain: (record: Record<string, unknown>) => string | undefined): Promise<Accounting> {
    const ids = result.accepted;
    const completions = this.completionsOf(ids);
    const records = await this.records(ids);
    const wanted = new Set(ids);
    const runs = new Map<string, Array<Record<string, unknown>>>();
    for (const line of this.invokerLines()) {
      const id = line['activationId'];
      if (line['event'] !== 'activation' || typeof id !== 'string' || !wanted.has(id)) continue;
      runs.set(id, [...(runs.get(id) ?? []), line]);
    }
    const accounting: Accounting = {
      accepted: ids.length,
      refused: result.calls.length - ids.length,
      completions: [...completions.values()].reduce((n, l) => n + l.length, 0),
      forcedCompletions: [...completions.values()].flat().filter((l) => l['msg'] === 'forced completion of activation').length,
      records: records.size,
      forcedRecords: [...records.values()].filter(isForced).length,
      runs: [...runs.values()].reduce((n, l) => n + l.length, 0),
      http: [...runs.values()].flat().filter((l) => l['transport'] === 'http').length,
      kafka: [...runs.values()].flat().filter((l) => l['transport'] === 'kafka').length,
      missingCompletions: ids.filter((id) => !completions.has(id)),
      duplicateCompletions: ids.filter((id) => (completions.get(id)?.length ?? 0) > 1),
      missingRecords: ids.filter((id) => !records.has(id)),
      duplicateRuns: ids.filter((id) => (runs.get(id)?.length ?? 0) > 1),
      unexplained: [],
      explained: {},
    };
    for (const [activationId, record] of records) {
      const response = record['response'] as { statusCode?: number; result?: { error?: unknown } } | undefined;
      const statusCode = response?.statusCode ?? -1;
      if (statusCode === 0) continue;
      const cause = explain(record);
      if (cause === undefined) accounting.unexplained.push({ activationId, statusCode, error: String(response?.result?.error ?? '') });
      else accounting.explained[cause] = (accounting.explained[cause] ?? 0) + 1;
    }
    if (new Set(ids).size !== ids.length) accounting.duplicateCompletions.push('the controller handed out an id twice');
    return accounting;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.kill9()));
    await this.agent.close().catch(() => undefined);
    for (let i = 0; i < this.invokerCount; i++) {
      const list = await this.docker.listContainers({ all: true, filters: { label: [`whisk.invoker=${this.containerOwner(i)}`] } }).catch(() => []);
      await Promise.all(list.map((c) => this.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    }
    await this.kafka?.destroy().catch(() => undefined);
    await this.couch?.close().catch(() => undefined);
    for (const db of [this.whisksDb, this.activationsDb, this.subjectsDb]) await this.#couch('DELETE', `/${db}`).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The controller's forced record (not replaced by the invoker's). */
export function isForced(record: Record<string, unknown>): boolean {
  return forcedReason(record) !== undefined;
}

export function forcedReason(record: Record<string, unknown>): string | undefined {
  const annotations = record['annotations'];
  if (!Array.isArray(annotations)) return undefined;
  const marker = (annotations as Array<{ key?: unknown; value?: unknown }>).find((a) => a.key === ANNOTATION_FORCED_COMPLETION);
  if (marker === undefined) return undefined;
  const value = marker.value as { reason?: unknown; acknowledged?: unknown } | undefined;
  return `forced ${String(value?.reason)}${value?.acknowledged === true ? ' (acknowledged)' : ' (not acknowledged)'}`;
}

export function errorOf(record: Record<string, unknown>): string {
  const response = record['response'] as { result?: { error?: unknown } } | undefined;
  return String(response?.result?.error ?? '');
}

/** One line per figure, for logs and the load script. */
export function formatAccounting(name: string, a: Accounting): string {
  const rows: Array<[string, string | number]> = [
    ['accepted (ids handed out)', a.accepted],
    ['refused (no id)', a.refused],
    ['completions at the controller', a.completions],
    ['  of which forced', a.forcedCompletions],
    ['stored records', a.records],
    ['  of which forced records', a.forcedRecords],
    ['runs on invokers', `${a.runs} (http ${a.http}, kafka ${a.kafka})`],
    ['missing completions', a.missingCompletions.length],
    ['duplicate completions', a.duplicateCompletions.length],
    ['missing records', a.missingRecords.length],
    ['activations run twice', a.duplicateRuns.length],
    ['unexplained errors', a.unexplained.length],
    ...Object.entries(a.explained).map(([cause, n]): [string, number] => [`  explained: ${cause}`, n]),
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [`== ${name}`, ...rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`)].join('\n');
}
