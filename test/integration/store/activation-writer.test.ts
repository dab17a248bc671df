/**
 * The activation writer against the real CouchDB-compatible server: records
 * arrive exactly once (every id present, nothing else, every document at its
 * first revision), conflicts count as stored, permanent rejections go to the
 * dead-letter file without holding up the rest, memory stays bounded, and an
 * unreachable server leaves records in the journal for the next start.
 */
import t, { type Test } from 'tap';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import nano from 'nano';
import { ActivationWriter, type StoredRecord, type ActivationWriterOptions } from '../../../invoker/store/activation-writer.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { testEnvironment, uniqueName } from '../../helpers/env.js';
import { activationRecord, contents, destroyDb, freePort, tempDir, waitFor } from './couch-helpers.js';

const env = testEnvironment();
const logger = silentLogger();

async function setup(t: Test): Promise<{ db: string; dir: string }> {
  const db = uniqueName('activations');
  const dir = await tempDir('writer-journal');
  t.teardown(async () => {
    await destroyDb(env.couchdbUrl, db);
    await rm(dir, { recursive: true, force: true });
  });
  return { db, dir };
}

function writer(t: Test, options: Partial<ActivationWriterOptions> & { database: string; journalDir: string }): ActivationWriter {
  const w = new ActivationWriter({ url: env.couchdbUrl, logger, ...options });
  t.teardown(() => w.close({ timeoutMs: 1000 }));
  return w;
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.startsWith('seg-'));
}

const ids = (from: number, count: number, ns = 'guest') =>
  Array.from({ length: count }, (_, i) => activationRecord(ns, from + i)._id).sort();

t.test('500 records all arrive exactly once and the journal ends empty', async (t) => {
  const { db, dir } = await setup(t);
  const batches: number[] = [];
  const w = writer(t, { database: db, journalDir: dir, metrics: { batchWritten: (n) => batches.push(n), failure: () => undefined } });
  await w.start();
  await Promise.all(Array.from({ length: 500 }, (_, i) => w.store(activationRecord('guest', i))));
  const flushed = await w.flush({ timeoutMs: 30_000 });
  t.same(flushed, { complete: true, pending: 0 });
  const stored = await contents(env.couchdbUrl, db);
  t.equal(stored.docCount, 500);
  t.same(stored.ids, ids(0, 500));
  t.equal(stored.rewritten, 0, 'no document was written twice');
  t.equal(batches.reduce((a, b) => a + b, 0), 500, 'metrics saw every record in a batch');
  t.ok(batches.length < 50, `batched (${batches.length} calls)`);
  t.match(w.stats(), { accepted: 500, confirmed: 500, conflicts: 0, deadLettered: 0, pending: 0, inMemory: 0 });
  t.ok(w.isHealthy());
  await w.close();
  t.same(await segmentFiles(dir), [], 'journal empty');
});

t.test('a record CouchDB already holds (conflict) counts as confirmed', async (t) => {
  const { db, dir } = await setup(t);
  const server = nano(env.couchdbUrl);
  await server.db.create(db);
  await server.use(db).bulk({ docs: Array.from({ length: 10 }, (_, i) => activationRecord('guest', i)) });
  const w = writer(t, { database: db, journalDir: dir });
  await w.start();
  await Promise.all(Array.from({ length: 30 }, (_, i) => w.store(activationRecord('guest', i))));
  t.same(await w.flush({ timeoutMs: 30_000 }), { complete: true, pending: 0 });
  t.match(w.stats(), { confirmed: 30, conflicts: 10, deadLettered: 0 });
  const stored = await contents(env.couchdbUrl, db);
  t.equal(stored.docCount, 30);
  t.equal(stored.rewritten, 0);
  await w.close();
  t.same(await segmentFiles(dir), []);
});

