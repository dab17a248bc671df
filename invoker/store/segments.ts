/**
 * The journal's segment files as a set: which exist (oldest first), the one
 * being appended to, rotation at the size limit, sealing and deletion. The
 * journal (journal.ts) decides what goes into them and when; the line
 * format and recovery are in segment-file.ts. Every method that touches a
 * file is called on the journal's serial file queue.
 */
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/logger.js';
import { Bits, segmentFileName, syncDirectory } from './segment-file.js';

export interface Segment {
  readonly seq: number;
  readonly path: string;
  nextOrdinal: number;
  bytes: number;
  readonly unconfirmed: Bits;
  sealed: boolean;
  /** A write failed: the file may end in a partial line. */
  tainted: boolean;
  handle: FileHandle | undefined;
}

export interface SegmentsOptions {
  dir: string;
  /** A segment is sealed once it holds this many bytes. */
  maxBytes: number;
  /** Sync the directory after creating a segment. */
  sync: boolean;
  logger: Logger;
  /** Told of a segment sealed with everything in it confirmed, as it is dropped. */
  dropped: (seq: number) => void;
}

export class Segments {
  readonly maxBytes: number;
  private readonly options: SegmentsOptions;
  /** Insertion order is segment order: oldest first. */
  private readonly bySeq = new Map<number, Segment>();
  private active: Segment | undefined;
  private nextSeq: number;

  constructor(options: SegmentsOptions, nextSeq: number) {
    this.options = options;
    this.maxBytes = options.maxBytes;
    this.nextSeq = nextSeq;
  }

  get size(): number {
    return this.bySeq.size;
  }

  get(seq: number): Segment | undefined {
    return this.bySeq.get(seq);
  }

  has(seq: number): boolean {
    return this.bySeq.has(seq);
  }

  /** A segment found at open(), sealed. */
  add(segment: Segment): void {
    this.bySeq.set(segment.seq, segment);
  }

  /** Forgets a segment (its file is removed by remove()). */
  delete(seq: number): void {
    this.bySeq.delete(seq);
  }

  values(): IterableIterator<Segment> {
    return this.bySeq.values();
  }

  /** The segment to append to: the active one, or a new one when there is none or it is full. */
  async appendTarget(): Promise<Segment> {
    if (this.active !== undefined && this.active.bytes >= this.maxBytes) await this.sealActive();
    if (this.active !== undefined) return this.active;
    const seq = this.nextSeq++;
    const path = join(this.options.dir, segmentFileName(seq));
    const handle = await open(path, 'ax').catch((err: unknown) => {
      throw new Error(`creating journal segment ${path}: ${(err as Error).message}`, { cause: err });
    });
    if (this.options.sync) await syncDirectory(this.options.dir);
    const segment: Segment = {
      seq,
      path,
      nextOrdinal: 0,
      bytes: 0,
      unconfirmed: new Bits(),
      sealed: false,
      tainted: false,
      handle,
    };
    this.bySeq.set(seq, segment);
    this.active = segment;
    return segment;
  }

  /** Ends appends to the active segment; it is deleted if everything in it is confirmed. */
  async sealActive(): Promise<void> {
    const segment = this.active;
    if (segment === undefined) return;
    this.active = undefined;
    segment.sealed = true;
    const handle = segment.handle;
    segment.handle = undefined;
    await handle?.close();
    if (segment.unconfirmed.count === 0) {
      this.bySeq.delete(segment.seq);
      this.options.dropped(segment.seq);
      await this.remove(segment);
    }
  }

  /** At close: the active segment is closed, and deleted if everything in it is confirmed. */
  async closeActive(): Promise<void> {
    const active = this.active;
    this.active = undefined;
    if (active === undefined) return;
    await active.handle?.close();
    active.handle = undefined;
    active.sealed = true;
    if (active.unconfirmed.count === 0) {
      this.bySeq.delete(active.seq);
      await this.remove(active);
    }
  }

  /** Removes a segment's file (never rejects). */
  async remove(segment: Segment): Promise<void> {
    try {
      await segment.handle?.close();
      segment.handle = undefined;
      await unlink(segment.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      // Left behind, it is re-read at the next start and its records (all confirmed) conflict.
      this.options.logger.warn({ segment: segment.path, err: (err as Error).message }, 'deleting a confirmed journal segment failed');
    }
  }
}
