/**
 * The runtime manifest: which action kinds this invoker can run, from which
 * image, and how many prewarmed "stem cell" containers to keep per kind.
 *
 * Input is upstream's `runtimes.json` format (the value of upstream's
 * `RUNTIMES_MANIFEST`), so an operator can reuse an existing manifest:
 *
 *   {"runtimes": {"nodejs": [{"kind": "nodejs:20", "default": true,
 *     "image": {"prefix": "openwhisk", "name": "action-nodejs-v20", "tag": "nightly"},
 *     "stemCells": [{"initialCount": 2, "memory": "256 MB"}]}]},
 *    "blackboxes": [{"prefix": "openwhisk", "name": "dockerskeleton", "tag": "nightly"}]}
 *
 * Fields we do not act on (`attached`, `requireMain`, `reactive` stem-cell
 * scaling) are accepted and, where cheap, type-checked, but not interpreted:
 * prewarming here is a fixed count per (kind, memory).
 */
import { readFile } from 'node:fs/promises';

/** The images the project builds for the built-in `nodejs:20` and `nodejs:24` kinds. */
export const DEFAULT_NODEJS_IMAGE = 'whisk/action-nodejs-v20:local';
export const DEFAULT_NODEJS24_IMAGE = 'whisk/action-nodejs-v24:local';
/** Upstream's default kind of the family (apache/openwhisk ansible/files/runtimes.json). */
export const DEFAULT_NODEJS_KIND = 'nodejs:20';

export interface StemCell {
  /** Containers to keep prewarmed. */
  count: number;
  memoryMb: number;
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
  stemCells: readonly StemCell[];
}

/** One (kind, memory) prewarm target, flattened for the container pool. */
export interface StemCellTarget {
  kind: string;
  image: string;
  memoryMb: number;
  count: number;
}

export interface RuntimeManifest {
  readonly kinds: ReadonlyMap<string, RuntimeKind>;
  /** Images accepted for blackbox (user image) actions. */
  readonly blackboxes: readonly string[];
  /** `nodejs:20` -> itself; `nodejs:default` -> the family's default kind. Throws UnknownKindError. */
  resolveKind(kind: string): RuntimeKind;
  /** Image of a (possibly `:default`) kind. Throws UnknownKindError. */
  imageFor(kind: string): string;
  /** Every stem cell of every kind, counts of duplicate (kind, memory) entries added. */
  stemCells(): StemCellTarget[];
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

/**
 * `"256 MB"` -> 256 (MiB), upstream's size pattern and 1024-based units. The
 * pool accounts in whole MiB, so a size that is not a whole number of MiB is
 * refused rather than silently rounded.
 */
export function parseMemoryMb(value: Json, path: string): number {
  const text = asString(value, path);
  // Upstream's ByteSize pattern, whole string. Anchored, no nested
  // quantifiers: linear; the length cap keeps error messages short.
  const match = text.length <= 64 ? /^\s?(\d+)\s?(GB|MB|KB|B|G|M|K)\s?$/i.exec(text) : null;
  if (match === null) {
    return fail(path, `${JSON.stringify(text.slice(0, 64))}: expected a size such as "256 MB" (units B, K[B], M[B], G[B])`);
  }
  const unit = (match[2] ?? 'B').charAt(0).toUpperCase();
  const bytes = Number(match[1]) * (unit === 'G' ? 1024 ** 3 : unit === 'M' ? 1024 ** 2 : unit === 'K' ? 1024 : 1);
  if (!Number.isSafeInteger(bytes)) return fail(path, `${JSON.stringify(text)}: size too large`);
  const mib = 1024 * 1024;
  if (bytes % mib !== 0) return fail(path, `${JSON.stringify(text)} is not a whole number of MiB`);
  if (bytes === 0) return fail(path, 'memory must be greater than 0');
  return bytes / mib;
}

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

function parseStemCell(value: Json, path: string): StemCell {
  const cell = asObject(value, path);
  // Current upstream writes `initialCount`; older manifests wrote `count`.
  const countKey = cell.initialCount !== undefined ? 'initialCount' : 'count';
  const count = cell[countKey];
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    return fail(`${path}.${countKey}`, `expected a non-negative integer, got ${describe(count)}${typeof count === 'number' ? ` ${count}` : ''}`);
  }
  const memoryMb = parseMemoryMb(cell.memory, `${path}.memory`);
  if (cell.reactive !== undefined) asObject(cell.reactive, `${path}.reactive`);
  return { count, memoryMb };
}

function parseKind(value: Json, family: string, path: string): RuntimeKind {
  const entry = asObject(value, path);
  const kind = asNonEmptyString(entry.kind, `${path}.kind`);
  if (kind.endsWith(':default')) fail(`${path}.kind`, `"${kind}": ":default" is reserved for resolving a family's default kind`);
  const image = parseImage(entry.image, `${path}.image`);
  if (entry.attached !== undefined) asObject(entry.attached, `${path}.attached`);
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
  const runtimes = asObject(top.runtimes, `${source}.runtimes`);

  const kinds = new Map<string, RuntimeKind>();
  const defaults = new Map<string, RuntimeKind>();
  for (const [family, list] of Object.entries(runtimes)) {
    const familyPath = `${source}.runtimes.${family}`;
    asArray(list, familyPath).forEach((value, i) => {
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
    });
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
  const resolveKind = (kind: string): RuntimeKind => {
    const direct = kinds.get(kind);
    if (direct !== undefined) return direct;
    if (kind.endsWith(':default')) {
      const found = defaults.get(kind.slice(0, -':default'.length));
      if (found !== undefined) return found;
    }
    throw new UnknownKindError(kind, [...kinds.keys()]);
  };
  return {
    kinds,
    blackboxes,
    resolveKind,
    imageFor: (kind) => resolveKind(kind).image,
    stemCells: () => {
      const targets = new Map<string, StemCellTarget>();
      for (const runtime of kinds.values()) {
        for (const cell of runtime.stemCells) {
          if (cell.count === 0) continue;
          const key = `${runtime.kind}\u0000${cell.memoryMb}`;
          const existing = targets.get(key);
          if (existing !== undefined) existing.count += cell.count;
          else targets.set(key, { kind: runtime.kind, image: runtime.image, memoryMb: cell.memoryMb, count: cell.count });
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
  /** Prewarm targets for `nodejs:20`; default one container of 256 MiB. */
  stemCells?: readonly StemCell[];
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
    return { count: cell.count, memoryMb: cell.memoryMb };
  });
  const nodejs: RuntimeKind = {
    kind: DEFAULT_NODEJS_KIND,
    family: 'nodejs',
    image: options.image ?? DEFAULT_NODEJS_IMAGE,
    default: true,
    deprecated: false,
    stemCells,
  };
  const nodejs24: RuntimeKind = {
    kind: 'nodejs:24',
    family: 'nodejs',
    image: options.nodejs24Image ?? DEFAULT_NODEJS24_IMAGE,
    default: false,
    deprecated: false,
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
