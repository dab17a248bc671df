/**
 * Needs the Docker engine and the runtime image (ACTION_IMAGE_NODEJS20).
 *
 * 1. Warm `/run` through our container handle vs a bare undici request to
 *    the same container (interleaved, same run): p50/p99 and the added
 *    latency at p50.
 * 2. Create-to-ready through our factory vs the engine alone (raw dockerode
 *    create + start + inspect, then the same TCP readiness poll).
 *
 *   node --import tsx test/bench/docker-run.bench.ts
 */
import Dockerode from 'dockerode';
import { connect } from 'node:net';
import { Client } from 'undici';
import { testEnvironment, uniqueName } from '../helpers/env.js';
import { ContainerFactory } from '../../invoker/docker/index.js';

const RUNS = 3000;
const WARMUP = 300;
const MAX_RUN_SECONDS = 30;
const CREATES = 5;

const env = testEnvironment();
const docker = new Dockerode();

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function stats(samples: number[]): { p50: number; p99: number; mean: number } {
  const sorted = Float64Array.from(samples).sort();
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: samples.reduce((a, b) => a + b, 0) / samples.length };
}

async function ensureNetwork(name: string): Promise<void> {
  const nets = await docker.listNetworks({ filters: { name: [name] } });
  if (nets.some((n) => n.Name === name)) return;
  await docker.createNetwork({ Name: name, Driver: 'bridge' }).catch((e: { statusCode?: number }) => {
    if (e.statusCode !== 409) throw e;
  });
}

function tcpReady(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (performance.now() > deadline) reject(new Error(`${host}:${port} not ready`));
        else setTimeout(attempt, 10);
      });
    };
    attempt();
  });
}

await ensureNetwork(env.dockerNetwork);
await docker.getImage(env.actionImageNodejs).inspect().catch(() => {
  throw new Error(`image ${env.actionImageNodejs} missing: bash scripts/build-runtime-image.sh`);
});

const invokerId = uniqueName('bench').replace(/-/g, '_');
const factory = new ContainerFactory({ invokerId, userMemoryMb: 2048, apiHost: 'https://whisk.test', network: env.dockerNetwork });
const rawIds: string[] = [];

