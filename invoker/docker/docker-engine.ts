/**
 * A narrow, typed wrapper over dockerode: only the Engine API calls the
 * invoker makes, each bounded by its own timeout so that a hung engine turns
 * into a clear `DockerTimeoutError` instead of a stuck activation.
 *
 * dockerode's own types are loose (`any` in many places); nothing loose
 * leaves this module.
 */

import Dockerode from 'dockerode';
import type { Readable } from 'node:stream';

/** Per-call timeouts in milliseconds. */
export interface DockerTimeouts {
  /** create, attach, start (upstream "docker run": 60 s). */
  runMs: number;
  /** inspect and list (60 s). */
  inspectMs: number;
  /** force remove (60 s). */
  removeMs: number;
  /** image pull (10 min). */
  pullMs: number;
  /** pause (10 s). */
  pauseMs: number;
  /** unpause (10 s). */
  unpauseMs: number;
}

/** Upstream OpenWhisk's docker client timeouts (wire spec section 9). */
export const DEFAULT_DOCKER_TIMEOUTS: Readonly<DockerTimeouts> = Object.freeze({
  runMs: 60_000,
  inspectMs: 60_000,
  removeMs: 60_000,
  pullMs: 10 * 60_000,
  pauseMs: 10_000,
  unpauseMs: 10_000,
});

/** An Engine API call did not finish in time; the message says which one. */
export class DockerTimeoutError extends Error {
  override name = 'DockerTimeoutError';
  constructor(
    /** e.g. `pausing container wsk0_3_guest_hello` */
    readonly operation: string,
    readonly timeoutMs: number,
  ) {
    super(`${operation} timed out after ${timeoutMs} ms`);
  }
}

/**
 * Runs `op` with an abort signal that fires after `timeoutMs`; rejects with
 * DockerTimeoutError at that moment even if the engine call ignores the signal.
 */
export function withTimeout<T>(operation: string, timeoutMs: number, op: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      const error = new DockerTimeoutError(operation, timeoutMs);
      abort.abort(error);
      reject(error);
    }, timeoutMs);
    op(abort.signal).then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Counting semaphore (FIFO), e.g. for "at most 10 parallel container creations". */
export class Semaphore {
  private readonly waiters: (() => void)[] = [];
  private free: number;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`semaphore capacity must be >= 1, got ${capacity}`);
    this.free = capacity;
  }

  async use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiters.push(r));
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/** What the invoker sets on a container it creates; mapped 1:1 to the Engine API. */
export interface CreateContainerRequest {
  name: string;
  image: string;
  env: string[];
  labels: Record<string, string>;
  memoryBytes: number;
  cpuShares: number;
  network: string;
  dns: string[];
  dnsSearch: string[];
  dnsOptions: string[];
  capDrop: string[];
  noNewPrivileges: boolean;
  pidsLimit: number;
  nofile: number;
  readonlyRootfs: boolean;
  /** Mounted at /tmp when set (e.g. `rw,exec,nosuid,size=64m`). */
  tmpfsTmp: string | undefined;
}

/** The parts of `docker inspect` the invoker needs. */
export interface EngineContainerState {
  status: string;
  running: boolean;
  paused: boolean;
  oomKilled: boolean;
  exitCode: number;
  /** The engine's error text for a failed start, if any. */
  error: string;
}

export interface ContainerDetails {
  id: string;
  name: string;
  state: EngineContainerState;
  /** IP address per network name. */
  ips: Record<string, string>;
}

export interface ContainerSummary {
  id: string;
  /** Without the leading `/`. */
  name: string;
  /** `created`, `running`, `paused`, `exited`, ... */
  state: string;
  labels: Record<string, string>;
}

export interface DockerEngineOptions {
  /** A configured client; default: from DOCKER_HOST or the default socket. */
  docker?: Dockerode;
  timeouts?: Partial<DockerTimeouts>;
  /** Told the duration of every engine call, e.g. for a metrics histogram. */
  observe?: DockerCallObserver;
}

export type DockerCallObserver = (operation: string, seconds: number, outcome: 'ok' | 'error') => void;

type WithSignal<T> = T & { abortSignal?: AbortSignal };

function statusCode(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message.trim() : String(error);
}

export class DockerEngine {
  readonly timeouts: Readonly<DockerTimeouts>;
  private readonly docker: Dockerode;
  private readonly observe: DockerCallObserver | undefined;

  constructor(options: DockerEngineOptions = {}) {
    this.docker = options.docker ?? new Dockerode();
    this.observe = options.observe;
    this.timeouts = Object.freeze({ ...DEFAULT_DOCKER_TIMEOUTS, ...options.timeouts });
  }

  /** Creates (does not start) a container; returns its id. */
  async create(req: CreateContainerRequest): Promise<string> {
    const securityOpt = req.noNewPrivileges ? ['no-new-privileges'] : [];
    const opts: Dockerode.ContainerCreateOptions = {
      name: req.name,
      Image: req.image,
      Env: req.env,
      Labels: req.labels,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      HostConfig: {
        Memory: req.memoryBytes,
        MemorySwap: req.memoryBytes,
        CpuShares: req.cpuShares,
        NetworkMode: req.network,
        Dns: req.dns,
        DnsSearch: req.dnsSearch,
        DnsOptions: req.dnsOptions,
        CapDrop: req.capDrop,
        SecurityOpt: securityOpt,
        PidsLimit: req.pidsLimit,
        Ulimits: [{ Name: 'nofile', Soft: req.nofile, Hard: req.nofile }],
        ReadonlyRootfs: req.readonlyRootfs,
        ...(req.tmpfsTmp !== undefined ? { Tmpfs: { '/tmp': req.tmpfsTmp } } : {}),
        // Logs are read from the attach stream; a log driver would only duplicate them on disk.
        LogConfig: { Type: 'none', Config: {} },
      },
    };
    const what = `creating container ${req.name} from ${req.image}`;
    const container = await this.call('create', what, this.timeouts.runMs, (abortSignal) =>
      this.docker.createContainer({ ...opts, abortSignal }),
    );
    return container.id;
  }

