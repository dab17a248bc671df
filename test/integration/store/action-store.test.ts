/**
 * The action store against the real CouchDB-compatible server: documents
 * shaped as upstream writes them, code inline and in attachments, revisions,
 * the cache (requests counted by a proxy in between), and every way a fetch
 * can fail.
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import nano from 'nano';
import {
  ActionFetchError,
  ActionNotFoundError,
  ActionStore,
  type ActionStoreOptions,
} from '../../../invoker/store/action-store.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { testEnvironment, uniqueName } from '../../helpers/env.js';
import { CountingProxy, OwnCouch, freePort } from './couch-helpers.js';
import {
  largeTextCode,
  putUpstreamAction,
  smallTextCode,
  storeUpstreamAction,
  upstreamActionDocument,
  upstreamCodeForms,
} from '../../fixtures/upstream-action-docs.js';

const env = testEnvironment();
const logger = silentLogger();
const server = nano(env.couchdbUrl);

interface Whisk {
  _id: string;
  _rev?: string;
  [key: string]: unknown;
}

function action(id: string, code: unknown, extra: Record<string, unknown> = {}): Whisk {
  const [namespace, ...rest] = id.split('/');
  return {
    _id: id,
    entityType: 'action',
    namespace: [namespace, ...rest.slice(0, -1)].join('/'),
    name: rest[rest.length - 1],
    version: '0.0.1',
    publish: false,
    exec: { kind: 'nodejs:20', code, binary: false, main: 'main' },
    limits: { timeout: 60000, memory: 256, logs: 10, concurrency: 1 },
    parameters: [{ key: 'p', value: 1 }],
    annotations: [{ key: 'provide-api-key', value: false }],
    updated: Date.now(),
    ...extra,
  };
}

/** A fresh whisks database, destroyed after the test. */
async function whisks(t: Test): Promise<{ name: string; db: nano.DocumentScope<Whisk> }> {
  const name = uniqueName('whisks');
  await server.db.create(name);
  t.teardown(() => server.db.destroy(name).catch(() => undefined));
  return { name, db: server.use<Whisk>(name) };
}

function store(t: Test, options: Partial<ActionStoreOptions> & { database: string }): ActionStore {
  const actions = new ActionStore({ url: env.couchdbUrl, logger, ...options });
  t.teardown(() => actions.close());
  return actions;
}

async function proxy(t: Test): Promise<CountingProxy> {
  const p = await CountingProxy.start(env.couchdbUrl);
  t.teardown(() => p.close());
  return p;
}

/** nano's attachment upload; pouchdb-server labels its JSON answer text/plain, so nano hands back a string. */
async function attach(db: nano.DocumentScope<Whisk>, id: string, name: string, data: Buffer, type: string, rev: string): Promise<string> {
  const answer: unknown = await db.attachment.insert(id, name, data, type, { rev });
  const parsed = (typeof answer === 'string' ? JSON.parse(answer) : answer) as { rev: string };
  return parsed.rev;
}

const docGets = (id: string) => (request: string) => request.startsWith('GET ') && request.includes(encodeURIComponent(id)) && !request.includes(`${encodeURIComponent(id)}/`);

t.test('a plain code action, with a package in its path', async (t) => {
  const { name, db } = await whisks(t);
  const written = await db.insert(action('guest/pkg/hello', 'function main(){return {x:1}}'));
  const doc = await store(t, { database: name }).get({ path: 'guest/pkg', name: 'hello' }, written.rev);
  t.same(doc, {
    id: 'guest/pkg/hello',
    rev: written.rev,
    namespace: 'guest/pkg',
    name: 'hello',
    version: '0.0.1',
    publish: false,
    exec: { type: 'code', kind: 'nodejs:20', code: 'function main(){return {x:1}}', binary: false, main: 'main' },
    limits: { timeoutMs: 60000, memoryMb: 256, logsMb: 10, concurrency: 1 },
    parameters: [{ key: 'p', value: 1 }],
    annotations: [{ key: 'provide-api-key', value: false }],
  });
});

