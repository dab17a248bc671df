/**
 * The runtime manifest: which action kinds this invoker can run, from which
 * image, and how many "stem cell" containers (created ahead of demand) to keep per kind.
 *
 * Input is upstream's `runtimes.json` format (the value of upstream's
 * `RUNTIMES_MANIFEST`), so an operator can reuse an existing manifest:
 *
 *   {"runtimes": {"nodejs": [{"kind": "nodejs:20", "default": true,
 *     "image": {"prefix": "openwhisk", "name": "action-nodejs-v20", "tag": "nightly"},
 *     "stemCells": [{"initialCount": 2, "memory": "256 MB"}]}]},
 *    "blackboxes": [{"prefix": "openwhisk", "name": "dockerskeleton", "tag": "nightly"}]}
 *
 * The rules are upstream's (common/scala/.../core/entity/ExecManifest.scala,
 * Size.scala), so a manifest upstream accepts loads here and one it refuses
 * is refused here, resolved the same way:
 *
 * - every family needs exactly one default kind, except a family of a single
 *   kind, which is its own default; a family of several kinds and no default,
 *   an empty family and a family of several defaults are refused;
 * - `<family>:default` resolves to that default when `<family>` is `[a-z0-9]+`
 *   (upstream's `defaultSplitter`); any other kind is looked up as written;
 * - a stem cell needs `initialCount` (or the older `count`) > 0 and `memory`,
 *   a byte size in any unit (`"256 MB"`, `"300000 KB"`, `"1g"`); `reactive`
 *   is validated as upstream validates it (counts, `ttl` a duration), then
 *   ignored: prewarming here is a fixed count per (kind, memory);
 * - `runtimes` and `blackboxes` may be absent; unknown fields are ignored.
 *
 * Fields we do not act on (`attached`, `requireMain`, `sentinelledLogs`,
 * `deprecated` beyond reporting it) are type-checked and kept.
 */
import { readFile } from 'node:fs/promises';
import type { StemCellSpec } from './pool/types.js';

/** The images the project builds for the built-in `nodejs:20` and `nodejs:24` kinds. */
export const DEFAULT_NODEJS_IMAGE = 'whisk/action-nodejs-v20:local';
export const DEFAULT_NODEJS24_IMAGE = 'whisk/action-nodejs-v24:local';
/** Upstream's default kind of the family (apache/openwhisk ansible/files/runtimes.json). */
export const DEFAULT_NODEJS_KIND = 'nodejs:20';

export interface StemCell {
  /** Stem cells to keep. */
  count: number;
  /**
   * Memory in whole MiB (upstream `ByteSize.toMB`, rounded down): the
   * container's limit and what the pool accounts for it.
   */
  memoryMb: number;
  /**
   * The size exactly as configured. Upstream hands a stem cell to
   * an action only when this equals the action's memory limit (ByteSize
   * equality), so a stem cell that is not a whole number of MiB is created
   * but never used, as upstream's is.
   */
  memoryBytes: number;
}

export interface RuntimeKind {
  /** e.g. `nodejs:20`. */
  kind: string;
  /** The key under `runtimes`, e.g. `nodejs`; `<family>:default` resolves within it. */
  family: string;
  /** Full image reference: `[registry/][prefix/]name[:tag]`. */
  image: string;
  default: boolean;
  deprecated: boolean;
  /** The manifest's `attached`: upstream stores the code of this kind as an attachment (always, for upstream's kinds). */
  attached: boolean;
  requireMain: boolean;
  stemCells: readonly StemCell[];
}


export interface RuntimeManifest {
  readonly kinds: ReadonlyMap<string, RuntimeKind>;
  /** Images accepted for blackbox (user image) actions. */
  readonly blackboxes: readonly string[];
  /** `nodejs:20` -> itself; `nodejs:default` -> the family's default kind. Throws UnknownKindError. */
  resolveKind(kind: string): RuntimeKind;
  /** Image of a (possibly `:default`) kind. Throws UnknownKindError. */
  imageFor(kind: string): string;
  /**
   * Every stem cell of every kind, flattened for the container pool, counts
   * of duplicate (kind, memory) entries added; `memoryBytes` always set (see
   * StemCell.memoryBytes).
   */
  stemCells(): StemCellSpec[];
}

