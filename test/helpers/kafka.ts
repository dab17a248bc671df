/**
 * kafkajs clients for test code, with the request-queue fix the invoker and
 * the controller apply (invoker/kafka/request-queue-fix.ts), so that a test
 * process does not spin a 1 ms timer per broker connection.
 */
import { Kafka, type KafkaConfig } from 'kafkajs';
import { fixKafkajsRequestQueue } from '../../invoker/kafka/request-queue-fix.js';

export function testKafka(config: KafkaConfig): Kafka {
  fixKafkajsRequestQueue();
  return new Kafka(config);
}
