/**
 * Bad input against every port of the three processes (the controller's API
 * and both invokers' `/invoke`): each gets its status and an error message,
 * no invoker's health changes (the controller's GET /invokers stays "up"),
 * the processes stay up and serve normally afterwards (accounting check).
 */
import t from 'tap';
import { request } from 'undici';
import { generateActivationId, generateTransactionId, RawJson, serializeActivationMessage, type ActivationMessage } from '../../protocol/index.js';
import { guestIdentity } from '../helpers/identity.js';
import { checkAccounting } from './checks.js';
import { account, runLoad, SLEEPER } from './load.js';
import { errorOf, openAndDrop, rawExchange } from './raw-http.js';
import { AUTH, NAMESPACE, sleep, SystemUnderTest } from './system.js';

t.setTimeout(420_000);

// Body timeouts short enough to observe here (operators' settings, see controller-lb/README.md).
const system = new SystemUnderTest({ invokerMemoryMb: 512, env: { CONTROLLER_REQUEST_TIMEOUT_MS: '5000', CONTROLLER_HEADERS_TIMEOUT_MS: '5000' } });
t.teardown(() => system.stop());

let revision = '';
let version = '0.0.1';
const invokePath = `/api/v1/namespaces/${NAMESPACE}/actions/sleeper?blocking=true`;
/** Activations this file pushed straight to an invoker (the duplicate-id case): their records are expected. */
const direct = new Set<string>();

t.before(async () => {
  await system.start();
  await system.createAction('sleeper', SLEEPER, { memory: 128, timeout: 10_000 });
  const doc = (await system.couch.db(system.whisksDb).get(`${NAMESPACE}/sleeper`)) as { _rev: string; version?: string };
  revision = doc._rev;
  version = doc.version ?? version;
});

function message(overrides: Partial<ActivationMessage> = {}, content: unknown = { ms: 50 }): ActivationMessage {
  return {
    transid: generateTransactionId(),
    action: { path: NAMESPACE, name: 'sleeper', version },
    revision,
    user: guestIdentity(NAMESPACE),
    activationId: generateActivationId(),
    rootControllerIndex: { asString: '0' },
    blocking: true,
    content: RawJson.of(content as never),
    initArgs: [],
    lockedArgs: {},
    ...overrides,
  };
}

const nested = (levels: number) => `{"deep":${'['.repeat(levels)}${']'.repeat(levels)}}`;

interface Case {
  name: string;
  method: string;
  path: string;
  contentType?: string;
  body?: string | Buffer;
  expect: number[];
  message?: RegExp;
  /** The status assertion waits for a fix. */
  todo?: string;
}

function controllerCases(): Case[] {
  return [
    { name: 'malformed JSON', method: 'POST', path: invokePath, body: '{"ms": 5', expect: [400], message: /malformed/i },
    { name: 'JSON nested 1,500 levels', method: 'POST', path: invokePath, body: nested(1500), expect: [400], message: /nest|deep/i },
    { name: 'JSON nested 50,000 levels', method: 'POST', path: invokePath, body: nested(50_000), expect: [400], message: /nest|deep/i },
    { name: '10 MB body', method: 'POST', path: invokePath, body: Buffer.alloc(10 * 1024 * 1024, 0x20), expect: [413], message: /large|big/i },
    { name: 'text/plain body', method: 'POST', path: invokePath, contentType: 'text/plain', body: '{"ms":5}', expect: [415], message: /Content-Type/ },
    { name: 'wrong method (PATCH)', method: 'PATCH', path: invokePath, body: '{}', expect: [404, 405] },
    { name: 'parameters of the wrong type (an array)', method: 'POST', path: invokePath, body: '[1,2,3]', expect: [400] },
    { name: 'a number beyond the double range', method: 'POST', path: invokePath, body: '{"n":1e400}', expect: [400] },
    { name: 'reserved namespace _design', method: 'POST', path: '/api/v1/namespaces/_design/actions/sleeper?blocking=true', body: '{}', expect: [400, 403, 404] },
    { name: 'reserved action name _design', method: 'POST', path: `/api/v1/namespaces/${NAMESPACE}/actions/_design?blocking=true`, body: '{}', expect: [400, 404] },
  ];
}

function invokerCases(): Case[] {
  const valid = serializeActivationMessage(message());
  return [
    { name: 'malformed JSON', method: 'POST', path: '/invoke', body: valid.slice(0, 40), expect: [400] },
    { name: 'content nested 1,500 levels', method: 'POST', path: '/invoke', body: serializeActivationMessage(message({}, JSON.parse(nested(1500)))), expect: [400], message: /nest|deep/i },
    { name: 'JSON nested 50,000 levels', method: 'POST', path: '/invoke', body: nested(50_000), expect: [400], message: /nest|deep/i },
    {
      name: '10 MB body',
      method: 'POST',
      path: '/invoke',
      body: Buffer.alloc(10 * 1024 * 1024, 0x20),
      expect: [413],
      // The invoker answers 413 and closes at once; a client still uploading sometimes reads a reset instead of the answer.
      todo: 'waiting for the invoker to let a client finish reading its 413 before closing',
    },
    { name: 'text/html body', method: 'POST', path: '/invoke', contentType: 'text/html', body: valid, expect: [415] },
    { name: 'wrong method (GET /invoke)', method: 'GET', path: '/invoke', expect: [405] },
    { name: 'activationId of the wrong type', method: 'POST', path: '/invoke', body: valid.replace(/"activationId":"[0-9a-f]+"/, '"activationId":12345'), expect: [400], message: /activationId/ },
    {
      name: 'reserved namespace _design',
      method: 'POST',
      path: '/invoke',
      body: serializeActivationMessage(message({ user: guestIdentity('_design'), action: { path: '_design', name: 'sleeper', version } })),
      expect: [400],
    },
  ];
}

