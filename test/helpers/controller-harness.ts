/**
 * A real controller-lb (`node --import tsx controller-lb/main.ts`) as a child
 * process on databases of its own, with upstream's guest identity created in
 * its subjects database (through the identity CLI's code).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CouchServer } from '../../controller-lb/couch-db.js';
import { GUEST_KEY, GUEST_UUID } from '../../controller-lb/identity-store.js';
import { runIdentityCommand } from '../../controller-lb/identity.js';
import { testEnvironment, uniqueName } from './env.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export const GUEST_API_KEY = `${GUEST_UUID}:${GUEST_KEY}`;

export interface RunningController {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  lines: Array<Record<string, unknown>>;
  stderr: () => string;
  subjectsDb: string;
  /** Runs an identity CLI command on this controller's subjects database. */
  identity(...args: string[]): Promise<{ code: number; out: string }>;
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function startController(
  t: Teardown,
  env: { whisksDb: string; activationsDb: string; invokerUrls: string[]; subjectsDb?: string; couchdbUrl?: string } & { extra?: Record<string, string> },
): Promise<RunningController> {
  const couchdbUrl = env.couchdbUrl ?? testEnvironment().couchdbUrl;
  const subjectsDb = env.subjectsDb ?? uniqueName('subjects');
  const couch = new CouchServer({ url: couchdbUrl });
  const subjects = couch.db(subjectsDb);
  t.teardown(async () => {
    await couch.call('DELETE', `/${encodeURIComponent(subjectsDb)}`).catch(() => undefined);
    await couch.close();
  });
  const created = await runIdentityCommand(subjects, ['create', 'guest']);
  if (created.code !== 0 && !created.out.startsWith('Namespace already exists')) throw new Error(`creating guest: ${created.out}`);

  const child = spawn(process.execPath, ['--import', 'tsx', 'controller-lb/main.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: {
      PATH: process.env.PATH,
      CONTROLLER_PORT: '0',
      INVOKER_URLS: env.invokerUrls.join(','),
      INVOKER_USER_MEMORY_MB: '1024',
      COUCHDB_URL: couchdbUrl,
      COUCHDB_WHISKS_DB: env.whisksDb,
      COUCHDB_ACTIVATIONS_DB: env.activationsDb,
      COUCHDB_SUBJECTS_DB: subjectsDb,
      CONTROLLER_HEALTH_ACTION_KIND: '',
      LOG_LEVEL: 'info',
      ...env.extra,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      lines.push({ unparsed: line });
    }
  });
  await until(() => lines.some((l) => l['msg'] === 'controller listening') || child.exitCode !== null, 30_000, `the controller to listen (stderr: ${stderr})`);
  const listening = lines.find((l) => l['msg'] === 'controller listening');
  if (listening === undefined) throw new Error(`the controller exited: ${stderr}`);
  const url = String(listening['address']);
  return {
    url,
    child,
    exited,
    lines,
    stderr: () => stderr,
    subjectsDb,
    identity: (...args: string[]) => runIdentityCommand(subjects, args),
  };
}

/** Waits until the controller reports an invoker up. */
export async function waitInvokerUp(controller: RunningController, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const statuses = (await fetch(`${controller.url}/invokers`).then((r) => r.json()).catch(() => ({}))) as Record<string, string>;
    if (Object.values(statuses).includes('up')) return;
    if (Date.now() > deadline) throw new Error(`no invoker up within ${timeoutMs} ms: ${JSON.stringify(statuses)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
