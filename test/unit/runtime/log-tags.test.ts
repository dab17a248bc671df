/**
 * The runtime's per-activation log tags (runtimes/nodejs/proxy/log-tags.cjs)
 * in process, on fake streams, and read back by the invoker's router: the
 * framing the two sides agree on, without a container.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import { TaggedLogRouter, type DroppedLogLineReason } from '../../../invoker/docker/log-router.js';
import { LOG_SENTINEL, LogClock, StampedLineReader } from '../../../invoker/docker/log-lines.js';
import { STDERR, STDOUT } from '../../../invoker/docker/attach-demuxer.js';
import { LOG_TAGS_ENV, LOG_TAGS_HEADER, tagLine } from '../../../invoker/docker/log-tags.js';

interface FakeStream {
  written: string[];
  write(chunk: string | Uint8Array, encoding?: unknown, callback?: unknown): boolean;
}
interface LogTags {
  header: string;
  run<R>(id: unknown, fn: () => R): R;
  end(): boolean;
  release(id: string): void;
  wrap(service: Record<string, (body: unknown) => Promise<unknown>>): Record<string, (body: unknown) => Promise<unknown>>;
  readonly openCount: number;
}
interface LogTagsModule {
  ENV: string;
  HEADER: string;
  SENTINEL: string;
  fromEnvironment(env: Record<string, string | undefined>, streams?: object): LogTags | undefined;
  createLogTags(key: string, options: { stdout: FakeStream; stderr: FakeStream; installMonitor: boolean }): LogTags;
}

const MODULE_PATH = new URL('../../../runtimes/nodejs/proxy/log-tags.cjs', import.meta.url).pathname;
const runtime = createRequire(import.meta.url)(MODULE_PATH) as LogTagsModule;
const KEY = '0123456789abcdef';
const A = 'a'.repeat(32);
const B = 'b'.repeat(32);

function fakeStream(): FakeStream {
  const stream: FakeStream = {
    written: [],
    write(chunk: string | Uint8Array, encoding?: unknown, callback?: unknown) {
      stream.written.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      const cb = typeof encoding === 'function' ? encoding : callback;
      if (typeof cb === 'function') process.nextTick(cb as () => void);
      return true;
    },
  };
  return stream;
}

function setup() {
  const stdout = fakeStream();
  const stderr = fakeStream();
  const tags = runtime.createLogTags(KEY, { stdout, stderr, installMonitor: false });
  return { stdout, stderr, tags, out: () => stdout.written.join(''), err: () => stderr.written.join('') };
}

const line = (id: string, text: string) => `${tagLine(KEY, id, text)}\n`;

t.test('the two sides agree on names and the sentinel', async (t) => {
  t.equal(runtime.ENV, LOG_TAGS_ENV);
  t.equal(runtime.HEADER, LOG_TAGS_HEADER);
  t.equal(runtime.SENTINEL, LOG_SENTINEL);
});

t.test('fromEnvironment: only with a well-formed key, which leaves the environment', async (t) => {
  const env: Record<string, string | undefined> = { [LOG_TAGS_ENV]: KEY, OTHER: 'x' };
  const streams = { stdout: fakeStream(), stderr: fakeStream(), installMonitor: false };
  t.ok(runtime.fromEnvironment(env, streams));
  t.same(env, { OTHER: 'x' }, 'the key is gone before action code loads');
  t.equal(runtime.fromEnvironment({}, streams), undefined, 'not asked for: upstream behaviour');
  for (const bad of ['', 'short', 'ABCDEF0123456789', `${KEY}\n`, 'x'.repeat(16), '0'.repeat(65)]) {
    const e: Record<string, string | undefined> = { [LOG_TAGS_ENV]: bad };
    t.equal(runtime.fromEnvironment(e, streams), undefined, JSON.stringify(bad));
    t.same(e, {});
  }
});

t.test('lines inside an activation are tagged, one tag per line; outside they pass untouched', async (t) => {
  const { stdout, stderr, tags, out, err } = setup();
  stdout.write('before\n');
  tags.run(A, () => {
    stdout.write('one\n');
    stdout.write('two\nthree\n');
    stdout.write('\n');
    stderr.write('err\n');
  });
  t.equal(out(), `before\n${line(A, 'one')}${line(A, 'two')}${line(A, 'three')}${line(A, '')}`);
  t.equal(err(), line(A, 'err'));
});

t.test('partial lines wait for their newline, per activation and stream, so others cannot split them', async (t) => {
  const { stdout, tags, out } = setup();
  tags.run(A, () => stdout.write('a-start '));
  tags.run(B, () => stdout.write('b-whole\n'));
  tags.run(A, () => stdout.write('a-middle '));
  tags.run(B, () => stdout.write('b-start'));
  tags.run(A, () => stdout.write('a-end\na-next'));
  t.equal(out(), `${line(B, 'b-whole')}${line(A, 'a-start a-middle a-end')}`);
  tags.run(A, () => t.ok(tags.end()));
  t.equal(
    out(),
    `${line(B, 'b-whole')}${line(A, 'a-start a-middle a-end')}${line(A, 'a-next')}${line(A, LOG_SENTINEL)}`,
    'held text goes out before the sentinel',
  );
  tags.run(B, () => tags.end());
  t.ok(out().endsWith(`${line(B, 'b-start')}${line(B, LOG_SENTINEL)}`));
  t.equal(tags.openCount, 0);
});

t.test('a very long partial line goes out at 16 Ki characters', async (t) => {
  const { stdout, tags, out } = setup();
  tags.run(A, () => {
    for (let i = 0; i < 20; i++) stdout.write('x'.repeat(1024));
  });
  t.equal(out(), line(A, 'x'.repeat(16 * 1024)));
});

t.test('end() writes the activation sentinel on both streams; later writes of its context go out tagged at once', async (t) => {
  const { stdout, stderr, tags, out, err } = setup();
  let late: Promise<void> | undefined;
  tags.run(A, () => {
    stdout.write('work\n');
    // Scheduled inside: the timer keeps the activation's context.
    late = new Promise((resolve) =>
      setTimeout(() => {
        stdout.write('late partial');
        stderr.write('late\n');
        resolve();
      }, 1),
    );
    t.equal(tags.end(), true);
    t.equal(tags.end(), false, 'only once');
  });
  await late;
  t.equal(out(), `${line(A, 'work')}${line(A, LOG_SENTINEL)}${line(A, 'late partial')}`);
  t.equal(err(), `${line(A, LOG_SENTINEL)}${line(A, 'late')}`);
  t.equal(tags.end(), false, 'outside any activation: the caller writes the bare sentinels');
});

t.test('async context follows timers and promises; the context of the writer decides, not the time', async (t) => {
  const { stdout, tags, out } = setup();
  const runA = tags.run(A, async () => {
    await sleep(5);
    stdout.write('a after await\n');
    setTimeout(() => stdout.write('a from a timer\n'), 1);
    await sleep(20);
  });
  const runB = tags.run(B, async () => {
    await sleep(2);
    stdout.write('b after await\n');
    await Promise.resolve().then(() => stdout.write('b in a then\n'));
  });
  await Promise.all([runA, runB]);
  const lines = out().split('\n').filter((l) => l !== '');
  t.same(lines.filter((l) => l.includes(A)).map((l) => l.slice(l.indexOf('\x1f') + 1)), ['a after await', 'a from a timer']);
  t.same(lines.filter((l) => l.includes(B)).map((l) => l.slice(l.indexOf('\x1f') + 1)), ['b after await', 'b in a then']);
});

t.test('bytes, encodings and callbacks', async (t) => {
  const { stdout, tags, out } = setup();
  const euro = Buffer.from('€\n');
  let called = 0;
  tags.run(A, () => {
    stdout.write(euro.subarray(0, 1), () => called++);
    stdout.write(euro.subarray(1), 'buffer', () => called++);
    stdout.write(Buffer.from('hex\n').toString('hex'), 'hex');
  });
  await new Promise((r) => setImmediate(r));
  t.equal(out(), `${line(A, '€')}${line(A, 'hex')}`, 'a character split over two writes stays whole');
  t.equal(called, 2, 'callbacks are called, also for writes held back');
});

t.test('ids the invoker would not accept are not used as tags', async (t) => {
  const { stdout, tags, out } = setup();
  for (const id of [undefined, '', 'with space', 'x'.repeat(129), 42]) tags.run(id, () => stdout.write('plain\n'));
  t.equal(out(), 'plain\n'.repeat(5));
});

t.test('wrap: /init opens the context of its activation, /run ends or releases it', async (t) => {
  const { stdout, tags, out } = setup();
  const service = {
    initCode: async () => {
      stdout.write('loading\n');
      return { code: 200 };
    },
    runCode: async (body: unknown) => {
      stdout.write(`running ${(body as { value: { n: number } }).value.n}\n`);
      if ((body as { value: { end: boolean } }).value.end) tags.end();
      return { code: 200 };
    },
  };
  const wrapped = tags.wrap(service);
  await wrapped.initCode?.({ value: { env: { __OW_ACTIVATION_ID: A } } });
  t.equal(tags.openCount, 1, 'open until its run ends');
  await wrapped.runCode?.({ activation_id: A, value: { n: 1, end: true } });
  t.equal(tags.openCount, 0);
  await wrapped.runCode?.({ activation_id: B, value: { n: 2, end: false } });
  t.equal(tags.openCount, 0, 'a run answered without an end is released');
  t.equal(out(), `${line(A, 'loading')}${line(A, 'running 1')}${line(A, LOG_SENTINEL)}${line(B, 'running 2')}`);
});

t.test('read back by the invoker: interleaved activations each get exactly their own lines', async (t) => {
  // Both streams of the runtime, as one attach stream would carry them.
  const chunks: Array<[1 | 2, Buffer]> = [];
  const stream = (id: 1 | 2): FakeStream => ({
    written: [],
    write(chunk: string | Uint8Array, encoding?: unknown, callback?: unknown) {
      chunks.push([id, typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk)]);
      const cb = typeof encoding === 'function' ? encoding : callback;
      if (typeof cb === 'function') process.nextTick(cb as () => void);
      return true;
    },
  });
  const stdout = stream(1);
  const stderr = stream(2);
  const tags = runtime.createLogTags(KEY, { stdout, stderr, installMonitor: false });
  const ids = Array.from({ length: 8 }, (_, i) => String(i).repeat(32));
  stdout.write('outside any activation\n');
  await Promise.all(
    ids.map((id, n) =>
      tags.run(id, async () => {
        for (let i = 0; i < 20; i++) {
          await sleep((i * 7 + n * 3) % 4);
          stdout.write(`${id.slice(0, 4)} out ${i}\n`);
          stderr.write(`${id.slice(0, 4)} err ${i} `);
          stderr.write(`done ${'é'.repeat(i)}\n`);
          if (i % 5 === 0) setTimeout(() => stdout.write(`${id.slice(0, 4)} late ${i}\n`), 200);
        }
        tags.end();
      }),
    ),
  );
  await sleep(250);

  const drops: DroppedLogLineReason[] = [];
  const router = new TaggedLogRouter(new LogClock(), KEY, (reason) => drops.push(reason));
  router.announce();
  for (const id of ids) router.beginActivation({ activationId: id });
  const reader = new StampedLineReader(new LogClock(), router.onLine);
  for (const [s, bytes] of chunks) reader.push(s === 1 ? STDOUT : STDERR, bytes);
  for (const id of ids) {
    const logs = await router.collect({ activationId: id, waitMs: 0 });
    t.equal(logs.complete, true);
    const texts = logs.lines.map((l) => l.slice(31));
    const p = id.slice(0, 4);
    t.same(
      texts.filter((l) => l.startsWith('stdout: ')),
      Array.from({ length: 20 }, (_, i) => `stdout: ${p} out ${i}`),
    );
    t.same(
      texts.filter((l) => l.startsWith('stderr: ')),
      Array.from({ length: 20 }, (_, i) => `stderr: ${p} err ${i} done ${'é'.repeat(i)}`),
    );
  }
  t.same(drops, ['untagged', ...Array(8 * 4).fill('late')]);
});

t.test('an uncaught error inside an activation is reported on its stderr before the process dies', async (t) => {
  const script = `
    const { createLogTags } = require(${JSON.stringify(MODULE_PATH)});
    const tags = createLogTags('${KEY}', {});
    tags.run('${A}', () => {
      process.stdout.write('partial');
      setTimeout(() => { throw new Error('boom in a timer'); }, 5);
    });
    tags.run('${B}', () => setTimeout(() => process.stdout.write('never\\n'), 1000));
  `;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
  t.not(child.status, 0, 'still fatal');
  t.equal(child.stdout, line(A, 'partial'));
  const first = child.stderr.split('\n')[0] ?? '';
  t.equal(first, tagLine(KEY, A, 'Uncaught exception: Error: boom in a timer'));

  const rejection = spawnSync(
    process.execPath,
    ['-e', `const t = require(${JSON.stringify(MODULE_PATH)}).createLogTags('${KEY}', {}); t.run('${A}', async () => { await null; throw new Error('rejected'); });`],
    { encoding: 'utf8', timeout: 10_000 },
  );
  t.not(rejection.status, 0);
  t.equal(rejection.stderr.split('\n')[0], tagLine(KEY, A, 'Unhandled promise rejection: Error: rejected'));

  const handled = spawnSync(
    process.execPath,
    [
      '-e',
      `const t = require(${JSON.stringify(MODULE_PATH)}).createLogTags('${KEY}', {});
       process.on('uncaughtException', () => process.stdout.write('handled\\n'));
       t.run('${A}', () => setTimeout(() => { throw new Error('x'); }, 1));`,
    ],
    { encoding: 'utf8', timeout: 10_000 },
  );
  t.equal(handled.status, 0, 'the action handles it itself');
  t.equal(handled.stderr, '', 'nothing reported');
});
