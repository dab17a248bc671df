import t from 'tap';
import {
  LOG_LINE_OVERHEAD_BYTES,
  LineSplitter,
  LogClock,
  StampedLineReader,
  formatLogLine,
  utf8Cut,
} from '../../../invoker/docker/log-lines.js';
import { STDERR, STDOUT } from '../../../invoker/docker/attach-demuxer.js';

const RFC3339_NS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/;

function split(chunks: (string | Buffer)[], max?: number): { lines: string[]; sizes: number[]; splitter: LineSplitter } {
  const lines: string[] = [];
  const sizes: number[] = [];
  const splitter = new LineSplitter((text, bytes) => {
    lines.push(text);
    sizes.push(bytes);
  }, max);
  for (const c of chunks) splitter.push(typeof c === 'string' ? Buffer.from(c) : c);
  return { lines, sizes, splitter };
}

t.test('splits on newlines across chunks, keeping partial lines', async (t) => {
  const { lines, splitter } = split(['a', 'bc\nde', 'f\n\ng', 'h']);
  t.same(lines, ['abc', 'def', '']);
  t.ok(splitter.hasPartial);
  splitter.flush();
  t.same(lines, ['abc', 'def', '', 'gh']);
  t.notOk(splitter.hasPartial);
});

t.test('multi-byte characters split across chunks survive', async (t) => {
  const text = 'héllo wörld ✓ 😀\n';
  const bytes = Buffer.from(text);
  for (let i = 1; i < bytes.length; i++) {
    const { lines } = split([bytes.subarray(0, i), bytes.subarray(i)]);
    t.same(lines, ['héllo wörld ✓ 😀'], `cut at byte ${i}`);
  }
});

t.test('a line longer than the cap is split, nothing lost', async (t) => {
  const long = 'x'.repeat(50) + '\n';
  const { lines, sizes } = split([long.slice(0, 7), long.slice(7)], 16);
  t.same(lines, ['x'.repeat(16), 'x'.repeat(16), 'x'.repeat(16), 'xx']);
  t.same(sizes, [16, 16, 16, 2]);
  t.equal(lines.join(''), 'x'.repeat(50));
});

t.test('long line in one chunk, and long partial line without newline', async (t) => {
  const a = split(['y'.repeat(40) + '\n'], 16);
  t.same(a.lines, ['y'.repeat(16), 'y'.repeat(16), 'y'.repeat(8)]);
  const b = split(['z'.repeat(10), 'z'.repeat(10), 'z'.repeat(10)], 16);
  t.same(b.lines, ['z'.repeat(16)], 'emitted before any newline: bounded memory');
  b.splitter.flush();
  t.same(b.lines, ['z'.repeat(16), 'z'.repeat(14)]);
});

t.test('the cap never cuts a UTF-8 character', async (t) => {
  const text = '€'.repeat(20); // 3 bytes each
  const { lines, splitter } = split([text + '\n'], 16);
  splitter.flush();
  t.equal(lines.join(''), text);
  for (const l of lines) t.notMatch(l, /\uFFFD/);
  t.same(lines.map((l) => Buffer.byteLength(l)), [15, 15, 15, 15]);
  t.equal(utf8Cut(Buffer.from('ab€'), 3), 2);
  t.equal(utf8Cut(Buffer.from('abc'), 3), 3);
});

t.test('formatLogLine: 30-column time, stream, text', async (t) => {
  t.equal(formatLogLine('2024-05-31T15:28:37.251871463Z', 'stdout', 'hello'), '2024-05-31T15:28:37.251871463Z stdout: hello');
  t.equal(formatLogLine('2024-05-31T15:28:37.25Z', 'stderr', 'x'), '2024-05-31T15:28:37.25Z        stderr: x');
  const line = formatLogLine('2024-05-31T15:28:37.25Z', 'stderr', 'x');
  t.equal(line.indexOf(' stderr: '), 30);
  t.equal(LOG_LINE_OVERHEAD_BYTES, Buffer.byteLength(formatLogLine('2024-05-31T15:28:37.251871463Z', 'stdout', '')));
});

t.test('LogClock: RFC 3339 with nanoseconds, close to the wall clock, never backwards', async (t) => {
  const clock = new LogClock();
  let prev = '';
  for (let i = 0; i < 2000; i++) {
    const now = clock.now();
    t.equal(now.length, 30);
    if (!RFC3339_NS.test(now)) t.fail(`bad format ${now}`);
    if (now < prev) t.fail(`went backwards: ${prev} -> ${now}`);
    prev = now;
  }
  const ms = Date.parse(clock.now());
  t.ok(Math.abs(ms - Date.now()) < 50, 'within 50 ms of Date.now()');
  const a = clock.now();
  const b = clock.now();
  t.not(a, b, 'nanosecond resolution distinguishes consecutive reads');
});

