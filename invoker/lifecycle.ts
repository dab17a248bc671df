/**
 * The invoker's components as an ordered list: started in order, stopped in
 * reverse (fastify's onClose idea). What a component needs is earlier in the
 * list than what uses it, so nothing runs on top of a part that is already
 * gone, and a start that fails takes down exactly what came up before it
 * instead of leaving a half-started process (a bound port, a running pool).
 */
import type { Logger } from './telemetry/logger.js';

export interface LifecycleComponent {
  /** Names the component in the start error and the stop log lines. */
  readonly name: string;
  /** Brings the component up. A rejection stops what started before it. */
  start?(): Promise<unknown> | unknown;
  /** Takes the component down. A rejection is logged and the stop goes on. */
  stop?(): Promise<unknown> | unknown;
  /**
   * How long the stop may take; past it, it is logged and left behind so the
   * whole stop stays bounded. Omitted: the stop bounds itself.
   */
  readonly stopLimitMs?: number;
  /** What the stop does, for its log lines (default: `stopping <name>`). */
  readonly stopping?: string;
}

/** A start that failed: which component, and why (`cause`). */
export class ComponentStartError extends Error {
  constructor(
    readonly component: string,
    cause: unknown,
  ) {
    super(`${component} failed to start: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'ComponentStartError';
  }
}

export class Lifecycle {
  /** Started components, in start order. */
  private readonly started: LifecycleComponent[] = [];
  private starting: Promise<void> | undefined;
  private stopped: Promise<void> | undefined;

  constructor(
    private readonly components: readonly LifecycleComponent[],
    private readonly logger: Logger,
  ) {}

  /**
   * Starts every component in order. When one fails, those already started
   * are stopped in reverse and a ComponentStartError naming it is thrown.
   * Once stop() was called, no further component starts.
   */
  start(): Promise<void> {
    this.starting ??= this.startAll();
    return this.starting;
  }

  /**
   * Stops the started components in reverse order, each bounded by its
   * limit; a start under way ends first. Idempotent: every call gets the
   * same promise, which never rejects.
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await this.starting?.catch(() => undefined);
      await this.stopStarted();
    })();
    return this.stopped;
  }

  private async startAll(): Promise<void> {
    for (const component of this.components) {
      if (this.stopped) throw new ComponentStartError(component.name, new Error('stopped while starting'));
      try {
        await component.start?.();
      } catch (error) {
        const failure = new ComponentStartError(component.name, error);
        this.logger.error({ err: error, component: component.name }, 'start failed: stopping what already started');
        await this.stopStarted();
        throw failure;
      }
      this.started.push(component);
    }
  }

  private async stopStarted(): Promise<void> {
    for (let component = this.started.pop(); component; component = this.started.pop()) {
      await this.stopOne(component);
    }
  }

  private async stopOne(component: LifecycleComponent): Promise<void> {
    if (!component.stop) return;
    const what = component.stopping ?? `stopping ${component.name}`;
    const limitMs = component.stopLimitMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      const work = Promise.resolve().then(() => component.stop?.());
      if (limitMs === undefined) {
        await work;
        return;
      }
      const finished = await Promise.race([
        work.then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), limitMs);
        }),
      ]);
      if (!finished) {
        // Left behind, not awaited: a broker or engine that does not answer must not hold the rest.
        work.catch((error: unknown) => this.logger.warn({ err: error, component: component.name }, `shutdown: ${what} failed after its limit`));
        this.logger.error({ limitMs, component: component.name }, `shutdown: ${what} did not finish within ${limitMs} ms; going on`);
      }
    } catch (error) {
      this.logger.error({ err: error, component: component.name }, `shutdown: ${what} failed`);
    } finally {
      clearTimeout(timer);
    }
  }
}
