/**
 * The controller's forced records against the invoker's real ones, on the
 * real CouchDB-compatible server, in both orders: the invoker's record is the
 * one that stays. The controller writes create-only (a conflict means the
 * invoker's record is there); the invoker's writer replaces a forced record
 * (recognised by its marker annotation) but nothing else.
 */
import t, { type Test } from 'tap';
import { rm } from 'node:fs/promises';
import {
  activationDocument,
  generateActivationId,
  generateTransactionId,
  isForcedRecord,
  serializeActivationDocument,
  type ActivationDocument,
} from '../../../protocol/index.js';
import { ActivationWriter } from '../../../invoker/store/activation-writer.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { forcedRecord } from '../../../controller-lb/forced-record.js';
import { guestIdentity } from '../../helpers/identity.js';
import { testEnvironment, uniqueName } from '../../helpers/env.js';
import { destroyDb, tempDir } from './couch-helpers.js';

const env = testEnvironment();

async function writers(t: Test) {
  const db = uniqueName('activations');
  const dirs = [await tempDir('invoker-journal'), await tempDir('controller-journal')];
  const invoker = new ActivationWriter({ url: env.couchdbUrl, database: db, journalDir: dirs[0] as string, logger: silentLogger(), replaceable: isForcedRecord });
  const controller = new ActivationWriter({ url: env.couchdbUrl, database: db, journalDir: dirs[1] as string, logger: silentLogger() });
  await invoker.start();
  await controller.start();
  t.teardown(async () => {
    await invoker.close({ timeoutMs: 1000 });
    await controller.close({ timeoutMs: 1000 });
    await destroyDb(env.couchdbUrl, db);
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  return { db, invoker, controller };
}

function pair(): { real: ActivationDocument; forced: ActivationDocument } {
  const msg = {
    transid: generateTransactionId(),
    action: { path: 'guest', name: 'hello', version: '0.0.1' },
    user: guestIdentity(),
    activationId: generateActivationId(),
  };
  const now = Date.now();
  const real = activationDocument(
    {
      namespace: 'guest',
      name: 'hello',
      subject: 'guest',
      activationId: msg.activationId,
      start: now - 5,
      end: now,
      response: { statusCode: 0, result: { payload: 'Hello' } },
      logs: [],
      version: '0.0.1',
      publish: false,
      annotations: [{ key: 'path', value: 'guest/hello' }],
      duration: 5,
    },
    now,
  );
  const forced = forcedRecord({ message: msg, controller: { asString: '0' }, reason: 'timeout', acknowledged: true, timeoutMs: 60_000, error: 'no completion', now });
  return { real, forced };
}

async function stored(db: string, id: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${env.couchdbUrl}/${encodeURIComponent(db)}/${encodeURIComponent(id)}`);
  return (await response.json()) as Record<string, unknown>;
}

const store = (w: ActivationWriter, doc: ActivationDocument) => w.storeSerialized(doc._id, serializeActivationDocument(doc));

t.test('the invoker first: the controller\'s forced record loses the conflict', async (t) => {
  const { db, invoker, controller } = await writers(t);
  const { real, forced } = pair();
  await store(invoker, real);
  t.same(await invoker.flush(), { complete: true, pending: 0 });
  await store(controller, forced);
  t.same(await controller.flush(), { complete: true, pending: 0 });
  t.match(controller.stats(), { confirmed: 1, conflicts: 1 });
  const doc = await stored(db, real._id);
  t.match(doc, { response: { statusCode: 0 } }, 'the invoker\'s record stays');
  t.match(String(doc['_rev']), /^1-/, 'never rewritten');
});

t.test('the controller first: the invoker\'s record replaces the forced one', async (t) => {
  const { db, invoker, controller } = await writers(t);
  const { real, forced } = pair();
  await store(controller, forced);
  t.same(await controller.flush(), { complete: true, pending: 0 });
  t.ok(isForcedRecord(await stored(db, real._id)), 'the forced record is there');
  await store(invoker, real);
  t.same(await invoker.flush(), { complete: true, pending: 0 });
  t.match(invoker.stats(), { confirmed: 1, replaced: 1, conflicts: 0 });
  const doc = await stored(db, real._id);
  t.match(doc, { response: { statusCode: 0 } });
  t.notOk(isForcedRecord(doc));
  t.match(String(doc['_rev']), /^2-/);

  // A replay of the invoker's record (after a crash) is a plain conflict now.
  await store(invoker, real);
  t.same(await invoker.flush(), { complete: true, pending: 0 });
  t.match(invoker.stats(), { confirmed: 2, replaced: 1, conflicts: 1 });
  t.match(String((await stored(db, real._id))['_rev']), /^2-/);
});

t.test('the invoker never replaces a record that is not a forced one', async (t) => {
  const { db, invoker } = await writers(t);
  const { real } = pair();
  await store(invoker, real);
  await invoker.flush();
  const other = { ...real, activation: { ...real.activation, response: { statusCode: 3 as const, result: { error: 'other' } } } };
  await store(invoker, other);
  await invoker.flush();
  t.match(await stored(db, real._id), { response: { statusCode: 0 } });
});