/** A manifest that cannot be used; `path` is the JSON path of the bad field. */
export class RuntimeManifestError extends Error {
  override readonly name = 'RuntimeManifestError';
  readonly path: string;
  readonly reason: string;

  constructor(path: string, reason: string, options?: { cause?: unknown }) {
    super(`runtime manifest ${path}: ${reason}`, options);
    this.path = path;
    this.reason = reason;
  }
}

/** An action asked for a kind the manifest does not list. */
export class UnknownKindError extends Error {
  override readonly name = 'UnknownKindError';
  readonly kind: string;

  constructor(kind: string, known: readonly string[]) {
    super(`unknown action kind "${kind}" (this invoker runs: ${known.join(', ') || 'nothing'})`);
    this.kind = kind;
  }
}

// ---------------------------------------------------------------------------
// Parsing

type Json = unknown;

function describe(value: Json): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function fail(path: string, reason: string): never {
  throw new RuntimeManifestError(path, reason);
}

function asObject(value: Json, path: string): Record<string, Json> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(path, `expected an object, got ${describe(value)}`);
  }
  return value as Record<string, Json>;
}

function asArray(value: Json, path: string): Json[] {
  if (!Array.isArray(value)) return fail(path, `expected an array, got ${describe(value)}`);
  return value as Json[];
}

function asString(value: Json, path: string): string {
  if (typeof value !== 'string') return fail(path, `expected a string, got ${describe(value)}`);
  return value;
}

function asNonEmptyString(value: Json, path: string): string {
  const s = asString(value, path);
  if (s.trim() === '') fail(path, 'must not be empty');
  return s;
}

function optionalString(value: Json, path: string): string | undefined {
  return value === undefined || value === null ? undefined : asString(value, path);
}

function optionalBoolean(value: Json, path: string): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') return fail(path, `expected a boolean, got ${describe(value)}`);
  return value;
}

const MIB = 1024 * 1024;

/**
 * Upstream `ByteSize.fromString`: `"256 MB"`, `"256m"`, `"300000 KB"`, `"1g"`,
 * `"1024 B"` (the whole string, case-insensitive, 1024-based units) -> bytes.
 */
export function parseByteSize(value: Json, path: string): number {
  const text = asString(value, path);
  // Upstream's pattern, whole string. Anchored, no nested quantifiers:
  // linear; the length cap keeps error messages short.
  const match = text.length <= 64 ? /^\s?(\d+)\s?(GB|MB|KB|B|G|M|K)\s?$/i.exec(text) : null;
  if (match === null) {
    return fail(path, `${JSON.stringify(text.slice(0, 64))}: expected a size such as "256 MB" (units B, K[B], M[B], G[B])`);
  }
  const unit = (match[2] ?? 'B').charAt(0).toUpperCase();
  const bytes = Number(match[1]) * (unit === 'G' ? 1024 ** 3 : unit === 'M' ? MIB : unit === 'K' ? 1024 : 1);
  if (!Number.isSafeInteger(bytes)) return fail(path, `${JSON.stringify(text)}: size too large`);
  return bytes;
}

/**
 * A stem cell's memory: the exact bytes and whole MiB (rounded down, as
 * upstream's `toMB` does for the container's memory limit). Less than 1 MiB
 * would be a container limit of 0 (no limit at all to Docker) and is refused.
 */
export function parseStemCellMemory(value: Json, path: string): { memoryMb: number; memoryBytes: number } {
  const memoryBytes = parseByteSize(value, path);
  const memoryMb = Math.floor(memoryBytes / MIB);
  if (memoryMb < 1) return fail(path, `${JSON.stringify(value)} is less than 1 MB, which would leave the container without a memory limit`);
  return { memoryMb, memoryBytes };
}

/**
 * `"256 MB"` -> 256 (MiB), for settings the pool takes in whole MiB: a size
 * that is not a whole number of MiB is refused rather than rounded.
 */
export function parseMemoryMb(value: Json, path: string): number {
  const bytes = parseByteSize(value, path);
  if (bytes % MIB !== 0) return fail(path, `${JSON.stringify(value)} is not a whole number of MiB`);
  if (bytes === 0) return fail(path, 'memory must be greater than 0');
  return bytes / MIB;
}