t.test('code in attachments: text stays text, zip bytes become base64', async (t) => {
  const { name, db } = await whisks(t);
  const source = 'function main(){return {greeting:"héllo ✓"}}';
  const textDoc = action('guest/texty', { attachmentName: 'couch:code-1', attachmentType: 'text/plain' });
  const textRev = (await db.insert(textDoc)).rev;
  const textAtt = await attach(db, 'guest/texty', 'code-1', Buffer.from(source, 'utf8'), 'text/plain', textRev);

  // Bytes that are not valid UTF-8, so any text decoding on the way would show.
  const zip = Buffer.concat([Buffer.from('PK\u0003\u0004', 'latin1'), randomBytes(4096), Buffer.from([0xff, 0xfe, 0x80])]);
  const zipDoc = action('guest/zippy', { attachmentName: 'code-2', attachmentType: 'application/zip' });
  (zipDoc.exec as Record<string, unknown>).binary = true;
  const zipRev = (await db.insert(zipDoc)).rev;
  const zipAtt = await attach(db, 'guest/zippy', 'code-2', zip, 'application/zip', zipRev);

  const actions = store(t, { database: name });
  const text = await actions.get({ path: 'guest', name: 'texty' }, textAtt);
  t.same(text.exec, { type: 'code', kind: 'nodejs:20', code: source, binary: false, main: 'main' });
  const binary = await actions.get({ path: 'guest', name: 'zippy' }, zipAtt);
  t.equal(binary.exec.type, 'code');
  if (binary.exec.type === 'code') {
    t.equal(binary.exec.binary, true);
    t.equal(binary.exec.code, zip.toString('base64'), 'exact bytes, base64');
  }
  const latest = await actions.get({ path: 'guest', name: 'zippy' }, null);
  t.equal(latest.rev, zipAtt, 'latest revision reads the attachment at that revision');
});

t.test('a specific revision versus the latest', async (t) => {
  const { name, db } = await whisks(t);
  const first = await db.insert(action('guest/evolving', 'v1'));
  const second = await db.insert({ ...action('guest/evolving', 'v2'), _rev: first.rev });
  const actions = store(t, { database: name });
  const old = await actions.get({ path: 'guest', name: 'evolving' }, first.rev);
  t.match(old, { rev: first.rev, exec: { code: 'v1' } }, 'the revision the message names, not the newest');
  const now = await actions.get({ path: 'guest', name: 'evolving' }, null);
  t.match(now, { rev: second.rev, exec: { code: 'v2' } });
});

t.test('blackbox and sequence actions come back as their own exec types', async (t) => {
  const { name, db } = await whisks(t);
  const box = await db.insert(action('guest/box', undefined, { exec: { kind: 'blackbox', image: 'user/img', binary: false } }));
  const seq = await db.insert(action('guest/seq', undefined, { exec: { kind: 'sequence', components: ['/guest/a', '/guest/b'] } }));
  const actions = store(t, { database: name });
  t.same((await actions.get({ path: 'guest', name: 'box' }, box.rev)).exec, { type: 'blackbox', kind: 'blackbox', image: 'user/img', binary: false });
  t.same((await actions.get({ path: 'guest', name: 'seq' }, seq.rev)).exec, {
    type: 'sequence',
    kind: 'sequence',
    components: ['/guest/a', '/guest/b'],
  });
});

