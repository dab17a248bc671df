/**
 * The types of the `invoker<N>` feed (activation-feed.ts): its options, its
 * interface, where its completions go, and its consumer settings. Apart so
 * that the completion producer and the wiring in index.ts name them without
 * importing the feed's implementation.
 */
import type { ConsumerConfig, Kafka } from 'kafkajs';
import type { InvokerInstanceId } from '../../protocol/index.js';
import type { Admission, CompletionRecord, RejectingActivationHandler } from '../invocation/activation-handler.js';
import type { ActivationIds } from '../invocation/activation-ids.js';
import type { Logger } from '../telemetry/logger.js';
import type { InvokerMetrics } from '../telemetry/metrics.js';

/** Where completions go (the completion producer). Logs its own failures; the feed only catches them. */
export interface CompletionSink {
  send(completion: CompletionRecord): Promise<unknown>;
}

export type FeedMetrics = Pick<InvokerMetrics, 'kafkaConsumerLag' | 'kafkaMessagesRejected'>;

/** The kafkajs consumer settings the feed lets callers tune (tests shorten the timeouts). */
export type FeedConsumerSettings = Pick<
  ConsumerConfig,
  'sessionTimeout' | 'heartbeatInterval' | 'rebalanceTimeout' | 'maxWaitTimeInMs' | 'maxBytesPerPartition'
>;

export interface ActivationFeedOptions {
  kafka: Kafka;
  /** This invoker: names the topic and answers for a handler that broke its promise. */
  instance: InvokerInstanceId;
  /** Runs readable messages (`handle`) and ends the activations of unreadable ones (`reject`). */
  handler: RejectingActivationHandler;
  admission: Admission;
  completions: CompletionSink;
  /** Ids running or finished recently (shared with HTTP push): a message with one of them is skipped. */
  ids?: ActivationIds;
  logger: Logger;
  metrics: FeedMetrics;
  /** Default `invoker<N>`. */
  topic?: string;
  /** Default: the topic name, as upstream. */
  groupId?: string;
  /**
   * Where a group without committed offsets starts. Default true, upstream's
   * `auto-offset-reset = earliest`: messages sent before the first join are run.
   */
  fromBeginning?: boolean;
  consumer?: FeedConsumerSettings;
  /**
   * Activations the feed may always have running, even when HTTP push fills
   * the invoker (no free slot): the overflow in Kafka is never starved by a
   * steady HTTP load, at the cost of that many activations waiting briefly
   * in the pool's queue. Default 1.
   */
  reservedSlots?: number;
  /** Restarts after a crash kafkajs does not recover from itself. */
  restartBackoff?: { initialMs?: number; maxMs?: number };
  now?: () => number;
}

export interface ActivationFeed {
  readonly topic: string;
  readonly groupId: string;
  /** Connects, subscribes and joins the group; rejects with what failed. */
  start(): Promise<void>;
  /**
   * Stops fetching and leaves the group (resolves when it has). Activations
   * already handed over continue; see `whenIdle`.
   */
  stop(): Promise<void>;
  /** Activations handed to the handler that have not ended yet. */
  inFlight(): number;
  /** Resolves when every handed-over activation has ended and its completion send has settled. */
  whenIdle(): Promise<void>;
  /** Resolves at the consumer's next (or current) group membership with an assignment. */
  whenJoined(): Promise<void>;
}

// kafkajs' defaults are tuned for throughput; an invoker wants a prompt resume
// after enable and a stop that does not wait out a 5 s long poll.
const DEFAULT_CONSUMER: Required<FeedConsumerSettings> = {
  sessionTimeout: 30_000,
  heartbeatInterval: 3_000,
  rebalanceTimeout: 60_000,
  maxWaitTimeInMs: 500,
  maxBytesPerPartition: 1_048_576 + 6_144,
};

/** The consumer settings in effect: `settings` over the defaults, an undefined field leaving its default. */
export function consumerSettings(settings: FeedConsumerSettings | undefined): Required<FeedConsumerSettings> {
  return { ...DEFAULT_CONSUMER, ...definedOnly(settings ?? {}) };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
