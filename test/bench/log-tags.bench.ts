/**
 * Cost of per-activation log tags (intra-container concurrency), both sides:
 *
 * - runtime, per logged line: `console.log` of a 60-character line with the
 *   tagging hook, inside an activation, vs the same before any hook, in a
 *   child process whose stdout and stderr are pipes (as in a container);
 *   per activation: its context and its two tagged sentinels vs the two bare ones.
 * - invoker, per line: demultiplex, split, strip the tag and route (4
 *   activations interleaved) vs the sequential collector on the same lines
 *   untagged; per activation: a typical one (4 lines and 2 sentinels, as in
 *   docker-logs.bench.ts) through the router vs through the sequential collector.
 *
 *   node --import tsx test/bench/log-tags.bench.ts
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AttachDemuxer, encodeFrame } from '../../invoker/docker/attach-demuxer.js';
import { LogCollector } from '../../invoker/docker/log-collector.js';
import { LOG_SENTINEL, LogClock, StampedLineReader } from '../../invoker/docker/log-lines.js';
import { TaggedLogRouter } from '../../invoker/docker/log-router.js';
import { tagLine } from '../../invoker/docker/log-tags.js';

const KEY = '0123456789abcdef';
const IDS = ['a', 'b', 'c', 'd'].map((c) => c.repeat(32));
const LINE = 'fetched 17 records from the database in 12 ms, cursor 4711';

// ------------------------------------------------------------------ runtime
const CHILD = fileURLToPath(new URL('./log-tags-child.cjs', import.meta.url));
const CHILD_RUNS = 5;

async function child(mode: 'plain' | 'tagged'): Promise<Record<string, number>> {
  const proc = spawn(process.execPath, [CHILD, mode, '100000', '20000'], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  let drained = 0;
  proc.stdout?.on('data', (d: Buffer) => (drained += d.length));
  proc.stderr?.on('data', (d: Buffer) => (drained += d.length));
  let result = '';
  (proc.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (result += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  if (code !== 0 || result === '' || drained === 0) throw new Error(`runtime benchmark child (${mode}) exited with ${code}`);
  return JSON.parse(result) as Record<string, number>;
}

/** Medians over CHILD_RUNS processes of each mode, run alternately. */
async function runtimeSide(): Promise<{ plain: Record<string, number>; tagged: Record<string, number> }> {
  const runs: Record<'plain' | 'tagged', Array<Record<string, number>>> = { plain: [], tagged: [] };
  for (let i = 0; i < CHILD_RUNS; i++) {
    runs.plain.push(await child('plain'));
    runs.tagged.push(await child('tagged'));
  }
  const median = (list: Array<Record<string, number>>): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const key of Object.keys(list[0] ?? {})) {
      const xs = list.map((r) => r[key] ?? NaN).sort((a, b) => a - b);
      out[key] = xs[Math.floor(xs.length / 2)] ?? NaN;
    }
    return out;
  };
  return { plain: median(runs.plain), tagged: median(runs.tagged) };
}

// ------------------------------------------------------------------ invoker
const clock = new LogClock();

function pipeline(tagged: boolean) {
  const sink = tagged ? new TaggedLogRouter(clock, KEY) : new LogCollector(clock);
  if (sink instanceof TaggedLogRouter) sink.announce();
  const reader = new StampedLineReader(clock, sink.onLine);
  const demuxer = new AttachDemuxer(reader.push);
  return { sink, demuxer };
}

/** ns per line: 4 activations x 250 lines, one frame per line, 16 frames per chunk. */
async function perLine(tagged: boolean, rounds: number): Promise<number> {
  const frames: Buffer[] = [];
  for (let i = 0; i < 250; i++) {
    for (const id of IDS) frames.push(encodeFrame(1, Buffer.from(`${tagged ? tagLine(KEY, id, LINE) : LINE}\n`)));
  }
  const ends = tagged
    ? IDS.flatMap((id) => [encodeFrame(1, Buffer.from(`${tagLine(KEY, id, LOG_SENTINEL)}\n`)), encodeFrame(2, Buffer.from(`${tagLine(KEY, id, LOG_SENTINEL)}\n`))])
    : [encodeFrame(1, Buffer.from(`${LOG_SENTINEL}\n`)), encodeFrame(2, Buffer.from(`${LOG_SENTINEL}\n`))];
  const chunks: Buffer[] = [];
  for (let i = 0; i < frames.length; i += 16) chunks.push(Buffer.concat(frames.slice(i, i + 16)));
  chunks.push(Buffer.concat(ends));
  const { sink, demuxer } = pipeline(tagged);
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    if (sink instanceof TaggedLogRouter) {
      for (const id of IDS) sink.beginActivation({ activationId: id });
      for (const c of chunks) demuxer.push(c);
      for (const id of IDS) if ((await sink.collect({ activationId: id })).lines.length !== 250) throw new Error('lines lost');
    } else {
      sink.beginActivation();
      for (const c of chunks) demuxer.push(c);
      if ((await sink.collect()).lines.length !== 1000) throw new Error('lines lost');
    }
    samples.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] ?? NaN;
}

