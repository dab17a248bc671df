import t from 'tap';
import { LOG_COLLECTION_ISSUE, logsTruncated } from '../../../protocol/error-texts.js';
import { TaggedLogRouter, type DroppedLogLineReason } from '../../../invoker/docker/log-router.js';
import { LOG_LINE_OVERHEAD_BYTES, LOG_SENTINEL, LogClock, StampedLineReader, type StreamName } from '../../../invoker/docker/log-lines.js';
import { MAX_TAGGED_ID_LENGTH, MIN_TAGGED_LINE_BYTES, TAG_END, newLogTagKey, tagEnd, tagLine, tagPrefix } from '../../../invoker/docker/log-tags.js';
import { STDERR, STDOUT } from '../../../invoker/docker/attach-demuxer.js';

const T = '2024-05-31T15:28:37.251871463Z';
const KEY = '0123456789abcdef';
const A = 'a'.repeat(32);
const B = 'b'.repeat(32);
const textOf = (line: string): string => line.slice(31);

function router(options: { key?: string | null; announce?: boolean } = {}) {
  const drops: DroppedLogLineReason[] = [];
  const key = options.key === null ? undefined : (options.key ?? KEY);
  const r = new TaggedLogRouter(new LogClock(), key, (reason) => drops.push(reason));
  if (options.announce ?? true) r.announce();
  const feed = (stream: StreamName, text: string, continued = false) => r.onLine(stream, T, text, Buffer.byteLength(text), continued);
  const tagged = (stream: StreamName, id: string, text: string) => feed(stream, tagLine(KEY, id, text));
  const end = (id: string) => {
    tagged('stdout', id, LOG_SENTINEL);
    tagged('stderr', id, LOG_SENTINEL);
  };
  return { r, drops, feed, tagged, end };
}

t.test('tagEnd: only lines that start with the container prefix and hold a bounded id', async (t) => {
  const p = tagPrefix(KEY);
  t.equal(tagEnd(p, tagLine(KEY, A, 'x')), p.length + 32);
  t.equal(tagEnd(p, tagLine(KEY, A, '')), p.length + 32, 'empty text');
  t.equal(tagEnd(p, tagLine(KEY, A, `more${TAG_END}tags`)), p.length + 32, 'the first end counts');
  t.equal(tagEnd(p, `hello ${tagLine(KEY, A, 'x')}`), -1, 'not at the start');
  t.equal(tagEnd(p, tagLine('fedcba9876543210', A, 'x')), -1, 'another key');
  t.equal(tagEnd(p, `${p}${A}no end`), -1, 'no end mark');
  t.equal(tagEnd(p, `${p}${TAG_END}x`), -1, 'empty id');
  t.equal(tagEnd(p, tagLine(KEY, 'i'.repeat(MAX_TAGGED_ID_LENGTH), 'x')), p.length + MAX_TAGGED_ID_LENGTH);
  t.equal(tagEnd(p, tagLine(KEY, 'i'.repeat(MAX_TAGGED_ID_LENGTH + 1), 'x')), -1, 'id too long');
  t.equal(tagEnd(p, ''), -1);
  t.equal(tagEnd(p, '\x1e'), -1);
  t.match(newLogTagKey(), /^[0-9a-f]{16}$/);
  t.not(newLogTagKey(), newLogTagKey());
});

t.test('interleaved activations: each gets its own lines, untagged, in order, ending on its own sentinels', async (t) => {
  const { r, drops, tagged, end } = router();
  r.beginActivation({ activationId: A });
  r.beginActivation({ activationId: B });
  tagged('stdout', A, 'a1');
  tagged('stdout', B, 'b1');
  tagged('stderr', A, 'a-err');
  tagged('stdout', A, 'a2');
  tagged('stderr', B, 'b-err');
  end(B);
  const b = await r.collect({ activationId: B, waitMs: 5000 });
  t.same(b.lines.map(textOf), ['stdout: b1', 'stderr: b-err']);
  t.equal(b.complete, true);
  t.equal(b.bytes, 2 * LOG_LINE_OVERHEAD_BYTES + 2 + 5, 'bytes count the text, not the tag');
  tagged('stdout', A, 'a3');
  const pa = r.collect({ activationId: A, waitMs: 5000 });
  end(A);
  const a = await pa;
  t.same(a.lines.map(textOf), ['stdout: a1', 'stderr: a-err', 'stdout: a2', 'stdout: a3']);
  t.equal(a.complete, true);
  t.same(drops, []);
  t.equal(r.openActivations, 0);
});