/**
 * A Scala `Duration` string as upstream's `ttl` takes it (`"2 minutes"`,
 * `"30 s"`, `"1.5 hours"`, `"100ms"`) -> milliseconds.
 */
export function parseDurationMs(value: Json, path: string): number {
  const text = asString(value, path);
  const match = text.length <= 64 ? /^\s*(\d+(?:\.\d+)?)\s*([a-zµ]+)\s*$/i.exec(text) : null;
  const unit = match === null ? undefined : DURATION_UNITS[(match[2] ?? '').toLowerCase()];
  if (match === null || unit === undefined) {
    return fail(path, `${JSON.stringify(text.slice(0, 64))}: expected a duration such as "2 minutes" (units d, h, min, s, ms, us, ns and their long forms)`);
  }
  return Number(match[1]) * unit;
}

const DURATION_UNITS: Record<string, number> = (() => {
  const units: Record<string, number> = {};
  const add = (ms: number, ...names: string[]) => names.forEach((n) => (units[n] = ms));
  add(86_400_000, 'd', 'day', 'days');
  add(3_600_000, 'h', 'hour', 'hours');
  add(60_000, 'min', 'mins', 'minute', 'minutes');
  add(1000, 's', 'sec', 'secs', 'second', 'seconds');
  add(1, 'ms', 'milli', 'millis', 'millisecond', 'milliseconds');
  add(0.001, 'us', 'µs', 'micro', 'micros', 'microsecond', 'microseconds');
  add(0.000001, 'ns', 'nano', 'nanos', 'nanosecond', 'nanoseconds');
  return units;
})();

/** Upstream `ImageName`: `registry/prefix/name:tag`, every part but the name optional. */
function parseImage(value: Json, path: string): string {
  const image = asObject(value, path);
  const name = asNonEmptyString(image.name, `${path}.name`);
  const registry = optionalString(image.registry, `${path}.registry`);
  const prefix = optionalString(image.prefix, `${path}.prefix`);
  const tag = optionalString(image.tag, `${path}.tag`);
  const repository = [registry, prefix, name].filter((part) => part !== undefined && part !== '').join('/');
  // No tag means Docker's own default ("latest"); writing it out would only hide that.
  return tag === undefined || tag === '' ? repository : `${repository}:${tag}`;
}

function integer(value: Json, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    return fail(path, `expected an integer, got ${describe(value)}${typeof value === 'number' ? ` ${value}` : ''}`);
  }
  return value;
}

/** Upstream ExecManifest.StemCell and ReactivePrewarmingConfig, with their `require`s. */
function parseStemCell(value: Json, path: string): StemCell {
  const cell = asObject(value, path);
  // Current upstream writes `initialCount`; older manifests wrote `count`.
  const countKey = cell.initialCount !== undefined ? 'initialCount' : 'count';
  if (cell[countKey] === undefined) fail(`${path}.initialCount`, 'is required (stem cells need initialCount and memory)');
  if (cell.memory === undefined) fail(`${path}.memory`, 'is required (stem cells need initialCount and memory)');
  const count = integer(cell[countKey], `${path}.${countKey}`);
  if (count <= 0) fail(`${path}.${countKey}`, `must be positive, got ${count}`);
  const memory = parseStemCellMemory(cell.memory, `${path}.memory`);
  if (cell.reactive !== undefined && cell.reactive !== null) {
    const r = asObject(cell.reactive, `${path}.reactive`);
    const at = (key: string) => `${path}.reactive.${key}`;
    for (const key of ['minCount', 'maxCount', 'ttl', 'threshold', 'increment']) {
      if (r[key] === undefined) fail(at(key), 'is required');
    }
    const minCount = integer(r.minCount, at('minCount'));
    const maxCount = integer(r.maxCount, at('maxCount'));
    const ttlMs = parseDurationMs(r.ttl, at('ttl'));
    const threshold = integer(r.threshold, at('threshold'));
    const increment = integer(r.increment, at('increment'));
    if (!(minCount >= 0 && minCount <= maxCount)) fail(at('minCount'), `must be at least 0 and at most maxCount (${maxCount}), got ${minCount}`);
    if (maxCount <= 0) fail(at('maxCount'), `must be positive, got ${maxCount}`);
    if (!(Math.trunc(ttlMs) > 0)) fail(at('ttl'), `must be positive, got ${JSON.stringify(r.ttl)}`);
    if (threshold <= 0) fail(at('threshold'), `must be positive, got ${threshold}`);
    if (!(increment > 0 && increment <= maxCount)) fail(at('increment'), `must be positive and at most maxCount (${maxCount}), got ${increment}`);
  }
  return { count, ...memory };
}