/** p50/p99 in us of one typical activation (4 lines, then the sentinels, in two reads). */
async function perActivation(tagged: boolean, iterations: number): Promise<{ p50: number; p99: number }> {
  const text = (id: string, s: string) => `${tagged ? tagLine(KEY, id, s) : s}\n`;
  const build = (id: string) => {
    const frames = [
      encodeFrame(1, Buffer.from(text(id, 'starting handler for request 42'))),
      encodeFrame(1, Buffer.from(text(id, 'fetched 17 records from the database in 12 ms'))),
      encodeFrame(2, Buffer.from(text(id, 'warning: deprecated option "legacy" used'))),
      encodeFrame(1, Buffer.from(text(id, '{"level":"info","msg":"done","items":17}'))),
      encodeFrame(1, Buffer.from(text(id, LOG_SENTINEL))),
      encodeFrame(2, Buffer.from(text(id, LOG_SENTINEL))),
    ];
    return [Buffer.concat(frames.slice(0, 4)), Buffer.concat(frames.slice(4))];
  };
  // Ids rotate, as they would: 64 prepared activations.
  const prepared = Array.from({ length: 64 }, (_, i) => {
    const id = i.toString(16).padStart(32, '0');
    return { id, chunks: build(id) };
  });
  const { sink, demuxer } = pipeline(tagged);
  const samples = new Float64Array(iterations);
  for (let n = -5000; n < iterations; n++) {
    const a = prepared[(n + 5000) % prepared.length] as { id: string; chunks: Buffer[] };
    const start = process.hrtime.bigint();
    sink.beginActivation({ activationId: a.id, limitBytes: 10 * 1024 * 1024 });
    for (const c of a.chunks) demuxer.push(c);
    const result = await sink.collect({ activationId: a.id });
    if (!result.complete || result.lines.length !== 4) throw new Error('sentinels not detected');
    if (n >= 0) samples[n] = Number(process.hrtime.bigint() - start) / 1000;
  }
  const sorted = samples.sort();
  return { p50: sorted[Math.floor(0.5 * iterations)] ?? NaN, p99: sorted[Math.floor(0.99 * iterations)] ?? NaN };
}

const { plain, tagged } = await runtimeSide();
const ns = (x: number | undefined) => `${(x ?? NaN).toFixed(0)} ns`;
const delta = (a: number | undefined, b: number | undefined) => `+${ns((a ?? NaN) - (b ?? NaN))}, ${((a ?? NaN) / (b ?? NaN)).toFixed(2)}x`;
console.log(`runtime (child processes, stdout/stderr on pipes), median of ${CHILD_RUNS} processes each:`);
console.log(`  console.log of one line, no hook (untagged runtime)   ${ns(plain.lineNs)}`);
console.log(`  console.log of one line, hook, outside an activation  ${ns(tagged.outsideLineNs)} (${delta(tagged.outsideLineNs, plain.lineNs)})`);
console.log(`  console.log of one line, tagged in an activation      ${ns(tagged.lineNs)} (${delta(tagged.lineNs, plain.lineNs)})`);
console.log(`  console.log of 4 lines at once, per line, tagged      ${ns(tagged.fourLinesNs)} (${delta(tagged.fourLinesNs, plain.fourLinesNs)})`);
console.log(`  end of an activation: bare sentinels                  ${ns(plain.endNs)}`);
console.log(`  end of an activation: context + tagged sentinels      ${ns(tagged.endNs)} (${delta(tagged.endNs, plain.endNs)})`);

for (let i = 0; i < 50; i++) {
  await perLine(false, 5);
  await perLine(true, 5);
}
const untaggedRound = await perLine(false, 301);
const taggedRound = await perLine(true, 301);
console.log('invoker (in process), 1,000 lines per round, median of 301 rounds:');
console.log(`  sequential collector, untagged lines  ${((untaggedRound * 1000) / 1000).toFixed(0)} ns per line`);
console.log(
  `  router, 4 activations interleaved     ${((taggedRound * 1000) / 1000).toFixed(0)} ns per line ` +
    `(+${(((taggedRound - untaggedRound) * 1000) / 1000).toFixed(0)} ns, ${(taggedRound / untaggedRound).toFixed(2)}x)`,
);

const seq = await perActivation(false, 50_000);
const tag = await perActivation(true, 50_000);
console.log('invoker, one typical activation (4 lines + 2 sentinels), 50,000 iterations:');
console.log(`  sequential collector  p50 ${seq.p50.toFixed(2)} us  p99 ${seq.p99.toFixed(2)} us`);
console.log(`  router (tagged)       p50 ${tag.p50.toFixed(2)} us  p99 ${tag.p99.toFixed(2)} us  (${(tag.p50 / seq.p50).toFixed(2)}x at p50)`);
