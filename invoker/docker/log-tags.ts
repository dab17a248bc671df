/**
 * Per-activation log tags: the framing our Node.js runtime
 * (runtimes/nodejs/proxy/log-tags.cjs) uses so that the output of parallel
 * runs in one container (intra-container concurrency) can be attributed.
 *
 * - The invoker asks for tags by starting a concurrent container with
 *   `__OW_LOG_TAGS=<key>`, a random key per container. Runtimes that do not
 *   know the variable ignore it.
 * - A runtime that tags answers `/init` (and `/run`) with `x-ow-log-tags: 1`
 *   and writes every line of an activation as
 *   `\x1e<key>:<activation id>\x1f<text>`, each activation ending with its own
 *   tagged sentinel on both streams.
 * - `\x1e` at the start of a line followed by the container's key cannot
 *   appear by accident; the runtime puts its tag before anything the action
 *   writes, so an action cannot pass its lines off as another activation's.
 */

import { randomBytes } from 'node:crypto';

/** Environment variable that asks the runtime for tags; its value is the key. */
export const LOG_TAGS_ENV = '__OW_LOG_TAGS';
/** Response header by which a runtime announces that it tags. */
export const LOG_TAGS_HEADER = 'x-ow-log-tags';
export const TAG_START = '\x1e';
export const TAG_END = '\x1f';
/** Longest activation id read between the key and TAG_END. */
export const MAX_TAGGED_ID_LENGTH = 128;

/**
 * Smallest line cap for a tagged container: a whole tag (key of up to 64,
 * the longest id) plus a sentinel must fit in one line, or the sentinel
 * would be cut.
 */
export const MIN_TAGGED_LINE_BYTES = 256;

/** A fresh key: 16 lowercase hex characters (what the runtime accepts: 16-64). */
export function newLogTagKey(): string {
  return randomBytes(8).toString('hex');
}

/** What every tagged line of a container starts with, before the activation id. */
export function tagPrefix(key: string): string {
  return `${TAG_START}${key}:`;
}

/**
 * Where the tag of `text` ends: the index of TAG_END, so the activation id is
 * `text.slice(prefix.length, end)` and the line `text.slice(end + 1)`. -1 when
 * the line is not tagged with `prefix` (or its id is empty or too long).
 */
export function tagEnd(prefix: string, text: string): number {
  if (text.charCodeAt(0) !== 0x1e || !text.startsWith(prefix)) return -1;
  const end = text.indexOf(TAG_END, prefix.length + 1);
  if (end === -1 || end - prefix.length > MAX_TAGGED_ID_LENGTH) return -1;
  return end;
}

/** Builds one tagged line (without its newline); for tests and benchmarks. */
export function tagLine(key: string, activationId: string, text: string): string {
  return `${tagPrefix(key)}${activationId}${TAG_END}${text}`;
}
