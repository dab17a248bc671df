/**
 * The journal on its own, on a real directory: what survives a reopen, when
 * segments go away, torn tails, the cursor (take, acknowledge, give back)
 * within its memory bound, reading records back, the bit set behind it.
 */
import t, { type Test } from 'tap';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bits, Journal, type JournalRecord } from '../../../invoker/store/journal.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';

const logger = silentLogger();

async function journalDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'journal-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function doc(i: number): { id: string; json: string } {
  const id = `guest/${i.toString().padStart(32, '0')}`;
  return { id, json: JSON.stringify({ _id: id, entityType: 'activation', n: i, text: 'line\nbreak' }) };
}

async function segments(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.startsWith('seg-')).sort();
}

const all = { records: 1000, bytes: 1e9 };

t.test('appends of one event-loop turn go out in one write and resolve with their place', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger });
  const records = await Promise.all(Array.from({ length: 50 }, (_, i) => journal.append(doc(i).id, doc(i).json)));
  t.equal(journal.stats().appendWrites, 1, 'one write for the whole turn');
  t.same(
    records.map((r) => r.ordinal),
    Array.from({ length: 50 }, (_, i) => i),
  );
  t.equal(journal.unconfirmed, 50);
  const text = await readFile(join(dir, (await segments(dir))[0] as string), 'utf8');
  t.equal(text.split('\n').filter((l) => l.startsWith('R ')).length, 50, 'one line per record, newlines in values escaped');
  await journal.close();
});

t.test('only unconfirmed records survive a reopen, and a fully confirmed journal leaves no file', async (t) => {
  const dir = await journalDir(t);
  const first = await Journal.open({ dir, logger });
  const records = await Promise.all(Array.from({ length: 10 }, (_, i) => first.append(doc(i).id, doc(i).json)));
  first.acknowledge(records.slice(0, 7));
  await first.close();

  const second = await Journal.open({ dir, logger });
  t.equal(second.unconfirmed, 3, 'the 3 unconfirmed records are back');
  const read = await second.take(all);
  t.same(
    read.records.map((r) => r.id),
    [7, 8, 9].map((i) => doc(i).id),
  );
  t.equal(read.records[0]?.json, doc(7).json, 'the document comes back byte for byte');
  second.acknowledge(read.records);
  await second.close();
  t.same(await segments(dir), [], 'all confirmed: the directory holds no segment');

  const third = await Journal.open({ dir, logger });
  t.equal(third.unconfirmed, 0);
  await third.close();
});

t.test('segments rotate at their size and a sealed one is deleted once all its records are confirmed', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger, segmentMaxBytes: 1024 });
  const written: JournalRecord[] = [];
  for (let round = 0; round < 5; round++) {
    written.push(...(await Promise.all(Array.from({ length: 10 }, (_, i) => journal.append(doc(round * 10 + i).id, doc(round * 10 + i).json)))));
  }
  t.equal((await segments(dir)).length, 5, 'one segment per round: each round overflows 1 KiB');
  t.equal(journal.stats().segments, 5);
  journal.acknowledge(written.filter((r) => r.segment === written[0]?.segment));
  await journal.whenAppended();
  await new Promise((r) => setTimeout(r, 50));
  t.equal((await segments(dir)).length, 4, 'the first segment is gone');
  await journal.close();
});

t.test('a burst larger than a segment is cut at segment boundaries', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger, segmentMaxBytes: 2048 });
  const records = await Promise.all(Array.from({ length: 100 }, (_, i) => journal.append(doc(i).id, doc(i).json)));
  const files = await segments(dir);
  t.ok(files.length >= 5, `${files.length} segments for ~13 KiB`);
  t.equal(journal.stats().appendWrites, files.length, 'one write per segment');
  t.equal(journal.unconfirmed, 100);
  t.equal(new Set(records.map((r) => `${r.segment}:${r.ordinal}`)).size, 100, 'every record has its own place');
  await journal.close();
  const reopened = await Journal.open({ dir, logger });
  t.equal(reopened.unconfirmed, 100);
  const read = await reopened.take(all);
  t.same(read.records.map((r) => r.id).sort(), records.map((r) => r.id).sort());
  await reopened.close();
});

t.test('a torn last line (a write cut by a crash) is cut off at open, and later lines start clean', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger });
  await Promise.all([0, 1].map((i) => journal.append(doc(i).id, doc(i).json)));
  await journal.close();
  const file = join(dir, (await segments(dir))[0] as string);
  await appendFile(file, 'R 2 {"_id":"guest/torn","ent');

  const reopened = await Journal.open({ dir, logger });
  t.equal(reopened.unconfirmed, 2, 'the torn record does not count: its store() never resolved');
  t.notOk((await readFile(file, 'utf8')).includes('torn'), 'the partial line is gone from the file');
  const read = await reopened.take(all);
  reopened.acknowledge(read.records);
  await reopened.close();
  t.same(await segments(dir), []);
});

t.test('a damaged record line comes back as corrupt, not as a document', async (t) => {
  const dir = await journalDir(t);
  await writeFile(join(dir, 'seg-000000000007.jnl'), `R 0 ${doc(0).json}\nR 1 {not json\nR 2 ["no id"]\n`);
  const journal = await Journal.open({ dir, logger });
  t.equal(journal.unconfirmed, 3);
  const read = await journal.take(all);
  t.same(read.records.map((r) => r.ordinal), [0]);
  t.same(read.corrupt.map((c) => c.ordinal), [1, 2]);
  t.match(read.corrupt[0]?.problem, /not JSON/);
  const more = await journal.append(doc(9).id, doc(9).json);
  t.equal(more.segment, 8, 'new records go to a new segment after the highest existing one');
  await journal.close();
});

