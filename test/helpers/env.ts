/**
 * Where the real services started by scripts/services.sh live. scripts/test.sh
 * exports these; the defaults match what services.sh starts, so a single test
 * file can also be run by hand with `npx tap test/...` after `npm run services up`.
 */
export interface TestEnvironment {
  kafkaBrokers: string[];
  couchdbUrl: string;
  actionImageNodejs: string;
  /** The nodejs:24 runtime image (scripts/build-runtime-image.sh builds both). */
  actionImageNodejs24: string;
  dockerNetwork: string;
}

export function testEnvironment(): TestEnvironment {
  return {
    kafkaBrokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((b) => b.trim()),
    couchdbUrl: process.env.COUCHDB_URL ?? 'http://127.0.0.1:5984',
    actionImageNodejs: process.env.ACTION_IMAGE_NODEJS20 ?? 'whisk/action-nodejs-v20:local',
    actionImageNodejs24: process.env.ACTION_IMAGE_NODEJS24 ?? 'whisk/action-nodejs-v24:local',
    dockerNetwork: process.env.TEST_DOCKER_NETWORK ?? 'whisk-test',
  };
}

/**
 * The Kafka topic prefix (KAFKA_TOPIC_PREFIX, upstream's
 * `whisk.kafka.topics.prefix`) of every invoker and controller this test
 * process starts: unique per process, so that its pings on `<prefix>health`
 * and its messages never reach a controller of another run, or of a real
 * deployment sharing the broker. TEST_KAFKA_TOPIC_PREFIX overrides it.
 */
export const TEST_TOPIC_PREFIX =
  process.env.TEST_KAFKA_TOPIC_PREFIX ?? `wsktest${process.pid}x${Math.floor(Math.random() * 36 ** 4).toString(36)}-`;

/** A name unique to this test process, for databases, topics, labels. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}
