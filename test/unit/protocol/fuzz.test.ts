/**
 * Property test: generated and mutated inputs against every parser. Each
 * parser must either return a value or throw ProtocolParseError, nothing
 * else; whatever it accepts must serialize and read back to the same text;
 * accepted ActivationMessages must carry everything the invoker needs.
 *
 * Seeded (FUZZ_SEED=<n> to vary or reproduce; FUZZ_COUNT=<n> for more cases),
 * so a failure report names the seed and case number that reproduce it.
 */
import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import {
  ProtocolParseError,
  initBody,
  isActivationId,
  parseActivationMessage,
  runBody,
  salvageRejectedMessage,
  type ActivationMessage,
  type JsonValue,
  type WireInput,
} from '../../../protocol/index.js';
import { ALL_CODECS, CODECS, fixture, loadFixtures, type Codec } from '../../fixtures/protocol/codecs.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240531);
const COUNT = Number(process.env.FUZZ_COUNT ?? 12_000);

/** mulberry32: small, fast, good enough to spread inputs; no dependency. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = prng(SEED);
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;

const fixtures = loadFixtures();

function randomString(): string {
  const pools = [
    () => String.fromCharCode(97 + int(26)),
    () => String.fromCharCode(int(0x20)), // control characters
    () => pick(['"', '\\', '/', '\u2028', '\u2029', '\u0000', 'é', '☃']),
    () => String.fromCodePoint(0x1f600 + int(80)), // astral (surrogate pairs)
    () => String.fromCharCode(0xd800 + int(0x800)), // lone surrogates
    () => String.fromCharCode(int(0x10000)),
  ];
  let s = '';
  const n = int(3) === 0 ? int(200) : int(12);
  for (let i = 0; i < n; i++) s += pick(pools)();
  return s;
}

function nested(depth: number): JsonValue {
  let v: JsonValue = int(2) === 0 ? [] : {};
  for (let i = 0; i < depth; i++) v = int(2) === 0 ? [v] : { k: v };
  return v;
}

/** A JSON value of a random type, biased towards the values parsers find awkward. */
function randomValue(depth = 0): JsonValue {
  switch (int(depth > 3 ? 9 : 12)) {
    case 0:
      return null;
    case 1:
      return int(2) === 0;
    case 2:
      return pick([0, -1, 1, 1.5, -0, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, Number.MAX_SAFE_INTEGER, 4294967296, 1717171717171]);
    case 3:
      return int(1_000_000);
    case 4:
      return randomString();
    case 5:
      return pick(['', 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c', 'A8B3C0F1D2E34F5A9B6C7D8E9F0A1B2C', '2147483648 B', '0 g', '1024 MB', 'invoker', 'controller', 'x'.repeat(5000)]);
    case 6:
      return nested(int(5) === 0 ? 995 + int(10) : int(20));
    case 7:
      return pick([['id', 1], ['id', 1, true], ['id', 1, ['p', 0]], ['id', 1, false, ['p', 0]], ['id'], [1, 'id'], []]);
    case 8:
      return {};
    case 9: {
      const a: JsonValue[] = [];
      for (let i = int(4); i > 0; i--) a.push(randomValue(depth + 1));
      return a;
    }
    default: {
      const o: Record<string, JsonValue> = {};
      for (let i = int(5); i > 0; i--) o[int(4) === 0 ? randomString() : pick(['a', 'name', 'instance', 'response', '__proto__', '0', 'error'])] = randomValue(depth + 1);
      return o;
    }
  }
}

/** Replaces, deletes or adds something at a random place in a parsed fixture. */
function mutateValue(root: JsonValue): JsonValue {
  const containers: (JsonValue[] | Record<string, JsonValue>)[] = [];
  const walk = (v: JsonValue): void => {
    if (v !== null && typeof v === 'object') {
      containers.push(v);
      for (const child of Array.isArray(v) ? v : Object.values(v)) walk(child);
    }
  };
  walk(root);
  for (let edits = 1 + int(3); edits > 0; edits--) {
    const c = pick(containers);
    if (Array.isArray(c)) {
      const op = int(3);
      if (op === 0 && c.length > 0) c.splice(int(c.length), 1);
      else if (op === 1) c.push(randomValue());
      else if (c.length > 0) c[int(c.length)] = randomValue();
    } else {
      const keys = Object.keys(c);
      const op = int(3);
      if (op === 0 && keys.length > 0) delete c[pick(keys)];
      else if (op === 1) c[int(2) === 0 ? randomString() : pick(['cause', 'content', 'traceContext', 'instance', 'response', 'busyMemory', 'binding', 'isEnabled', 'invoker'])] = randomValue();
      else if (keys.length > 0) c[pick(keys)] = randomValue();
    }
  }
  return root;
}

/** Text-level edits that JSON.stringify could never produce. */
function mutateText(text: string): string {
  switch (int(6)) {
    case 0:
      return text.slice(0, int(text.length)); // truncated
    case 1: {
      const at = int(text.length);
      return text.slice(0, at) + pick(['1e400', '-0', '123456789012345678901234567890', '"\\ud800"', '"\\u0000"', 'NaN', ',', '}', ']', '"']) + text.slice(at);
    }
    case 2: {
      const at = int(text.length);
      return text.slice(0, at) + text.slice(at + 1 + int(20));
    }
    case 3:
      return text.replace(/\d+/, pick(['1e400', '1.0', '-5', '99999999999999999999999', '0x10']));
    case 4: {
      let s = '';
      for (let i = int(200); i > 0; i--) s += pick(['{', '}', '[', ']', '"', ':', ',', '0', '1', 'true', 'null', '\\', 'u', 'a', ' ']);
      return s;
    }
    default:
      return `${'['.repeat(int(3000))}${text}`;
  }
}

function flipBytes(text: string): Uint8Array {
  const bytes = Buffer.from(text, 'utf8');
  for (let n = 1 + int(4); n > 0; n--) {
    const i = int(bytes.length);
    bytes[i] = int(2) === 0 ? (bytes[i] ?? 0) ^ (1 << int(8)) : int(256);
  }
  return bytes;
}

function nextInput(): WireInput {
  const f = pick(fixtures);
  switch (int(5)) {
    case 0:
      return flipBytes(f.text);
    case 1:
      return mutateText(f.text);
    case 2:
      return JSON.stringify(mutateValue(JSON.parse(f.text) as JsonValue));
    case 3: {
      // Mutate, then splice into another fixture's place (e.g. an invoker id where an activation goes).
      const s = JSON.stringify(mutateValue(JSON.parse(f.text) as JsonValue));
      return int(2) === 0 ? s : Buffer.from(mutateText(s));
    }
    default:
      return JSON.stringify(randomValue());
  }
}

function describeInput(input: WireInput): string {
  const s = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
  return JSON.stringify(s.length > 300 ? `${s.slice(0, 300)}...(${s.length} chars)` : s);
}

function checkActivationMessage(m: ActivationMessage): string | undefined {
  if (typeof m.transid?.id !== 'string' || !Number.isSafeInteger(m.transid.start)) return 'transid';
  if (typeof m.action?.path !== 'string' || m.action.path === '' || typeof m.action.name !== 'string' || m.action.name === '') return 'action';
  if (typeof m.user?.namespace?.name !== 'string' || typeof m.user.authkey !== 'object' || m.user.authkey === null) return 'user';
  if (!isActivationId(m.activationId)) return 'activationId';
  if (typeof m.rootControllerIndex?.asString !== 'string' || !/^[a-zA-Z0-9._-]+$/.test(m.rootControllerIndex.asString)) return 'rootControllerIndex';
  if (typeof m.blocking !== 'boolean') return 'blocking';
  if (!Array.isArray(m.initArgs) || typeof m.lockedArgs !== 'object') return 'initArgs/lockedArgs';
  if (m.revision !== null && typeof m.revision !== 'string') return 'revision';
  return undefined;
}

t.test(`fuzz: ${COUNT} inputs x ${ALL_CODECS.length} parsers (FUZZ_SEED=${SEED})`, async (t) => {
  const started = Date.now();
  const failures: string[] = [];
  const accepted = new Map<Codec, number>();
  let rejected = 0;
  for (let i = 0; i < COUNT && failures.length < 10; i++) {
    const input = nextInput();
    try {
      const salvaged = salvageRejectedMessage(typeof input === 'string' ? Buffer.from(input) : input);
      if (salvaged.activationId !== undefined && !isActivationId(salvaged.activationId)) {
        failures.push(`case ${i}: salvage returned an invalid activation id`);
      }
    } catch (err) {
      failures.push(`case ${i}, salvageRejectedMessage: threw ${String(err)} on ${describeInput(input)}`);
    }
    for (const codec of ALL_CODECS) {
      let value: unknown;
      try {
        value = codec.parse(input);
      } catch (err) {
        if (err instanceof ProtocolParseError && err.message.startsWith(codec.name)) {
          rejected++;
          continue;
        }
        failures.push(`case ${i}, ${codec.name}: threw ${String(err)} on ${describeInput(input)}`);
        continue;
      }
      accepted.set(codec, (accepted.get(codec) ?? 0) + 1);
      try {
        if (codec === CODECS.activationMessage) {
          const problem = checkActivationMessage(value as ActivationMessage);
          if (problem !== undefined) failures.push(`case ${i}: accepted an ActivationMessage with a bad ${problem}`);
        }
        const text = codec.serialize(value as never);
        const again = codec.parse(text);
        if (codec.serialize(again as never) !== text) failures.push(`case ${i}, ${codec.name}: serialization is not a fixpoint on ${describeInput(input)}`);
        // -0 is the one value JSON cannot carry; everything else must read back identically.
        if (!text.includes('-0') && !isDeepStrictEqual(again, value)) failures.push(`case ${i}, ${codec.name}: parse(serialize(x)) differs from x on ${describeInput(input)}`);
      } catch (err) {
        failures.push(`case ${i}, ${codec.name}: accepted, then ${String(err)} on ${describeInput(input)}`);
      }
    }
  }
  const seconds = (Date.now() - started) / 1000;
  t.same(failures, [], `no failures (reproduce with FUZZ_SEED=${SEED})`);
  t.ok(rejected > COUNT, `${rejected} rejections`);
  // The generator must also produce acceptable inputs, or the round-trip checks test nothing.
  for (const codec of ALL_CODECS) t.ok((accepted.get(codec) ?? 0) > 0, `${codec.name}: ${accepted.get(codec) ?? 0} accepted`);
  t.ok(seconds < 20, `took ${seconds.toFixed(1)} s`);
});

// Numbers a double cannot carry, and forms JavaScript would rewrite (1.0 -> 1, 1E+21 -> 1e+21).
const NUMBER_TEXTS = ['12345678901234567890', '9007199254740993', '0.12345678901234567890123', '1E+400', '-1E-400', '1.0', '1E+21', '-0', '0', '1e2', '123.4500', '0.0000001'];
const WS = ['', '', '', ' ', '\n', '\t ', '\r\n  '];

/** A random JSON text built by hand, so that it holds number texts JSON.stringify could never write. */
function randomJsonText(depth = 0): string {
  const ws = (): string => pick(WS);
  switch (int(depth > 2 ? 5 : 7)) {
    case 0:
      return pick(NUMBER_TEXTS);
    case 1:
      return String(int(1000) - 500) + (int(2) === 0 ? `.${int(1000)}` : '') + (int(3) === 0 ? pick(['e', 'E', 'e+', 'E-']) + String(int(400)) : '');
    case 2:
      return JSON.stringify(randomString()).replace(/[a-z]/, (c) => (int(4) === 0 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c));
    case 3:
      return pick(['true', 'false', 'null']);
    case 4:
      return pick(['{}', '[]', '""']);
    case 5: {
      const items: string[] = [];
      for (let i = int(4); i > 0; i--) items.push(`${ws()}${randomJsonText(depth + 1)}${ws()}`);
      return `[${items.join(',')}]`;
    }
    default:
      return randomObjectText(depth).text;
  }
}

function randomObjectText(depth: number): { text: string; members: { key: string; keyText: string; text: string }[] } {
  const members: { key: string; keyText: string; text: string }[] = [];
  for (let i = int(5); i > 0; i--) {
    const key = int(3) === 0 ? randomString() : pick(['a', 'name', 'n', 'INIT', 'content', '__proto__', '0', 'é']);
    members.push({ key, keyText: JSON.stringify(key), text: randomJsonText(depth + 1) });
  }
  const ws = (): string => pick(WS);
  return { text: `{${members.map((m) => `${ws()}${m.keyText}${ws()}:${ws()}${m.text}${ws()}`).join(',')}}`, members };
}

t.test(`fuzz: content of any JSON value, with exact numbers, through parse -> /run and /init bodies (FUZZ_SEED=${SEED})`, async (t) => {
  const action = { name: 'a', binary: false, code: 'x', annotations: [] };
  const template = fixture('activation-message.json');
  const failures: string[] = [];
  const cases = Math.ceil(COUNT / 6);
  let objects = 0;
  for (let i = 0; i < cases && failures.length < 10; i++) {
    const asObject = int(2) === 0;
    const obj = asObject ? randomObjectText(0) : undefined;
    const content = obj?.text ?? randomJsonText();
    const initKeys = obj ? obj.members.filter(() => int(3) === 0).map((m) => m.key) : [];
    const text = template.replace('"content":{"name":"World"},"initArgs":[]', `"content":${pick(WS)}${content}${pick(WS)},"initArgs":${JSON.stringify(initKeys)}`);
    let msg: ActivationMessage;
    try {
      msg = parseActivationMessage(text);
    } catch (err) {
      failures.push(`case ${i}: refused ${JSON.stringify(content)}: ${String(err)}`);
      continue;
    }
    const run = runBody({ msg, content: msg.content, action, deadline: 1 });
    const value = run.slice('{"value":'.length, run.indexOf(',"api_key"'));
    if (content === 'null') {
      if (msg.content !== undefined || value !== '{}') failures.push(`case ${i}: null content should read as none`);
      continue;
    }
    if (msg.content?.text !== content) failures.push(`case ${i}: content text changed: ${JSON.stringify(content)}`);
    if (obj === undefined || initKeys.length === 0) {
      if (value !== content) failures.push(`case ${i}: /run value is not the content text: ${JSON.stringify(content)} -> ${JSON.stringify(value)}`);
      continue;
    }
    objects++;
    // With init arguments: the other members, each value's text unchanged, none of the init ones.
    const kept = obj.members.filter((m) => !initKeys.includes(m.key));
    let rest = value.slice(1, -1);
    for (const m of kept) {
      const at = rest.indexOf(m.text);
      if (at < 0) failures.push(`case ${i}: member ${m.keyText} lost or changed in ${JSON.stringify(value)}`);
      else rest = rest.slice(at + m.text.length);
    }
    const parsedRun = JSON.parse(value) as Record<string, unknown>;
    for (const key of initKeys) if (Object.hasOwn(parsedRun, key)) failures.push(`case ${i}: init argument ${JSON.stringify(key)} reached /run`);
    const env = (JSON.parse(initBody({ msg, content: msg.content, action, deadline: 1 })) as { value: { env: Record<string, string> } }).value.env;
    for (const key of initKeys) {
      const last = obj.members.filter((m) => m.key === key).at(-1)?.text ?? '';
      const got = env[key];
      if (typeof got !== 'string') failures.push(`case ${i}: env ${JSON.stringify(key)} missing`);
      else if (/^-?[0-9]/.test(last) && Number(got) !== Number(last) && !(Number.isNaN(Number(got)) && Number.isNaN(Number(last)))) {
        failures.push(`case ${i}: env ${JSON.stringify(key)} = ${got} for the number ${last}`);
      } else if (/^-?[0-9]/.test(last) && !/^-?[0-9]+(\.[0-9]+)?(E[+-][0-9]+)?$/.test(got)) {
        failures.push(`case ${i}: env ${JSON.stringify(key)} = ${got} is not a BigDecimal string`);
      }
    }
  }
  t.same(failures, [], `no failures (reproduce with FUZZ_SEED=${SEED})`);
  t.ok(objects > cases / 10, `${objects} objects with init arguments`);
});
