/**
 * The handle the invocation core holds for one running action container:
 * talk to its runtime, frame its logs per activation, pause, unpause, learn
 * how it died, destroy it. Created by `ContainerFactory.create()`.
 *
 * One activation at a time (concurrency 1):
 *   beginActivation() -> [init()] -> run() -> collectLogs()
 * With concurrency > 1 the same, several at once, each call naming its
 * activation (`activationId`): the runtime tags its lines per activation
 * when it can (log-router.ts), otherwise such activations carry no logs.
 */

import type { Readable } from 'node:stream';
import type { Logger } from '../telemetry/logger.js';
import { AttachDemuxer, AttachStreamError } from './attach-demuxer.js';
import type { EngineContainerState, DockerEngine } from './docker-engine.js';
import {
  LogCollector,
  type ActivationLogs,
  type BeginActivationOptions,
  type CollectOptions,
  type LogCollection,
} from './log-collector.js';
import { StampedLineReader, type LogClock } from './log-lines.js';
import { TaggedLogRouter, type DroppedLogLines } from './log-router.js';
import { MIN_TAGGED_LINE_BYTES } from './log-tags.js';
import type { RuntimeClient, RuntimeResult } from './runtime-client.js';

/** How long `inspectExit()` waits, by default, for a dying container to finish exiting. */
export const DEFAULT_EXIT_WAIT_MS = 1000;

/** What the factory hands over once the container runs; not for the core. */
export interface ActionContainerParts {
  id: string;
  name: string;
  ip: string;
  image: string;
  kind: string;
  memoryMb: number;
  concurrency: number;
  engine: DockerEngine;
  runtime: RuntimeClient;
  /** The attach stream, already attached before start and not yet read. */
  output: Readable;
  clock: LogClock;
  maxLineBytes: number;
  logger: Logger;
  /** The key the runtime was asked to tag log lines with (`__OW_LOG_TAGS`); concurrent containers only. */
  logTagKey?: string;
  /** Told of every line of a concurrent container that reached no activation. */
  droppedLogLines?: DroppedLogLines;
}

export class ActionContainer {
  /** Docker container id. */
  readonly id: string;
  /** Docker container name, e.g. `wsk0_3_guest_hello`. */
  readonly name: string;
  /** Address of the runtime on the configured network. */
  readonly ip: string;
  readonly image: string;
  /** Runtime kind, e.g. `nodejs:20`, or `blackbox`. */
  readonly kind: string;
  /** Memory limit in MiB (memory = memory+swap). */
  readonly memoryMb: number;
  /** Runs the container accepts at once. */
  readonly concurrency: number;

  private readonly engine: DockerEngine;
  private readonly runtime: RuntimeClient;
  private readonly output: Readable;
  private readonly collector: ActivationLogs;
  private readonly router: TaggedLogRouter | undefined;
  private readonly logger: Logger;
  private readonly exitedPromise: Promise<void>;
  private outputEnded = false;
  private destroying: Promise<void> | undefined;

  constructor(parts: ActionContainerParts) {
    this.id = parts.id;
    this.name = parts.name;
    this.ip = parts.ip;
    this.image = parts.image;
    this.kind = parts.kind;
    this.memoryMb = parts.memoryMb;
    this.concurrency = parts.concurrency;
    this.engine = parts.engine;
    this.runtime = parts.runtime;
    this.output = parts.output;
    this.logger = parts.logger;
    if (parts.concurrency > 1) {
      this.router = new TaggedLogRouter(parts.clock, parts.logTagKey, parts.droppedLogLines);
      this.collector = this.router;
    } else {
      this.collector = new LogCollector(parts.clock);
    }
    const maxLineBytes = this.router ? Math.max(parts.maxLineBytes, MIN_TAGGED_LINE_BYTES) : parts.maxLineBytes;
    const reader = new StampedLineReader(parts.clock, this.collector.onLine, maxLineBytes);
    const demuxer = new AttachDemuxer(reader.push);

    let markExited: () => void = () => undefined;
    this.exitedPromise = new Promise<void>((resolve) => (markExited = resolve));
    const finish = (reason: string): void => {
      if (this.outputEnded) return;
      this.outputEnded = true;
      reader.flush();
      this.collector.end(reason);
      markExited();
    };
    this.output.on('data', (chunk: Buffer) => {
      try {
        demuxer.push(chunk);
      } catch (error) {
        // Frame boundaries are lost: nothing more from this stream can be trusted.
        if (error instanceof AttachStreamError) {
          this.logger.error({ container: this.name, err: error }, 'attach stream corrupt');
          finish(error.message);
          this.output.destroy();
        } else {
          throw error;
        }
      }
    });
    this.output.once('end', () => finish('container output ended'));
    this.output.once('close', () => finish('container output closed'));
    this.output.once('error', (error: Error) => finish(`container output failed: ${error.message}`));
  }

