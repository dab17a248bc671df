/**
 * Load through the controller's REST API and the accounting check.
 *
 * accepted  = the controller answered with an activation id (200/202 for
 *             success and "still running", 502/500 for an activation that
 *             ran or was force-completed: all were handed to an invoker);
 * completed = the caller got the record: the blocking answer, or for
 *             non-blocking calls and blocking 202s, `GET /activations/{id}`;
 * stored    = records in the activations database (`<namespace>/<id>`).
 *
 * Run directly for a larger configuration (prints the accounting table):
 *   node --import tsx test/system/load.ts --count 2000 --concurrency 32
 */
import { Agent, request } from 'undici';
import { ANNOTATION_FORCED_COMPLETION } from '../../protocol/index.js';
import { AUTH, NAMESPACE, sleep, SystemUnderTest } from './system.js';

export interface LoadOptions {
  action: string;
  count: number;
  concurrency: number;
  /** Every n-th call is non-blocking (2: half). */
  nonBlockingEvery?: number;
  /** No new call starts after this. */
  maxMs: number;
  /** Parameters of call `i`. */
  params?: (i: number) => Record<string, unknown>;
  /** Called once `fraction` of the calls were sent (fault injection). */
  at?: { fraction: number; run: () => Promise<void> };
}

export interface CallResult {
  i: number;
  blocking: boolean;
  status: number;
  activationId: string | undefined;
  /** The record from the blocking answer. */
  record: Record<string, unknown> | undefined;
  error: string | undefined;
  body: string;
}

const agent = new Agent({ connections: 64, keepAliveTimeout: 5_000 });

export async function invokeOnce(controllerUrl: string, action: string, blocking: boolean, params: Record<string, unknown>): Promise<Omit<CallResult, 'i'>> {
  try {
    const res = await request(`${controllerUrl}/api/v1/namespaces/${NAMESPACE}/actions/${action}?blocking=${blocking}`, {
      method: 'POST',
      headers: { authorization: AUTH, 'content-type': 'application/json' },
      body: JSON.stringify(params),
      dispatcher: agent,
      headersTimeout: 180_000,
      bodyTimeout: 180_000,
    });
    const body = await res.body.text();
    let parsed: Record<string, unknown> | undefined;
    try {
      parsed = JSON.parse(body) as Record<string, unknown>;
    } catch {
      parsed = undefined;
    }
    const header = res.headers['x-openwhisk-activation-id'];
    const activationId = typeof parsed?.['activationId'] === 'string' ? parsed['activationId'] : typeof header === 'string' ? header : undefined;
    const record = parsed !== undefined && typeof parsed['response'] === 'object' ? parsed : undefined;
    return { blocking, status: res.statusCode, activationId, record, error: undefined, body: body.slice(0, 300) };
  } catch (error) {
    return { blocking, status: 0, activationId: undefined, record: undefined, error: (error as Error).message, body: '' };
  }
}

/** Bounded in count, concurrency and time. */
export async function runLoad(controllerUrl: string, options: LoadOptions): Promise<CallResult[]> {
  const results: CallResult[] = [];
  const started = Date.now();
  let next = 0;
  let fault: Promise<void> | undefined;
  const faultAt = options.at === undefined ? -1 : Math.floor(options.count * options.at.fraction);
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= options.count || Date.now() - started > options.maxMs) return;
      if (i === faultAt && options.at !== undefined) fault = options.at.run();
      const blocking = options.nonBlockingEvery === undefined || i % options.nonBlockingEvery !== 0;
      const result = await invokeOnce(controllerUrl, options.action, blocking, options.params?.(i) ?? { i });
      results.push({ i, ...result });
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  await fault;
  return results.sort((a, b) => a.i - b.i);
}