t.test('untagged lines are dropped and counted; bare sentinels are not counted', async (t) => {
  const { r, drops, feed, tagged, end } = router();
  feed('stdout', 'runtime start-up');
  r.beginActivation({ activationId: A });
  feed('stdout', 'child process output');
  feed('stderr', `looks ${tagLine(KEY, A, 'tagged')} but is not at the start`);
  feed('stdout', tagLine('fedcba9876543210', A, 'another container key'));
  feed('stdout', LOG_SENTINEL);
  tagged('stdout', A, 'mine');
  end(A);
  const a = await r.collect({ activationId: A });
  t.same(a.lines.map(textOf), ['stdout: mine']);
  t.same(drops, ['untagged', 'untagged', 'untagged', 'untagged']);
});

t.test('late lines (after the sentinel, after collect, unknown ids) are dropped, counted, and reach nobody else', async (t) => {
  const { r, drops, tagged, end } = router();
  r.beginActivation({ activationId: A });
  r.beginActivation({ activationId: B });
  tagged('stdout', A, 'a1');
  tagged('stdout', A, LOG_SENTINEL);
  tagged('stdout', A, 'a after its stdout sentinel');
  tagged('stderr', A, 'a on stderr, still open');
  tagged('stderr', A, LOG_SENTINEL);
  const a = await r.collect({ activationId: A });
  t.same(a.lines.map(textOf), ['stdout: a1', 'stderr: a on stderr, still open']);
  tagged('stdout', A, 'a timer after collect');
  tagged('stderr', 'c'.repeat(32), 'an activation never opened here');
  tagged('stdout', A, LOG_SENTINEL);
  tagged('stdout', B, 'b1');
  end(B);
  const b = await r.collect({ activationId: B });
  t.same(b.lines.map(textOf), ['stdout: b1']);
  t.same(drops, ['late', 'late', 'late'], 'a late sentinel is not counted');
});

t.test('the log limit applies per activation', async (t) => {
  const { r, tagged, end } = router();
  r.beginActivation({ activationId: A, limitBytes: 10 * (LOG_LINE_OVERHEAD_BYTES + 8) });
  r.beginActivation({ activationId: B });
  for (let i = 0; i < 100; i++) {
    tagged('stdout', A, `line ${String(i).padStart(3, '0')}`);
    tagged('stdout', B, `line ${String(i).padStart(3, '0')}`);
  }
  end(A);
  end(B);
  const a = await r.collect({ activationId: A });
  t.equal(a.truncated, true);
  t.equal(a.lines.length, 11);
  t.equal(textOf(a.lines[9] ?? ''), 'stdout: line 009');
  t.equal(textOf(a.lines[10] ?? ''), `stderr: ${logsTruncated(470)}`);
  const b = await r.collect({ activationId: B });
  t.equal(b.truncated, false);
  t.equal(b.lines.length, 100);
  const c = router();
  c.r.beginActivation({ activationId: A });
  c.tagged('stdout', A, 'x'.repeat(100));
  c.end(A);
  const lower = await c.r.collect({ activationId: A, limitBytes: 50 });
  t.same(lower.lines.map(textOf), [`stderr: ${logsTruncated(50)}`], 'a lower limit at collect applies too');
});

t.test('pieces of a line cut at the cap follow its first piece', async (t) => {
  const { r, drops } = router();
  const clock = new LogClock();
  const reader = new StampedLineReader(clock, r.onLine, MIN_TAGGED_LINE_BYTES);
  r.beginActivation({ activationId: A });
  r.beginActivation({ activationId: B });
  const long = 'x'.repeat(700);
  reader.push(STDOUT, Buffer.from(`${tagLine(KEY, A, long)}\n`));
  reader.push(STDOUT, Buffer.from(`${tagLine(KEY, B, 'short')}\n`));
  // A long untagged line: no piece of it reaches anyone, and it counts once.
  reader.push(STDERR, Buffer.from(`${'u'.repeat(600)}\n`));
  reader.push(STDOUT, Buffer.from(`${tagLine(KEY, A, LOG_SENTINEL)}\n${tagLine(KEY, B, LOG_SENTINEL)}\n`));
  reader.push(STDERR, Buffer.from(`${tagLine(KEY, A, LOG_SENTINEL)}\n${tagLine(KEY, B, LOG_SENTINEL)}\n`));
  const a = await r.collect({ activationId: A });
  const pieces = a.lines.map((l) => textOf(l).slice('stdout: '.length));
  t.ok(pieces.length >= 3, `${pieces.length} pieces`);
  t.equal(pieces.join(''), long, 'every byte, tag stripped');
  t.equal(a.bytes, pieces.length * LOG_LINE_OVERHEAD_BYTES + 700);
  const b = await r.collect({ activationId: B });
  t.same(b.lines.map(textOf), ['stdout: short']);
  t.same(drops, ['untagged']);
});

