/**
 * Transaction ids (`transid`): `["<id>", <startMillis>]`, optionally followed
 * by an extra-logging flag and/or a nested parent transaction id
 * (upstream TransactionId.serdes).
 *
 * The invoker must echo a transid exactly as received (the controller matches
 * health-test completions by full equality), so an explicit `false` flag is
 * kept as `false` rather than dropped: `extraLogging` is absent when the flag
 * was absent.
 */
import { randomBytes } from 'node:crypto';
import type { JsonValue } from './json.js';
import { describe, fail, parseRoot, type WireInput } from './json-read.js';
import { quote } from './json-write.js';

export interface TransactionId {
  id: string;
  /** Epoch milliseconds when the transaction started. */
  start: number;
  /** Present only when the wire form carried the flag. */
  extraLogging?: boolean;
  parent?: TransactionId;
}

/** Prefix of ids the system makes for itself, e.g. `sid_invokerHealth`. */
export const SYSTEM_TRANSACTION_PREFIX = 'sid_';
export const INVOKER_HEALTH_TRANSACTION = 'sid_invokerHealth';
export const INVOKER_WARMUP_TRANSACTION = 'sid_invokerWarmup';

/**
 * Upstream only ever nests a child under its parent, so chains are short. The
 * cap keeps a hostile message from recursing the validator into a stack overflow.
 */
export const MAX_TRANSACTION_DEPTH = 16;

const EXPECTED = 'expected [id, startMillis] with optional extra-logging flag and parent';

/** Reads a transid from an already parsed JSON value. */
export function transactionIdFromJson(value: JsonValue | undefined, path: string): TransactionId {
  return readTransactionId(value, path, 0);
}

function readTransactionId(value: JsonValue | undefined, path: string, depth: number): TransactionId {
  if (!Array.isArray(value)) {
    return fail(path, value === undefined ? `missing (${EXPECTED})` : `${EXPECTED}, got ${describe(value)}`);
  }
  const n = value.length;
  if (n < 2 || n > 4) return fail(path, `${EXPECTED}, got an array of ${n} elements`);
  const id = value[0];
  const start = value[1];
  if (typeof id !== 'string') return fail(`${path}[0]`, `expected the id string, got ${describe(id)}`);
  if (typeof start !== 'number' || !Number.isSafeInteger(start)) {
    return fail(`${path}[1]`, `expected startMillis as an integer, got ${describe(start)}`);
  }
  if (n === 2) return { id, start };

  const third = value[2];
  if (n === 3) {
    if (typeof third === 'boolean') return { id, start, extraLogging: third };
    return { id, start, parent: readParent(third, `${path}[2]`, depth) };
  }
  if (typeof third !== 'boolean') {
    return fail(`${path}[2]`, `expected the extra-logging flag, got ${describe(third)}`);
  }
  return { id, start, extraLogging: third, parent: readParent(value[3], `${path}[3]`, depth) };
}

function readParent(value: JsonValue | undefined, path: string, depth: number): TransactionId {
  if (depth + 1 >= MAX_TRANSACTION_DEPTH) {
    return fail(path, `parent transactions nested deeper than ${MAX_TRANSACTION_DEPTH}`);
  }
  if (!Array.isArray(value)) return fail(path, `expected a parent transaction id, got ${describe(value)}`);
  return readTransactionId(value, path, depth + 1);
}

export function writeTransactionId(t: TransactionId): string {
  let out = `[${quote(t.id)},${t.start}`;
  if (t.extraLogging !== undefined) out += t.extraLogging ? ',true' : ',false';
  if (t.parent !== undefined) out += `,${writeTransactionId(t.parent)}`;
  return out + ']';
}

/** Parses a transid on its own (e.g. from a header or a test). */
export function parseTransactionId(input: WireInput): TransactionId {
  return transactionIdFromJson(parseRoot(input, 'TransactionId'), 'TransactionId');
}

export function serializeTransactionId(t: TransactionId): string {
  return writeTransactionId(t);
}

const TID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A new user transaction id as upstream makes them: 32 characters of [A-Za-z0-9]. */
export function generateTransactionId(start: number = Date.now()): TransactionId {
  let id = '';
  while (id.length < 32) {
    const bytes = randomBytes(48);
    for (let i = 0; i < bytes.length && id.length < 32; i++) {
      const b = bytes[i] as number;
      // 248 = 4 * 62: rejecting the top bytes keeps every character equally likely.
      if (b < 248) id += TID_ALPHABET[b % 62];
    }
  }
  return { id, start };
}

/** Equality the way the controller matches completions: id and start, all the way up the parent chain. */
export function sameTransaction(a: TransactionId, b: TransactionId): boolean {
  if (a.id !== b.id || a.start !== b.start) return false;
  if (a.parent === undefined || b.parent === undefined) return a.parent === b.parent;
  return sameTransaction(a.parent, b.parent);
}
