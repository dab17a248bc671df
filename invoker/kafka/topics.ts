/**
 * Topic creation with upstream's topic settings (OpenWhisk `whisk.kafka.topics`
 * in common/scala application.conf, wire spec section 5).
 *
 * The invoker creates what it consumes or needs to exist before anybody
 * produces: `invoker<N>` and `health`. `completed<C>` belongs to controller C,
 * which creates it at its own start; the invoker still ensures it on the first
 * completion for C, so that a topic auto-created by the broker (our test broker
 * has `auto.create.topics.enable=true`) never ends up with the broker's
 * defaults instead of the 1 MiB message limit and the short retention.
 */
import type { Admin, IResourceConfigEntry, Kafka } from 'kafkajs';
import type { ControllerInstanceId, InvokerInstanceId } from '../../protocol/index.js';
import type { Logger } from '../telemetry/logger.js';

/** Upstream payload limit (1 MiB) plus room for the message envelope: the broker's and topics' `max.message.bytes`. */
export const MAX_MESSAGE_BYTES = 1_048_576 + 6_144;

export const HEALTH_TOPIC = 'health';

/**
 * Topic names under upstream's `whisk.kafka.topics.prefix` (default empty):
 * upstream concatenates the prefix and the name with no separator
 * (`topicPrefix + "completed" + controller`, `s"${topicPrefix}invoker${id}"`,
 * `s"${topicPrefix}health"`; consumer groups are named the same way:
 * `<prefix>invoker<N>`, `<prefix>completed<C>`, `<prefix>health<C>`).
 * Invokers and controllers that share a broker see each other only when
 * their prefixes are equal. (`events`, under upstream's separate
 * `user-event.prefix`, is not produced here.)
 */
export interface TopicNames {
  readonly prefix: string;
  /** `<prefix>invoker<N>`: the invoker's activation topic, and its consumer group. */
  invoker(id: InvokerInstanceId | number): string;
  /** `<prefix>completed<C>`: controller C's acknowledgement topic, and its consumer group. */
  completed(id: ControllerInstanceId | string): string;
  /** `<prefix>health`: the invokers' pings. */
  readonly health: string;
  /** `<prefix>health<C>`: controller C's consumer group on the health topic. */
  healthGroup(id: ControllerInstanceId | string): string;
}

/** Kafka's legal topic characters; a topic name is at most 249 of them. */
const TOPIC_CHARS = /^[A-Za-z0-9._-]*$/;
/** Room left for the longest name under the prefix (`completed` + a controller id). */
export const MAX_TOPIC_PREFIX_LENGTH = 200;

/** Why `prefix` cannot prefix Kafka topic names, or undefined when it can. */
export function topicPrefixProblem(prefix: string): string | undefined {
  if (!TOPIC_CHARS.test(prefix)) return 'may only contain letters, digits, ".", "_" and "-" (Kafka topic names)';
  if (prefix.length > MAX_TOPIC_PREFIX_LENGTH) return `is longer than ${MAX_TOPIC_PREFIX_LENGTH} characters`;
  return undefined;
}

export function topicNames(prefix = ''): TopicNames {
  const problem = topicPrefixProblem(prefix);
  if (problem !== undefined) throw new RangeError(`Kafka topic prefix ${JSON.stringify(prefix)} ${problem}`);
  const controllerId = (id: ControllerInstanceId | string) => (typeof id === 'string' ? id : id.asString);
  return {
    prefix,
    invoker: (id) => `${prefix}invoker${typeof id === 'number' ? id : id.instance}`,
    completed: (id) => `${prefix}completed${controllerId(id)}`,
    health: `${prefix}${HEALTH_TOPIC}`,
    healthGroup: (id) => `${prefix}${HEALTH_TOPIC}${controllerId(id)}`,
  };
}

export type TopicKind = 'invoker' | 'completed' | 'health';

/** Per-kind topic settings as upstream creates them. */
export const TOPIC_CONFIGS: Readonly<Record<TopicKind, Readonly<Record<string, string>>>> = {
  // Activations wait here while the invoker is busy or down: keep them 48 h.
  invoker: {
    'segment.bytes': '536870912',
    'retention.bytes': '1073741824',
    'retention.ms': '172800000',
    'max.message.bytes': String(MAX_MESSAGE_BYTES),
  },
  // A completion nobody read within an hour is of no use to anyone.
  completed: {
    'segment.bytes': '536870912',
    'retention.bytes': '1073741824',
    'retention.ms': '3600000',
    'max.message.bytes': String(MAX_MESSAGE_BYTES),
  },
  health: {
    'segment.bytes': '536870912',
    'retention.bytes': '1073741824',
    'retention.ms': '3600000',
  },
};

export interface TopicManagerOptions {
  kafka: Kafka;
  logger: Logger;
  /** Replicas per topic; default: the broker's `default.replication.factor`. */
  replicationFactor?: number;
  /** Settings that replace upstream's per kind (tests shrink `max.message.bytes`). */
  configOverrides?: Partial<Record<TopicKind, Readonly<Record<string, string>>>>;
}

