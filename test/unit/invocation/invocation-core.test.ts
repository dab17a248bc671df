/**
 * The invocation core over in-memory fakes of the interfaces it declares
 * (ActionSource, ContainerSource, ImageSource, RecordSink and the container
 * operations): the outcome matrix, the record it stores, the completion it
 * answers with and what happens to the container, in milliseconds, without
 * Docker or CouchDB. The same outcomes against the real engine and store are
 * in test/integration/invoker/outcomes.test.ts.
 */
import t from 'tap';
import {
  ACTION_NOT_FETCHED,
  ACTION_NOT_FOUND,
  FAILED_TO_PROVISION,
  MEMORY_EXHAUSTED,
  generateActivationId,
  generateTransactionId,
  parseAcknowledgement,
  RawJson,
  timeLimitExceeded,
  type AcknowledgementMessage,
  type ActivationDocument,
  type ActivationMessage,
} from '../../../protocol/index.js';
import {
  InvocationCore,
  type ExecutableAction,
  type RunnableContainer,
} from '../../../invoker/invocation/invocation-core.js';
import type { RuntimeResult } from '../../../invoker/invocation/classify.js';
import type { AcquireRequest, Lease, LeaseOrigin } from '../../../invoker/pool/types.js';
import { InvokerMetrics } from '../../../invoker/telemetry/metrics.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { defaultTracer } from '../../../invoker/telemetry/tracing.js';
import { guestIdentity } from '../../helpers/identity.js';

const ok = (body: unknown, status = 200): RuntimeResult => {
  const text = JSON.stringify(body);
  return { kind: 'response', status, body: text, bytes: text.length, truncated: false };
};

class FakeContainer implements RunnableContainer {
  readonly initBodies: string[] = [];
  readonly runBodies: string[] = [];
  initResult: RuntimeResult = ok({ ok: true });
  runResult: RuntimeResult = ok({ greeting: 'hi' });
  logs = { lines: ['2026-12-01T00:00:00.000Z stdout: hello'], complete: true };
  oomKilled = false;
  destroyed = false;

  constructor(readonly id: string) {}
  get name(): string {
    return `wsk_${this.id}`;
  }
  async pause(): Promise<void> {}
  async unpause(): Promise<void> {}
  async destroy(): Promise<void> {
    this.destroyed = true;
  }
  async init(body: string): Promise<RuntimeResult> {
    this.initBodies.push(body);
    return this.initResult;
  }
  async run(body: string): Promise<RuntimeResult> {
    this.runBodies.push(body);
    return this.runResult;
  }
  beginActivation(): void {}
  async collectLogs(): Promise<{ lines: string[]; complete: boolean }> {
    return this.logs;
  }
  async inspectExit(): Promise<{ oomKilled: boolean }> {
    return { oomKilled: this.oomKilled };
  }
}

interface Granted {
  request: AcquireRequest;
  container: FakeContainer;
  released?: 'reuse' | 'destroy';
  initialized: boolean;
}

/** Everything the core is given, recorded for assertions. */
function fixture(options: { action?: ExecutableAction | 'not-found' | Error; origins?: LeaseOrigin[]; acquireError?: Error; storeError?: Error } = {}) {
  const containers: FakeContainer[] = [];
  const granted: Granted[] = [];
  const stored: ActivationDocument[] = [];
  const origins = [...(options.origins ?? ['cold'])];
  let next = 0;
  const prepare: Array<(c: FakeContainer) => void> = [];
  const core = new InvocationCore<FakeContainer>({
    instance: { instance: 7, userMemory: { bytes: 2048 * 1024 * 1024 }, tags: [], dedicatedNamespaces: [] } as never,
    actions: {
      get: async () => {
        const a = options.action ?? action();
        if (a instanceof Error) throw a;
        return a;
      },
    },
    containers: {
      acquire: async (request): Promise<Lease<FakeContainer>> => {
        if (options.acquireError) throw options.acquireError;
        const container = new FakeContainer(`c${++next}`);
        prepare[containers.length]?.(container);
        containers.push(container);
        const origin = origins.shift() ?? 'cold';
        const entry: Granted = { request, container, initialized: false };
        granted.push(entry);
        return {
          container,
          origin,
          needsInit: origin !== 'warm',
          waitMs: 0,
          markInitialized: () => (entry.initialized = true),
          release: (how) => (entry.released ??= how),
        } as Lease<FakeContainer>;
      },
    },
    images: { imageFor: (kind) => (kind.startsWith('nodejs:') ? 'whisk/action-nodejs-v20:local' : undefined), ensureImage: async () => {} },
    records: {
      store: async (doc) => {
        if (options.storeError) throw options.storeError;
        stored.push(doc);
      },
    },
    decryptor: undefined,
    payloadLimitBytes: 1024 * 1024,
    metrics: new InvokerMetrics({ invokerId: 7, processMetrics: false }),
    tracer: defaultTracer(),
    logger: silentLogger(),
  });
  /** Adjusts the n-th container (0-based) before the core uses it. */
  const onContainer = (n: number, fn: (c: FakeContainer) => void): void => {
    prepare[n] = fn;
  };
  return { core, containers, granted, stored, onContainer };
}

