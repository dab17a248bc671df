// Exits 0 once the broker at argv[2] answers a metadata request as a cluster
// with a controller, so that topic creation right after start-up succeeds.
import kafkajs from 'kafkajs';

const { Kafka, logLevel } = kafkajs;
const kafka = new Kafka({
  brokers: [process.argv[2] ?? '127.0.0.1:9092'],
  clientId: 'services-ready-probe',
  logLevel: logLevel.NOTHING,
  retry: { retries: 0 },
  connectionTimeout: 1000,
});
const admin = kafka.admin();
try {
  await admin.connect();
  const cluster = await admin.describeCluster();
  process.exit(cluster.controller === null ? 1 : 0);
} catch {
  process.exit(1);
} finally {
  await admin.disconnect().catch(() => {});
}
