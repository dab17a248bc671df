/**
 * Byte sizes as upstream writes them in JSON (`userMemory`, `busyMemory`):
 * strings such as "2147483648 B", "1024 MB", "0 g", read with upstream's
 * pattern `(?i)\s?(\d+)\s?(GB|MB|KB|B|G|M|K)\s?` (whole string), units
 * powers of 1024.
 *
 * We hold the size in bytes. Upstream writes "<n> <unit>" in whatever unit
 * the value was made with; we write "<bytes> B" for sizes we make, and keep
 * the original text of a parsed non-canonical size (e.g. "1024 MB") so that a
 * message can be echoed byte for byte.
 */
export interface ByteSize {
  bytes: number;
  /** The wire text, present only when it is not the canonical `<bytes> B`. */
  text?: string;
}

const PATTERN = /^\s?(\d+)\s?(GB|MB|KB|B|G|M|K)\s?$/i;

const MULTIPLIER: Record<string, number> = { B: 1, K: 1024, M: 1024 * 1024, G: 1024 * 1024 * 1024 };

export function byteSize(bytes: number): ByteSize {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new RangeError(`a byte size must be a non-negative integer, got ${bytes}`);
  }
  return { bytes };
}

export function megabytes(mb: number): ByteSize {
  return byteSize(mb * 1024 * 1024);
}

/**
 * Bytes denoted by `text`, or a reason it is not a size. Returning a reason
 * instead of throwing lets callers attach their own field path.
 */
export function byteSizeBytes(text: string): number | string {
  // The pattern is anchored and has no nested quantifiers: linear time. The
  // length cap still keeps a hostile multi-megabyte string from being scanned.
  if (text.length > 64) return 'expected a size such as "2147483648 B", got a string too long';
  const m = PATTERN.exec(text);
  if (m === null) return 'expected a size such as "2147483648 B" (units B, K[B], M[B], G[B])';
  const digits = m[1] as string;
  const unit = (m[2] as string).charAt(0).toUpperCase();
  const bytes = Number(digits) * (MULTIPLIER[unit] as number);
  if (!Number.isSafeInteger(bytes)) return 'size too large';
  return bytes;
}

/** Parses a size string; throws RangeError on bad input (parsers use byteSizeBytes). */
export function parseByteSize(text: string): ByteSize {
  const bytes = byteSizeBytes(text);
  if (typeof bytes === 'string') throw new RangeError(`${JSON.stringify(text.slice(0, 64))}: ${bytes}`);
  return fromParsed(text, bytes);
}

/** Internal: the ByteSize for a text already known to denote `bytes`. */
export function fromParsed(text: string, bytes: number): ByteSize {
  return text === `${bytes} B` ? { bytes } : { bytes, text };
}

/**
 * The wire text. A kept original text is written only if it still denotes
 * `bytes`, so a size changed after parsing can never be written stale.
 */
export function formatByteSize(size: ByteSize): string {
  if (size.text !== undefined && byteSizeBytes(size.text) === size.bytes) return size.text;
  return `${size.bytes} B`;
}
