/**
 * The production image end to end: scripts/build-invoker-image.sh builds
 * openwhisk-invoker-ts:<version> (an up-to-date image is kept), a container of
 * it runs against the real services (the Docker socket mounted, CouchDB at the
 * host), becomes ready, runs one activation over `POST /invoke`, runs as the
 * unprivileged user under tini, and `docker stop` (SIGTERM) ends it promptly
 * with exit code 0. HTTP only (no Kafka).
 *
 * Networking: the invoker container joins the test network (TEST_DOCKER_NETWORK)
 * where its action containers run, so it reaches them directly; it reaches the
 * host at that network's gateway address. pouchdb-server listens on loopback
 * only, so this test forwards a port on the gateway address to it.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import Dockerode from 'dockerode';
import { request } from 'undici';
import { ackActivationId, parseAcknowledgement, serializeActivationMessage } from '../../../protocol/index.js';
import { InvokerTestbed, responseOf, sleep } from '../../helpers/invoker-harness.js';
import { withTimeout } from '../../helpers/timeout.js';
import { removeContainersAtTeardown } from '../transport/helpers.js';

const ROOT = new URL('../../..', import.meta.url).pathname;
const SOCKET = '/var/run/docker.sock';
const version = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version;
const IMAGE = process.env.INVOKER_IMAGE ?? `openwhisk-invoker-ts:${version}`;
const INVOKER_UID = 10001;
/** Generous for a first build on a busy machine; an up-to-date image takes seconds. */
const BUILD_TIMEOUT_MS = 200_000;
/** SIGTERM with nothing in flight: the drain, flush and container removal take about a second. */
const STOP_BOUND_MS = 15_000;

const docker = new Dockerode();
const bed = new InvokerTestbed(t);
removeContainersAtTeardown(t, bed.invokerId);

