/**
 * Helpers for the store tests: a pouchdb-server of the test's own (so it can
 * be stopped without disturbing other tests), a counting HTTP proxy, and
 * activation-record fixtures. Importing this file has no side effects.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StoredRecord } from '../../../invoker/store/activation-writer.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const pouchdbServerBin = join(repoRoot, 'node_modules/pouchdb-server/bin/pouchdb-server');

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `${prefix}-`));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

/** A pouchdb-server on its own port and data directory, stoppable and restartable. */
export class OwnCouch {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<OwnCouch> {
    const couch = new OwnCouch(await freePort(), await tempDir('store-couch'));
    await couch.up();
    return couch;
  }

  async up(): Promise<void> {
    if (this.child !== undefined) return;
    const child = spawn(
      process.execPath,
      [pouchdbServerBin, '--host', '127.0.0.1', '--port', String(this.port), '--dir', this.dir, '--no-stdout-logs'],
      { cwd: this.dir, stdio: 'ignore' },
    );
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    await waitFor(`pouchdb-server on port ${this.port}`, () => answers(this.url), 60_000);
  }

  /** Stops the server (SIGTERM, SIGKILL after 10 s) and waits until the port is closed. */
  async down(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    this.child = undefined;
  }

  async destroy(): Promise<void> {
    await this.down();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Forwards HTTP to `target`, counting requests; for "was there a second request?" questions. */
export class CountingProxy {
  readonly requests: string[] = [];
  /** Requests still to be answered 500 without forwarding. */
  failing = 0;
  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {}

  static async start(target: string): Promise<CountingProxy> {
    const targetUrl = new URL(target);
    let proxy: CountingProxy | undefined;
    const server = http.createServer((req, res) => {
      proxy?.requests.push(`${req.method} ${req.url}`);
      if (proxy !== undefined && proxy.failing > 0) {
        proxy.failing--;
        req.resume();
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end('{"error":"unknown_error","reason":"injected by the test proxy"}');
        return;
      }
      const upstream = http.request(
        { host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => {
        res.statusCode = 502;
        res.end();
      });
      req.pipe(upstream);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const address = server.address() as net.AddressInfo;
    proxy = new CountingProxy(server, `http://127.0.0.1:${address.port}`);
    return proxy;
  }

  count(match: (request: string) => boolean = () => true): number {
    return this.requests.filter(match).length;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** An activation record shaped like upstream's (wire spec section 6), padded to about `bytes`. */
export function activationRecord(namespace: string, index: number, bytes = 600): StoredRecord {
  const activationId = `${index.toString(16).padStart(8, '0')}${'a'.repeat(24)}`;
  const now = Date.now();
  const record: StoredRecord = {
    _id: `${namespace}/${activationId}`,
    entityType: 'activation',
    updated: now,
    namespace,
    name: 'hello',
    subject: namespace,
    activationId,
    start: now - 150,
    end: now,
    response: { statusCode: 0, result: { payload: '' }, size: 0 },
    logs: [],
    version: '0.0.1',
    publish: false,
    annotations: [
      { key: 'limits', value: { timeout: 60000, memory: 256, logs: 10, concurrency: 1 } },
      { key: 'path', value: `${namespace}/hello` },
      { key: 'kind', value: 'nodejs:20' },
      { key: 'timeout', value: false },
    ],
    duration: 150,
  };
  const padding = Math.max(0, bytes - JSON.stringify(record).length);
  (record.response as { result: { payload: string } }).result.payload = 'x'.repeat(padding);
  return record;
}

/**
 * What a database holds: ids, and how many documents are at a revision other
 * than the first. The writer never updates a document, so "exactly once" means
 * every expected id is there, nothing else is, and every revision is `1-...`.
 */
export async function contents(couchUrl: string, db: string): Promise<{ ids: string[]; docCount: number; rewritten: number }> {
  // The count first, the listing second: while writes continue, the listing is
  // then never older than the count it is compared with.
  const info = (await (await fetch(`${couchUrl}/${encodeURIComponent(db)}`)).json()) as { doc_count: number };
  const list = (await (await fetch(`${couchUrl}/${encodeURIComponent(db)}/_all_docs`)).json()) as {
    rows: { id: string; value: { rev: string } }[];
  };
  return {
    ids: list.rows.map((r) => r.id).sort(),
    docCount: info.doc_count,
    rewritten: list.rows.filter((r) => !r.value.rev.startsWith('1-')).length,
  };
}

export async function destroyDb(couchUrl: string, db: string): Promise<void> {
  await fetch(`${couchUrl}/${encodeURIComponent(db)}`, { method: 'DELETE' }).catch(() => undefined);
}