  /**
   * Attaches to stdout and stderr (stream mode). Do this before `start` so
   * that not a byte of output is missed. The stream ends when the container's
   * process exits (or the container is removed).
   */
  async attach(id: string, name: string): Promise<Readable> {
    const opts: WithSignal<Dockerode.ContainerAttachOptions> = { stream: true, stdout: true, stderr: true };
    // The timer is cleared once the stream is handed over, so the signal can only
    // fire while we still wait for the response head, never cutting the output later.
    return this.call('attach', `attaching to container ${name}`, this.timeouts.runMs, async (abortSignal) => {
      return (await this.docker.getContainer(id).attach({ ...opts, abortSignal })) as unknown as Readable;
    });
  }

  async start(id: string, name: string): Promise<void> {
    await this.call('start', `starting container ${name}`, this.timeouts.runMs, (abortSignal) =>
      this.docker.getContainer(id).start({ abortSignal }),
    );
  }

  async inspect(id: string, name: string): Promise<ContainerDetails> {
    const info = await this.call('inspect', `inspecting container ${name}`, this.timeouts.inspectMs, (abortSignal) =>
      this.docker.getContainer(id).inspect({ abortSignal }),
    );
    const ips: Record<string, string> = {};
    for (const [net, endpoint] of Object.entries(info.NetworkSettings?.Networks ?? {})) {
      if (endpoint?.IPAddress) ips[net] = endpoint.IPAddress;
    }
    const s = info.State;
    return {
      id: info.Id,
      name: info.Name.replace(/^\//, ''),
      state: {
        status: s.Status,
        running: s.Running,
        paused: s.Paused,
        oomKilled: s.OOMKilled,
        exitCode: s.ExitCode,
        error: s.Error,
      },
      ips,
    };
  }

  async pause(id: string, name: string): Promise<void> {
    await this.call('pause', `pausing container ${name}`, this.timeouts.pauseMs, (abortSignal) =>
      this.docker.getContainer(id).pause({ abortSignal }),
    );
  }

  async unpause(id: string, name: string): Promise<void> {
    await this.call('unpause', `unpausing container ${name}`, this.timeouts.unpauseMs, (abortSignal) =>
      this.docker.getContainer(id).unpause({ abortSignal }),
    );
  }

  /** Force-removes a container (and its anonymous volumes); a container already gone is not an error. */
  async remove(id: string, name: string): Promise<void> {
    const opts: WithSignal<Dockerode.ContainerRemoveOptions> = { force: true, v: true };
    try {
      await this.call('remove', `removing container ${name}`, this.timeouts.removeMs, (abortSignal) =>
        this.docker.getContainer(id).remove({ ...opts, abortSignal }),
      );
    } catch (error) {
      if (statusCode(error) === 404) return;
      throw error;
    }
  }

  /** Containers (any state) carrying every given label `key=value`. */
  async listByLabels(labels: Record<string, string>): Promise<ContainerSummary[]> {
    const filter = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
    const list = await this.call('list', `listing containers labelled ${filter.join(',')}`, this.timeouts.inspectMs, (abortSignal) =>
      this.docker.listContainers({ all: true, filters: { label: filter }, abortSignal }),
    );
    return list.map((c) => ({
      id: c.Id,
      name: (c.Names[0] ?? c.Id).replace(/^\//, ''),
      state: c.State,
      labels: c.Labels ?? {},
    }));
  }

  async imageExists(image: string): Promise<boolean> {
    try {
      // dockerode's image inspect takes no abort signal; the timeout still bounds the wait.
      await this.call('inspect-image', `inspecting image ${image}`, this.timeouts.inspectMs, () => this.docker.getImage(image).inspect());
      return true;
    } catch (error) {
      if (statusCode(error) === 404) return false;
      throw error;
    }
  }

  /** Pulls an image and waits for the pull to finish; rejects on any error the engine reports. */
  async pull(image: string): Promise<void> {
    await this.call('pull', `pulling image ${image}`, this.timeouts.pullMs, async (abortSignal) => {
      const stream = (await this.docker.pull(image, { abortSignal })) as Readable;
      await new Promise<void>((resolve, reject) => {
        abortSignal.addEventListener('abort', () => stream.destroy(), { once: true });
        this.docker.modem.followProgress(
          stream,
          (err: Error | null, output: unknown[]) => {
            if (err) return reject(err);
            // Errors after the pull started come as progress messages, not HTTP status.
            const failed = (output ?? []).find(
              (o): o is { error: string } => typeof (o as { error?: unknown } | null)?.error === 'string',
            );
            if (failed) reject(new Error(failed.error));
            else resolve();
          },
        );
      });
    });
  }

  /** Wraps one call: bounded in time, and its error says what was attempted. */
  private async call<T>(operation: string, what: string, timeoutMs: number, op: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const result = await withTimeout(what, timeoutMs, op);
      this.observe?.(operation, (performance.now() - started) / 1000, 'ok');
      return result;
    } catch (error) {
      this.observe?.(operation, (performance.now() - started) / 1000, 'error');
      if (error instanceof DockerTimeoutError) throw error;
      const wrapped = new Error(`${what}: ${message(error)}`, { cause: error });
      const code = statusCode(error);
      if (code !== undefined) Object.assign(wrapped, { statusCode: code });
      throw wrapped;
    }
  }
}
