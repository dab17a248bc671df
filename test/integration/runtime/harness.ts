/**
 * A runtime image's container in the real Docker engine, spoken to as the
 * invoker speaks to it: on the test bridge network, HTTP to the container's
 * address there, `__OW_API_HOST` in its environment, logs read back from the
 * engine. For tests that run against each built-in kind's image.
 */
import Docker from 'dockerode';
import { Agent, request } from 'undici';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { testEnvironment, uniqueName } from '../../helpers/env.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const READY_TIMEOUT_MS = 10_000;
export const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX';

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface Reply {
  status: number;
  body: unknown;
}

export interface Logs {
  stdout: string[];
  stderr: string[];
}

export interface Runtime {
  post(path: string, body: unknown): Promise<Reply>;
  /** Any method, a raw body (or none). */
  send(method: string, path: string, rawBody?: string): Promise<Reply>;
  logs(): Promise<Logs>;
  /** Logs once `done` holds for them (the engine writes them asynchronously), or after 5 s. */
  logsWhen(done: (logs: Logs) => boolean): Promise<Logs>;
}

export interface RuntimeImage {
  kind: string;
  /** The argument of scripts/build-runtime-image.sh that builds it. */
  major: string;
  image: string;
}

const env = testEnvironment();
const docker = new Docker();

/** The images of the built-in kinds, as scripts/build-runtime-image.sh tags them. */
export const RUNTIME_IMAGES: readonly RuntimeImage[] = [
  { kind: 'nodejs:20', major: '20', image: env.actionImageNodejs },
  { kind: 'nodejs:24', major: '24', image: env.actionImageNodejs24 },
];

/** Builds the images that are missing (only those: a tag may name an image built elsewhere). */
export async function ensureImages(): Promise<void> {
  const missing: string[] = [];
  for (const { major, image } of RUNTIME_IMAGES) {
    try {
      await docker.getImage(image).inspect();
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw e;
      missing.push(major);
    }
  }
  if (missing.length === 0) return;
  const build = spawnSync('bash', [path.join(ROOT, 'scripts/build-runtime-image.sh'), ...missing], {
    encoding: 'utf8',
    timeout: 10 * 60_000,
    env: {
      ...process.env,
      ACTION_IMAGE_NODEJS20: env.actionImageNodejs,
      ACTION_IMAGE_NODEJS24: env.actionImageNodejs24,
    },
  });
  if (build.status !== 0) {
    throw new Error(`building the runtime images for ${missing.join(', ')}: ${build.stderr || build.stdout || build.error?.message}`);
  }
}

export async function ensureNetwork(): Promise<void> {
  const networks = await docker.listNetworks({ filters: { name: [env.dockerNetwork] } });
  if (networks.some((n) => n.Name === env.dockerNetwork)) return;
  try {
    // Labelled like scripts/services.sh does, so `services.sh down` removes it.
    await docker.createNetwork({ Name: env.dockerNetwork, Driver: 'bridge', Labels: { 'whisk.services': 'true' } });
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 409) {
      throw new Error(`creating docker network ${env.dockerNetwork}: ${(e as Error).message}`, { cause: e });
    }
  }
}

function demux(buf: Buffer): Logs {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let p = 0;
  while (p + 8 <= buf.length) {
    const stream = buf[p];
    const size = buf.readUInt32BE(p + 4);
    const frame = buf.subarray(p + 8, p + 8 + size);
    if (stream === 1) out.push(frame);
    else if (stream === 2) err.push(frame);
    p += 8 + size;
  }
  const lines = (parts: Buffer[]) => Buffer.concat(parts).toString('utf8').split('\n').filter((l) => l !== '');
  return { stdout: lines(out), stderr: lines(err) };
}

async function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts a container of `image` with `containerEnv` (what the invoker's container factory passes) and waits for port 8080. */
export async function startRuntime(
  t: Teardown,
  agent: Agent,
  image: string,
  containerEnv: Record<string, string> = {},
): Promise<Runtime> {
  const name = uniqueName('wsk-runtime-test');
  const container = await docker.createContainer({
    name,
    Image: image,
    Env: Object.entries(containerEnv).map(([k, v]) => `${k}=${v}`),
    Labels: { 'whisk.test': 'runtime' },
    HostConfig: {
      NetworkMode: env.dockerNetwork,
      LogConfig: { Type: 'json-file', Config: {} },
      Memory: 256 * 1024 * 1024,
      MemorySwap: 256 * 1024 * 1024,
    },
  });
  t.teardown(() => container.remove({ force: true }).catch(() => undefined));
  await container.start();
  const info = await container.inspect();
  const ip = info.NetworkSettings.Networks[env.dockerNetwork]?.IPAddress;
  if (!ip) throw new Error(`container ${name} has no address on ${env.dockerNetwork}`);

  const logs = async (): Promise<Logs> => demux(await container.logs({ stdout: true, stderr: true, follow: false }));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await portOpen(ip, 8080))) {
    if (Date.now() > deadline) {
      const l = await logs().catch(() => ({ stdout: [], stderr: [] }));
      throw new Error(`${name} at ${ip}:8080 not listening after ${READY_TIMEOUT_MS} ms; stderr: ${l.stderr.join(' | ')}`);
    }
    await sleep(50);
  }
  const send = async (method: string, urlPath: string, rawBody?: string): Promise<Reply> => {
    const res = await request(`http://${ip}:8080${urlPath}`, {
      method: method as 'POST',
      body: rawBody,
      headers: rawBody === undefined ? {} : { 'content-type': 'application/json' },
      dispatcher: agent,
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text) };
  };
  return {
    send,
    post: (urlPath, body) => send('POST', urlPath, JSON.stringify(body)),
    logs,
    async logsWhen(done) {
      const until = Date.now() + 5000;
      for (;;) {
        const l = await logs();
        if (done(l) || Date.now() > until) return l;
        await sleep(50);
      }
    },
  };
}

export const sentinels = (lines: string[]) => lines.filter((l) => l === SENTINEL).length;

let activations = 0;
/** A `/run` body with the per-activation keys the invoker sends. */
export function runBody(value: unknown, extra: Record<string, unknown> = {}) {
  activations += 1;
  return {
    value,
    api_key: 'uuid:secret',
    namespace: 'guest',
    action_name: '/guest/test',
    action_version: '0.0.1',
    activation_id: `activation${activations}`,
    transaction_id: `tx${activations}`,
    deadline: String(Date.now() + 60_000),
    ...extra,
  };
}
