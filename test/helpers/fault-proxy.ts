/**
 * Fault injection for tests, without touching the shared services:
 * - FaultProxy: a TCP forwarder in front of a service; `cut()` closes the
 *   listening port and every connection through it (the service is gone for
 *   whoever uses the proxy), `restore()` listens again on the same port.
 * - PrivateKafka: a single-node KRaft broker of this test's own (the jars
 *   scripts/services.sh resolved), whose advertised listener is a FaultProxy:
 *   clients reach it only through the proxy, so cutting the proxy is a broker
 *   outage for them; `kill()`/`start()` really stop and start the process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logLevel } from 'kafkajs';
import { testKafka } from './kafka.js';

export class FaultProxy {
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #cut = false;

  #port = 0;

  private constructor(readonly target: { host: string; port: number }) {}

  /** Listens on `port` (0: a free one) and forwards every connection to `target`. */
  static async start(target: { host: string; port: number }, port = 0): Promise<FaultProxy> {
    const proxy = new FaultProxy(target);
    proxy.#port = await proxy.#listen(port);
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get isCut(): boolean {
    return this.#cut;
  }

  #listen(port: number): Promise<number> {
    const server = createServer((client) => {
      if (this.#cut) {
        client.destroy();
        return;
      }
      const upstream = connect(this.target.port, this.target.host);
      this.#sockets.add(client);
      this.#sockets.add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
  }

  /** The service is gone: the port refuses, open connections are reset. */
  async cut(): Promise<void> {
    if (this.#cut) return;
    this.#cut = true;
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The service is back on the same port. */
  async restore(): Promise<void> {
    if (!this.#cut) return;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#listen(this.port);
        break;
      } catch (error) {
        if (attempt > 50) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    this.#cut = false;
  }

  async close(): Promise<void> {
    await this.cut();
  }
}

export async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const ROOT = new URL('../..', import.meta.url).pathname;

/** The broker jars, as scripts/services.sh resolves them (this tree's cache, else the main checkout's). */
export function kafkaLibs(): string {
  const pom = readFileSync(join(ROOT, 'scripts/kafka/pom.xml'), 'utf8');
  const version = process.env.KAFKA_VERSION ?? /<kafka.version>(.*)<\/kafka.version>/.exec(pom)?.[1] ?? '4.3.1';
  const candidates = [join(ROOT, '.cache/kafka', version, 'libs'), join('/work/main/.cache/kafka', version, 'libs')];
  const found = candidates.find((dir) => existsSync(dir));
  if (found === undefined) throw new Error(`no Kafka ${version} jars in ${candidates.join(' or ')}: run scripts/services.sh up kafka`);
  return found;
}

export class PrivateKafka {
  #child: ChildProcess | undefined;
  #output = '';

  private constructor(
    readonly proxy: FaultProxy,
    readonly brokerPort: number,
    readonly dir: string,
    readonly config: string,
  ) {}

  /** Starts a broker of its own (10-45 s on a busy machine) behind a FaultProxy; clients use `brokers`. */
  static async start(): Promise<PrivateKafka> {
    const kafka = await PrivateKafka.prepare();
    await kafka.formatAndStart();
    return kafka;
  }

  /**
   * The proxy (so `brokers` is known at once) and the configuration, without
   * starting anything slow: start the broker with `formatAndStart()`, e.g.
   * while the clients start up.
   */
  static async prepare(): Promise<PrivateKafka> {
    const brokerPort = await freeTcpPort();
    const controllerPort = await freeTcpPort();
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: brokerPort });
    const dir = mkdtempSync(join(tmpdir(), 'private-kafka-'));
    const template = readFileSync(join(ROOT, 'scripts/kafka/server.properties.template'), 'utf8');
    const properties = template
      .replaceAll('@@PORT@@', String(brokerPort))
      .replaceAll('@@CONTROLLER_PORT@@', String(controllerPort))
      .replaceAll('@@DATA_DIR@@', join(dir, 'data'))
      // Clients must come through the proxy: it is what the broker advertises.
      .replace(/^advertised\.listeners=.*$/m, `advertised.listeners=PLAINTEXT://127.0.0.1:${proxy.port}`);
    const config = join(dir, 'server.properties');
    writeFileSync(config, properties);
    return new PrivateKafka(proxy, brokerPort, dir, config);
  }

  async formatAndStart(): Promise<void> {
    // A cluster id is 16 random bytes, base64url: what `StorageTool random-uuid` prints.
    // (`=`: an id may start with `-`, which would read as an option.)
    await this.#java(['kafka.tools.StorageTool', 'format', `--cluster-id=${randomBytes(16).toString('base64url')}`, '-c', this.config]);
    await this.start();
  }

  get brokers(): string[] {
    return [this.proxy.address];
  }

  get output(): string {
    return this.#output;
  }

  #javaArgs(main: string[]): string[] {
    return ['-Xms128m', '-Xmx512m', `-Dlog4j2.configurationFile=${join(ROOT, 'scripts/kafka/log4j2.properties')}`, '-cp', `${kafkaLibs()}/*`, ...main];
  }

  async #java(main: string[]): Promise<void> {
    const child = spawn('java', this.#javaArgs(main), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) throw new Error(`java ${main.join(' ')} exited ${code}:\n${out}`);
  }

  /** Starts the broker process (again, on the same data) and waits until it answers through the proxy. */
  async start(timeoutMs = 90_000): Promise<void> {
    if (this.#child !== undefined) return;
    const child = spawn('java', this.#javaArgs(['kafka.Kafka', this.config]), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    child.stdout?.on('data', (d: Buffer) => (this.#output = (this.#output + d.toString()).slice(-20_000)));
    child.stderr?.on('data', (d: Buffer) => (this.#output = (this.#output + d.toString()).slice(-20_000)));
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });
    const deadline = Date.now() + timeoutMs;
    while (!(await this.answers())) {
      if (this.#child !== child) throw new Error(`the private Kafka broker exited during startup:\n${this.#output}`);
      if (Date.now() > deadline) throw new Error(`the private Kafka broker did not answer within ${timeoutMs} ms:\n${this.#output}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Whether the broker answers a metadata request with a controller, through the proxy. */
  async answers(): Promise<boolean> {
    const kafka = testKafka({ brokers: this.brokers, clientId: 'private-kafka-probe', logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1000 });
    const admin = kafka.admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      return cluster.controller !== null;
    } catch {
      return false;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  /** kill -9 of the broker. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  async destroy(): Promise<void> {
    await this.kill();
    await this.proxy.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