t.test('missing and deleted actions fail with ActionNotFoundError', async (t) => {
  const { name, db } = await whisks(t);
  const actions = store(t, { database: name });
  const missing = await actions.get({ path: 'guest', name: 'nobody' }, null).catch((e: unknown) => e);
  t.type(missing, ActionNotFoundError);
  t.match((missing as Error).message, /fetching action guest\/nobody at the latest revision: not found/);
  t.ok((missing as Error).cause, 'keeps the cause');

  const written = await db.insert(action('guest/doomed', 'x'));
  const deleted = await db.destroy('guest/doomed', written.rev);
  await t.rejects(actions.get({ path: 'guest', name: 'doomed' }, null), ActionNotFoundError, 'deleted, latest');
  await t.rejects(actions.get({ path: 'guest', name: 'doomed' }, deleted.rev), ActionNotFoundError, 'the deletion revision');
  await t.rejects(actions.get({ path: 'guest', name: 'doomed' }, '1-00000000000000000000000000000000'), ActionNotFoundError, 'a revision that never was');
});

t.test('a malformed document fails with ActionFetchError', async (t) => {
  const { name, db } = await whisks(t);
  const written = await db.insert({ _id: 'guest/broken', entityType: 'action', namespace: 'guest', name: 'broken' });
  const err = await store(t, { database: name }).get({ path: 'guest', name: 'broken' }, written.rev).catch((e: unknown) => e);
  t.type(err, ActionFetchError);
  t.match((err as Error).message, /fetching action guest\/broken at revision .*: malformed action document: exec is missing/);
});

t.test('an unreachable server, a stopped server and a silent server fail with ActionFetchError', async (t) => {
  const nobody = new ActionStore({ url: `http://127.0.0.1:${await freePort()}`, database: 'whisks', logger });
  t.teardown(() => nobody.close());
  const refused = await nobody.get({ path: 'guest', name: 'hello' }, '1-abc').catch((e: unknown) => e);
  t.type(refused, ActionFetchError);
  t.match((refused as Error).message, /fetching action guest\/hello at revision 1-abc: reading the document: /);
  t.ok((refused as Error).cause, 'keeps the cause');

  const own = await OwnCouch.start();
  t.teardown(() => own.destroy());
  const ownServer = nano(own.url);
  await ownServer.db.create('whisks');
  const written = await ownServer.use<Whisk>('whisks').insert(action('guest/hello', 'x'));
  const actions = new ActionStore({ url: own.url, logger });
  t.teardown(() => actions.close());
  await actions.get({ path: 'guest', name: 'hello' }, written.rev);
  await own.down();
  await t.rejects(actions.get({ path: 'guest', name: 'hello' }, null), ActionFetchError, 'server stopped');
  t.match(await actions.get({ path: 'guest', name: 'hello' }, written.rev), { exec: { code: 'x' } }, 'a cached revision is still served');

  const silent = net.createServer(() => undefined); // accepts, never answers
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    silent.close();
  });
  const slow = new ActionStore({ url: `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`, logger, requestTimeoutMs: 300 });
  t.teardown(() => slow.close());
  const started = Date.now();
  await t.rejects(slow.get({ path: 'guest', name: 'hello' }, null), ActionFetchError, 'times out');
  t.ok(Date.now() - started < 5000, 'within the request timeout, not the socket default');
});

t.test('a cached revision needs no second request; the latest revision is never cached', async (t) => {
  const { name, db } = await whisks(t);
  const p = await proxy(t);
  const written = await db.insert(action('guest/cached', { attachmentName: 'c', attachmentType: 'text/plain' }));
  const att = await attach(db, 'guest/cached', 'c', Buffer.from('code'), 'text/plain', written.rev);
  const actions = store(t, { url: p.url, database: name });
  await actions.get({ path: 'guest', name: 'cached' }, att);
  t.equal(p.count(), 2, 'document and attachment');
  const again = await actions.get({ path: 'guest', name: 'cached' }, att);
  t.equal(p.count(), 2, 'no request for a cached revision');
  t.match(again.exec, { code: 'code' });
  t.match(actions.stats(), { hits: 1, misses: 1 });

  await actions.get({ path: 'guest', name: 'cached' }, null);
  await actions.get({ path: 'guest', name: 'cached' }, null);
  t.equal(p.count(docGets('guest/cached')), 3, 'each latest-revision read goes to the server');
});

