/**
 * The pooled container's state machine: each transition starts only from
 * the states it allows, and says which one it found otherwise.
 */
import t from 'tap';
import { IllegalTransitionError, PooledContainer } from '../../../invoker/pool/pooled-container.js';

const make = (origin: 'prewarm' | 'cold') =>
  new PooledContainer<{ name: string }>({ kind: 'nodejs:20', image: 'img', memoryMb: 256, origin, specConcurrency: 1, stemCell: undefined, now: 0 });

t.test('a cold container: created busy, idle, claimed, paused, unpaused, destroyed', async (t) => {
  const c = make('cold');
  t.equal(c.state, 'creating');
  t.equal(c.reusable, false);
  c.markCreated({ name: 'wsk1' }, 1);
  t.equal(c.state, 'busy');
  c.idle(2);
  t.equal(c.state, 'warm-idle');
  t.equal(c.lastUsedAt, 2);
  t.ok(c.evictable);
  t.equal(c.claim(3), true, 'a warm-idle container runs at once');
  t.equal(c.inFlight, 1);
  t.notOk(c.evictable, 'not while a run is in flight');
  c.inFlight = 0;
  c.idle(4);
  c.beginPause(Promise.resolve());
  t.equal(c.state, 'pausing');
  t.equal(c.claim(5), false, 'a pausing container must be resumed first');
  t.equal(c.pauseSettled(), true);
  t.equal(c.state, 'paused');
  c.beginUnpause(Promise.resolve());
  t.equal(c.unpauseSettled(), true);
  t.equal(c.state, 'busy', 'claimed while paused: busy once running');
  c.beginDestroy();
  t.equal(c.state, 'destroying');
  t.equal(c.pauseSettled(), false, 'a late pause result does not revive it');
});

t.test('a stem cell: created prewarm, leased once', async (t) => {
  const c = make('prewarm');
  c.markCreated({ name: 'wsk2' }, 1);
  t.equal(c.state, 'prewarm');
  t.ok(c.servesAsStemCell({ kind: 'nodejs:20', memoryMb: 256, image: 'img', concurrency: 1 }));
  t.notOk(c.servesAsStemCell({ kind: 'nodejs:20', memoryMb: 512, image: 'img', concurrency: 1 }));
  t.notOk(c.servesAsStemCell({ kind: 'nodejs:20', memoryMb: 256, image: 'img', concurrency: 2 }));
  c.leaseStemCell(2);
  t.equal(c.state, 'busy');
  t.equal(c.inFlight, 1);
  t.throws(() => c.leaseStemCell(3), IllegalTransitionError, 'not twice');
});

t.test('transitions from the wrong state are refused, naming both', async (t) => {
  const c = make('cold');
  t.throws(() => c.idle(1), /idling of a container being created from state 'creating'/);
  t.throws(() => c.claim(1), IllegalTransitionError);
  c.markCreated({ name: 'wsk3' }, 1);
  t.throws(() => c.markCreated({ name: 'again' }, 2), /created of wsk3 from state 'busy'/);
  t.throws(() => c.beginPause(Promise.resolve()), /pausing of wsk3 from state 'busy'/);
  t.throws(() => c.beginUnpause(Promise.resolve()), IllegalTransitionError);
  c.doomed = true;
  t.equal(c.reusable, false, 'a doomed container is never reused');
});