t.test('a permanently rejected record goes to the dead-letter file and does not block the others', async (t) => {
  const { db, dir } = await setup(t);
  const failures: string[] = [];
  const w = writer(t, { database: db, journalDir: dir, metrics: { batchWritten: () => undefined, failure: (k) => failures.push(k) } });
  await w.start();
  const good = Array.from({ length: 40 }, (_, i) => activationRecord('guest', i));
  // CouchDB reserves ids starting with "_"; pouchdb-server refuses the whole _bulk_docs call for it.
  const bad: StoredRecord = { ...activationRecord('guest', 999), _id: '_illegal/0123' };
  await Promise.all([...good.slice(0, 20), bad, ...good.slice(20)].map((r) => w.store(r)));
  t.same(await w.flush({ timeoutMs: 30_000 }), { complete: true, pending: 0 });
  const stored = await contents(env.couchdbUrl, db);
  t.same(stored.ids, ids(0, 40), 'all good records arrived');
  t.match(w.stats(), { confirmed: 40, deadLettered: 1 });
  t.same(failures, ['rejected']);
  const letters = (await readFile(join(dir, 'dead-letter.jsonl'), 'utf8')).trim().split('\n');
  t.equal(letters.length, 1);
  const letter = JSON.parse(letters[0] as string) as Record<string, unknown>;
  t.match(letter, { id: '_illegal/0123', error: 'bad_request', reason: /underscore/, doc: { _id: '_illegal/0123', activationId: bad.activationId } });
  await w.close();
  t.same(await segmentFiles(dir), [], 'the rejected record left the journal too');
});

t.test('memory stays bounded: records beyond the bound wait in the journal and all arrive', async (t) => {
  const { db, dir } = await setup(t);
  const w = writer(t, { database: db, journalDir: dir, maxInMemoryRecords: 25, segmentMaxBytes: 16 * 1024 });
  await w.start();
  await Promise.all(Array.from({ length: 300 }, (_, i) => w.store(activationRecord('guest', i))));
  const right = w.stats();
  t.ok(right.inMemory <= 25, `held ${right.inMemory} <= 25`);
  t.ok(right.spilled >= 275 - right.confirmed, `spilled ${right.spilled}`);
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, w.stats().inMemory)), 1);
  const flushed = await w.flush({ timeoutMs: 60_000 });
  clearInterval(sampler);
  t.same(flushed, { complete: true, pending: 0 });
  t.ok(peak <= 25, `never more than 25 held (peak ${peak})`);
  const stored = await contents(env.couchdbUrl, db);
  t.same(stored.ids, ids(0, 300));
  t.equal(stored.rewritten, 0);
  t.match(w.stats(), { confirmed: 300, conflicts: 0 });
  await w.close();
  t.same(await segmentFiles(dir), []);
});

t.test('an unreachable CouchDB: store() still succeeds, flush times out, the next start delivers', async (t) => {
  const { db, dir } = await setup(t);
  const nowhere = `http://127.0.0.1:${await freePort()}`;
  const first = writer(t, { url: nowhere, database: db, journalDir: dir, backoffMaxMs: 200 });
  await first.start();
  await Promise.all(Array.from({ length: 10 }, (_, i) => first.store(activationRecord('guest', i))));
  t.same(await first.flush({ timeoutMs: 300 }), { complete: false, pending: 10 });
  t.notOk(first.isHealthy());
  await waitFor('a recorded error', () => first.health().lastError !== undefined);
  t.match(first.health(), { healthy: false, databaseReady: false, lastError: /creating database .*: .*/ });
  t.same(await first.close({ timeoutMs: 100 }), { complete: false, pending: 10 });
  t.equal((await segmentFiles(dir)).length, 1, 'the records wait in the journal');
  await t.rejects(first.store(activationRecord('guest', 99)), /journal .* is closed/, 'a closed writer refuses records');

  const second = writer(t, { database: db, journalDir: dir });
  await second.start();
  t.equal(second.stats().pending, 10, 'replaying 10');
  t.same(await second.flush({ timeoutMs: 30_000 }), { complete: true, pending: 0 });
  const stored = await contents(env.couchdbUrl, db);
  t.same(stored.ids, ids(0, 10));
  t.ok(second.isHealthy());
  await second.close();
  t.same(await segmentFiles(dir), []);
});

t.test('store() refuses what it cannot journal, saying which record', async (t) => {
  const { db, dir } = await setup(t);
  const w = writer(t, { database: db, journalDir: dir });
  await t.rejects(w.store(activationRecord('guest', 1)), /activation record guest\/.*: the activation writer is not started/);
  await w.start();
  const cyclic = activationRecord('guest', 2);
  cyclic.self = cyclic;
  await t.rejects(w.store(cyclic), /storing activation record guest\/.*: it cannot be serialised/);
  await t.rejects(w.store({ _id: '' }), /no string _id/);
  t.equal(w.stats().accepted, 0);
});
