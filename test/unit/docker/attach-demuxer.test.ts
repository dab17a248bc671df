import t from 'tap';
import { AttachDemuxer, AttachStreamError, STDERR, STDOUT, encodeFrame, type StreamId } from '../../../invoker/docker/attach-demuxer.js';

/** Deterministic PRNG so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function synthetic(random: () => number, frames: number): { stream: Buffer; out: Buffer; err: Buffer } {
  const parts: Buffer[] = [];
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  for (let i = 0; i < frames; i++) {
    const len = random() < 0.1 ? 0 : Math.floor(random() * (random() < 0.1 ? 70_000 : 200));
    const payload = Buffer.alloc(len);
    for (let j = 0; j < len; j++) payload[j] = Math.floor(random() * 256);
    const type = random() < 0.5 ? 1 : 2;
    parts.push(encodeFrame(type, payload));
    (type === 1 ? out : err).push(payload);
  }
  return { stream: Buffer.concat(parts), out: Buffer.concat(out), err: Buffer.concat(err) };
}

function demuxAll(chunks: Buffer[]): { out: Buffer; err: Buffer; demuxer: AttachDemuxer } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  // Copy each piece: the test must not rely on views staying valid elsewhere.
  const demuxer = new AttachDemuxer((s: StreamId, b: Buffer) => (s === STDOUT ? out : err).push(Buffer.from(b)));
  for (const c of chunks) demuxer.push(c);
  return { out: Buffer.concat(out), err: Buffer.concat(err), demuxer };
}

t.test('byte-exact across random chunkings', async (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    const random = rng(seed);
    const { stream, out, err } = synthetic(random, 60);
    const chunks: Buffer[] = [];
    for (let pos = 0; pos < stream.length; ) {
      // Mix of 1-byte chunks (headers split everywhere), small and large chunks.
      const r = random();
      const size = r < 0.2 ? 1 : r < 0.6 ? 1 + Math.floor(random() * 16) : 1 + Math.floor(random() * 9000);
      chunks.push(stream.subarray(pos, pos + size));
      pos += size;
    }
    const got = demuxAll(chunks);
    t.ok(got.out.equals(out), `stdout identical (seed ${seed})`);
    t.ok(got.err.equals(err), `stderr identical (seed ${seed})`);
    t.ok(got.demuxer.atFrameBoundary, `ends on a frame boundary (seed ${seed})`);
  }
});

t.test('one byte at a time', async (t) => {
  const { stream, out, err } = synthetic(rng(99), 20);
  const chunks = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
  const got = demuxAll(chunks);
  t.ok(got.out.equals(out));
  t.ok(got.err.equals(err));
});

t.test('payloads inside one chunk are views, not copies', async (t) => {
  const chunk = Buffer.concat([encodeFrame(1, Buffer.from('hello\n')), encodeFrame(2, Buffer.from('oops\n'))]);
  const seen: { s: StreamId; b: Buffer }[] = [];
  new AttachDemuxer((s, b) => seen.push({ s, b })).push(chunk);
  t.equal(seen.length, 2);
  t.equal(seen[0]?.s, STDOUT);
  t.equal(seen[1]?.s, STDERR);
  t.equal(seen[0]?.b.buffer, chunk.buffer, 'shares memory with the chunk');
  t.equal(seen[0]?.b.toString(), 'hello\n');
  t.equal(seen[1]?.b.toString(), 'oops\n');
});

t.test('stdin echo goes to stdout, engine errors to stderr', async (t) => {
  const got = demuxAll([Buffer.concat([encodeFrame(0, Buffer.from('a')), encodeFrame(3, Buffer.from('b'))])]);
  t.equal(got.out.toString(), 'a');
  t.equal(got.err.toString(), 'b');
});

t.test('a corrupt header fails and keeps failing', async (t) => {
  const d = new AttachDemuxer(() => undefined);
  t.throws(() => d.push(Buffer.from('hello world, no frames here')), AttachStreamError);
  t.throws(() => d.push(encodeFrame(1, Buffer.from('x'))), AttachStreamError);
});

t.test('reports a half-read frame', async (t) => {
  const frame = encodeFrame(1, Buffer.from('abcdef'));
  const d = new AttachDemuxer(() => undefined);
  d.push(frame.subarray(0, 5));
  t.notOk(d.atFrameBoundary);
  d.push(frame.subarray(5, 10));
  t.notOk(d.atFrameBoundary);
  d.push(frame.subarray(10));
  t.ok(d.atFrameBoundary);
});