t.test('concurrent reads of one revision share one request', async (t) => {
  const { name, db } = await whisks(t);
  const p = await proxy(t);
  const written = await db.insert(action('guest/popular', 'x'));
  const actions = store(t, { url: p.url, database: name });
  const docs = await Promise.all(Array.from({ length: 10 }, () => actions.get({ path: 'guest', name: 'popular' }, written.rev)));
  t.equal(p.count(), 1, 'one HTTP request');
  t.ok(docs.every((d) => d === docs[0]), 'everyone gets the same document');
  t.match(actions.stats(), { misses: 1, joined: 9 });
});

t.test('errors are not cached: the next read tries again', async (t) => {
  const { name, db } = await whisks(t);
  const p = await proxy(t);
  const written = await db.insert(action('guest/flaky', 'x'));
  const actions = store(t, { url: p.url, database: name });
  p.failing = 1;
  const [first, joined] = await Promise.all([
    actions.get({ path: 'guest', name: 'flaky' }, written.rev).catch((e: unknown) => e),
    actions.get({ path: 'guest', name: 'flaky' }, written.rev).catch((e: unknown) => e),
  ]);
  t.type(first, ActionFetchError, 'a 500 is a fetch error');
  t.match((first as Error).message, /HTTP 500 unknown_error/);
  t.equal(joined, first, 'the joined read shares the failure');
  t.match(await actions.get({ path: 'guest', name: 'flaky' }, written.rev), { exec: { code: 'x' } });
  t.equal(p.count(), 2, 'the failure was not remembered');
});

t.test('the least recently used revision is evicted', async (t) => {
  const { name, db } = await whisks(t);
  const p = await proxy(t);
  const revs: Record<string, string> = {};
  for (const n of ['a', 'b', 'c']) revs[n] = (await db.insert(action(`guest/${n}`, n))).rev;
  const actions = store(t, { url: p.url, database: name, cacheSize: 2 });
  const get = (n: string) => actions.get({ path: 'guest', name: n }, revs[n] as string);
  await get('a');
  await get('b');
  await get('a'); // a is now the most recent
  await get('c'); // evicts b
  t.equal(p.count(), 3);
  await get('a');
  await get('c');
  t.equal(p.count(), 3, 'a and c still cached');
  await get('b');
  t.equal(p.count(), 4, 'b was evicted');
  t.match(actions.stats(), { evictions: 2, size: 2 });
});

// Documents exactly as an upstream controller writes them, stored the way it
// stores them (test/fixtures/upstream-action-docs.ts; shapes from upstream's
// WhiskAction.put, CouchDbRestStore.attachToCouch, AttachmentSupport).

t.test('upstream small text code (mem: inlined): one request, the code decoded from the reference', async (t) => {
  const { name } = await whisks(t);
  const p = await proxy(t);
  const forms = upstreamCodeForms();
  const stored = await storeUpstreamAction(env.couchdbUrl, name, upstreamActionDocument(forms.smallText));
  t.equal(stored.revs.length, 1, 'no attachment upload');
  const raw = (await (await fetch(`${env.couchdbUrl}/${name}/${encodeURIComponent(stored.id)}`)).json()) as Record<string, unknown>;
  t.match(raw, { exec: { code: { attachmentName: /^mem:/, attachmentType: 'text/plain; charset=UTF-8' }, binary: false } }, 'stored as upstream stores it');
  t.equal(raw._attachments, undefined, 'no _attachments');
  const doc = await store(t, { url: p.url, database: name }).get({ path: 'guest', name: 'small-text' }, stored.rev);
  t.same(doc.exec, { type: 'code', kind: 'nodejs:20', code: smallTextCode('small-text'), binary: false });
  t.equal(p.count(), 1, 'the document only: inlined code needs no attachment request');
});