  /**
   * `POST /init` with a JSON body; connection failures are retried until
   * `timeoutMs`, unless the container exits meanwhile (then it fails at once
   * instead of retrying against a dead address).
   */
  async init(body: string, timeoutMs: number): Promise<RuntimeResult> {
    if (this.outputEnded) return { kind: 'connection-failed', error: new Error(`container ${this.name} has exited`) };
    const died = this.exitedPromise.then(
      (): RuntimeResult => ({ kind: 'connection-failed', error: new Error(`container ${this.name} exited during /init`) }),
    );
    const result = await Promise.race([this.runtime.init(body, timeoutMs), died]);
    if (result.kind === 'response' && result.logTags) this.router?.announce();
    return result;
  }

  /** Log lines are attributed per activation (a concurrent container whose runtime tags them). */
  get tagsLogs(): boolean {
    return this.router?.tagging ?? false;
  }

  /** `POST /run` with a JSON body; never retried, bounded by `timeoutMs`. */
  run(body: string, timeoutMs: number): Promise<RuntimeResult> {
    // A container that died while idle would otherwise cost an ARP timeout
    // (EHOSTUNREACH) before failing; the attach stream already told us.
    if (this.outputEnded) return Promise.resolve({ kind: 'connection-failed', error: containerExitedError(this.name) });
    return this.runtime.run(body, timeoutMs);
  }

  /**
   * Opens an activation's log window; call before its first request (`/init`
   * on a cold start). With concurrency > 1, `activationId` is required.
   */
  beginActivation(options?: BeginActivationOptions): void {
    this.collector.beginActivation(options);
  }

  /**
   * Closes the window and returns the activation's log lines (waits briefly
   * for the sentinels). With concurrency > 1, `activationId` is required.
   */
  collectLogs(options?: CollectOptions): Promise<LogCollection> {
    return this.collector.collect(options);
  }

  /** True once the container's output ended: its process exited or the stream broke. */
  get exited(): boolean {
    return this.outputEnded;
  }

  /** Freezes the container (between activations). */
  async pause(): Promise<void> {
    await this.engine.pause(this.id, this.name);
  }

  async unpause(): Promise<void> {
    await this.engine.unpause(this.id, this.name);
  }

  /**
   * The container's state from the engine, after waiting up to `waitMs`
   * (default 1 s) for its output to end if it is dying: after a dropped
   * connection the process may still be exiting, and `oomKilled` is only
   * reliable once it has.
   */
  async inspectExit(options: { waitMs?: number } = {}): Promise<EngineContainerState> {
    const waitMs = options.waitMs ?? DEFAULT_EXIT_WAIT_MS;
    if (!this.outputEnded && waitMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.exitedPromise, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
      clearTimeout(timer);
    }
    return (await this.engine.inspect(this.id, this.name)).state;
  }

  /**
   * Closes the runtime connections and the attach stream and force-removes
   * the container. Idempotent; concurrent calls share one removal.
   */
  destroy(): Promise<void> {
    this.destroying ??= this.doDestroy();
    return this.destroying;
  }

  private async doDestroy(): Promise<void> {
    await this.runtime.close();
    // A paused container is removed as is: the engine (20.10+) kills and thaws
    // it in one step, which is cheaper than an unpause round trip first.
    try {
      await this.engine.remove(this.id, this.name);
    } finally {
      this.output.destroy();
    }
  }
}

/** `code` lets callers tell "the container was already gone" from a failure during the call. */
export const CONTAINER_EXITED = 'ECONTAINEREXITED';

function containerExitedError(name: string): Error {
  return Object.assign(new Error(`container ${name} has exited`), { code: CONTAINER_EXITED });
}
