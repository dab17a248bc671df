/**
 * Protocol codec throughput against plain JSON.parse / JSON.stringify of the
 * same bytes, measured in the same run (so machine speed cancels out).
 *
 *   node --import tsx test/bench/protocol.bench.ts      (or: npm run bench protocol)
 *
 * The aim (issue 3): validation and field-ordered writing cost at most 2x raw
 * JSON. The whole run is bounded to a few seconds.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  parseAcknowledgement,
  parseActivationMessage,
  runBody,
  serializeAcknowledgement,
  serializeActivationMessage,
} from '../../protocol/index.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'protocol');
const MS_PER_CASE = Number(process.env.BENCH_MS ?? 300);

/** CPU time of this process in ns: unlike wall time, it does not count the time other processes had the cores. */
function cpuNanos(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1000;
}

/** Runs `fn` in batches until `ms` of CPU time have passed; returns operations per CPU second. */
function measure(fn: () => unknown, ms: number): number {
  let sink: unknown;
  const batch = 1000;
  for (let i = 0; i < batch * 5; i++) sink = fn(); // warm-up: let the JIT settle
  let ops = 0;
  const start = cpuNanos();
  const limit = ms * 1e6;
  let elapsed = 0;
  while (elapsed < limit) {
    for (let i = 0; i < batch; i++) sink = fn();
    ops += batch;
    elapsed = cpuNanos() - start;
  }
  if (sink === Symbol.for('never')) console.log(sink); // keep results alive
  return (ops * 1e9) / elapsed;
}

interface Row {
  name: string;
  ours: number;
  baseline: number;
}

function compare(name: string, ours: () => unknown, baseline: () => unknown): Row {
  // Interleave and take the best of three so that a GC pause or frequency
  // change in one slice does not decide the ratio.
  let best = { ours: 0, baseline: 0 };
  for (let round = 0; round < 3; round++) {
    const b = measure(baseline, MS_PER_CASE / 3);
    const o = measure(ours, MS_PER_CASE / 3);
    best = { ours: Math.max(best.ours, o), baseline: Math.max(best.baseline, b) };
  }
  return { name, ...best };
}

const messageText = readFileSync(join(fixtures, 'activation-message-binding-trace.json'), 'utf8');
const messageBytes = Buffer.from(messageText);
const ackText = readFileSync(join(fixtures, 'ack-combined-full.json'), 'utf8');
const ackBytes = Buffer.from(ackText);

const message = parseActivationMessage(messageText);
const messageRaw = JSON.parse(messageText) as { content: Record<string, unknown> };
const ack = parseAcknowledgement(ackText);
const ackRaw: unknown = JSON.parse(ackText);
const runCall = {
  msg: message,
  content: message.content,
  action: { name: 'format', binary: false, annotations: [] },
  deadline: 1717171777210,
};

const rows: Row[] = [
  compare(
    'parse ActivationMessage (bytes)',
    () => parseActivationMessage(messageBytes),
    () => JSON.parse(messageBytes.toString('utf8')),
  ),
  compare('serialize ActivationMessage', () => serializeActivationMessage(message), () => JSON.stringify(messageRaw)),
  compare(
    'parse Combined ack, full (bytes)',
    () => parseAcknowledgement(ackBytes),
    () => JSON.parse(ackBytes.toString('utf8')),
  ),
  compare('serialize Combined ack, full', () => serializeAcknowledgement(ack), () => JSON.stringify(ackRaw)),
  compare(
    'build /run body',
    () => runBody(runCall),
    // The same body built the obvious way: an object literal, then stringify.
    () => {
      const { DB_URL: _init, ...value } = messageRaw.content;
      return JSON.stringify({
        value,
        api_key: message.user.authkey['api_key'],
        namespace: message.user.namespace.name,
        action_name: `/${message.action.path}/${message.action.name}`,
        action_version: message.action.version,
        activation_id: message.activationId,
        transaction_id: message.transid.id,
        deadline: String(runCall.deadline),
      });
    },
  ),
  compare(
    'parse + /run body (hot path)',
    () => {
      const m = parseActivationMessage(messageBytes);
      return runBody({ msg: m, content: m.content, action: runCall.action, deadline: runCall.deadline });
    },
    () => {
      const m = JSON.parse(messageBytes.toString('utf8')) as typeof messageRaw;
      const { DB_URL: _init, ...value } = m.content;
      return JSON.stringify({ value, namespace: 'guest', deadline: String(runCall.deadline) });
    },
  ),
];

const pad = (s: string, n: number): string => s.padEnd(n);
const num = (n: number): string => Math.round(n).toLocaleString('en-US').padStart(11);
console.log(`message ${messageBytes.length} B, ack ${ackBytes.length} B, ~${MS_PER_CASE} ms of CPU time per case`);
console.log(`${pad('case', 34)} ${'ours ops/s'.padStart(11)} ${'JSON ops/s'.padStart(11)}  cost vs JSON`);
let over = 0;
for (const r of rows) {
  const ratio = r.baseline / r.ours;
  if (ratio > 2) over++;
  console.log(`${pad(r.name, 34)} ${num(r.ours)} ${num(r.baseline)}  ${ratio.toFixed(2)}x${ratio > 2 ? '  (over the 2x aim)' : ''}`);
}
console.log(over === 0 ? 'all cases within 2x of raw JSON' : `${over} case(s) over the 2x aim`);