t.test('upstream large text code (couch: attachment): read at the revision of the upload', async (t) => {
  const { name } = await whisks(t);
  const stored = await storeUpstreamAction(env.couchdbUrl, name, upstreamActionDocument(upstreamCodeForms().largeText));
  t.equal(stored.revs.length, 2, 'document, then attachment');
  const actions = store(t, { database: name });
  const doc = await actions.get({ path: 'guest', name: 'large-text' }, stored.rev);
  t.same(doc.exec, { type: 'code', kind: 'nodejs:20', code: largeTextCode('large-text'), binary: false });
  // The first revision names the attachment that was only uploaded afterwards.
  await t.rejects(actions.get({ path: 'guest', name: 'large-text' }, stored.revs[0] as string), ActionNotFoundError, 'rev 1 has no attachment yet: not found, as upstream (a 404 on the attachment)');
});

t.test('upstream zip code, inlined and attached: the exact archive as standard base64', async (t) => {
  const { name } = await whisks(t);
  const forms = upstreamCodeForms();
  const actions = store(t, { database: name });
  for (const form of [forms.zipInline, forms.zipAttached]) {
    const stored = await storeUpstreamAction(env.couchdbUrl, name, upstreamActionDocument(form));
    const doc = await actions.get({ path: 'guest', name: form.name }, stored.rev);
    const code = (form.exec as { code: string }).code;
    t.same(doc.exec, { type: 'code', kind: 'nodejs:20', code, binary: true }, `${form.name}: the same base64 the user sent`);
    t.equal(stored.revs.length, form.name === 'zip-attached' ? 2 : 1, `${form.name}: ${form.name === 'zip-attached' ? 'attached' : 'inlined'}`);
  }
});

t.test('upstream blackbox with inlined code and without code; an older revision after an update', async (t) => {
  const { name } = await whisks(t);
  const actions = store(t, { database: name });
  const withCode = await putUpstreamAction(env.couchdbUrl, name, { namespace: 'guest', name: 'box', exec: { kind: 'blackbox', image: 'u/img', code: 'echo {}', main: 'run' } });
  t.same((await actions.get({ path: 'guest', name: 'box' }, withCode.rev)).exec, { type: 'blackbox', kind: 'blackbox', image: 'u/img', binary: false, code: 'echo {}', main: 'run' });
  const updated = await putUpstreamAction(env.couchdbUrl, name, { namespace: 'guest', name: 'box', rev: withCode.rev, exec: { kind: 'blackbox', image: 'u/img2' } });
  t.same((await actions.get({ path: 'guest', name: 'box' }, updated.rev)).exec, { type: 'blackbox', kind: 'blackbox', image: 'u/img2', binary: false });
  t.match(await actions.get({ path: 'guest', name: 'box' }, withCode.rev), { rev: withCode.rev, exec: { image: 'u/img', code: 'echo {}' } }, 'the revision named, not the latest');
});

t.test('an update from attached to inlined code; a deleted action at its old and its deletion revision', async (t) => {
  const { name, db } = await whisks(t);
  const actions = store(t, { database: name });
  const big = await storeUpstreamAction(env.couchdbUrl, name, upstreamActionDocument({ ...upstreamCodeForms().largeText, name: 'moving' }));
  const small = await putUpstreamAction(env.couchdbUrl, name, { ...upstreamCodeForms().smallText, name: 'moving', rev: big.rev });
  t.same((await actions.get({ path: 'guest', name: 'moving' }, small.rev)).exec, { type: 'code', kind: 'nodejs:20', code: smallTextCode('small-text'), binary: false });
  t.same((await actions.get({ path: 'guest', name: 'moving' }, big.rev)).exec, { type: 'code', kind: 'nodejs:20', code: largeTextCode('large-text'), binary: false }, 'the old revision and its attachment');
  const deleted = await db.destroy('guest/moving', small.rev);
  await t.rejects(actions.get({ path: 'guest', name: 'moving' }, deleted.rev), ActionNotFoundError, '_deleted: true');
  await t.rejects(actions.get({ path: 'guest', name: 'moving' }, null), ActionNotFoundError, 'latest of a deleted action');
});
