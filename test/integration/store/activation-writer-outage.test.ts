/**
 * The activation writer through outages, on a pouchdb-server of the test's
 * own (stopping the shared one would disturb other tests): CouchDB going
 * away in the middle of a run, and the invoker process itself killed with
 * SIGKILL while records waited in its journal. Records arrive exactly once:
 * every id present, nothing else, every document at its first revision.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { readdir, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ActivationWriter } from '../../../invoker/store/activation-writer.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { uniqueName } from '../../helpers/env.js';
import { OwnCouch, activationRecord, contents, sleep, tempDir } from './couch-helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const logger = silentLogger();

const ids = (from: number, count: number) => Array.from({ length: count }, (_, i) => activationRecord('guest', from + i)._id).sort();

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.startsWith('seg-'));
}

t.test('CouchDB stopped in the middle of 200 records and restarted: all 200 arrive exactly once', async (t) => {
  const couch = await OwnCouch.start();
  t.teardown(() => couch.destroy());
  const dir = await tempDir('writer-outage');
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const db = uniqueName('activations');
  const writer = new ActivationWriter({ url: couch.url, database: db, journalDir: dir, logger, backoffMaxMs: 500, requestTimeoutMs: 5000 });
  t.teardown(() => writer.close({ timeoutMs: 1000 }));
  await writer.start();

  // A steady trickle, as activations finish: 10 records every 20 ms.
  const storing = (async () => {
    for (let i = 0; i < 200; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, j) => writer.store(activationRecord('guest', i + j))));
      await sleep(20);
    }
  })();
  while (writer.stats().confirmed < 60) await sleep(5);
  await couch.down();
  const atStop = writer.stats();
  t.ok(atStop.confirmed < 200, `server stopped with ${200 - atStop.confirmed} records to go`);
  await storing; // store() keeps succeeding: the journal has them
  await sleep(300);
  t.notOk(writer.isHealthy(), 'unhealthy while CouchDB is down');
  t.equal(writer.stats().accepted, 200);
  await couch.up();

  t.same(await writer.flush({ timeoutMs: 60_000 }), { complete: true, pending: 0 });
  const stats = writer.stats();
  t.ok(stats.requestFailures > 0, `the outage was noticed (${stats.requestFailures} failed calls)`);
  t.equal(stats.confirmed, 200);
  t.ok(writer.isHealthy(), 'healthy again');
  const stored = await contents(couch.url, db);
  t.same(stored.ids, ids(0, 200));
  t.equal(stored.docCount, 200);
  t.equal(stored.rewritten, 0, 'no document written twice');
  await writer.close();
  t.same(await segmentFiles(dir), [], 'journal empty');
});

t.test('a writer process killed with SIGKILL loses nothing: the next start delivers exactly the unconfirmed records', async (t) => {
  const couch = await OwnCouch.start();
  t.teardown(() => couch.destroy());
  const dir = await tempDir('writer-kill');
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const db = uniqueName('activations');

  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures/writer-child.ts')], {
    cwd: repoRoot,
    env: { ...process.env, WRITER_CHILD_URL: couch.url, WRITER_CHILD_DB: db, WRITER_CHILD_DIR: dir },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | number | null>((r) => child.once('exit', (code, signal) => r(signal ?? code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const answers = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const ask = async (command: string): Promise<string> => {
    child.stdin.write(`${command}\n`);
    const answer = await answers.next();
    if (answer.done === true) throw new Error(`writer child ended before answering ${command}`);
    return answer.value;
  };

  // 100 records confirmed while CouchDB is up...
  t.equal(await ask('store 0 100'), 'stored 100');
  t.equal(await ask('flush'), 'flushed true');
  // ...then CouchDB goes away and 200 more are accepted into the journal only.
  await couch.down();
  t.equal(await ask('store 100 100'), 'stored 100');
  t.equal(await ask('store 200 100'), 'stored 100');
  await sleep(200);
  child.kill('SIGKILL');
  t.equal(await exited, 'SIGKILL');
  t.ok((await segmentFiles(dir)).length >= 2, 'the journal holds segments');

  await couch.up();
  const before = await contents(couch.url, db);
  t.equal(before.docCount, 100, 'only the first 100 reached CouchDB before the kill');

  const writer = new ActivationWriter({ url: couch.url, database: db, journalDir: dir, logger });
  t.teardown(() => writer.close({ timeoutMs: 1000 }));
  await writer.start();
  t.equal(writer.stats().pending, 200, 'exactly the 200 unconfirmed records are replayed');
  t.same(await writer.flush({ timeoutMs: 60_000 }), { complete: true, pending: 0 });
  t.match(writer.stats(), { confirmed: 200, conflicts: 0, deadLettered: 0 });
  const stored = await contents(couch.url, db);
  t.same(stored.ids, ids(0, 300));
  t.equal(stored.rewritten, 0, 'no document written twice');
  await writer.close();
  t.same(await readdir(dir), [], 'the journal ends empty');
});
