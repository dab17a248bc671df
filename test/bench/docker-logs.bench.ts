/**
 * Cost of log collection per activation, in process: demultiplex the attach
 * stream, split lines, stamp and format them, detect the sentinels, hand the
 * lines over. A typical activation: a few log lines on both streams, then the
 * two sentinels, as the engine delivers them (several frames per chunk).
 * Baseline, same run: `Buffer.toString` of the same bytes.
 *
 *   node --import tsx test/bench/docker-logs.bench.ts
 */
import { AttachDemuxer, encodeFrame } from '../../invoker/docker/attach-demuxer.js';
import { LogCollector } from '../../invoker/docker/log-collector.js';
import { LOG_SENTINEL, LogClock, StampedLineReader } from '../../invoker/docker/log-lines.js';

const ITERATIONS = 50_000;
const WARMUP = 5_000;
const MAX_SECONDS = 20;

const frames = [
  encodeFrame(1, Buffer.from('starting handler for request 42\n')),
  encodeFrame(1, Buffer.from('fetched 17 records from the database in 12 ms\n')),
  encodeFrame(2, Buffer.from('warning: deprecated option "legacy" used\n')),
  encodeFrame(1, Buffer.from('{"level":"info","msg":"done","items":17}\n')),
  encodeFrame(1, Buffer.from(`${LOG_SENTINEL}\n`)),
  encodeFrame(2, Buffer.from(`${LOG_SENTINEL}\n`)),
];
// The engine usually hands over the user lines and the sentinels in two reads.
const chunks = [Buffer.concat(frames.slice(0, 4)), Buffer.concat(frames.slice(4))];
const totalBytes = chunks.reduce((n, c) => n + c.length, 0);

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function measure(name: string, once: () => Promise<unknown> | unknown): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < WARMUP; i++) await once();
  const samples = new Float64Array(ITERATIONS);
  const stopAt = performance.now() + MAX_SECONDS * 1000;
  let n = 0;
  for (; n < ITERATIONS && performance.now() < stopAt; n++) {
    const t0 = process.hrtime.bigint();
    await once();
    samples[n] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  const sorted = samples.subarray(0, n).sort();
  const r = { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
  console.log(`${name.padEnd(34)} n=${n}  p50=${r.p50.toFixed(2)} us  p99=${r.p99.toFixed(2)} us`);
  return r;
}

// One container's pipeline, reused across activations as in production.
const clock = new LogClock();
const collector = new LogCollector(clock);
const reader = new StampedLineReader(clock, collector.onLine);
const demuxer = new AttachDemuxer(reader.push);

let lines = 0;
async function activation(): Promise<void> {
  collector.beginActivation({ limitBytes: 10 * 1024 * 1024 });
  for (const c of chunks) demuxer.push(c);
  const result = await collector.collect();
  if (!result.complete) throw new Error('sentinels not detected');
  lines += result.lines.length;
}

let sink = 0;
function baseline(): void {
  for (const c of chunks) sink += c.toString().length;
}

console.log(`typical activation: 4 log lines + 2 sentinels, ${totalBytes} bytes in ${chunks.length} chunks`);
const ours = await measure('collect (demux+split+format+sentinels)', activation);
const base = await measure('baseline Buffer.toString', baseline);
if (lines === 0 || sink === 0) throw new Error('nothing measured');
console.log(
  `ratio vs baseline: p50 ${(ours.p50 / base.p50).toFixed(1)}x, p99 ${(ours.p99 / base.p99).toFixed(1)}x; ` +
    `target p50 < 50 us: ${ours.p50 < 50 ? 'met' : 'NOT met'}`,
);
