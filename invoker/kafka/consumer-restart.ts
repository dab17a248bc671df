/**
 * The group events of the feed's kafkajs consumer (logged) and its crash
 * recovery. kafkajs restarts a consumer
 * itself after a retriable error; after a non-retriable one (`restart: false`
 * on the CRASH event) the consumer stays dead and no activation is read until
 * a new one is launched. This launches it, with exponential backoff (reset
 * whenever a consumer joins its group), until it succeeds or the feed stops.
 */
import type { Consumer } from 'kafkajs';
import type { Logger } from '../telemetry/logger.js';

export interface ConsumerRestartOptions {
  topic: string;
  log: Logger;
  /** Default 1 s. */
  initialMs?: number;
  /** Default 30 s. */
  maxMs?: number;
  /** True once the feed is stopping: nothing is restarted any more. */
  stopping: () => boolean;
  /** Launches a new consumer (connect, subscribe, join); rejects with what failed. */
  launch: () => Promise<void>;
  /** The consumer launched last (the one a failed launch left behind). */
  current: () => Consumer | undefined;
}

export class ConsumerRestart {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ConsumerRestartOptions) {
    this.initialMs = options.initialMs ?? 1_000;
    this.maxMs = options.maxMs ?? 30_000;
    this.delayMs = this.initialMs;
  }

  /** Logs `consumer`'s joins and rebalances and handles its crashes; `onJoin` after each join. */
  watch(consumer: Consumer, onJoin: () => void): void {
    const { events } = consumer;
    const { log } = this.options;
    consumer.on(events.GROUP_JOIN, ({ payload }) => {
      // Joined: the next crash is retried after the initial delay again.
      this.delayMs = this.initialMs;
      log.info(
        { groupId: payload.groupId, memberId: payload.memberId, assignment: payload.memberAssignment, ms: payload.duration },
        'joined the consumer group',
      );
      onJoin();
    });
    consumer.on(events.REBALANCING, ({ payload }) => {
      log.info({ groupId: payload.groupId, memberId: payload.memberId }, 'consumer group is rebalancing');
    });
    consumer.on(events.CRASH, ({ payload }) => this.crashed(consumer, payload.error, payload.restart));
  }

  /** The CRASH event of `consumer`. */
  private crashed(consumer: Consumer, error: Error, restart: boolean): void {
    const { log } = this.options;
    if (this.options.stopping()) {
      log.debug({ err: error }, 'consumer crashed while stopping');
      return;
    }
    if (restart) {
      // Retriable: kafkajs restarts this consumer itself after its retry time.
      log.warn({ err: error }, 'Kafka consumer crashed; kafkajs restarts it');
      return;
    }
    const inMs = this.nextDelay();
    log.error(
      { err: error, restartInMs: inMs },
      `Kafka consumer of ${this.options.topic} crashed with a non-retriable error: no activations are read until it restarts`,
    );
    this.schedule(consumer, inMs);
  }

  /** No restart after this (the feed stops). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private nextDelay(): number {
    const inMs = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.maxMs);
    return inMs;
  }

  private schedule(crashed: Consumer, inMs: number): void {
    // One restart at a time: a second crash report of the same outage waits for it.
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.restart(crashed);
    }, inMs);
    // A pending restart must not keep a stopping process alive.
    this.timer.unref();
  }

  private async restart(crashed: Consumer): Promise<void> {
    const { log } = this.options;
    if (this.options.stopping()) return;
    await crashed.disconnect().catch(() => undefined);
    try {
      await this.options.launch();
      log.info('Kafka consumer restarted');
    } catch (error) {
      const next = this.nextDelay();
      log.error({ err: error, restartInMs: next }, `restarting the Kafka consumer of ${this.options.topic} failed`);
      const current = this.options.current();
      if (current && !this.options.stopping()) this.schedule(current, next);
    }
  }
}
