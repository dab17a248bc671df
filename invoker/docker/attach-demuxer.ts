/**
 * Incremental demultiplexer for Docker's attach stream (non-TTY containers).
 *
 * The engine frames every write as an 8-byte header followed by the payload:
 * `[stream, 0, 0, 0, uint32 big-endian length]`, stream 1 = stdout,
 * 2 = stderr (0 = stdin echoed on stdout, 3 = engine error text).
 * Frames and the chunks the socket hands us are unrelated: a chunk may hold
 * many frames, or a piece of one, or the middle of a header.
 *
 * Payloads are delivered as they arrive, in pieces that are `subarray` views
 * of the incoming chunks: the consumer (the line splitter) is byte-stream
 * oriented per stream and never needs whole frames, so no payload byte is ever
 * copied here. Only a header that straddles two chunks is copied (into a fixed
 * 8-byte scratch buffer).
 */

export const STDOUT = 1 as const;
export const STDERR = 2 as const;
export type StreamId = typeof STDOUT | typeof STDERR;

/** Receives payload bytes of one stream; `bytes` is only valid during the call unless kept. */
export type PayloadSink = (stream: StreamId, bytes: Buffer) => void;

/** The stream is not a Docker multiplexed stream (e.g. a TTY container) or is corrupt. */
export class AttachStreamError extends Error {
  override name = 'AttachStreamError';
}

const HEADER_BYTES = 8;

export class AttachDemuxer {
  private readonly header = Buffer.allocUnsafe(HEADER_BYTES);
  /** Bytes of the current header collected so far (0..8). */
  private headerFill = 0;
  /** Payload bytes of the current frame still to come; 0 = expecting a header. */
  private remaining = 0;
  private stream: StreamId = STDOUT;
  private failed: AttachStreamError | undefined;

  constructor(private readonly sink: PayloadSink) {}

  /**
   * Feeds one chunk. Throws AttachStreamError (and keeps throwing it) once a
   * header is invalid: after that the frame boundaries are lost for good.
   */
  push(chunk: Buffer): void {
    if (this.failed) throw this.failed;
    const len = chunk.length;
    let pos = 0;
    while (pos < len) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, len - pos);
        this.remaining -= take;
        // Whole chunk is payload: hand it over as is, without even a view.
        this.sink(this.stream, take === len ? chunk : chunk.subarray(pos, pos + take));
        pos += take;
        continue;
      }
      if (this.headerFill === 0 && len - pos >= HEADER_BYTES) {
        // Fast path: the whole header is inside this chunk.
        this.startFrame(chunk, pos);
        pos += HEADER_BYTES;
        continue;
      }
      // The header straddles chunks: collect it in the scratch buffer.
      const take = Math.min(HEADER_BYTES - this.headerFill, len - pos);
      chunk.copy(this.header, this.headerFill, pos, pos + take);
      this.headerFill += take;
      pos += take;
      if (this.headerFill === HEADER_BYTES) {
        this.headerFill = 0;
        this.startFrame(this.header, 0);
      }
    }
  }

  /** True when the stream ended on a frame boundary (nothing half-read). */
  get atFrameBoundary(): boolean {
    return this.remaining === 0 && this.headerFill === 0;
  }

  private startFrame(buf: Buffer, at: number): void {
    const type = buf[at];
    if (buf[at + 1] !== 0 || buf[at + 2] !== 0 || buf[at + 3] !== 0 || type === undefined || type > 3) {
      this.failed = new AttachStreamError(
        `demultiplexing the attach stream: invalid frame header ${buf.subarray(at, at + HEADER_BYTES).toString('hex')}`,
      );
      throw this.failed;
    }
    // stdin echo (0) belongs with stdout; engine error text (3) with stderr.
    this.stream = type === 2 || type === 3 ? STDERR : STDOUT;
    this.remaining = buf.readUInt32BE(at + 4);
  }
}

/** Builds one frame; for tests and benchmarks. */
export function encodeFrame(stream: 0 | 1 | 2 | 3, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out[0] = stream;
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
  out.writeUInt32BE(payload.length, 4);
  payload.copy(out, HEADER_BYTES);
  return out;
}
