import t from 'tap';
import { LOG_COLLECTION_ISSUE, logsTruncated } from '../../../protocol/error-texts.js';
import { LogCollector } from '../../../invoker/docker/log-collector.js';
import { LOG_LINE_OVERHEAD_BYTES, LOG_SENTINEL, LogClock, type StreamName } from '../../../invoker/docker/log-lines.js';

const T = '2024-05-31T15:28:37.251871463Z';

function feed(c: LogCollector, stream: StreamName, text: string): void {
  c.onLine(stream, T, text, Buffer.byteLength(text));
}

function sentinels(c: LogCollector): void {
  feed(c, 'stdout', LOG_SENTINEL);
  feed(c, 'stderr', LOG_SENTINEL);
}

const textOf = (line: string): string => line.slice(31);

t.test('an activation: lines until both sentinels, formatted', async (t) => {
  const c = new LogCollector(new LogClock());
  c.beginActivation();
  feed(c, 'stdout', 'hello');
  feed(c, 'stderr', 'warn');
  sentinels(c);
  const r = await c.collect();
  t.same(r.lines, [`${T} stdout: hello`, `${T} stderr: warn`]);
  t.equal(r.complete, true);
  t.equal(r.truncated, false);
  t.equal(r.bytes, 2 * LOG_LINE_OVERHEAD_BYTES + 5 + 4);
});

t.test('collect waits for sentinels that arrive later', async (t) => {
  const c = new LogCollector(new LogClock());
  c.beginActivation();
  feed(c, 'stdout', 'a');
  const start = performance.now();
  const p = c.collect({ waitMs: 2000 });
  setTimeout(() => sentinels(c), 20);
  const r = await p;
  t.ok(performance.now() - start < 1000, 'resolved on the sentinels, not the timeout');
  t.equal(r.complete, true);
  t.same(r.lines.map(textOf), ['stdout: a']);
});

t.test('a missing sentinel: bounded wait, issue line, incomplete', async (t) => {
  const c = new LogCollector(new LogClock());
  c.beginActivation();
  feed(c, 'stdout', 'a');
  feed(c, 'stdout', LOG_SENTINEL);
  const start = performance.now();
  const r = await c.collect({ waitMs: 50 });
  const waited = performance.now() - start;
  t.ok(waited >= 45 && waited < 1000, `waited ${waited} ms`);
  t.equal(r.complete, false);
  t.equal(r.lines.length, 2);
  t.equal(r.lines[1]?.slice(31), `stderr: ${LOG_COLLECTION_ISSUE}`);
  t.match(r.lines[1] ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stderr: /);
});

t.test('lines between activations never reach the next activation', async (t) => {
  const c = new LogCollector(new LogClock());
  feed(c, 'stdout', 'before any activation');
  c.beginActivation();
  feed(c, 'stdout', 'mine');
  sentinels(c);
  feed(c, 'stdout', 'after my sentinel');
  t.same((await c.collect()).lines.map(textOf), ['stdout: mine']);
  feed(c, 'stdout', 'stray from a timer');
  feed(c, 'stderr', 'stray on stderr');
  c.beginActivation();
  feed(c, 'stdout', 'next');
  sentinels(c);
  t.same((await c.collect()).lines.map(textOf), ['stdout: next']);
});

t.test('an unterminated last write glued to the sentinel is kept', async (t) => {
  const c = new LogCollector(new LogClock());
  c.beginActivation();
  feed(c, 'stdout', `no newline${LOG_SENTINEL}`);
  feed(c, 'stderr', LOG_SENTINEL);
  const r = await c.collect();
  t.same(r.lines.map(textOf), ['stdout: no newline']);
  t.equal(r.complete, true);
});

t.test('byte limit: lines kept in order up to the limit, then the truncation line', async (t) => {
  const c = new LogCollector(new LogClock());
  c.beginActivation();
  for (let i = 0; i < 100; i++) feed(c, 'stdout', `line ${String(i).padStart(3, '0')}`); // 8 + 39 = 47 bytes each
  sentinels(c);
  const limit = 47 * 10 + 20;
  const r = await c.collect({ limitBytes: limit });
  t.equal(r.truncated, true);
  t.equal(r.bytes, 470);
  t.equal(r.lines.length, 11);
  t.equal(textOf(r.lines[9] ?? ''), 'stdout: line 009');
  t.equal(textOf(r.lines[10] ?? ''), `stderr: ${logsTruncated(limit)}`);
  t.equal(r.complete, true);
});

t.test('limit given at beginActivation bounds buffering', async (t) => {
  const c = new LogCollector(new LogClock());
  c.beginActivation({ limitBytes: 100 });
  for (let i = 0; i < 10_000; i++) feed(c, 'stdout', 'x'.repeat(40));
  sentinels(c);
  const r = await c.collect();
  t.equal(r.lines.length, 2, 'one 79-byte line fits in 100, then the truncation line');
  t.equal(r.bytes, 79);
  t.equal(r.truncated, true);
  t.equal(textOf(r.lines[1] ?? ''), `stderr: ${logsTruncated(100)}`);
});

t.test('limit 0: no lines, still waits for the sentinels to stay aligned', async (t) => {
  const c = new LogCollector(new LogClock());
  c.beginActivation();
  const p = c.collect({ limitBytes: 0, waitMs: 2000 });
  feed(c, 'stdout', 'x');
  sentinels(c);
  const r = await p;
  t.equal(r.complete, true);
  t.equal(r.bytes, 0);
  t.equal(r.lines.length, 1, 'only the truncation line');
});

t.test('output ended: collect resolves at once, incomplete', async (t) => {
  const c = new LogCollector(new LogClock());
  c.beginActivation();
  feed(c, 'stdout', 'last words');
  const start = performance.now();
  const p = c.collect({ waitMs: 5000 });
  c.end('container exited');
  const r = await p;
  t.ok(performance.now() - start < 1000);
  t.equal(r.complete, false);
  t.same(r.lines.map(textOf), ['stdout: last words', `stderr: ${LOG_COLLECTION_ISSUE}`]);
  t.equal(c.ended, 'container exited');
  c.beginActivation();
  const again = await c.collect({ waitMs: 5000 });
  t.equal(again.complete, false, 'stays ended');
});

t.test('misuse is reported', async (t) => {
  const c = new LogCollector(new LogClock());
  await t.rejects(c.collect(), /without beginActivation/);
  c.beginActivation();
  const p = c.collect({ waitMs: 30 });
  await t.rejects(c.collect(), /another collect/);
  t.throws(() => c.beginActivation(), /collect\(\) is pending/);
  await p;
});