export interface TopicManager {
  /** Creates `name` with the settings of `kind` unless it exists. True if it was created now. */
  ensureTopic(kind: TopicKind, name: string): Promise<boolean>;
  /** The startup set: the invoker's own topic and the health topic. */
  ensureInvokerTopics(topics: { invokerTopic: string; healthTopic?: string }): Promise<void>;
  /**
   * `completed<C>`, once per topic per process; concurrent callers share one
   * attempt. Never rejects: a failure is logged and producing goes ahead
   * (the topic usually exists, created by its controller).
   */
  ensureCompletedTopic(name: string): Promise<void>;
  /** Deletes topics (tests and tools; the invoker never deletes topics). */
  deleteTopics(names: string[]): Promise<void>;
  close(): Promise<void>;
}

export function createTopicManager(options: TopicManagerOptions): TopicManager {
  const { kafka, logger } = options;
  const log = logger.child({ component: 'kafka-topics' });
  let admin: Admin | undefined;
  let connecting: Promise<Admin> | undefined;
  const completed = new Map<string, Promise<void>>();

  const connected = (): Promise<Admin> => {
    if (admin) return Promise.resolve(admin);
    connecting ??= (async () => {
      const a = kafka.admin();
      try {
        await a.connect();
      } catch (error) {
        connecting = undefined;
        throw new Error(`connecting the Kafka admin client: ${(error as Error).message}`, { cause: error });
      }
      admin = a;
      return a;
    })();
    return connecting;
  };

  const configEntries = (kind: TopicKind): IResourceConfigEntry[] =>
    Object.entries(options.configOverrides?.[kind] ?? TOPIC_CONFIGS[kind]).map(([name, value]) => ({ name, value }));

  const ensureTopic = async (kind: TopicKind, name: string): Promise<boolean> => {
    const a = await connected();
    try {
      // createTopics resolves false when the topic exists (its settings are left as they are).
      const created = await createTopicsRetrying(a, {
        waitForLeaders: true,
        topics: [
          {
            topic: name,
            numPartitions: 1,
            ...(options.replicationFactor === undefined ? {} : { replicationFactor: options.replicationFactor }),
            configEntries: configEntries(kind),
          },
        ],
      });
      if (created) log.info({ topic: name, kind }, 'created Kafka topic');
      return created;
    } catch (error) {
      throw new Error(`creating Kafka topic ${name}: ${describeKafkaError(error)}`, { cause: error });
    }
  };

  return {
    ensureTopic,

    async ensureInvokerTopics({ invokerTopic, healthTopic = HEALTH_TOPIC }) {
      await ensureTopic('invoker', invokerTopic);
      await ensureTopic('health', healthTopic);
    },

    ensureCompletedTopic(name) {
      let pending = completed.get(name);
      if (!pending) {
        pending = ensureTopic('completed', name).then(
          () => undefined,
          (error: unknown) => {
            // Forget the failure so that the next completion tries again.
            completed.delete(name);
            log.warn({ topic: name, err: error }, 'could not ensure the completed topic; producing anyway');
          },
        );
        completed.set(name, pending);
      }
      return pending;
    },

    async deleteTopics(names) {
      if (names.length === 0) return;
      const a = await connected();
      try {
        await a.deleteTopics({ topics: names });
      } catch (error) {
        throw new Error(`deleting Kafka topics ${names.join(', ')}: ${describeKafkaError(error)}`, { cause: error });
      }
    },

    async close() {
      const a = admin ?? (connecting ? await connecting.catch(() => undefined) : undefined);
      admin = undefined;
      connecting = undefined;
      await a?.disconnect();
    },
  };
}

/** kafkajs hides the per-item causes of an aggregate error; name them. */
export function describeKafkaError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const parts = [error.message];
  const nested = (error as { errors?: unknown }).errors;
  if (Array.isArray(nested)) {
    for (const e of nested) parts.push(e instanceof Error ? e.message : String(e));
  }
  const type = (error as { type?: unknown }).type;
  if (typeof type === 'string' && !error.message.includes(type)) parts.push(type);
  return parts.join('; ');
}

/**
 * `admin.createTopics`, retried while the broker answers with a retriable
 * error. A broker that has just started (or just created another topic)
 * answers the leader wait with UNKNOWN_TOPIC_OR_PARTITION for a moment, which
 * kafkajs's own retries do not always outlast; giving up then would stop an
 * invoker or controller at startup for a passing state of the broker.
 */
export async function createTopicsRetrying(
  admin: Pick<Admin, 'createTopics'>,
  args: Parameters<Admin['createTopics']>[0],
  options: { attempts?: number; delayMs?: number } = {},
): Promise<boolean> {
  const attempts = options.attempts ?? 10;
  for (let attempt = 1; ; attempt++) {
    try {
      return await admin.createTopics(args);
    } catch (error) {
      const retriable = (error as { retriable?: boolean }).retriable === true || /does not host this topic-partition/i.test((error as Error).message);
      if (!retriable || attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, options.delayMs ?? 500));
    }
  }
}
