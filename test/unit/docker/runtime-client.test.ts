import t from 'tap';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { RuntimeClient } from '../../../invoker/docker/runtime-client.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

async function listen(handler: Handler, port = 0): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks).toString()));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

t.test('run: status, body, byte count; keep-alive reuse', async (t) => {
  let connections = 0;
  const { server, port } = await listen((req, res, body) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ path: req.url, got: JSON.parse(body) as unknown }));
  });
  server.on('connection', () => connections++);
  const client = new RuntimeClient({ origin: `http://127.0.0.1:${port}` });
  t.teardown(async () => {
    await client.close();
    server.close();
  });
  for (let i = 0; i < 3; i++) {
    const r = await client.run('{"value":{"x":1}}', 2000);
    t.same(r, { kind: 'response', status: 200, body: '{"path":"/run","got":{"value":{"x":1}}}', bytes: 39, truncated: false });
  }
  t.equal(connections, 1, 'one kept-alive connection');
});

t.test('init retries connection refusals every 50 ms until the runtime listens', async (t) => {
  const port = await freePort();
  const client = new RuntimeClient({ origin: `http://127.0.0.1:${port}` });
  let server: Server | undefined;
  t.teardown(async () => {
    await client.close();
    server?.close();
  });
  setTimeout(() => {
    void listen((_req, res) => res.end('{"OK":true}'), port).then((s) => (server = s.server));
  }, 300);
  const start = performance.now();
  const r = await client.init('{}', 5000);
  t.same(r, { kind: 'response', status: 200, body: '{"OK":true}', bytes: 11, truncated: false });
  t.ok(performance.now() - start >= 250);
});

t.test('init gives up at its timeout; run never retries', async (t) => {
  const port = await freePort();
  const client = new RuntimeClient({ origin: `http://127.0.0.1:${port}` });
  t.teardown(() => client.close());
  const start = performance.now();
  t.same(await client.init('{}', 200), { kind: 'timeout' });
  const took = performance.now() - start;
  t.ok(took >= 190 && took < 1000, `init took ${took} ms`);
  const r = await client.run('{}', 2000);
  t.equal(r.kind, 'connection-failed');
  if (r.kind === 'connection-failed') t.match(r.error, { code: 'ECONNREFUSED' });
});

t.test('run timeout, then the client still works', async (t) => {
  const { server, port } = await listen((req, res) => {
    if (req.url === '/run' && !res.headersSent) setTimeout(() => res.end('{"late":true}'), 500);
    else res.end('{}');
  });
  const client = new RuntimeClient({ origin: `http://127.0.0.1:${port}` });
  t.teardown(async () => {
    await client.close();
    server.closeAllConnections();
    server.close();
  });
  const start = performance.now();
  t.same(await client.run('{}', 100), { kind: 'timeout' });
  t.ok(performance.now() - start < 400);
  t.same(await client.init('{}', 1000), { kind: 'response', status: 200, body: '{}', bytes: 2, truncated: false });
});

t.test('a slow body counts against the same timeout', async (t) => {
  const { server, port } = await listen((_req, res) => {
    res.write('{"a":');
    setTimeout(() => res.end('1}'), 500);
  });
  const client = new RuntimeClient({ origin: `http://127.0.0.1:${port}` });
  t.teardown(async () => {
    await client.close();
    server.closeAllConnections();
    server.close();
  });
  t.same(await client.run('{}', 150), { kind: 'timeout' });
});

t.test('responses above the cap are truncated with the true length', async (t) => {
  const big = 'é'.repeat(100_000); // 200,000 bytes
  const { server, port } = await listen((_req, res) => {
    for (let i = 0; i < 10; i++) res.write(big);
    res.end();
  });
  const client = new RuntimeClient({ origin: `http://127.0.0.1:${port}`, maxResponseBytes: 1001 });
  t.teardown(async () => {
    await client.close();
    server.close();
  });
  const r = await client.run('{}', 5000);
  t.equal(r.kind, 'response');
  if (r.kind !== 'response') return;
  t.equal(r.truncated, true);
  t.equal(r.bytes, 2_000_000);
  t.equal(r.body, 'é'.repeat(500), 'cut at a character boundary (1000 of 1001 bytes)');
});

t.test('connection dropped mid-request is a connection failure', async (t) => {
  const { server, port } = await listen((req) => req.socket.destroy());
  const client = new RuntimeClient({ origin: `http://127.0.0.1:${port}` });
  t.teardown(async () => {
    await client.close();
    server.close();
  });
  const r = await client.run('{}', 2000);
  t.equal(r.kind, 'connection-failed');
});

t.test('concurrency > 1 runs requests in parallel', async (t) => {
  const { server, port } = await listen((_req, res) => setTimeout(() => res.end('{}'), 200));
  const client = new RuntimeClient({ origin: `http://127.0.0.1:${port}`, concurrency: 4 });
  t.teardown(async () => {
    await client.close();
    server.close();
  });
  const start = performance.now();
  const results = await Promise.all([1, 2, 3, 4].map(() => client.run('{}', 2000)));
  t.ok(results.every((r) => r.kind === 'response'));
  t.ok(performance.now() - start < 380, 'not serialized');
});

t.test('closed client answers with a connection failure', async (t) => {
  const client = new RuntimeClient({ origin: 'http://127.0.0.1:9' });
  await client.close();
  await client.close();
  const r = await client.run('{}', 100);
  t.equal(r.kind, 'connection-failed');
});