function optionalObject(value: Json, path: string): boolean {
  if (value === undefined || value === null) return false;
  asObject(value, path);
  return true;
}

function parseKind(value: Json, family: string, path: string): RuntimeKind {
  const entry = asObject(value, path);
  const kind = asNonEmptyString(entry.kind, `${path}.kind`);
  const image = parseImage(entry.image, `${path}.image`);
  const attached = optionalObject(entry.attached, `${path}.attached`);
  if (attached) {
    const a = entry.attached as Record<string, Json>;
    asString(a.attachmentName, `${path}.attached.attachmentName`);
    asString(a.attachmentType, `${path}.attached.attachmentType`);
  }
  optionalBoolean(entry.sentinelledLogs, `${path}.sentinelledLogs`);
  const stemCells =
    entry.stemCells === undefined || entry.stemCells === null
      ? []
      : asArray(entry.stemCells, `${path}.stemCells`).map((cell, i) => parseStemCell(cell, `${path}.stemCells[${i}]`));
  return {
    kind,
    family,
    image,
    default: optionalBoolean(entry.default, `${path}.default`),
    deprecated: optionalBoolean(entry.deprecated, `${path}.deprecated`),
    attached,
    requireMain: optionalBoolean(entry.requireMain, `${path}.requireMain`),
    stemCells,
  };
}

/**
 * Parses manifest JSON text (or an already parsed value). `source` names where
 * the text came from (an env var, a file) and prefixes every error path.
 */
export function parseRuntimeManifest(input: string | Json, source = 'manifest'): RuntimeManifest {
  let root: Json = input;
  if (typeof input === 'string') {
    try {
      root = JSON.parse(input) as Json;
    } catch (error) {
      throw new RuntimeManifestError(source, `invalid JSON: ${(error as Error).message}`, { cause: error });
    }
  }
  const top = asObject(root, source);
  // Upstream reads a manifest without `runtimes` as one without kinds.
  const runtimes = top.runtimes === undefined || top.runtimes === null ? {} : asObject(top.runtimes, `${source}.runtimes`);

  const kinds = new Map<string, RuntimeKind>();
  const defaults = new Map<string, RuntimeKind>();
  for (const [family, list] of Object.entries(runtimes)) {
    const familyPath = `${source}.runtimes.${family}`;
    const entries = asArray(list, familyPath);
    const members: RuntimeKind[] = [];
    entries.forEach((value, i) => {
      const path = `${familyPath}[${i}]`;
      const kind = parseKind(value, family, path);
      const existing = kinds.get(kind.kind);
      if (existing !== undefined) {
        fail(`${path}.kind`, `"${kind.kind}" is already defined in family "${existing.family}"`);
      }
      if (kind.default) {
        const other = defaults.get(family);
        if (other !== undefined) fail(`${path}.default`, `family "${family}" already has default kind "${other.kind}"`);
        defaults.set(family, kind);
      }
      kinds.set(kind.kind, kind);
      members.push(kind);
    });
    // Upstream Runtimes.defaultRuntimes: a lone kind is its family's default;
    // several kinds need one marked `default: true`.
    if (!defaults.has(family)) {
      const only = members[0];
      if (members.length === 1 && only !== undefined) defaults.set(family, only);
      else fail(familyPath, members.length === 0 ? `family "${family}" has no kinds, so no default` : `family "${family}" has multiple versions, but no default`);
    }
  }

  const blackboxes =
    top.blackboxes === undefined || top.blackboxes === null
      ? []
      : asArray(top.blackboxes, `${source}.blackboxes`).map((image, i) => parseImage(image, `${source}.blackboxes[${i}]`));

  return createManifest(kinds, defaults, blackboxes);
}