function action(overrides: Partial<ExecutableAction> = {}): ExecutableAction {
  return {
    namespace: 'guest',
    version: '0.0.1',
    kind: 'nodejs:20',
    limits: { timeoutMs: 1000, memoryMb: 256, logsMb: 10, concurrency: 1 },
    isSequence: false,
    runtime: { name: 'hello', version: '0.0.1', code: 'function main(p) { return { greeting: "hi" }; }', binary: false, annotations: [] },
    ...overrides,
  };
}

function message(overrides: Partial<ActivationMessage> = {}): ActivationMessage {
  return {
    transid: generateTransactionId(),
    action: { path: 'guest', name: 'hello', version: '0.0.1' },
    revision: '1-abc',
    user: guestIdentity(),
    activationId: generateActivationId(),
    rootControllerIndex: { asString: '0' },
    blocking: true,
    content: RawJson.of({ name: 'World' }),
    initArgs: [],
    lockedArgs: {},
    ...overrides,
  };
}

/** The full activation inside a blocking completion. */
function activationOf(completion: string): { response: { statusCode: number; result?: unknown }; logs: string[]; annotations: Array<{ key: string; value: unknown }> } {
  const ack = parseAcknowledgement(completion) as AcknowledgementMessage & { response: unknown };
  if (typeof ack.response !== 'object' || ack.response === null) throw new Error(`not a full completion: ${completion}`);
  return ack.response as never;
}
const errorOf = (a: { response: { result?: unknown } }): unknown => (a.response.result as { error?: unknown } | undefined)?.error;
const annotation = (a: { annotations: Array<{ key: string; value: unknown }> }, key: string): unknown => a.annotations.find((x) => x.key === key)?.value;

t.test('success on a cold container: /init then /run, result, logs, record stored, container kept', async (t) => {
  const f = fixture();
  const msg = message();
  const outcome = await f.core.handle({ message: msg, transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 0);
  t.equal(outcome.activationId, msg.activationId);
  const a = activationOf(outcome.completion);
  t.same(a.response.result, { greeting: 'hi' });
  t.same(a.logs, ['2026-12-01T00:00:00.000Z stdout: hello']);
  t.type(annotation(a, 'initTime'), 'number', 'a cold start carries initTime');
  const c = f.containers[0] as FakeContainer;
  t.equal(c.initBodies.length, 1);
  t.match(c.initBodies[0], /"code":"function main/);
  t.match(c.runBodies[0], /^\{"value":\{"name":"World"\}/);
  t.equal(f.granted[0]?.released, 'reuse');
  t.ok(f.granted[0]?.initialized, 'marked initialized after /init');
  t.equal(f.stored.length, 1, 'one record');
  t.equal(f.stored[0]?._id, `guest/${msg.activationId}`);
  t.equal(f.core.inFlight(), 0);
});

t.test('warm container: no /init, no initTime', async (t) => {
  const f = fixture({ origins: ['warm'] });
  const outcome = await f.core.handle({ message: message(), transport: 'kafka', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 0);
  t.equal(f.containers[0]?.initBodies.length, 0);
  t.equal(annotation(activationOf(outcome.completion), 'initTime'), undefined);
});

t.test('application error: 200 with an error field is statusCode 1, container kept', async (t) => {
  const f = fixture();
  f.onContainer(0, (c) => (c.runResult = ok({ error: 'boom' })));
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 1);
  t.equal(errorOf(activationOf(outcome.completion)), 'boom');
  t.equal(f.granted[0]?.released, 'reuse');
});

t.test('developer error: a non-200 answer is statusCode 2, container destroyed', async (t) => {
  const f = fixture();
  f.onContainer(0, (c) => (c.runResult = ok({ error: 'thrown' }, 502)));
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 2);
  t.equal(errorOf(activationOf(outcome.completion)), 'thrown');
  t.equal(f.granted[0]?.released, 'destroy');
});

t.test('init failure: statusCode 2, no /run, container destroyed', async (t) => {
  const f = fixture();
  f.onContainer(0, (c) => (c.initResult = ok({ error: 'Initialization has failed due to: SyntaxError' }, 502)));
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 2);
  t.equal(errorOf(activationOf(outcome.completion)), 'Initialization has failed due to: SyntaxError');
  t.equal(f.containers[0]?.runBodies.length, 0);
  t.equal(f.granted[0]?.released, 'destroy');
  t.equal(f.stored.length, 1);
});

t.test('run timeout: statusCode 2, upstream text, timeout annotation, container destroyed', async (t) => {
  const f = fixture();
  f.onContainer(0, (c) => (c.runResult = { kind: 'timeout' }));
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  const a = activationOf(outcome.completion);
  t.equal(outcome.statusCode, 2);
  t.equal(errorOf(a), timeLimitExceeded(1000, false));
  t.equal(annotation(a, 'timeout'), true);
  t.equal(f.granted[0]?.released, 'destroy');
});

t.test('memory exhausted: a dropped connection on an OOM-killed container', async (t) => {
  const f = fixture();
  f.onContainer(0, (c) => {
    c.runResult = { kind: 'connection-failed', error: new Error('socket hang up') };
    c.oomKilled = true;
  });
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 2);
  t.equal(errorOf(activationOf(outcome.completion)), MEMORY_EXHAUSTED);
});

