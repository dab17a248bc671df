// The `_bulk_docs` client: the path and credentials taken from the CouchDB
// URL, and failures in the shape couchFailure() reads.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { BulkDocsClient, couchFailure } from '../../../invoker/store/couch.js';

async function server(t: Test, answer: { status: number; body: string }) {
  const seen: Array<{ url: string | undefined; headers: IncomingHttpHeaders; body: string }> = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ url: req.url, headers: req.headers, body });
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  return { port: (srv.address() as AddressInfo).port, seen };
}

t.test('posts the body as is, to <base>/<db>/_bulk_docs, with the URL credentials as basic auth', async (t) => {
  const { port, seen } = await server(t, { status: 201, body: '[{"id":"a","rev":"1-x"}]' });
  const client = new BulkDocsClient(`http://whisk%40admin:p%3Ass@127.0.0.1:${port}/couch/`, 'guest_activations');
  t.teardown(() => client.close());
  t.same(await client.post('{"docs":[{"_id":"a"}]}', AbortSignal.timeout(5000)), [{ id: 'a', rev: '1-x' }]);
  t.equal(seen[0]?.url, '/couch/guest_activations/_bulk_docs');
  t.equal(seen[0]?.body, '{"docs":[{"_id":"a"}]}');
  t.equal(seen[0]?.headers.authorization, `Basic ${Buffer.from('whisk@admin:p:ss').toString('base64')}`);
  t.equal(seen[0]?.headers['content-type'], 'application/json');
});

t.test('no credentials, no authorization header', async (t) => {
  const { port, seen } = await server(t, { status: 201, body: '[]' });
  const client = new BulkDocsClient(`http://127.0.0.1:${port}`, 'activations');
  t.teardown(() => client.close());
  await client.post('{"docs":[]}', AbortSignal.timeout(5000));
  t.equal(seen[0]?.url, '/activations/_bulk_docs');
  t.equal(seen[0]?.headers.authorization, undefined);
});

t.test("a refusal reads as CouchDB's status, error and reason", async (t) => {
  const { port } = await server(t, { status: 413, body: '{"error":"too_large","reason":"the request entity is too large"}' });
  const client = new BulkDocsClient(`http://127.0.0.1:${port}`, 'activations');
  t.teardown(() => client.close());
  const failure = await client.post('{"docs":[]}', AbortSignal.timeout(5000)).then(
    () => undefined,
    (err: unknown) => couchFailure(err),
  );
  t.match(failure, { statusCode: 413, error: 'too_large', reason: 'the request entity is too large' });
});

t.test('no answer: no status, the connection error', async (t) => {
  const client = new BulkDocsClient('http://127.0.0.1:1', 'activations');
  t.teardown(() => client.close());
  const failure = await client.post('{"docs":[]}', AbortSignal.timeout(5000)).then(
    () => undefined,
    (err: unknown) => couchFailure(err),
  );
  t.equal(failure?.statusCode, undefined);
  t.match(failure?.message, /ECONNREFUSED|connect/);
});
