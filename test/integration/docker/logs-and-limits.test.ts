import t from 'tap';
import { logsTruncated } from '../../../protocol/error-texts.js';
import { initBody, nodejsSpec, runBody, testFactory, texts } from './helpers.js';

t.test('lines logged between activations never reach the next activation', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(128, 'stray'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  await c.init(
    initBody(`let n = 0;
function main(){
  n++;
  console.log('run ' + n);
  setTimeout(() => console.log('late from run ' + n), 100);
  if (n === 1) setInterval(() => { console.log('tick'); console.error('tock'); }, 20);
  return { n };
}`),
    10_000,
  );
  const first = await c.run(runBody(), 10_000);
  t.equal(first.kind === 'response' && first.body, '{"n":1}');
  const logs1 = await c.collectLogs();
  t.equal(logs1.complete, true);
  t.same(texts(logs1.lines), ['stdout: run 1'], 'nothing after the sentinel');

  await new Promise((r) => setTimeout(r, 400)); // ticks and the late line happen now
  c.beginActivation();
  const second = await c.run(runBody(), 10_000);
  t.equal(second.kind === 'response' && second.body, '{"n":2}');
  const logs2 = await c.collectLogs();
  t.equal(logs2.complete, true);
  // Ticks that fire while run 2 is in flight legitimately belong to it; nothing from before may.
  const got = texts(logs2.lines).filter((l) => l !== 'stdout: tick' && l !== 'stderr: tock');
  t.same(got, ['stdout: run 2']);
  t.notOk(texts(logs2.lines).some((l) => l.includes('late from run 1')));
});

t.test('an action that logs more than the limit: truncated, bounded, marked', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(256, 'chatty'));
  t.teardown(() => c.destroy());
  c.beginActivation({ limitBytes: 10_000 });
  await c.init(initBody(`function main(){ for (let i = 0; i < 20000; i++) console.log('line ' + i + ' ' + 'x'.repeat(80)); return {}; }`), 10_000);
  const run = await c.run(runBody(), 30_000);
  t.equal(run.kind === 'response' && run.status, 200);
  const logs = await c.collectLogs({ limitBytes: 10_000, waitMs: 2000 });
  t.equal(logs.complete, true);
  t.equal(logs.truncated, true);
  t.ok(logs.bytes <= 10_000, `kept ${logs.bytes} bytes`);
  const userLines = logs.lines.slice(0, -1);
  t.equal(userLines.reduce((n, l) => n + Buffer.byteLength(l), 0), logs.bytes);
  t.equal(texts(logs.lines).at(-1), `stderr: ${logsTruncated(10_000)}`);
  t.equal(texts(userLines)[0], `stdout: line 0 ${'x'.repeat(80)}`, 'the first lines are the ones kept');
});

t.test('an action that prints a line longer than the cap: split, nothing lost', async (t) => {
  const factory = await testFactory(t, { maxLogLineBytes: 16 * 1024 });
  const c = await factory.create(nodejsSpec(256, 'longline'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  await c.init(
    initBody(`function main(){ let s = ''; for (let i = 0; s.length < 100000; i++) s += i.toString(36) + '€'; console.log(s); console.log('short'); return { len: Buffer.byteLength(s) }; }`),
    10_000,
  );
  const run = await c.run(runBody(), 10_000);
  t.equal(run.kind, 'response');
  const expectedBytes = run.kind === 'response' ? (JSON.parse(run.body) as { len: number }).len : -1;
  const logs = await c.collectLogs();
  t.equal(logs.complete, true);
  const lines = texts(logs.lines);
  t.equal(lines.at(-1), 'stdout: short');
  const pieces = lines.slice(0, -1).map((l) => l.slice('stdout: '.length));
  t.ok(pieces.length >= 7, `split into ${pieces.length} lines`);
  for (const p of pieces) t.ok(Buffer.byteLength(p) <= 16 * 1024);
  const joined = pieces.join('');
  t.equal(Buffer.byteLength(joined), expectedBytes, 'every byte is there');
  t.notMatch(joined, /\uFFFD/, 'no character was cut');
});

t.test('an action that returns more than the payload limit: truncated with the true size', async (t) => {
  const factory = await testFactory(t, { maxResponseBytes: 1024 * 1024 });
  const c = await factory.create(nodejsSpec(256, 'big'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  await c.init(initBody(`function main(){ return { big: 'y'.repeat(3 * 1024 * 1024) }; }`), 10_000);
  const run = await c.run(runBody(), 20_000);
  t.equal(run.kind, 'response');
  if (run.kind !== 'response') return;
  t.equal(run.status, 200);
  t.equal(run.truncated, true);
  t.equal(run.bytes, 3 * 1024 * 1024 + '{"big":""}'.length);
  t.equal(run.body.length, 1024 * 1024);
  t.ok(run.body.startsWith('{"big":"yyy'));
  const logs = await c.collectLogs();
  t.equal(logs.complete, true);
});
