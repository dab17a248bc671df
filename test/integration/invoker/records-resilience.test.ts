/**
 * Activation records survive a CouchDB outage and an invoker crash, and land
 * exactly once: every id present once, every document at revision 1.
 *
 * Runs against a pouchdb-server of its own (stoppable without disturbing
 * other tests); the action is read once before the outage, so the action
 * store's cache (keyed by id and revision) serves it while CouchDB is down.
 */
import t, { type Test } from 'tap';
import { ContainerFactory } from '../../../invoker/docker/index.js';
import { InvokerTestbed, type TestInvoker } from '../../helpers/invoker-harness.js';
import { contents, OwnCouch } from '../store/couch-helpers.js';
import { activationOf, boundedMap, eventually } from './helpers.js';

const couch = await OwnCouch.start();
t.teardown(() => couch.destroy());

/** Every expected record is in the database exactly once, never rewritten. */
async function expectExactlyOnce(t: Test, bed: InvokerTestbed, expectedIds: string[]): Promise<void> {
  const expected = [...expectedIds].sort();
  const seen = await eventually(
    `${expected.length} records`,
    () => contents(couch.url, bed.activationsDb),
    (c) => c.docCount >= expected.length && c.ids.length >= expected.length,
    60_000,
  );
  t.equal(seen.docCount, expected.length, 'as many documents as activations');
  t.same(seen.ids, expected, 'every activation id once, nothing else');
  t.equal(seen.rewritten, 0, 'every document at revision 1-...');
  const revs = await bed.allRecords();
  t.ok(revs.every((r) => r.rev.startsWith('1-')), 'allRecords agrees');
}

async function expectSuccess(invoker: TestInvoker, bed: InvokerTestbed, action: { name: string; rev: string }): Promise<string> {
  const message = bed.message(action);
  const answer = await invoker.invoke(message);
  if (answer.status !== 200) throw new Error(`POST /invoke answered ${answer.status}: ${answer.body}`);
  const status = activationOf(answer.ack).response.statusCode;
  if (status !== 0) throw new Error(`activation ${message.activationId} ended with status ${status}: ${answer.body}`);
  return `guest/${message.activationId}`;
}

/** Sum of a metric's samples in the invoker's Prometheus exposition. */
async function metric(invoker: TestInvoker, name: string): Promise<number> {
  const { body } = await invoker.get('/metrics');
  let sum = 0;
  for (const line of body.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

t.test('CouchDB down and back during 200 activations: every record exactly once', async (t) => {
  const bed = new InvokerTestbed(t, { couchdbUrl: couch.url });
  await bed.createDatabases();
  const invoker = await bed.start();
  const { rev } = await bed.putAction({ name: 'steady', code: `function main(p) { return { n: p.n ?? 0 }; }` });
  const action = { name: 'steady', rev };
  // Caches the action at its revision: from here on no activation needs CouchDB to run.
  const warmup = await expectSuccess(invoker, bed, action);
  await bed.waitForRecord('guest', warmup.slice('guest/'.length));

  const TOTAL = 200;
  let down: Promise<void> | undefined;
  let up: Promise<void> | undefined;
  let pendingDuringOutage = 0;
  const ids = await boundedMap(
    Array.from({ length: TOTAL }, (_, i) => i),
    10,
    async (i) => {
      // Not awaited here: the outage begins and ends while activations are in flight.
      if (i === 50) down = couch.down();
      if (i === 150) {
        up = (down ?? Promise.resolve()).then(async () => {
          pendingDuringOutage = await metric(invoker, 'invoker_store_pending_records');
          await couch.up();
        });
      }
      return expectSuccess(invoker, bed, action);
    },
  );
  t.equal(ids.length, TOTAL, 'every activation completed while records could not be stored');
  await down;
  await up;
  t.ok(pendingDuringOutage > 0, `records waited in the journal during the outage (${pendingDuringOutage})`);
  await expectExactlyOnce(t, bed, [warmup, ...ids]);
  t.ok(await metric(invoker, 'invoker_store_failures_total'), 'the writer saw the outage (failed requests)');
  t.equal(await metric(invoker, 'invoker_store_pending_records'), 0, 'nothing left pending');
});

t.test('invoker killed with records only in its journal: the next process stores them exactly once', async (t) => {
  const bed = new InvokerTestbed(t, { couchdbUrl: couch.url });
  await bed.createDatabases();
  // Backstop: a SIGKILLed invoker leaves its containers (the next one removes them at startup).
  t.teardown(async () => {
    await new ContainerFactory({ invokerId: bed.invokerId, userMemoryMb: 1024, apiHost: '' }).removeInvokerContainers().catch(() => undefined);
  });
  const first = await bed.spawn();
  const { rev } = await bed.putAction({ name: 'crashy', code: `function main() { return { ok: true }; }` });
  const action = { name: 'crashy', rev };
  const warmup = await expectSuccess(first.invoker, bed, action);
  await bed.waitForRecord('guest', warmup.slice('guest/'.length));

  await couch.down();
  const ids = await boundedMap(Array.from({ length: 30 }, (_, i) => i), 5, () => expectSuccess(first.invoker, bed, action));
  t.equal(ids.length, 30, 'activations completed with CouchDB down (records journaled)');
  first.child.kill('SIGKILL');
  t.equal(await first.exited, null, 'the invoker process was killed');

  await couch.up();
  const before = await contents(couch.url, bed.activationsDb);
  t.equal(before.docCount, 1, 'only the warm-up record reached CouchDB before the crash');

  // Same testbed: same invoker id and journal directory.
  const second = await bed.spawn();
  await expectExactlyOnce(t, bed, [warmup, ...ids]);

  // A graceful stop removes the containers (the harness would SIGKILL it).
  second.child.kill('SIGTERM');
  t.equal(await second.exited, 0, 'the second invoker stops cleanly');
});
