/**
 * How the activation writer handles every kind of CouchDB answer, against a
 * scripted HTTP server that speaks just enough of CouchDB (PUT /db,
 * POST /db/_bulk_docs) to produce answers the real one gives rarely or under
 * conditions a test cannot arrange: per-document transient errors, 5xx,
 * 413, 404 for a vanished database, malformed answers, a server that hangs.
 * The real-server behaviour is covered by test/integration/store.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ActivationWriter, type ActivationWriterOptions, type WriteFailureKind } from '../../../invoker/store/activation-writer.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';

interface Doc {
  _id: string;
  [key: string]: unknown;
}

type Answer = { status: number; body: unknown } | 'hang';
/** Returns an answer for a bulk call, or undefined for the default CouchDB behaviour. */
type Script = (docs: Doc[], call: number) => Answer | undefined;

class FakeCouch {
  readonly stored = new Map<string, number>();
  readonly calls: number[] = [];
  dbPuts = 0;
  dbExists = false;
  script: Script = () => undefined;

  private constructor(private readonly server: http.Server) {}

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  static async start(t: Test): Promise<FakeCouch> {
    let fake: FakeCouch | undefined;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => fake?.handle(req, Buffer.concat(chunks).toString('utf8'), res));
    });
    fake = new FakeCouch(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    t.teardown(async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    });
    return fake;
  }

  /** The default: every new id stored, a known id a conflict. */
  couchAnswer(docs: Doc[]): Answer {
    return {
      status: 201,
      body: docs.map((d) => {
        if (this.stored.has(d._id)) return { id: d._id, error: 'conflict', reason: 'Document update conflict.' };
        this.stored.set(d._id, 1);
        return { id: d._id, ok: true, rev: '1-x' };
      }),
    };
  }

  private handle(req: http.IncomingMessage, body: string, res: http.ServerResponse): void {
    const send = (status: number, answer: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    };
    if (req.method === 'PUT') {
      this.dbPuts++;
      if (this.dbExists) return send(412, { error: 'file_exists', reason: 'The database could not be created, the file already exists.' });
      this.dbExists = true;
      return send(201, { ok: true });
    }
    if (req.method === 'POST' && req.url?.endsWith('/_bulk_docs')) {
      const docs = (JSON.parse(body) as { docs: Doc[] }).docs;
      this.calls.push(docs.length);
      const answer = this.script(docs, this.calls.length) ?? this.couchAnswer(docs);
      if (answer === 'hang') return; // never answers
      return send(answer.status, answer.body);
    }
    send(404, { error: 'not_found', reason: 'missing' });
  }
}

const doc = (i: number, extra: Record<string, unknown> = {}): Doc => ({
  _id: `guest/${i.toString(16).padStart(32, '0')}`,
  entityType: 'activation',
  n: i,
  ...extra,
});

async function writerFor(
  t: Test,
  fake: FakeCouch,
  options: Partial<ActivationWriterOptions> = {},
): Promise<{ writer: ActivationWriter; dir: string; failures: WriteFailureKind[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'writer-answers-'));
  const failures: WriteFailureKind[] = [];
  const writer = new ActivationWriter({
    url: fake.url,
    database: 'activations',
    journalDir: dir,
    logger: silentLogger(),
    backoffMinMs: 10,
    backoffMaxMs: 50,
    batchDelayMs: 1,
    metrics: { batchWritten: () => undefined, failure: (kind) => failures.push(kind) },
    ...options,
  });
  t.teardown(async () => {
    await writer.close({ timeoutMs: 500 });
    await rm(dir, { recursive: true, force: true });
  });
  await writer.start();
  return { writer, dir, failures };
}

