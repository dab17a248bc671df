/**
 * Cost of per-activation log tags (intra-container concurrency), both sides:
 *
 * - runtime, per logged line: `console.log` of a 60-character line with the
 *   tagging hook, inside an activation, vs the same before any hook, in a
 *   child process (stdout and stderr on /dev/null: the CPU cost);
 *   per activation: its context and its two tagged sentinels vs the two bare ones.
 * - invoker, per line: demultiplex, split, strip the tag and route (4
 *   activations interleaved) vs the sequential collector on the same lines
 *   untagged; per activation: a typical one (4 lines and 2 sentinels, as in
 *   docker-logs.bench.ts) through the router vs through the sequential collector.
 *
 * Everything is CPU time (process.cpuUsage), not wall time, so that other
 * work on the machine does not count.
 *
 *   node --import tsx test/bench/log-tags.bench.ts
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
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
  // stdout and stderr on /dev/null: the CPU cost alone. On a pipe, as in a
  // container, each write is the same one syscall either way, and a busy
  // reader would make the writer wait, which measures the reader.
  const devNull = openSync('/dev/null', 'w');
  const proc = spawn(process.execPath, [CHILD, mode, '100000', '20000'], { stdio: ['ignore', devNull, devNull, 'pipe'] });
  closeSync(devNull);
  let result = '';
  (proc.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (result += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  if (code !== 0 || result === '') throw new Error(`runtime benchmark child (${mode}) exited with ${code}`);
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

const cpuUs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return used.user + used.system;
};

/** CPU us per round of 1,000 lines: 4 activations x 250 lines, one frame per line, 16 frames per chunk. */
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
    const start = process.cpuUsage();
    if (sink instanceof TaggedLogRouter) {
      for (const id of IDS) sink.beginActivation({ activationId: id });
      for (const c of chunks) demuxer.push(c);
      for (const id of IDS) if ((await sink.collect({ activationId: id })).lines.length !== 250) throw new Error('lines lost');
    } else {
      sink.beginActivation();
      for (const c of chunks) demuxer.push(c);
      if ((await sink.collect()).lines.length !== 1000) throw new Error('lines lost');
    }
    samples.push(cpuUs(start));
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] ?? NaN;
}

/** CPU us per typical activation (4 lines, then the sentinels, in two reads), over batches of 1,000: median and 90th percentile. */
async function perActivation(tagged: boolean, batches: number): Promise<{ p50: number; p90: number }> {
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
  const one = async (n: number) => {
    const a = prepared[n % prepared.length] as { id: string; chunks: Buffer[] };
    sink.beginActivation({ activationId: a.id, limitBytes: 10 * 1024 * 1024 });
    for (const c of a.chunks) demuxer.push(c);
    const result = await sink.collect({ activationId: a.id });
    if (!result.complete || result.lines.length !== 4) throw new Error('sentinels not detected');
  };
  for (let n = 0; n < 5000; n++) await one(n);
  const samples: number[] = [];
  for (let b = 0; b < batches; b++) {
    const start = process.cpuUsage();
    for (let n = 0; n < 1000; n++) await one(n);
    samples.push(cpuUs(start) / 1000);
  }
  samples.sort((x, y) => x - y);
  return { p50: samples[Math.floor(0.5 * batches)] ?? NaN, p90: samples[Math.floor(0.9 * batches)] ?? NaN };
}

const { plain, tagged } = await runtimeSide();
const ns = (x: number | undefined) => `${(x ?? NaN).toFixed(0)} ns`;
const delta = (a: number | undefined, b: number | undefined) => `+${ns((a ?? NaN) - (b ?? NaN))}, ${((a ?? NaN) / (b ?? NaN)).toFixed(2)}x`;
console.log(`runtime, CPU time (child processes, stdout/stderr on /dev/null), median of ${CHILD_RUNS} processes each:`);
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
console.log('invoker, CPU time (in process), 1,000 lines per round, median of 301 rounds:');
console.log(`  sequential collector, untagged lines  ${((untaggedRound * 1000) / 1000).toFixed(0)} ns per line`);
console.log(
  `  router, 4 activations interleaved     ${((taggedRound * 1000) / 1000).toFixed(0)} ns per line ` +
    `(+${(((taggedRound - untaggedRound) * 1000) / 1000).toFixed(0)} ns, ${(taggedRound / untaggedRound).toFixed(2)}x)`,
);

const seq = await perActivation(false, 60);
const tag = await perActivation(true, 60);
console.log('invoker, one typical activation (4 lines + 2 sentinels), CPU time over 60 batches of 1,000:');
console.log(`  sequential collector  median ${seq.p50.toFixed(2)} us  p90 ${seq.p90.toFixed(2)} us`);
console.log(`  router (tagged)       median ${tag.p50.toFixed(2)} us  p90 ${tag.p90.toFixed(2)} us  (+${(tag.p50 - seq.p50).toFixed(2)} us, ${(tag.p50 / seq.p50).toFixed(2)}x)`);