function createManifest(
  kinds: ReadonlyMap<string, RuntimeKind>,
  defaults: ReadonlyMap<string, RuntimeKind>,
  blackboxes: readonly string[],
): RuntimeManifest {
  // Upstream Runtimes.resolveDefaultRuntime: `<family>:default` (family
  // `[a-z0-9]+`) goes to the family's default, anything else is looked up as is.
  const resolveKind = (kind: string): RuntimeKind => {
    const family = /^([a-z0-9]+):default$/.exec(kind)?.[1];
    const found = family !== undefined ? defaults.get(family) : kinds.get(kind);
    if (found !== undefined) return found;
    throw new UnknownKindError(kind, [...kinds.keys()]);
  };
  return {
    kinds,
    blackboxes,
    resolveKind,
    imageFor: (kind) => resolveKind(kind).image,
    stemCells: () => {
      const targets = new Map<string, StemCellSpec>();
      for (const runtime of kinds.values()) {
        for (const cell of runtime.stemCells) {
          if (cell.count === 0) continue;
          const key = `${runtime.kind}\u0000${cell.memoryBytes}`;
          const existing = targets.get(key);
          if (existing !== undefined) existing.count += cell.count;
          else targets.set(key, { kind: runtime.kind, image: runtime.image, memoryMb: cell.memoryMb, memoryBytes: cell.memoryBytes, count: cell.count });
        }
      }
      return [...targets.values()];
    },
  };
}

/** Reads and parses a manifest file; errors name the file. */
export async function readRuntimeManifestFile(path: string): Promise<RuntimeManifest> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new RuntimeManifestError(path, `cannot read the file: ${(error as Error).message}`, { cause: error });
  }
  return parseRuntimeManifest(text, path);
}

export interface DefaultManifestOptions {
  /** Image of `nodejs:20`; default DEFAULT_NODEJS_IMAGE (built by this project). */
  image?: string;
  /** Image of `nodejs:24`; default DEFAULT_NODEJS24_IMAGE (built by this project). */
  nodejs24Image?: string;
  /** Stem cell targets for `nodejs:20`; default one container of 256 MiB. Count 0 is allowed here (no stem cells). */
  stemCells?: readonly Pick<StemCell, 'count' | 'memoryMb'>[];
}

/**
 * The manifest used when the operator gives none: our own Node.js runtime
 * as `nodejs:20` (the default of family `nodejs`, as upstream) and
 * `nodejs:24`, and no blackbox images. Stem cells are of `nodejs:20`.
 * The default stem cells match INVOKER_PREWARM_COUNT / INVOKER_PREWARM_MEMORY_MB.
 */
export function defaultRuntimeManifest(options: DefaultManifestOptions = {}): RuntimeManifest {
  const stemCells = (options.stemCells ?? [{ count: 1, memoryMb: 256 }]).map((cell, i) => {
    if (!Number.isSafeInteger(cell.count) || cell.count < 0) fail(`default.stemCells[${i}].count`, `expected a non-negative integer, got ${cell.count}`);
    if (!Number.isSafeInteger(cell.memoryMb) || cell.memoryMb <= 0) fail(`default.stemCells[${i}].memoryMb`, `expected a positive integer, got ${cell.memoryMb}`);
    return { count: cell.count, memoryMb: cell.memoryMb, memoryBytes: cell.memoryMb * MIB };
  });
  const nodejs: RuntimeKind = {
    kind: DEFAULT_NODEJS_KIND,
    family: 'nodejs',
    image: options.image ?? DEFAULT_NODEJS_IMAGE,
    default: true,
    deprecated: false,
    attached: true,
    requireMain: false,
    stemCells,
  };
  const nodejs24: RuntimeKind = {
    kind: 'nodejs:24',
    family: 'nodejs',
    image: options.nodejs24Image ?? DEFAULT_NODEJS24_IMAGE,
    default: false,
    deprecated: false,
    attached: true,
    requireMain: false,
    stemCells: [],
  };
  return createManifest(
    new Map([
      [nodejs.kind, nodejs],
      [nodejs24.kind, nodejs24],
    ]),
    new Map([['nodejs', nodejs]]),
    [],
  );
}
