/**
 * Creates action containers, hardened and labelled, wired for in-process log
 * collection; pulls user images; removes this invoker's leftovers.
 *
 * Creation: create (no log driver) -> attach stdout/stderr -> start ->
 * inspect for the IP -> wait until the runtime accepts TCP connections.
 * Attaching before start is what guarantees that no output is ever missed.
 * At most `maxParallelCreates` containers are between create and running at
 * once (the engine degrades badly under a burst of creations); waiting for
 * the runtime to listen does not hold a slot.
 */

import { connect } from 'node:net';
import type Dockerode from 'dockerode';
import { imagePullFailed } from '../../protocol/error-texts.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import { ActionContainer } from './action-container.js';
import { DockerEngine, DockerTimeoutError, Semaphore, type DockerCallObserver, type DockerTimeouts } from './docker-engine.js';
import { DEFAULT_MAX_LINE_BYTES, LogClock } from './log-lines.js';
import type { DroppedLogLines } from './log-router.js';
import { LOG_TAGS_ENV, newLogTagKey } from './log-tags.js';
import { RuntimeClient } from './runtime-client.js';

/** Prefix of every label the invoker puts on its containers. */
export const LABEL_PREFIX = 'whisk.';
export const LABELS = Object.freeze({
  /** The invoker id that owns the container; cleanup selects on it. */
  invoker: `${LABEL_PREFIX}invoker`,
  /** `<path>/<name>` of the action, empty for prewarm containers. */
  action: `${LABEL_PREFIX}action`,
  kind: `${LABEL_PREFIX}kind`,
  /** `true` for a prewarmed (stem cell) container. */
  prewarm: `${LABEL_PREFIX}prewarm`,
});

/** Port the action runtime listens on (wire spec section 7). */
export const RUNTIME_PORT = 8080;

export interface ContainerHardening {
  /** Capabilities dropped; upstream drops NET_RAW and NET_ADMIN (use `['ALL']` for the Go invoker's choice). */
  capDrop: string[];
  /** `no-new-privileges`: setuid binaries cannot raise privileges. */
  noNewPrivileges: boolean;
  pidsLimit: number;
  /** Open files, soft = hard. */
  nofile: number;
  /** Read-only root filesystem; /tmp is then a tmpfs (the runtime uses it as HOME). */
  readonlyRootfs: boolean;
  /** tmpfs options for /tmp when `readonlyRootfs` (counts against the memory limit). */
  tmpfsOptions: string;
}

export const DEFAULT_HARDENING: Readonly<ContainerHardening> = Object.freeze({
  capDrop: ['NET_RAW', 'NET_ADMIN'],
  noNewPrivileges: true,
  pidsLimit: 1024,
  nofile: 1024,
  readonlyRootfs: false,
  tmpfsOptions: 'rw,nosuid,nodev,exec,size=64m',
});

export interface ContainerFactoryOptions {
  /** This invoker's id; goes into names and the `whisk.invoker` label. */
  invokerId: string | number;
  /** Memory the invoker gives to actions, in MiB; sets CPU shares. */
  userMemoryMb: number;
  /** `__OW_API_HOST` in every container. */
  apiHost: string;
  /** Docker network for action containers (default `bridge`). The invoker must reach container IPs on it. */
  network?: string;
  dns?: { servers?: string[]; search?: string[]; options?: string[] };
  hardening?: Partial<ContainerHardening>;
  timeouts?: Partial<DockerTimeouts>;
  /** At most this many creations in flight (default 10, as upstream). */
  maxParallelCreates?: number;
  /** Give up on a runtime that does not listen within this (default 30 s). */
  readinessTimeoutMs?: number;
  /** Between TCP probes of a starting runtime (default 10 ms). */
  readinessPollMs?: number;
  /** Bytes of a runtime response kept (default 1 MiB). */
  maxResponseBytes?: number;
  /** Longer log lines are split (default 16 KiB). */
  maxLogLineBytes?: number;
  /** A configured dockerode client; default from DOCKER_HOST or the default socket. */
  docker?: Dockerode;
  logger?: Logger;
  /** Told the duration of every engine call (metrics). */
  observe?: DockerCallObserver;
  /** Told of every log line of a concurrent container that reached no activation (metrics). */
  droppedLogLines?: DroppedLogLines;
}

/** What to run. */
export interface ContainerCreateSpec {
  image: string;
  /** Runtime kind (e.g. `nodejs:20`, `blackbox`); label and prewarm name. */
  kind: string;
  /** Action memory limit in MiB. */
  memoryMb: number;
  /**
   * Runs the container may take at once (default 1); >1 sets
   * `__OW_ALLOW_CONCURRENT=true` and asks for per-activation log tags
   * (`__OW_LOG_TAGS=<random key>`, see log-tags.ts).
   */
  concurrency?: number;
  /**
   * The action it is for; absent for a prewarm (stem cell) container.
   * `namespace` is the invoking namespace, `path` the action's namespace or
   * `namespace/package`.
   */
  action?: { namespace: string; path: string; name: string };
}