/** `GET /activations/{id}`: the record a non-blocking caller fetches. */
export async function fetchActivation(controllerUrl: string, activationId: string): Promise<{ status: number; record: Record<string, unknown> | undefined }> {
  try {
    const res = await request(`${controllerUrl}/api/v1/namespaces/${NAMESPACE}/activations/${activationId}`, { headers: { authorization: AUTH }, dispatcher: agent, headersTimeout: 10_000, bodyTimeout: 10_000 });
    const text = await res.body.text();
    return { status: res.statusCode, record: res.statusCode === 200 ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  } catch {
    return { status: 0, record: undefined };
  }
}

export interface Accounting {
  sent: number;
  accepted: number;
  /** Refused without an activation id for the caller to hold: status -> count. */
  refused: Record<string, number>;
  completed: number;
  stored: number;
  lost: string[];
  duplicates: string[];
  /** Records stored for activations the controller never gave a caller (a forced record of a refusal that named its id is not one). */
  unexpected: string[];
  /** System errors in the records the callers got: forced by the controller, or with another message. */
  systemErrors: { forced: number; other: Array<{ activationId: string; message: string }> };
  /** Activation ids an invoker ran more than once. */
  ranTwice: string[];
  /** Accepted activations whose caller could not get the record (GET /activations gave nothing). */
  notCompleted: string[];
  viaKafka: number;
}

/**
 * Waits (up to `settleMs`) until every accepted activation has a stored
 * record and a record its caller can fetch, then counts.
 */
export async function account(system: SystemUnderTest, results: CallResult[], settleMs: number, sinceIds: Set<string> = new Set()): Promise<Accounting> {
  const accepted = results.filter((r) => r.activationId !== undefined && [200, 202, 500, 502].includes(r.status));
  const refused: Record<string, number> = {};
  for (const r of results) {
    if (accepted.includes(r)) continue;
    const key = r.status === 0 ? `error: ${r.error ?? ''}`.slice(0, 80) : `${r.status} ${messageOf(r.body)}`.slice(0, 80);
    refused[key] = (refused[key] ?? 0) + 1;
  }
  const completions = new Map<string, Record<string, unknown>>();
  for (const r of accepted) if (r.record !== undefined && r.activationId !== undefined) completions.set(r.activationId, r.record);
  const until = Date.now() + settleMs;
  let stored = await system.storedRecords();
  for (;;) {
    const missing = accepted.filter((r) => !completions.has(r.activationId as string));
    await Promise.all(
      missing.map(async (r) => {
        const got = await fetchActivation(system.controllerUrl, r.activationId as string);
        if (got.record !== undefined) completions.set(r.activationId as string, got.record);
      }),
    );
    stored = await system.storedRecords();
    const allStored = accepted.every((r) => stored.has(r.activationId as string));
    if ((completions.size === accepted.length && allStored) || Date.now() > until) break;
    await sleep(1000);
  }
  const acceptedIds = new Set(accepted.map((r) => r.activationId as string));
  // A refusal can carry the id (503 + x-openwhisk-activation-id when the
  // push or publish failed); the controller's forced record of it is explained.
  const refusedIds = new Set(results.filter((r) => !accepted.includes(r) && r.activationId !== undefined).map((r) => r.activationId as string));
  const isForced = (doc: Record<string, unknown>) =>
    ((doc['annotations'] as Array<{ key: string }> | undefined) ?? []).some((a) => a.key === ANNOTATION_FORCED_COMPLETION);
  const systemErrors: Accounting['systemErrors'] = { forced: 0, other: [] };
  const runs = system.invokerRuns();
  let viaKafka = 0;
  for (const id of acceptedIds) if (runs.get(id)?.includes('kafka') === true) viaKafka++;
  for (const [activationId, record] of completions) {
    const response = record['response'] as Record<string, unknown> | undefined;
    const annotations = (record['annotations'] as Array<{ key: string; value: unknown }> | undefined) ?? [];
    const storedDoc = stored.get(activationId)?.doc;
    const storedAnnotations = (storedDoc?.['annotations'] as Array<{ key: string; value: unknown }> | undefined) ?? [];
    const isSystemError = response?.['status'] === 'whisk internal error' || response?.['statusCode'] === 3;
    if (!isSystemError) continue;
    if ([...annotations, ...storedAnnotations].some((a) => a.key === ANNOTATION_FORCED_COMPLETION)) systemErrors.forced++;
    else systemErrors.other.push({ activationId, message: JSON.stringify((response?.['result'] as Record<string, unknown> | undefined)?.['error'] ?? response?.['result']).slice(0, 160) });
  }
  return {
    sent: results.length,
    accepted: accepted.length,
    refused,
    completed: completions.size,
    stored: accepted.filter((r) => stored.has(r.activationId as string)).length,
    lost: accepted.filter((r) => !stored.has(r.activationId as string)).map((r) => r.activationId as string),
    duplicates: [...stored].filter(([, v]) => v.count > 1).map(([id]) => id),
    unexpected: [...stored].filter(([id, v]) => !acceptedIds.has(id) && !sinceIds.has(id) && !(refusedIds.has(id) && isForced(v.doc))).map(([id]) => id),
    systemErrors,
    notCompleted: accepted.filter((r) => !completions.has(r.activationId as string)).map((r) => r.activationId as string),
    viaKafka,
    ranTwice: [...acceptedIds].filter((id) => (runs.get(id)?.length ?? 0) > 1),
  };
}

function messageOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    return String(parsed['error'] ?? parsed['message'] ?? '');
  } catch {
    return body.slice(0, 60);
  }
}

