/**
 * Topic creation outlasts a broker's passing "does not host this
 * topic-partition" (a fresh broker answering the leader wait), and still
 * fails at once on an error that is not retriable. A fake admin: the real
 * broker answers this way only for a moment after it starts.
 */
import t from 'tap';
import { createTopicsRetrying } from '../../../invoker/kafka/topics.js';

const retriable = () => Object.assign(new Error('This server does not host this topic-partition'), { retriable: true });

t.test('retried while the broker answers with a retriable error', async (t) => {
  let calls = 0;
  const admin = {
    createTopics: async () => {
      calls++;
      if (calls < 3) throw retriable();
      return true;
    },
  };
  t.equal(await createTopicsRetrying(admin, { topics: [{ topic: 'x' }] }, { delayMs: 1 }), true);
  t.equal(calls, 3);
});

t.test('gives up after the attempts, and at once on other errors', async (t) => {
  let calls = 0;
  const always = { createTopics: async () => (calls++, Promise.reject(retriable())) };
  await t.rejects(createTopicsRetrying(always, { topics: [{ topic: 'x' }] }, { attempts: 4, delayMs: 1 }), /does not host/);
  t.equal(calls, 4);
  let other = 0;
  const denied = { createTopics: async () => (other++, Promise.reject(new Error('Topic authorization failed'))) };
  await t.rejects(createTopicsRetrying(denied, { topics: [{ topic: 'x' }] }, { delayMs: 1 }), /authorization/);
  t.equal(other, 1);
});