t.test('a missing sentinel: bounded wait, issue line; the end of the output resolves every pending collect', async (t) => {
  const { r, tagged } = router();
  r.beginActivation({ activationId: A });
  r.beginActivation({ activationId: B });
  tagged('stdout', A, 'a');
  tagged('stdout', A, LOG_SENTINEL);
  const start = performance.now();
  const a = await r.collect({ activationId: A, waitMs: 50 });
  const waited = performance.now() - start;
  t.ok(waited >= 45 && waited < 1000, `waited ${waited} ms`);
  t.equal(a.complete, false);
  t.same(a.lines.map(textOf), ['stdout: a', `stderr: ${LOG_COLLECTION_ISSUE}`]);

  tagged('stderr', B, 'last words');
  const pb = r.collect({ activationId: B, waitMs: 5000 });
  const endStart = performance.now();
  r.end('container exited');
  const b = await pb;
  t.ok(performance.now() - endStart < 1000);
  t.equal(b.complete, false);
  t.same(b.lines.map(textOf), ['stderr: last words', `stderr: ${LOG_COLLECTION_ISSUE}`]);
  t.equal(r.ended, 'container exited');
  r.beginActivation({ activationId: 'c'.repeat(32) });
  const c = await r.collect({ activationId: 'c'.repeat(32), waitMs: 5000 });
  t.equal(c.complete, false, 'stays ended, no wait');
});

t.test('the wait for sentinels goes on while the output moves, up to its bound', async (t) => {
  const { r, tagged } = router();
  r.beginActivation({ activationId: A });
  r.beginActivation({ activationId: B });
  // B floods while A's sentinels are queued behind it.
  const flood = setInterval(() => tagged('stdout', B, 'busy'), 10);
  t.teardown(() => clearInterval(flood));
  setTimeout(() => {
    tagged('stdout', A, LOG_SENTINEL);
    tagged('stderr', A, LOG_SENTINEL);
  }, 200);
  let start = performance.now();
  const a = await r.collect({ activationId: A, waitMs: 50, maxWaitMs: 2000 });
  t.equal(a.complete, true, 'waited past 50 ms because lines kept coming');
  t.ok(performance.now() - start < 1000);
  start = performance.now();
  const b = await r.collect({ activationId: B, waitMs: 50, maxWaitMs: 300 });
  const waited = performance.now() - start;
  t.equal(b.complete, false);
  t.ok(waited >= 290 && waited < 1000, `bounded: ${Math.round(waited)} ms`);
  clearInterval(flood);
  r.beginActivation({ activationId: A.replace(/a/g, 'c') });
  start = performance.now();
  await r.collect({ activationId: A.replace(/a/g, 'c'), waitMs: 50, maxWaitMs: 5000 });
  t.ok(performance.now() - start < 300, 'a quiet output: gives up after waitMs');
});

t.test('a runtime that does not tag: nothing attributed, collect resolves at once', async (t) => {
  const { r, drops, feed } = router({ announce: false });
  r.beginActivation({ activationId: A });
  feed('stdout', 'from some run');
  feed('stdout', LOG_SENTINEL);
  feed('stderr', LOG_SENTINEL);
  const start = performance.now();
  t.same(await r.collect({ activationId: A, waitMs: 5000 }), { lines: [], complete: true, truncated: false, bytes: 0 });
  t.ok(performance.now() - start < 1000);
  t.same(drops, ['untagged']);
  t.equal(r.tagging, false);

  const none = router({ key: null, announce: true });
  t.equal(none.r.tagging, false, 'no key: an announcement cannot be believed');
  none.r.beginActivation({ activationId: A });
  none.tagged('stdout', A, 'x');
  t.same((await none.r.collect({ activationId: A })).lines, []);
});

t.test('a tagged line is proof enough without the announcement', async (t) => {
  const { r, tagged, end } = router({ announce: false });
  r.beginActivation({ activationId: A });
  tagged('stderr', A, 'Error during initialization');
  end(A);
  t.same((await r.collect({ activationId: A })).lines.map(textOf), ['stderr: Error during initialization']);
  t.equal(r.tagging, true);
});

t.test('misuse is reported', async (t) => {
  const { r } = router();
  t.throws(() => r.beginActivation(), /needs the activation id/);
  r.beginActivation({ activationId: A });
  t.throws(() => r.beginActivation({ activationId: A }), /already open/);
  await t.rejects(r.collect({ activationId: B }), /without beginActivation/);
  await t.rejects(r.collect(), /without beginActivation/);
  const p = r.collect({ activationId: A, waitMs: 30 });
  await t.rejects(r.collect({ activationId: A }), /twice/);
  await p;
});