/** The accounting table, one row per scenario. */
export function accountingTable(rows: Array<{ scenario: string; a: Accounting; note?: string }>): string {
  const head = '| scenario | sent | accepted | completed | stored | lost | duplicates | unexpected | system errors (forced/other) | via Kafka | refused |';
  const sep = '|---|---|---|---|---|---|---|---|---|---|---|';
  const lines = rows.map(
    ({ scenario, a, note }) =>
      `| ${scenario} | ${a.sent} | ${a.accepted} | ${a.completed} | ${a.stored} | ${a.lost.length} | ${a.duplicates.length} | ${a.unexpected.length} | ${a.systemErrors.forced}/${a.systemErrors.other.length} | ${a.viaKafka} | ${Object.entries(a.refused).map(([k, v]) => `${v}x ${k}`).join('; ') || '-'}${note !== undefined ? ` (${note})` : ''} |`,
  );
  return [head, sep, ...lines].join('\n');
}

export const SLEEPER = `function main(params) {
  const ms = typeof params.ms === 'number' ? params.ms : 100;
  return new Promise((resolve) => setTimeout(() => resolve({ i: params.i, slept: ms }), ms));
}`;

async function cli(argv: string[]): Promise<void> {
  const option = (name: string, fallback: number): number => {
    const index = argv.indexOf(`--${name}`);
    return index >= 0 ? Number(argv[index + 1]) : fallback;
  };
  const count = option('count', 2000);
  const concurrency = option('concurrency', 32);
  const memory = option('memory', 1024);
  const system = new SystemUnderTest({ invokerMemoryMb: memory });
  const stopping = () => void system.stop().finally(() => process.exit(130));
  process.once('SIGINT', stopping);
  try {
    process.stdout.write(`starting controller-lb and two invokers (${memory} MB each) on a private Kafka broker...\n`);
    await system.start();
    await system.createAction('sleeper', SLEEPER);
    const started = Date.now();
    const results = await runLoad(system.controllerUrl, { action: 'sleeper', count, concurrency, nonBlockingEvery: 2, maxMs: option('max-seconds', 900) * 1000, params: (i) => ({ i, ms: 100 }) });
    const seconds = (Date.now() - started) / 1000;
    const a = await account(system, results, 120_000);
    process.stdout.write(`${accountingTable([{ scenario: `${count} activations, concurrency ${concurrency}, half blocking`, a, note: `${(results.length / seconds).toFixed(1)}/s` }])}\n`);
    if (a.lost.length > 0) process.stdout.write(`lost: ${a.lost.join(', ')}\n`);
  } finally {
    await system.stop();
  }
}

if (process.argv[1] !== undefined && /test\/system\/load\.(ts|js)$/.test(process.argv[1])) {
  cli(process.argv.slice(2)).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`system load failed: ${(error as Error).stack ?? String(error)}\n`);
      process.exit(1);
    },
  );
}