if (process.env.DOCKER_HOST || !isSocket(SOCKET)) {
  t.test('the invoker image', { skip: `the invoker container needs the engine's local socket ${SOCKET} (DOCKER_HOST is ${process.env.DOCKER_HOST ?? 'unset'})` }, async () => undefined);
} else {
  await main();
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const build = await buildImage();
  t.comment(build.trim().split('\n').slice(-1)[0] ?? '');

  await bed.createDatabases();
  const echo = { name: 'echo', ...(await bed.putAction({ name: 'echo', code: 'function main(p) { return { got: p.name ?? null, node: process.version }; }' })) };

  // CouchDB as the container sees it: the gateway of the test network.
  const network = await docker.getNetwork(bed.env.dockerNetwork).inspect();
  const gateway = (network as { IPAM?: { Config?: Array<{ Gateway?: string }> } }).IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
  if (!gateway) throw new Error(`network ${bed.env.dockerNetwork} has no gateway address`);
  const couch = new URL(bed.couchdbUrl);
  const forwarder = await forward(gateway, couch.hostname, Number(couch.port || 5984));
  t.teardown(() => new Promise<void>((resolve) => forwarder.close(() => resolve())));
  const containerCouch = new URL(bed.couchdbUrl);
  containerCouch.hostname = gateway;
  containerCouch.port = String((forwarder.address() as AddressInfo).port);

  const socketGid = statSync(SOCKET).gid;
  const environment = bed.invokerEnv({
    INVOKER_HTTP_HOST: '0.0.0.0',
    INVOKER_HTTP_PORT: '8080',
    COUCHDB_URL: containerCouch.toString(),
    LOG_LEVEL: 'info',
    INVOKER_DRAIN_TIMEOUT_MS: '10000',
  });
  delete environment.INVOKER_JOURNAL_DIR; // the image's own (/var/lib/invoker/journal)
  const container = await docker.createContainer({
    name: `invoker-image-test-${bed.invokerId}`,
    Image: IMAGE,
    Env: Object.entries(environment).map(([k, v]) => `${k}=${v}`),
    Labels: { 'whisk.test': 'invoker-image' },
    HostConfig: {
      NetworkMode: bed.env.dockerNetwork,
      Binds: [`${SOCKET}:${SOCKET}`],
      // The socket's group, granted at run time (Kubernetes: supplementalGroups).
      GroupAdd: [String(socketGid)],
    },
  });
  t.teardown(() => container.remove({ force: true }).catch(() => undefined));
  await container.start();
  const logs = async () => (await container.logs({ stdout: true, stderr: true, follow: false })).toString('utf8');

  const address = (await container.inspect()).NetworkSettings.Networks[bed.env.dockerNetwork]?.IPAddress;
  if (!address) throw new Error(`the invoker container has no address on ${bed.env.dockerNetwork}`);
  const url = `http://${address}:8080`;

  await t.test('the container becomes ready', async (t) => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const state = (await container.inspect()).State;
      if (!state.Running) throw new Error(`the invoker container exited (${state.ExitCode}):\n${await logs()}`);
      const ready = await request(`${url}/health/ready`, { headersTimeout: 3000, bodyTimeout: 3000 })
        .then(async (r) => ({ status: r.statusCode, body: await r.body.text() }))
        .catch(() => undefined);
      if (ready?.status === 200) {
        t.match(JSON.parse(ready.body), { status: 'ready' });
        break;
      }
      if (Date.now() > deadline) throw new Error(`not ready within 60 s (last: ${JSON.stringify(ready)}):\n${await logs()}`);
      await sleep(250);
    }
  });

  await t.test('one activation through POST /invoke', async (t) => {
    const message = bed.message(echo, { content: { name: 'image' } });
    const response = await request(`${url}/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: serializeActivationMessage(message),
      headersTimeout: 10_000,
      bodyTimeout: 60_000,
    });
    t.equal(response.statusCode, 200, 'acknowledged');
    const ack = parseAcknowledgement(await response.body.text());
    t.equal(ackActivationId(ack), message.activationId);
    const result = responseOf(ack);
    t.equal(result.statusCode, 0, 'success');
    t.match(result.result, { got: 'image', node: /^v20\./ }, 'the nodejs:20 action ran in its own container');
    const record = await bed.waitForRecord('guest', message.activationId, 20_000);
    t.equal((record.response as { statusCode: number }).statusCode, 0, 'the record is stored in CouchDB');
  });

  await t.test('tini is the parent of node, both unprivileged', async (t) => {
    const top = await container.top({ ps_args: '-o pid,ppid,uid,gid,args' });
    const titles = (top.Titles as string[]).map((title) => title.toUpperCase());
    const rows: Array<Record<string, string | undefined>> = (top.Processes as string[][]).map((p) =>
      Object.fromEntries(titles.map((title, i) => [title, p[i] ?? ''])),
    );
    const tini = rows.find((r) => /^\/usr\/bin\/tini\b/.test(r.COMMAND ?? r.ARGS ?? ''));
    const node = rows.find((r) => /^\/usr\/bin\/node \/app\/dist\/invoker\/main\.js/.test(r.COMMAND ?? r.ARGS ?? ''));
    t.ok(tini, `tini runs: ${JSON.stringify(rows)}`);
    t.ok(node, 'node runs dist/invoker/main.js');
    t.equal(node?.PPID, tini?.PID, "node is tini's child");
    for (const row of rows) t.equal(Number(row.UID), INVOKER_UID, `uid of ${row.COMMAND ?? row.ARGS}`);
    const inspected = await container.inspect();
    t.equal(inspected.Config.User, String(INVOKER_UID), 'the image names its user numerically');
  });

  await t.test('docker stop (SIGTERM) drains and exits 0 promptly', async (t) => {
    const started = Date.now();
    await withTimeout(container.stop({ t: 30 }), 40_000, 'docker stop');
    const took = Date.now() - started;
    const state = (await container.inspect()).State;
    const output = await logs();
    t.equal(state.ExitCode, 0, `exit code (took ${took} ms)`);
    t.ok(took < STOP_BOUND_MS, `stopped in ${took} ms (bound ${STOP_BOUND_MS} ms; the engine's SIGKILL would come at 30 s)`);
    t.match(output, /"signal received: draining"/);
    t.match(output, /"invoker stopped"/);
    t.notMatch(output, /"level":(50|60)/, 'no error or fatal log line');
  });
}

function buildImage(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [`${ROOT}scripts/build-invoker-image.sh`],
      { cwd: ROOT, timeout: BUILD_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, INVOKER_IMAGE: IMAGE } },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`scripts/build-invoker-image.sh failed: ${error.message}\n${stdout}${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** A TCP forwarder on `host` (any port) to `targetHost:targetPort`. */
function forward(host: string, targetHost: string, targetPort: number): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: targetHost, port: targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  const close = server.close.bind(server);
  server.close = (callback) => {
    for (const s of sockets) s.destroy();
    return close(callback);
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve(server));
  });
}