t.test('take hands out the oldest records nobody holds; memory stays within its bound and spilled records come back in order', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger, maxHeldRecords: 5 });
  await Promise.all(Array.from({ length: 20 }, (_, i) => journal.append(doc(i).id, doc(i).json)));
  t.match(journal.stats(), { unconfirmed: 20, held: 5, spilled: 15 }, 'beyond the bound, records are only on disk');
  const first = await journal.take({ records: 3, bytes: 1e9 });
  t.same(first.records.map((r) => r.ordinal), [0, 1, 2]);
  const second = await journal.take(all);
  t.same(second.records.map((r) => r.ordinal), [3, 4], 'taken records are not handed out twice');
  journal.giveBack(first.records.slice(1));
  const again = await journal.take({ records: 1, bytes: 1e9 });
  t.same(again.records.map((r) => r.ordinal), [1], 'a record given back goes out first');
  journal.acknowledge([...first.records, ...second.records]);
  t.match(journal.stats(), { unconfirmed: 15, held: 0 });
  const seen: number[] = [];
  while (journal.unconfirmed > 0) {
    const batch = await journal.take(all);
    t.ok(journal.stats().held <= 5, `held ${journal.stats().held} <= 5`);
    seen.push(...batch.records.map((r) => r.ordinal));
    journal.acknowledge(batch.records);
  }
  t.same(seen, Array.from({ length: 15 }, (_, i) => i + 5), 'every spilled record once, oldest first');
  await journal.close();
  t.same(await segments(dir), []);
});

t.test('records appended while older ones are spilled spill too, so none overtakes them', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger, maxHeldRecords: 4 });
  await Promise.all(Array.from({ length: 6 }, (_, i) => journal.append(doc(i).id, doc(i).json)));
  const taken = await journal.take(all);
  journal.acknowledge(taken.records);
  await journal.append(doc(6).id, doc(6).json);
  const seen: number[] = [];
  while (journal.unconfirmed > 0) {
    const batch = await journal.take(all);
    seen.push(...batch.records.map((r) => r.ordinal));
    journal.acknowledge(batch.records);
  }
  t.same(seen, [4, 5, 6]);
  await journal.close();
});

t.test('take stops at its limits, with at least one record even when it exceeds the byte limit', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger });
  await Promise.all(Array.from({ length: 20 }, (_, i) => journal.append(doc(i).id, doc(i).json)));
  t.equal((await journal.take({ records: 10, bytes: 1e9 })).records.length, 10);
  t.equal((await journal.take({ records: 100, bytes: 1 })).records.length, 1);
  await journal.close();
  const reopened = await Journal.open({ dir, logger });
  t.equal((await reopened.take({ records: 100, bytes: 1 })).records.length, 1, 'the same for records read back from disk');
  await reopened.close();
});

t.test('marks and confirmedBelow tell flush() when everything until then is confirmed', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger });
  const early = await Promise.all([0, 1, 2].map((i) => journal.append(doc(i).id, doc(i).json)));
  const marks = journal.marks();
  const late = await journal.append(doc(3).id, doc(3).json);
  t.notOk(journal.confirmedBelow(marks));
  journal.acknowledge([early[0], early[2]] as JournalRecord[]);
  t.notOk(journal.confirmedBelow(marks), 'one early record still open');
  journal.acknowledge([early[1]] as JournalRecord[]);
  t.ok(journal.confirmedBelow(marks), 'a later record does not hold it back');
  journal.acknowledge([late]);
  await journal.close();
});

t.test('dead letters are written with their document and reason, and leave the journal', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger });
  const record = await journal.append(doc(1).id, doc(1).json);
  const [taken] = (await journal.take(all)).records;
  t.equal(taken?.id, record.id);
  await journal.deadLetter([{ ref: record, id: record.id, json: record.json, error: 'forbidden', reason: 'no' }]);
  t.equal(journal.unconfirmed, 0);
  const lines = (await readFile(journal.deadLetterFile, 'utf8')).trim().split('\n');
  t.equal(lines.length, 1);
  const letter = JSON.parse(lines[0] as string) as Record<string, unknown>;
  t.match(letter, { id: record.id, error: 'forbidden', reason: 'no', doc: { _id: record.id, n: 1 } });
  await journal.close();
});

t.test('appends after close reject and say why', async (t) => {
  const dir = await journalDir(t);
  const journal = await Journal.open({ dir, logger });
  await journal.close();
  await t.rejects(journal.append('guest/x', '{"_id":"guest/x"}'), /journal .* is closed/);
});

t.test('Bits: set, clear, count and the lowest set bit across words', async (t) => {
  const bits = new Bits();
  t.equal(bits.lowest(), Infinity);
  for (const i of [5, 31, 32, 1000, 70_000]) bits.set(i);
  bits.set(32);
  t.equal(bits.count, 5, 'setting twice counts once');
  t.equal(bits.lowest(), 5);
  t.ok(bits.clear(5));
  t.notOk(bits.clear(5), 'clearing twice reports it');
  t.equal(bits.lowest(), 31);
  bits.clear(31);
  bits.clear(32);
  t.equal(bits.lowest(), 1000);
  bits.set(3);
  t.equal(bits.lowest(), 3, 'a lower bit set later is found');
  bits.clear(3);
  bits.clear(1000);
  t.equal(bits.lowest(), 70_000);
  t.ok(bits.has(70_000));
  bits.clear(70_000);
  t.equal(bits.count, 0);
  t.equal(bits.lowest(), Infinity);
});