/** Pulling a user image failed; `message` is the standard activation text. */
export class ImagePullError extends Error {
  override name = 'ImagePullError';
  constructor(
    readonly image: string,
    cause: unknown,
  ) {
    super(imagePullFailed(image), { cause });
  }
}

/** Docker container names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]`; anything else is dropped. */
export function sanitizeNamePart(part: string): string {
  return part.replace(/[^A-Za-z0-9_.-]/g, '');
}

/** `max(floor(1024 / (userMemory / actionMemory)), 2)`, computed without float drift. */
export function cpuSharesFor(actionMemoryMb: number, userMemoryMb: number): number {
  return Math.max(Math.floor((1024 * actionMemoryMb) / userMemoryMb), 2);
}

export function mibToBytes(mib: number): number {
  return Math.round(mib * 1024 * 1024);
}

export class ContainerFactory {
  readonly invokerId: string;
  readonly network: string;
  private readonly engine: DockerEngine;
  private readonly creates: Semaphore;
  private readonly hardening: ContainerHardening;
  private readonly clock = new LogClock();
  private readonly logger: Logger;
  private counter = 0;

  constructor(private readonly options: ContainerFactoryOptions) {
    this.invokerId = String(options.invokerId);
    if (sanitizeNamePart(this.invokerId) !== this.invokerId || this.invokerId === '') {
      throw new Error(`invoker id '${this.invokerId}' must be non-empty and use only [A-Za-z0-9_.-]`);
    }
    if (!(options.userMemoryMb > 0)) throw new Error(`userMemoryMb must be positive, got ${options.userMemoryMb}`);
    this.network = options.network ?? 'bridge';
    this.engine = new DockerEngine({
      ...(options.docker ? { docker: options.docker } : {}),
      ...(options.timeouts ? { timeouts: options.timeouts } : {}),
      ...(options.observe ? { observe: options.observe } : {}),
    });
    this.creates = new Semaphore(options.maxParallelCreates ?? 10);
    this.hardening = { ...DEFAULT_HARDENING, ...options.hardening };
    this.logger = options.logger ?? silentLogger();
  }

  /** Creates, starts and waits for a container whose runtime accepts connections. */
  async create(spec: ContainerCreateSpec): Promise<ActionContainer> {
    const n = ++this.counter;
    const name = spec.action
      ? `wsk${this.invokerId}_${n}_${sanitizeNamePart(spec.action.namespace)}_${sanitizeNamePart(spec.action.name)}`
      : `wsk${this.invokerId}_${n}_prewarm_${sanitizeNamePart(spec.kind)}`;
    const concurrency = spec.concurrency ?? 1;
    const env = [`__OW_API_HOST=${this.options.apiHost}`];
    const logTagKey = concurrency > 1 ? newLogTagKey() : undefined;
    if (concurrency > 1) env.push('__OW_ALLOW_CONCURRENT=true', `${LOG_TAGS_ENV}=${logTagKey}`);
    const h = this.hardening;
    const memoryBytes = mibToBytes(spec.memoryMb);

    let id: string | undefined;
    try {
      const { output, ip } = await this.creates.use(async () => {
        id = await this.engine.create({
          name,
          image: spec.image,
          env,
          labels: {
            [LABELS.invoker]: this.invokerId,
            [LABELS.action]: spec.action ? `${spec.action.path}/${spec.action.name}` : '',
            [LABELS.kind]: spec.kind,
            [LABELS.prewarm]: spec.action ? 'false' : 'true',
          },
          memoryBytes,
          cpuShares: cpuSharesFor(spec.memoryMb, this.options.userMemoryMb),
          network: this.network,
          dns: this.options.dns?.servers ?? [],
          dnsSearch: this.options.dns?.search ?? [],
          dnsOptions: this.options.dns?.options ?? [],
          capDrop: h.capDrop,
          noNewPrivileges: h.noNewPrivileges,
          pidsLimit: h.pidsLimit,
          nofile: h.nofile,
          readonlyRootfs: h.readonlyRootfs,
          tmpfsTmp: h.readonlyRootfs ? h.tmpfsOptions : undefined,
        });
        const output = await this.engine.attach(id, name);
        try {
          await this.engine.start(id, name);
          const details = await this.engine.inspect(id, name);
          const ip = details.ips[this.network];
          if (!ip) {
            throw new Error(`container has no IP address on network '${this.network}' (state ${details.state.status})`);
          }
          return { output, ip };
        } catch (error) {
          output.destroy();
          throw error;
        }
      });
      // From here the container owns the stream: it starts reading at once, so
      // output written while the runtime boots is kept (and discarded at the
      // first beginActivation()).
      const container = new ActionContainer({
        id: id as string,
        name,
        ip,
        image: spec.image,
        kind: spec.kind,
        memoryMb: spec.memoryMb,
        concurrency,
        engine: this.engine,
        runtime: new RuntimeClient({
          origin: `http://${ip}:${RUNTIME_PORT}`,
          concurrency,
          ...(this.options.maxResponseBytes !== undefined ? { maxResponseBytes: this.options.maxResponseBytes } : {}),
        }),
        output,
        clock: this.clock,
        maxLineBytes: this.options.maxLogLineBytes ?? DEFAULT_MAX_LINE_BYTES,
        logger: this.logger,
        ...(logTagKey !== undefined ? { logTagKey } : {}),
        ...(this.options.droppedLogLines ? { droppedLogLines: this.options.droppedLogLines } : {}),
      });
      try {
        await this.waitUntilListening(container);
      } catch (error) {
        await container.destroy().catch(() => undefined);
        id = undefined;
        throw error;
      }
      this.logger.debug({ container: name, ip, image: spec.image }, 'container ready');
      return container;
    } catch (error) {
      if (id !== undefined) {
        const created = id;
        await this.engine.remove(created, name).catch((removeError: unknown) => {
          this.logger.warn({ container: name, err: removeError }, 'removing a container that failed to start');
        });
      } else if (error instanceof DockerTimeoutError) {
        // The engine may still create it after we gave up: remove it by name
        // when it does (best effort, in the background; startup cleanup is the backstop).
        void this.engine.remove(name, name).catch(() => undefined);
      }
      const msg = error instanceof Error ? error.message : String(error);
      // Engine errors already say what was attempted; add which container.
      throw msg.includes(name) ? error : new Error(`creating container ${name} from ${spec.image}: ${msg}`, { cause: error });
    }
  }

