/**
 * A fix for kafkajs 2.2.4's request queue, applied once before the first
 * client is built (createKafkaClient, controller-lb's kafka-support.ts).
 *
 * `RequestQueue.checkPendingRequests()` always ends by calling
 * `scheduleCheckPendingRequests()`, which, when nothing is throttled
 * (`throttledUntil` is -1), passes `-1 - Date.now()` to setTimeout; Node
 * turns that into 1 ms (and, since Node 23, prints TimeoutNegativeWarning).
 * So every broker connection runs a timer every millisecond for its whole
 * life: on an idle invoker that was 33 of its 40 ms of CPU per second.
 * Reported upstream as tulios/kafkajs#1556, #1704 and #1751 (fixes in PRs
 * #1667 and #1768, not released; kafkajs has had no release since 2.2.4).
 *
 * The replacement schedules a check only while requests are pending: at the
 * end of a throttle, or after CHECK_PENDING_REQUESTS_INTERVAL (10 ms, as
 * kafkajs does) when the in-flight limit holds them back. Nothing else needs
 * the timer: `push()` schedules when it queues a request, and every response
 * (`fulfillRequest`) checks the queue again.
 */
import { createRequire } from 'node:module';

interface RequestQueueInternals {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
}

/** kafkajs's own value (src/network/requestQueue/index.js). */
const CHECK_PENDING_REQUESTS_INTERVAL_MS = 10;
const FIXED = Symbol.for('openwhisk-invoker-ts.kafkajs-request-queue-fixed');

/** Idempotent; returns whether the prototype is (now) the fixed one. */
export function fixKafkajsRequestQueue(): boolean {
  const require = createRequire(import.meta.url);
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueueInternals & { [FIXED]?: true } };
  const proto = RequestQueue.prototype;
  if (proto[FIXED]) return true;
  if (typeof proto.scheduleCheckPendingRequests !== 'function' || typeof proto.checkPendingRequests !== 'function') {
    // Another kafkajs layout: leave it alone rather than guess.
    return false;
  }
  proto.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: RequestQueueInternals): void {
    if (this.throttleCheckTimeoutId || this.pending.length === 0) return;
    const untilUnthrottled = this.throttledUntil - Date.now();
    this.throttleCheckTimeoutId = setTimeout(
      () => {
        this.throttleCheckTimeoutId = null;
        this.checkPendingRequests();
      },
      untilUnthrottled > 0 ? untilUnthrottled : CHECK_PENDING_REQUESTS_INTERVAL_MS,
    );
  };
  proto[FIXED] = true;
  return true;
}