t.test('a warm container that refuses the run: retried once on a fresh one', async (t) => {
  const f = fixture({ origins: ['warm', 'cold'] });
  f.onContainer(0, (c) => (c.runResult = { kind: 'connection-failed', error: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) }));
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 0);
  t.equal(f.granted.length, 2);
  t.equal(f.granted[0]?.released, 'destroy', 'the broken warm container goes');
  t.equal(f.granted[1]?.request.fresh, true, 'the retry asks for a fresh container');
  t.equal(f.stored.length, 1, 'still one record');
});

t.test('action not found: statusCode 1 without a container', async (t) => {
  const f = fixture({ action: 'not-found' });
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 1);
  t.equal(errorOf(activationOf(outcome.completion)), ACTION_NOT_FOUND);
  t.equal(f.granted.length, 0);
  t.equal(f.stored.length, 1);
});

t.test('the store cannot answer: system error "could not be fetched"', async (t) => {
  const f = fixture({ action: new Error('ECONNREFUSED') });
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 3);
  t.equal(errorOf(activationOf(outcome.completion)), ACTION_NOT_FETCHED);
});

t.test('no container to be had, or a kind the manifest lacks: system error', async (t) => {
  const full = fixture({ acquireError: new Error('queue full') });
  const a = await full.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(a.statusCode, 3);
  t.equal(errorOf(activationOf(a.completion)), FAILED_TO_PROVISION);

  const unknown = fixture({ action: action({ kind: 'cobol:1' }) });
  const b = await unknown.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(b.statusCode, 3);
  t.equal(unknown.granted.length, 0);
});

t.test('a sequence reaching an invoker is refused as a system error', async (t) => {
  const f = fixture({ action: action({ isSequence: true, kind: 'sequence' }) });
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 3);
});

t.test('locked arguments without keys: system error before any fetch', async (t) => {
  const f = fixture();
  const outcome = await f.core.handle({ message: message({ lockedArgs: { password: 'aes-256' } }), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 3);
  t.equal(f.granted.length, 0);
});

t.test('incomplete logs: the activation succeeds, the container is not reused', async (t) => {
  const f = fixture();
  f.onContainer(0, (c) => (c.logs = { lines: ['partial'], complete: false }));
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 0);
  t.equal(f.granted[0]?.released, 'destroy');
});

t.test('non-blocking: the completion is the shrunk one', async (t) => {
  const f = fixture();
  const msg = message({ blocking: false });
  const outcome = await f.core.handle({ message: msg, transport: 'kafka', receivedAt: Date.now() });
  t.equal(outcome.completion, outcome.shrunkCompletion);
  const ack = parseAcknowledgement(outcome.completion) as { response?: unknown; activationId?: unknown };
  t.equal(typeof ack.response === 'object', false, 'no activation inside');
  t.match(outcome.completion, msg.activationId);
});

t.test('storeActivations false: a completion and no record', async (t) => {
  const f = fixture();
  const user = { ...guestIdentity(), limits: { storeActivations: false } };
  const outcome = await f.core.handle({ message: message({ user }), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 0);
  t.equal(f.stored.length, 0);
});

t.test('a failing store still yields the completion', async (t) => {
  const f = fixture({ storeError: new Error('journal full') });
  const outcome = await f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  t.equal(outcome.statusCode, 0);
  t.equal(f.core.inFlight(), 0);
});

t.test('in-flight bookkeeping: whenIdle resolves when the last activation finishes', async (t) => {
  const f = fixture();
  let release: (() => void) | undefined;
  f.onContainer(0, (c) => {
    c.run = async (body) => {
      c.runBodies.push(body);
      await new Promise<void>((r) => (release = r));
      return ok({ done: true });
    };
  });
  const pending = f.core.handle({ message: message(), transport: 'http', receivedAt: Date.now() });
  await new Promise((r) => setImmediate(r));
  t.equal(f.core.inFlight(), 1);
  t.equal(await f.core.whenIdle(10), false, 'not idle while running');
  const idle = f.core.whenIdle(5000);
  release?.();
  await pending;
  t.equal(await idle, true);
});
