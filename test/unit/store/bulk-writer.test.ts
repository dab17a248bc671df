/**
 * The bulk writer on its own: one verdict per record, in the order given,
 * for every kind of answer, against a scripted HTTP server speaking just
 * enough of CouchDB (`_bulk_docs`, `_all_docs`). The writer keeps nothing
 * between calls, so each test is one call and its outcome.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BulkWriter, type Verdict } from '../../../invoker/store/bulk-writer.js';
import { BulkDocsClient, createCouchClient } from '../../../invoker/store/couch.js';
import type { JournalRecord } from '../../../invoker/store/records.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';

interface Call {
  path: string;
  docs: Array<Record<string, unknown>>;
}
type Handler = (call: Call) => { status: number; body: unknown };

async function server(t: Test, handler: Handler): Promise<{ url: string; calls: Call[] }> {
  const calls: Call[] = [];
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { docs?: Array<Record<string, unknown>>; keys?: string[] };
      const call = { path: req.url ?? '', docs: parsed.docs ?? (parsed.keys ?? []).map((id) => ({ _id: id })) };
      calls.push(call);
      const answer = handler(call);
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(async () => {
    srv.closeAllConnections();
    await new Promise<void>((r) => srv.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, calls };
}

function records(...names: string[]): JournalRecord[] {
  return names.map((name, ordinal) => {
    const json = JSON.stringify({ _id: `guest/${name}`, name });
    return { segment: 1, ordinal, id: `guest/${name}`, json, bytes: Buffer.byteLength(json) };
  });
}

function writer(url: string, replaceable?: (stored: unknown) => boolean): BulkWriter {
  return new BulkWriter({ server: createCouchClient(url), bulk: new BulkDocsClient(url, 'activations'), database: 'activations', requestTimeoutMs: 5000, replaceable, logger: silentLogger() });
}

const never = new AbortController().signal;

t.test('one verdict per record, in the order given, whatever order the answers come in', async (t) => {
  const { url } = await server(t, (call) => ({
    status: 201,
    body: [...call.docs].reverse().map((d) => {
      const name = d.name as string;
      if (name === 'taken') return { id: d._id, error: 'conflict', reason: 'Document update conflict.' };
      if (name === 'secret') return { id: d._id, error: 'forbidden', reason: 'no secrets' };
      if (name === 'later') return { id: d._id, error: 'unknown_error', reason: 'try later' };
      return { id: d._id, ok: true, rev: '1-a' };
    }),
  }));
  const outcome = await writer(url).write(records('new', 'taken', 'secret', 'later'), never);
  t.same(outcome.verdicts, [
    { kind: 'stored' },
    { kind: 'conflict-resolved', replaced: false },
    { kind: 'dead-letter', error: 'forbidden', reason: 'no secrets' },
    { kind: 'retry', cause: 'document' },
  ] satisfies Verdict[]);
  t.same(outcome.answered, [4]);
  t.equal(outcome.failure, undefined);
});

t.test('a request refused as a whole is split until the document it cannot take stands alone', async (t) => {
  const { url, calls } = await server(t, (call) =>
    call.docs.some((d) => d.name === 'huge')
      ? { status: 413, body: { error: 'too_large', reason: 'the request entity is too large' } }
      : { status: 201, body: call.docs.map((d) => ({ id: d._id, ok: true, rev: '1-a' })) },
  );
  const outcome = await writer(url).write(records('a', 'b', 'huge', 'c'), never);
  t.same(outcome.verdicts.map((v) => v.kind), ['stored', 'stored', 'dead-letter', 'stored']);
  t.match(outcome.verdicts[2], { error: 'too_large', reason: 'the request entity is too large' });
  t.same(calls.map((c) => c.docs.length), [4, 2, 2, 1, 1]);
  t.same(outcome.answered, [2, 1]);
});

t.test('once a request fails, the rest of the batch is not sent and every unsent record is retried', async (t) => {
  let call = 0;
  const { url, calls } = await server(t, (c) => {
    call++;
    if (call === 1) return { status: 400, body: { error: 'bad_request', reason: 'split me' } };
    return call === 2 ? { status: 503, body: { error: 'unavailable', reason: 'down' } } : { status: 201, body: c.docs.map((d) => ({ id: d._id, ok: true })) };
  });
  const outcome = await writer(url).write(records('a', 'b', 'c', 'd'), never);
  t.same(outcome.verdicts, Array.from({ length: 4 }, () => ({ kind: 'retry', cause: 'request' })));
  t.equal(calls.length, 2, 'the second half waits for the next attempt');
  t.match(outcome.failure, { records: 2, failure: { statusCode: 503 } });
});

t.test('a conflicting replaceable document is overwritten with its revision in the same call; any other is left alone', async (t) => {
  const { url, calls } = await server(t, (call) => {
    if (call.path.includes('_all_docs')) {
      return {
        status: 200,
        body: {
          rows: call.docs.map((d) => ({ id: d._id, doc: { _id: d._id, _rev: '1-forced', forced: d._id === 'guest/forced' } })),
        },
      };
    }
    return {
      status: 201,
      body: call.docs.map((d) => (d._rev === undefined ? { id: d._id, error: 'conflict', reason: 'Document update conflict.' } : { id: d._id, ok: true, rev: '2-b' })),
    };
  });
  const outcome = await writer(url, (stored) => (stored as { forced?: boolean }).forced === true).write(records('forced', 'real'), never);
  t.same(outcome.verdicts, [
    { kind: 'conflict-resolved', replaced: true },
    { kind: 'conflict-resolved', replaced: false },
  ]);
  const resend = calls[2];
  t.same(resend?.docs.map((d) => [d._id, d._rev]), [['guest/forced', '1-forced']], 'only the forced record is replaced');
  t.same(outcome.answered, [2, 1]);
});
