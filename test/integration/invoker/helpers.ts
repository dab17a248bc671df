/**
 * Small helpers shared by the invoker end-to-end tests (test/integration/invoker).
 * Importing this file has no side effects; every test file builds its own
 * InvokerTestbed.
 */
import type { ContainerSnapshot } from '../../../invoker/pool/types.js';
import Dockerode from 'dockerode';
import type { AcknowledgementMessage, WhiskActivation } from '../../../protocol/index.js';
import type { TestInvoker } from '../../helpers/invoker-harness.js';

export const docker = new Dockerode();

/** The record as stored (CouchDB document, flattened as upstream). */
export type StoredRecord = Record<string, unknown> & {
  _rev: string;
  start: number;
  end: number;
  duration: number;
  logs: string[];
  response: { statusCode: number; result?: unknown; size?: number };
  annotations: Array<{ key: string; value: unknown }>;
};

/** The full activation of a combined acknowledgement (blocking). */
export function activationOf(ack: AcknowledgementMessage | undefined): WhiskActivation {
  if (ack === undefined || ack.kind !== 'combined' || typeof ack.response === 'string') {
    throw new Error(`expected a combined acknowledgement with the full activation, got ${JSON.stringify(ack)}`);
  }
  return ack.response;
}

export function annotation(record: { annotations: Array<{ key: string; value: unknown }> }, key: string): unknown {
  return record.annotations.find((a) => a.key === key)?.value;
}

export function hasAnnotation(record: { annotations: Array<{ key: string; value: unknown }> }, key: string): boolean {
  return record.annotations.some((a) => a.key === key);
}

/** One container of GET /pool. */
export type PoolEntry = ContainerSnapshot;

export async function poolOf(invoker: TestInvoker): Promise<PoolEntry[]> {
  const answer = await invoker.get('/pool');
  if (answer.status !== 200) throw new Error(`GET /pool answered ${answer.status}: ${answer.body}`);
  return (JSON.parse(answer.body) as { containers: PoolEntry[] }).containers;
}

/** Containers of this pool whose warmKey names `action` (`<path>/<name>`). */
export function warmFor(pool: PoolEntry[], action: string): PoolEntry[] {
  return pool.filter((c) => c.warmKey !== undefined && c.warmKey.includes(`|${action}@`));
}

/** Polls `condition` every 100 ms until it holds (or throws after `timeoutMs`). */
export async function eventually<T>(what: string, probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs `work` over `items` with at most `limit` in flight; results in input order. */
export async function boundedMap<I, O>(items: readonly I[], limit: number, work: (item: I, index: number) => Promise<O>): Promise<O[]> {
  const results = new Array<O>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      results[i] = await work(items[i] as I, i);
    }
  });
  await Promise.all(lanes);
  return results;
}

/** Log line as the wire spec has it: RFC 3339 with nanoseconds, space, stream, `: `, text. */
export function logLinePattern(stream: 'stdout' | 'stderr', text: string): RegExp {
  const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{9}Z ${stream}: ${escaped}$`);
}