t.test('LogClock resyncs to the wall clock without going back', async (t) => {
  const clock = new LogClock(1); // resync after 1 ms
  const first = clock.now();
  await new Promise((r) => setTimeout(r, 5));
  const second = clock.now();
  t.ok(second > first);
  t.ok(Math.abs(Date.parse(second) - Date.now()) < 50);
});

t.test('StampedLineReader: per-stream lines, one stamp per push', async (t) => {
  const got: [string, string, string, number][] = [];
  const reader = new StampedLineReader(new LogClock(), (stream, time, text, bytes) => got.push([stream, time, text, bytes]));
  reader.push(STDOUT, Buffer.from('one\ntwo\npar'));
  reader.push(STDERR, Buffer.from('err\n'));
  reader.push(STDOUT, Buffer.from('tial\n'));
  reader.push(STDERR, Buffer.from('unterminated'));
  reader.flush();
  t.same(
    got.map(([s, , text, bytes]) => [s, text, bytes]),
    [
      ['stdout', 'one', 3],
      ['stdout', 'two', 3],
      ['stderr', 'err', 3],
      ['stdout', 'partial', 7],
      ['stderr', 'unterminated', 12],
    ],
  );
  t.equal(got[0]?.[1], got[1]?.[1], 'lines of one read share its time');
  for (const [, time] of got) t.match(time, RFC3339_NS);
});

t.test('utf8Cut looks only before the cut (the rest of a character may not have arrived)', async (t) => {
  const euro = Buffer.from('€'); // e2 82 ac
  const ab = Buffer.from('ab');
  t.equal(utf8Cut(Buffer.concat([ab, euro]), 5), 5, 'complete character at the end');
  t.equal(utf8Cut(Buffer.concat([ab, euro.subarray(0, 1)]), 3), 2, 'lone lead byte at the end');
  t.equal(utf8Cut(Buffer.concat([ab, euro.subarray(0, 2)]), 4), 2, 'two of three bytes at the end');
  t.equal(utf8Cut(Buffer.concat([ab, euro, ab]), 4), 2, 'more data after the cut');
  t.equal(utf8Cut(Buffer.from([0x82, 0x82, 0x82, 0x82, 0x82]), 5), 5, 'invalid input: cut at max');
  const emoji = Buffer.from('a😀'); // 1 + 4 bytes
  for (let max = 2; max <= 4; max++) t.equal(utf8Cut(emoji, max), 1);
  t.equal(utf8Cut(emoji, 5), 5);
});

t.test('a partial line exactly at the cap ending in a lead byte is not cut', async (t) => {
  const euro = Buffer.from('€');
  const lines: string[] = [];
  const s = new LineSplitter((text) => lines.push(text), 16);
  s.push(Buffer.concat([Buffer.from('x'.repeat(15)), euro.subarray(0, 1)])); // exactly 16 bytes, char incomplete
  s.push(Buffer.concat([euro.subarray(1), Buffer.from('\n')]));
  t.same(lines, ['x'.repeat(15), '€']);
});

t.test('random text, random chunkings, small caps: every byte kept, no character cut', async (t) => {
  let seed = 7;
  const random = (): number => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
  const alphabet = ['a', 'b', ' ', 'é', '€', '😀', '\n'];
  for (let round = 0; round < 200; round++) {
    let text = '';
    const n = Math.floor(random() * 300);
    for (let i = 0; i < n; i++) text += alphabet[Math.floor(random() * alphabet.length)];
    const cap = 4 + Math.floor(random() * 20);
    const bytes = Buffer.from(text);
    const pieces: string[] = [];
    const s = new LineSplitter((line, size) => {
      if (size > cap || Buffer.byteLength(line) !== size || line.includes('\uFFFD')) t.fail(`bad piece ${JSON.stringify(line)} (cap ${cap})`);
      pieces.push(line);
    }, cap);
    for (let pos = 0; pos < bytes.length; ) {
      const size = 1 + Math.floor(random() * 12);
      s.push(bytes.subarray(pos, pos + size));
      pos += size;
    }
    s.flush();
    // Joining pieces without separators must give the text without its newlines.
    if (pieces.join('') !== text.replace(/\n/g, '')) t.fail(`round ${round}: content differs`);
  }
  t.pass('200 rounds');
});