async function send(port: number, c: Case, auth: boolean): Promise<{ status: number; error: unknown }> {
  try {
    const res = await request(`http://127.0.0.1:${port}${c.path}`, {
      method: c.method as 'POST',
      headers: { ...(auth ? { authorization: AUTH } : {}), ...(c.body !== undefined ? { 'content-type': c.contentType ?? 'application/json' } : {}) },
      ...(c.body !== undefined ? { body: c.body } : {}),
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
    const text = await res.body.text();
    let error: unknown;
    try {
      error = (JSON.parse(text) as { error?: unknown }).error;
    } catch {
      error = undefined;
    }
    return { status: res.statusCode, error };
  } catch (error) {
    return { status: 0, error: `no answer: ${(error as Error).message}` };
  }
}

t.test('6. bad input is refused with its status and message, and changes no invoker\'s health', async (tt) => {
  const ports = [
    { name: 'controller', port: system.controllerPort, cases: controllerCases(), auth: true },
    ...system.invokers.map((invoker) => ({ name: `invoker${invoker.id}`, port: invoker.port, cases: invokerCases(), auth: false })),
  ];

  // Stalled bodies first: they are checked at the end.
  const stalled = ports.map((p) => ({
    name: p.name,
    answer: rawExchange(
      p.port,
      `POST ${p.name === 'controller' ? invokePath : '/invoke'} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n${p.auth ? `Authorization: ${AUTH}\r\n` : ''}\r\n{"ms": 1`,
      40_000,
    ),
  }));

  // Four or more forced failures would make an invoker unhealthy: each case runs five times.
  for (const p of ports) {
    for (const c of p.cases) {
      const answers = [];
      for (let n = 0; n < 5; n++) answers.push(await send(p.port, c, p.auth));
      const first = answers[0]!;
      tt.ok(
        answers.every((a) => c.expect.includes(a.status)),
        `${p.name}: ${c.name} -> ${c.expect.join(' or ')} (got ${[...new Set(answers.map((a) => a.status))].join(', ')})`,
        c.todo !== undefined ? { todo: c.todo } : {},
      );
      const said = answers.find((a) => typeof a.error === 'string' && !String(a.error).startsWith('no answer')) ?? first;
      tt.ok(typeof said.error === 'string' && said.error !== '' && (c.message === undefined || c.message.test(said.error)), `${p.name}: ${c.name} says why: ${String(said.error).slice(0, 100)}`);
    }
    // A connection opened and dropped, with and without a partial request.
    await openAndDrop(p.port, '');
    await openAndDrop(p.port, `POST ${p.name === 'controller' ? invokePath : '/invoke'} HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"a`);
    // HTTP/1.0 (no Host, no keep-alive).
    const path10 = p.name === 'controller' ? '/invokers' : '/ping';
    const answer10 = await rawExchange(p.port, `GET ${path10} HTTP/1.0\r\n\r\n`, 10_000);
    tt.equal(answer10.status, 200, `${p.name}: HTTP/1.0 GET ${path10} -> 200`);
  }

  // The same activation id pushed twice at once: it runs once.
  const invoker = system.invokers[0]!;
  const dup = serializeActivationMessage(message({}, { ms: 500 }));
  direct.add(JSON.parse(dup).activationId as string);
  const pushes = await Promise.all([0, 1].map(() => send(invoker.port, { name: 'dup', method: 'POST', path: '/invoke', body: dup, expect: [] }, false)));
  tt.same(pushes.map((p) => p.status).sort(), [200, 409], `invoker${invoker.id}: one of two pushes of one activation id runs, the other is refused with 409`);
  const again = await send(invoker.port, { name: 'dup', method: 'POST', path: '/invoke', body: dup, expect: [] }, false);
  tt.equal(again.status, 409, `invoker${invoker.id}: a push of an id it just finished is refused with 409`);

  for (const s of stalled) {
    const answer = await s.answer;
    tt.ok(answer.status === 408 || answer.closed, `${s.name}: a stalled body is answered 408 or closed (${answer.status || 'no answer'} after ${answer.ms} ms)`, {});
  }

  await sleep(3_000);
  tt.same(await system.ownStatuses(), Object.fromEntries(system.invokers.map((i) => [`invoker${i.id}`, 'up'])), 'GET /invokers: every invoker still up');
  tt.same(Object.values(system.processesAlive()), [true, true, true], 'all three processes still run');
});

t.test('6. afterwards the system serves normally (accounting check)', async (tt) => {
  const results = await runLoad(system.controllerUrl, { action: 'sleeper', count: 40, concurrency: 8, nonBlockingEvery: 2, maxMs: 60_000, params: (i) => ({ i, ms: 100 }) });
  const a = await account(system, results, 60_000, direct);
  checkAccounting(tt, '6. normal load after bad input', a);
  tt.same(await system.ownStatuses(), Object.fromEntries(system.invokers.map((i) => [`invoker${i.id}`, 'up'])), 'every invoker up');
});