  /**
   * Makes sure `image` is present, pulling it if not (bounded by the pull
   * timeout). Throws ImagePullError, whose message is the standard text.
   */
  async ensureImage(image: string): Promise<void> {
    try {
      if (await this.engine.imageExists(image)) return;
      await this.engine.pull(image);
    } catch (error) {
      this.logger.warn({ image, err: error }, 'image pull failed');
      throw new ImagePullError(image, error);
    }
  }

  /**
   * Removes every container labelled `whisk.invoker=<invokerId>` (default:
   * this invoker), in any state, unpausing paused ones first. Never touches
   * other containers. Returns how many were removed; throws an
   * AggregateError if some could not be.
   */
  async removeInvokerContainers(invokerId: string | number = this.invokerId): Promise<number> {
    const list = await this.engine.listByLabels({ [LABELS.invoker]: String(invokerId) });
    const limit = new Semaphore(this.creates.capacity);
    const results = await Promise.allSettled(
      list.map((c) =>
        limit.use(async () => {
          if (c.state === 'paused') {
            await this.engine.unpause(c.id, c.name).catch(() => undefined);
          }
          await this.engine.remove(c.id, c.name);
        }),
      ),
    );
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
    if (failures.length > 0) {
      throw new AggregateError(failures, `removing containers of invoker ${String(invokerId)}: ${failures.length} of ${list.length} failed`);
    }
    return list.length;
  }

  private async waitUntilListening(container: ActionContainer): Promise<void> {
    const timeoutMs = this.options.readinessTimeoutMs ?? 30_000;
    const pollMs = this.options.readinessPollMs ?? 10;
    const deadline = performance.now() + timeoutMs;
    let lastError = 'no attempt';
    while (performance.now() < deadline) {
      if (container.exited) {
        const state = await container.inspectExit({ waitMs: 0 }).catch(() => undefined);
        throw new Error(
          `container ${container.name} exited before its runtime listened on port ${RUNTIME_PORT}` +
            (state ? ` (exit code ${state.exitCode}${state.oomKilled ? ', OOM-killed' : ''})` : ''),
        );
      }
      const left = deadline - performance.now();
      const result = await tcpProbe(container.ip, RUNTIME_PORT, Math.max(1, Math.min(left, 1000)));
      if (result === true) return;
      lastError = result;
      await new Promise((r) => setTimeout(r, pollMs));
    }
    throw new Error(
      `waiting for the runtime of container ${container.name} to listen on ${container.ip}:${RUNTIME_PORT}: not ready after ${timeoutMs} ms (${lastError})`,
    );
  }
}

/** One TCP connection attempt: true if accepted, else the error text. */
function tcpProbe(host: string, port: number, timeoutMs: number): Promise<true | string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (result: true | string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(`connect timed out after ${Math.round(timeoutMs)} ms`), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', (error: Error) => done(error.message));
  });
}