try {
  // ---- 1. warm /run
  const c = await factory.create({
    image: env.actionImageNodejs,
    kind: 'nodejs:20',
    memoryMb: 256,
    action: { namespace: 'guest', path: 'guest', name: 'bench' },
  });
  c.beginActivation();
  const init = await c.init(
    JSON.stringify({ value: { name: 'bench', main: 'main', code: 'function main(p){ return { greeting: "Hello, " + p.name }; }', binary: false, env: {} } }),
    10_000,
  );
  if (init.kind !== 'response' || init.status !== 200) throw new Error(`init failed: ${JSON.stringify(init)}`);
  await c.collectLogs({ waitMs: 50 });

  const body = JSON.stringify({ value: { name: 'World' }, namespace: 'guest', action_name: '/guest/bench', activation_id: 'a'.repeat(32) });
  const bare = new Client(`http://${c.ip}:8080`);
  const ourRun = async (): Promise<number> => {
    const t0 = performance.now();
    const r = await c.run(body, 10_000);
    const t = performance.now() - t0;
    if (r.kind !== 'response' || r.status !== 200) throw new Error(`run failed: ${JSON.stringify(r)}`);
    return t;
  };
  const bareRun = async (): Promise<number> => {
    const t0 = performance.now();
    const res = await bare.request({ path: '/run', method: 'POST', body, headers: { 'content-type': 'application/json' } });
    await res.body.text();
    const t = performance.now() - t0;
    if (res.statusCode !== 200) throw new Error(`bare run failed: ${res.statusCode}`);
    return t;
  };
  const ourCycle = async (): Promise<number> => {
    const t0 = performance.now();
    c.beginActivation();
    await c.run(body, 10_000);
    await c.collectLogs();
    return performance.now() - t0;
  };
  for (let i = 0; i < WARMUP; i++) {
    await ourRun();
    await bareRun();
    await ourCycle();
  }
  const ours: number[] = [];
  const bares: number[] = [];
  const cycles: number[] = [];
  const stopAt = performance.now() + MAX_RUN_SECONDS * 1000;
  for (let i = 0; i < RUNS && performance.now() < stopAt; i++) {
    // Alternate the order so neither side always follows the other.
    if (i % 2 === 0) {
      ours.push(await ourRun());
      bares.push(await bareRun());
    } else {
      bares.push(await bareRun());
      ours.push(await ourRun());
    }
    cycles.push(await ourCycle());
  }
  await bare.close();
  const o = stats(ours);
  const b = stats(bares);
  const cy = stats(cycles);
  console.log(`warm /run, ${ours.length} each, interleaved`);
  console.log(`  bare undici      p50=${b.p50.toFixed(3)} ms  p99=${b.p99.toFixed(3)} ms`);
  console.log(`  ActionContainer  p50=${o.p50.toFixed(3)} ms  p99=${o.p99.toFixed(3)} ms`);
  console.log(
    `  added at p50: ${(o.p50 - b.p50).toFixed(3)} ms (target < 0.1 ms: ${o.p50 - b.p50 < 0.1 ? 'met' : 'NOT met'}), ` +
      `ratio p50 ${(o.p50 / b.p50).toFixed(3)}x, p99 ${(o.p99 / b.p99).toFixed(3)}x`,
  );
  console.log(`  full cycle (beginActivation + run + collectLogs with sentinels) p50=${cy.p50.toFixed(3)} ms  p99=${cy.p99.toFixed(3)} ms`);
  await c.destroy();

  // ---- 2. create-to-ready
  const oursCreate: number[] = [];
  const rawCreate: number[] = [];
  const oursRemove: number[] = [];
  for (let i = 0; i < CREATES; i++) {
    let t0 = performance.now();
    const fc = await factory.create({ image: env.actionImageNodejs, kind: 'nodejs:20', memoryMb: 256, action: { namespace: 'guest', path: 'guest', name: `b${i}` } });
    oursCreate.push(performance.now() - t0);
    t0 = performance.now();
    await fc.destroy();
    oursRemove.push(performance.now() - t0);

    t0 = performance.now();
    const raw = await docker.createContainer({
      Image: env.actionImageNodejs,
      name: uniqueName('rawbench'),
      Labels: { 'whisk.invoker': invokerId },
      HostConfig: { NetworkMode: env.dockerNetwork, Memory: 256 * 1024 * 1024, MemorySwap: 256 * 1024 * 1024 },
    });
    rawIds.push(raw.id);
    await raw.start();
    const info = await raw.inspect();
    const ip = info.NetworkSettings.Networks[env.dockerNetwork]?.IPAddress ?? '';
    await tcpReady(ip, 8080, 30_000);
    rawCreate.push(performance.now() - t0);
    await raw.remove({ force: true });
  }
  const oc = stats(oursCreate);
  const rc = stats(rawCreate);
  console.log(`create-to-ready, ${CREATES} each`);
  console.log(`  engine alone (create+start+inspect+TCP poll)  mean=${rc.mean.toFixed(1)} ms  p50=${rc.p50.toFixed(1)} ms`);
  console.log(`  ContainerFactory.create (+attach, hardening)  mean=${oc.mean.toFixed(1)} ms  p50=${oc.p50.toFixed(1)} ms`);
  console.log(`  ratio mean ${(oc.mean / rc.mean).toFixed(2)}x, p50 ${(oc.p50 / rc.p50).toFixed(2)}x; destroy mean=${stats(oursRemove).mean.toFixed(1)} ms`);
} finally {
  for (const id of rawIds) await docker.getContainer(id).remove({ force: true }).catch(() => undefined);
  await factory.removeInvokerContainers();
}
