/**
 * A private single-node Kafka broker (KRaft) for the system suite: its own
 * ports, data directory and topics, so that the processes under test see no
 * other test's invokers on `health`, and so that the suite can stop and
 * start it mid-load without touching the shared broker. Same jars and
 * settings as scripts/services.sh kafka_up (scripts/kafka/).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { logLevel } from 'kafkajs';
import { freePort } from './ports.js';
import { testKafka } from '../helpers/kafka.js';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');

/** The broker jars services.sh fetched: this checkout's `.cache/kafka/<version>/libs`, or `KAFKA_LIBS`. */
export function kafkaLibs(): string | undefined {
  const candidates = [process.env['KAFKA_LIBS'], ...versionDirs(join(REPO_ROOT, '.cache/kafka')), ...versionDirs('/work/main/.cache/kafka')];
  return candidates.find((dir): dir is string => dir !== undefined && existsSync(join(dir, '.complete')));
}

function versionDirs(cache: string): string[] {
  if (!existsSync(cache)) return [];
  return readdirSync(cache)
    .filter((name) => /^\d/.test(name))
    .map((name) => join(cache, name, 'libs'));
}

export class PrivateKafka {
  port = 0;
  controllerPort = 0;
  #process: ChildProcess | undefined;
  readonly #dataDir: string;
  readonly #properties: string;

  /**
   * `advertisedPort`: the port clients are told to use after bootstrap (a
   * TcpProxy in front of the broker), so that cutting the proxy cuts all
   * client traffic, not only the bootstrap connection.
   */
  constructor(
    private readonly dir: string,
    private readonly libs: string,
    private readonly advertisedPort?: number,
  ) {
    this.#dataDir = join(dir, 'kafka-data');
    this.#properties = join(dir, 'server.properties');
  }

  /** What clients bootstrap from: the advertised address. */
  get brokers(): string[] {
    return [`127.0.0.1:${this.advertisedPort ?? this.port}`];
  }

  #javaOptions(): string[] {
    return ['-Xms128m', '-Xmx384m', '-XX:+UseSerialGC', `-Dlog4j2.configurationFile=${join(REPO_ROOT, 'scripts/kafka/log4j2.properties')}`, '-cp', `${this.libs}/*`];
  }

  async start(port?: number): Promise<void> {
    if (this.port === 0) {
      this.port = port ?? (await freePort());
      this.controllerPort = await freePort();
      mkdirSync(this.#dataDir, { recursive: true });
      const template = readFileSync(join(REPO_ROOT, 'scripts/kafka/server.properties.template'), 'utf8');
      writeFileSync(
        this.#properties,
        template
          .replace(/^advertised\.listeners=.*$/m, `advertised.listeners=PLAINTEXT://127.0.0.1:${this.advertisedPort ?? this.port}`)
          .replaceAll('@@PORT@@', String(this.port)).replaceAll('@@CONTROLLER_PORT@@', String(this.controllerPort)).replaceAll('@@DATA_DIR@@', this.#dataDir),
      );
      // As services.sh: the template names the voters, so no --standalone.
      const format = spawnSync('java', [...this.#javaOptions(), 'kafka.tools.StorageTool', 'format', '-t', randomClusterId(), '-c', this.#properties], { encoding: 'utf8' });
      if (format.status !== 0) throw new Error(`formatting the private Kafka storage failed: ${format.stderr}`);
    }
    const log = openSync(join(this.dir, 'kafka.log'), 'a');
    this.#process = spawn('java', [...this.#javaOptions(), 'kafka.Kafka', this.#properties], { stdio: ['ignore', log, log] });
    await this.waitReady(120_000);
  }

  async waitReady(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (this.#process?.exitCode !== null && this.#process?.exitCode !== undefined) {
        throw new Error(`the private Kafka broker exited with ${this.#process.exitCode}; see ${join(this.dir, 'kafka.log')}`);
      }
      if (await this.#answers()) return;
      if (Date.now() > until) throw new Error(`the private Kafka broker on ${this.port} was not ready within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async #answers(): Promise<boolean> {
    const admin = testKafka({ brokers: this.brokers, clientId: 'system-test-probe', logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1000 }).admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.controller === null) return false;
      // A topic with a leader: right after start the broker can answer
      // metadata yet refuse topic creation (UNKNOWN_TOPIC_OR_PARTITION).
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: 'system-test-ready', numPartitions: 1 }] });
      const metadata = await admin.fetchTopicMetadata({ topics: ['system-test-ready'] });
      return metadata.topics[0]?.partitions[0]?.leader !== undefined && metadata.topics[0].partitions[0].leader >= 0;
    } catch {
      return false;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  /** SIGKILL: an outage as abrupt as a lost node. Data stays for the next start. */
  async stop(): Promise<void> {
    const child = this.#process;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}

/** Kafka's cluster id: 16 random bytes, base64url without padding (Uuid.randomUuid().toString()). */
function randomClusterId(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
}