async function storeAll(writer: ActivationWriter, docs: Doc[]): Promise<void> {
  await Promise.all(docs.map((d) => writer.store(d)));
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

t.test('a per-document transient error is retried until stored; the others are not held up', async (t) => {
  const fake = await FakeCouch.start(t);
  let refusals = 2;
  fake.script = (docs) => {
    if (refusals === 0) return undefined;
    const answer = fake.couchAnswer(docs.filter((d) => d.n !== 3));
    refusals--;
    const body = [...(answer as { body: unknown[] }).body, { id: doc(3)._id, error: 'unknown_error', reason: 'try later' }];
    return { status: 201, body };
  };
  const { writer, failures } = await writerFor(t, fake);
  await storeAll(writer, range(10).map((i) => doc(i)));
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.equal(fake.stored.size, 10);
  t.match(writer.stats(), { confirmed: 10, documentRetries: 2, deadLettered: 0 });
  t.same(failures, ['document', 'document']);
});

t.test('a failing server (500) is retried with backoff; health follows', async (t) => {
  const fake = await FakeCouch.start(t);
  fake.script = (_docs, call) => (call <= 3 ? { status: 500, body: { error: 'internal_server_error', reason: 'boom' } } : undefined);
  const { writer, failures } = await writerFor(t, fake);
  await storeAll(writer, range(5).map((i) => doc(i)));
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.equal(fake.stored.size, 5);
  t.equal(writer.stats().requestFailures, 3);
  t.same(failures, ['request', 'request', 'request']);
  t.ok(writer.isHealthy(), 'healthy after a success');
  t.match(writer.health(), { lastError: /writing 5 activation record\(s\) to activations: HTTP 500 internal_server_error: boom/ });
});

t.test('413 for a large call splits it; a document too large on its own is dead-lettered', async (t) => {
  const fake = await FakeCouch.start(t);
  fake.script = (docs) =>
    docs.length > 8 || docs.some((d) => d.huge !== undefined)
      ? { status: 413, body: { error: 'too_large', reason: 'the request entity is too large' } }
      : undefined;
  const { writer, dir, failures } = await writerFor(t, fake, { batchMaxDocs: 50 });
  await storeAll(writer, [...range(20).map((i) => doc(i)), doc(99, { huge: true }), ...range(20).map((i) => doc(i + 20))]);
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.equal(fake.stored.size, 40, 'every other record stored');
  t.ok(fake.calls.some((n) => n <= 8), `split calls: ${fake.calls.join(',')}`);
  t.match(writer.stats(), { confirmed: 40, deadLettered: 1, requestFailures: 0 });
  t.same(failures, ['rejected']);
  const letter = JSON.parse((await readFile(join(dir, 'dead-letter.jsonl'), 'utf8')).trim()) as Record<string, unknown>;
  t.match(letter, { id: doc(99)._id, error: 'too_large', doc: { huge: true } });
});

t.test('forbidden documents are dead-lettered by id; the rest of the call is stored', async (t) => {
  const fake = await FakeCouch.start(t);
  fake.script = (docs) => {
    const allowed = docs.filter((d) => d.secret === undefined);
    const answer = fake.couchAnswer(allowed) as { body: unknown[] };
    return {
      status: 201,
      body: [...answer.body, ...docs.filter((d) => d.secret !== undefined).map((d) => ({ id: d._id, error: 'forbidden', reason: 'no secrets' }))],
    };
  };
  const { writer, dir } = await writerFor(t, fake);
  await storeAll(writer, [doc(1), doc(2, { secret: 'x' }), doc(3)]);
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.same([...fake.stored.keys()].sort(), [doc(1)._id, doc(3)._id]);
  t.match(writer.stats(), { confirmed: 2, deadLettered: 1 });
  t.match(JSON.parse(await readFile(join(dir, 'dead-letter.jsonl'), 'utf8')), { id: doc(2)._id, error: 'forbidden', reason: 'no secrets' });
});

t.test('a vanished database (404) is created again before the records are written', async (t) => {
  const fake = await FakeCouch.start(t);
  fake.script = (_docs, call) => (call === 1 ? { status: 404, body: { error: 'not_found', reason: 'Database does not exist.' } } : undefined);
  const { writer } = await writerFor(t, fake);
  await storeAll(writer, range(3).map((i) => doc(i)));
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.equal(fake.dbPuts, 2, 'created at start and again after the 404');
  t.equal(fake.stored.size, 3);
});

t.test('malformed answers are retried, answers in any order are matched by id', async (t) => {
  const fake = await FakeCouch.start(t);
  fake.script = (docs, call) => {
    if (call === 1) return { status: 201, body: { not: 'an array' } };
    if (call === 2) return { status: 201, body: [{ id: 'guest/someone-else', ok: true }] };
    const answer = fake.couchAnswer(docs) as { body: unknown[] };
    return { status: 201, body: [...answer.body].reverse() };
  };
  const { writer } = await writerFor(t, fake);
  await storeAll(writer, range(4).map((i) => doc(i)));
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.match(writer.stats(), { confirmed: 4, conflicts: 0, requestFailures: 2 });
});

t.test('a request that hangs is abandoned after requestTimeoutMs and retried', async (t) => {
  const fake = await FakeCouch.start(t);
  fake.script = (_docs, call) => (call === 1 ? 'hang' : undefined);
  const { writer } = await writerFor(t, fake, { requestTimeoutMs: 200 });
  await storeAll(writer, range(3).map((i) => doc(i)));
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.equal(writer.stats().requestFailures, 1);
  t.equal(fake.stored.size, 3);
});

t.test('close() during an outage returns within its timeout and keeps the records in the journal', async (t) => {
  const fake = await FakeCouch.start(t);
  fake.script = () => ({ status: 503, body: { error: 'unavailable' } });
  const { writer, dir } = await writerFor(t, fake);
  await storeAll(writer, range(7).map((i) => doc(i)));
  const started = Date.now();
  t.same(await writer.close({ timeoutMs: 200 }), { complete: false, pending: 7 });
  t.ok(Date.now() - started < 2000, 'bounded by the timeout');
  t.equal((await readdir(dir)).filter((f) => f.startsWith('seg-')).length, 1);
});

t.test('batches respect the document and byte limits', async (t) => {
  const fake = await FakeCouch.start(t);
  const { writer } = await writerFor(t, fake, { batchMaxDocs: 7, batchMaxBytes: 2000, maxConcurrentBatches: 1 });
  await storeAll(writer, range(30).map((i) => doc(i, { pad: 'x'.repeat(400) })));
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.ok(fake.calls.every((n) => n <= 4), `about 450 B each, at most 4 per 2000 B: ${fake.calls.join(',')}`);
  t.equal(fake.stored.size, 30);
});

t.test('option values are checked', async (t) => {
  t.throws(() => new ActivationWriter({ url: 'http://127.0.0.1:1', journalDir: '/tmp/x', logger: silentLogger(), batchMaxDocs: 0 }), /batchMaxDocs must be > 0/);
  t.throws(() => new ActivationWriter({ url: 'http://127.0.0.1:1', journalDir: '/tmp/x', logger: silentLogger(), batchDelayMs: -1 }), /batchDelayMs must be >= 0/);
});

t.test('a dead-letter file that cannot be written keeps the record in the journal until it can', async (t) => {
  const fake = await FakeCouch.start(t);
  fake.script = (docs) => ({ status: 201, body: docs.map((d) => ({ id: d._id, error: 'forbidden', reason: 'no' })) });
  const blocked = await mkdtemp(join(tmpdir(), 'writer-dead-letter-'));
  t.teardown(() => rm(blocked, { recursive: true, force: true }));
  // A directory where the file should be: appending to it fails (EISDIR) until it is removed.
  const { writer, failures } = await writerFor(t, fake, { deadLetterFile: blocked });
  await storeAll(writer, [doc(1)]);
  t.same(await writer.flush({ timeoutMs: 300 }), { complete: false, pending: 1 }, 'not done while the file cannot be written');
  // On a loaded machine the first attempt may still be under way after 300 ms.
  for (const stopAt = Date.now() + 5000; !failures.includes('rejected') && Date.now() < stopAt; ) await new Promise((r) => setTimeout(r, 20));
  t.notOk(writer.isHealthy(), 'unhealthy once an attempt to dead-letter failed');
  await rm(blocked, { recursive: true, force: true });
  t.same(await writer.flush({ timeoutMs: 5000 }), { complete: true, pending: 0 });
  t.match(writer.stats(), { deadLettered: 1, confirmed: 0 });
  t.match(JSON.parse(await readFile(blocked, 'utf8')), { id: doc(1)._id, error: 'forbidden' });
  t.ok(failures.filter((kind) => kind === 'rejected').length >= 2, 'each attempt reported');
});
