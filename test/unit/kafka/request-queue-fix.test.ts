// kafkajs's request queue must not run a timer while nothing is pending
// (invoker/kafka/request-queue-fix.ts).
import { createRequire } from 'node:module';
import t from 'tap';
import { fixKafkajsRequestQueue } from '../../../invoker/kafka/request-queue-fix.js';

interface Queue {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  canSendSocketRequestImmediately(): boolean;
  sendSocketRequest(request: unknown): void;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
}

const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js') as new (options: object) => Queue;

/** A real kafkajs queue; only sending is replaced (no socket). */
function queue(fields: Partial<Queue>): Queue {
  const q = new RequestQueue({ maxInFlightRequests: 1, requestTimeout: 30_000, enforceRequestTimeout: true, clientId: 'test', broker: 'b:9092', logger: { debug: () => undefined } });
  return Object.assign(q, fields);
}

t.test('applies once and reports it', async (t) => {
  t.equal(fixKafkajsRequestQueue(), true);
  t.equal(fixKafkajsRequestQueue(), true);
});

t.test('an idle queue schedules no timer (kafkajs 2.2.4 re-armed a 1 ms one forever)', async (t) => {
  fixKafkajsRequestQueue();
  const q = queue({ canSendSocketRequestImmediately: () => true });
  q.checkPendingRequests();
  t.equal(q.throttleCheckTimeoutId, null, 'no timer with nothing pending');
  // Throttled but nothing waiting: still nothing to do.
  q.throttledUntil = Date.now() + 5_000;
  q.scheduleCheckPendingRequests();
  t.equal(q.throttleCheckTimeoutId, null);
});

t.test('a held-back request is checked again: after 10 ms, or when the throttle ends', async (t) => {
  fixKafkajsRequestQueue();
  const sent: unknown[] = [];
  let blocked = true;
  const q = queue({
    pending: ['request'],
    canSendSocketRequestImmediately: () => !blocked,
    sendSocketRequest: (r) => sent.push(r),
  });
  q.scheduleCheckPendingRequests();
  t.not(q.throttleCheckTimeoutId, null, 'a timer while a request waits');
  blocked = false;
  await new Promise((resolve) => setTimeout(resolve, 40));
  t.same(sent, ['request'], 'sent by the timer');
  t.equal(q.throttleCheckTimeoutId, null, 'and no timer after the queue emptied');

  const throttled = queue({ pending: ['later'], throttledUntil: Date.now() + 60, canSendSocketRequestImmediately: () => Date.now() >= throttled.throttledUntil, sendSocketRequest: (r) => sent.push(r) });
  throttled.scheduleCheckPendingRequests();
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.same(sent, ['request'], 'not before the throttle ends');
  await new Promise((resolve) => setTimeout(resolve, 80));
  t.same(sent, ['request', 'later'], 'sent when it ends');
  clearTimeout(throttled.throttleCheckTimeoutId ?? undefined);
});
