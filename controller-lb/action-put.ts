/**
 * The body of an action PUT (upstream WhiskActionPut) read with upstream's
 * validation texts and size limits, and the configurable action limits it is
 * checked against. The documents built from it are in action-document.ts.
 */
import type { JsonObject, JsonValue } from '../protocol/index.js';
import type { RuntimeManifest } from '../invoker/runtime-manifest.js';
import type { KeyValue } from '../invoker/store/action-document.js';
import { isBinaryCode } from '../invoker/store/upstream-action-doc.js';
import { Messages } from './api/errors.js';

export interface Range {
  min: number;
  max: number;
  std: number;
}

/** Upstream's configurable action limits (whisk.memory, whisk.time-limit, whisk.log-limit, whisk.concurrency-limit). */
export interface ActionLimitsConfig {
  memoryMb: Range;
  timeoutMs: Range;
  logsMb: Range;
  concurrency: Range;
  /** whisk.exec-size-limit (48 MB). */
  execSizeBytes: number;
  /** Parameters.sizeLimit / annotations (1 MB). */
  parametersSizeBytes: number;
  /** Code below this many bytes is inlined as `mem:` (upstream maxInlineSize, 16 KiB). */
  inlineCodeMaxBytes: number;
  /** whisk.actionSequenceLimit (50). */
  sequenceMaxLength: number;
}

export const DEFAULT_ACTION_LIMITS_CONFIG: ActionLimitsConfig = {
  memoryMb: { min: 128, max: 512, std: 256 },
  timeoutMs: { min: 100, max: 300_000, std: 60_000 },
  logsMb: { min: 0, max: 10, std: 10 },
  concurrency: { min: 1, max: 1, std: 1 },
  execSizeBytes: 48 * 1024 * 1024,
  parametersSizeBytes: 1024 * 1024,
  inlineCodeMaxBytes: 16 * 1024,
  sequenceMaxLength: 50,
};

/** A request that cannot be accepted: status and upstream's text. */
export class ActionRequestError extends Error {
  override readonly name = 'ActionRequestError';
  constructor(
    readonly status: 400 | 403 | 413,
    message: string,
    /** true: the text is a deserialization error (answered as "The request content was malformed:\n..."). */
    readonly malformed = false,
  ) {
    super(message);
  }
}

const bad = (message: string): never => {
  throw new ActionRequestError(400, message, true);
};
const requirement = (message: string): never => bad(`requirement failed: ${message}`);

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A parameter or annotation: the invoker reads the same shape (invoker/store/action-document.ts). */
export type { KeyValue } from '../invoker/store/action-document.js';

export type PutExec =
  | { kind: 'sequence'; components: string[] }
  | { kind: 'blackbox'; image: string; code?: string; main?: string; binary: boolean }
  | { kind: string; code: string; main?: string; binary: boolean; deprecated: boolean };

/** Upstream WhiskActionPut: everything optional. */
export interface ActionPut {
  exec?: PutExec;
  parameters?: KeyValue[];
  limits?: { timeout?: number; memory?: number; logs?: number; concurrency?: number };
  version?: string;
  publish?: boolean;
  annotations?: KeyValue[];
  delAnnotations?: string[];
}

function readKeyValues(value: JsonValue | undefined, field: string): KeyValue[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) return bad(`${field} must be an array of {"key", "value"} objects`);
  const seen = new Map<string, KeyValue>();
  value.forEach((entry, i) => {
    if (!isObject(entry) || typeof entry['key'] !== 'string') return bad(`${field}[${i}] must be an object with a string 'key'`);
    const kv: KeyValue = { key: entry['key'], value: entry['value'] === undefined ? null : entry['value'] };
    if (entry['init'] !== undefined) {
      if (typeof entry['init'] !== 'boolean') return bad(`${field}[${i}].init must be a boolean`);
      if (entry['init']) kv.init = true;
    }
    // Upstream Parameters is a map: a repeated key keeps the last value.
    seen.delete(kv.key);
    seen.set(kv.key, kv);
  });
  return [...seen.values()];
}

function wholeNumber(value: JsonValue | undefined, what: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') return bad(`${what} limit malformed`);
  if (!Number.isInteger(value)) return requirement(`${what} limit must be whole number`);
  return value;
}

function readExec(value: JsonValue, manifest: RuntimeManifest, namespace: string): PutExec {
  if (!isObject(value)) return bad("'kind' must be a string defined in 'exec'");
  const rawKind = value['kind'];
  if (typeof rawKind !== 'string') return bad("'kind' must be a string defined in 'exec'");
  const kind = rawKind.trim().toLowerCase();
  const mainField = value['main'];
  if (mainField !== undefined && typeof mainField !== 'string') return bad(`if defined, 'main' be a string in 'exec' for '${kind}' actions`);
  const main = typeof mainField === 'string' ? mainField : undefined;

  if (kind === 'sequence') {
    const components = value['components'];
    if (components === undefined) return bad("'components' must be defined for sequence kind");
    if (!Array.isArray(components)) return bad("'components' must be an array");
    return { kind, components: components.map((c) => resolveComponent(c, namespace)) };
  }
  if (kind === 'blackbox') {
    const image = value['image'];
    if (typeof image !== 'string' || !/^[^\s]+$/.test(image.trim()) || image.trim() === '') {
      return bad("'image' must be a string defined in 'exec' for 'blackbox' actions");
    }
    const code = value['code'];
    if (code !== undefined && code !== null && typeof code !== 'string') return bad("'code' must be a string defined in 'exec' for 'blackbox' actions");
    const exec: PutExec = { kind, image: image.trim(), binary: false };
    if (typeof code === 'string' && code.trim() !== '') {
      exec.code = code;
      exec.binary = isBinaryCode(code);
    }
    if (main !== undefined) exec.main = main;
    return exec;
  }
  let runtime;
  try {
    runtime = manifest.resolveKind(kind);
  } catch {
    return bad(Messages.invalidRuntime(kind, [...manifest.kinds.keys(), 'sequence', 'blackbox']));
  }
  const code = value['code'];
  if (typeof code !== 'string') return bad(`'code' must be a string or attachment object defined in 'exec' for '${runtime.kind}' actions`);
  const exec: PutExec = { kind: runtime.kind, code, binary: isBinaryCode(code), deprecated: runtime.deprecated };
  if (main !== undefined) exec.main = main;
  return exec;
}

/** A sequence component: `/ns/name`, `ns/name`, `/ns/pkg/name`; `_` is the caller's namespace. Returns `/ns/name`. */
export function resolveComponent(value: JsonValue, namespace: string): string {
  if (typeof value !== 'string') return bad(Messages.malformedFullyQualifiedEntityName);
  const parts = value.replace(/^\//, '').split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) return bad(Messages.malformedFullyQualifiedEntityName);
  if (parts[0] === '_') parts[0] = namespace;
  return `/${parts.join('/')}`;
}

/** Reads and validates a PUT body; throws ActionRequestError. `namespace` resolves `_` in sequence components. */
export function readActionPut(body: JsonObject | undefined, manifest: RuntimeManifest, limits: ActionLimitsConfig, namespace: string): ActionPut {
  const put: ActionPut = {};
  if (body === undefined) return put;
  if (body['exec'] !== undefined && body['exec'] !== null) put.exec = readExec(body['exec'], manifest, namespace);
  const parameters = readKeyValues(body['parameters'], 'parameters');
  if (parameters !== undefined) put.parameters = parameters;
  const annotations = readKeyValues(body['annotations'], 'annotations');
  if (annotations !== undefined) put.annotations = annotations;
  const del = body['delAnnotations'];
  if (del !== undefined && del !== null) {
    if (!Array.isArray(del) || !del.every((d) => typeof d === 'string')) return bad('delAnnotations must be an array of strings');
    put.delAnnotations = del as string[];
  }
  const version = body['version'];
  if (version !== undefined && version !== null) {
    if (typeof version !== 'string' || !/^\d+\.\d+\.\d+$/.test(version.trim())) return bad('semantic version malformed');
    put.version = version.trim();
  }
  const publish = body['publish'];
  if (publish !== undefined && publish !== null) {
    if (typeof publish !== 'boolean') return bad('publish must be a boolean');
    put.publish = publish;
  }
  const rawLimits = body['limits'];
  if (rawLimits !== undefined && rawLimits !== null) {
    if (!isObject(rawLimits)) return bad('limits must be an object');
    const l: NonNullable<ActionPut['limits']> = {};
    const timeout = wholeNumber(rawLimits['timeout'], 'time');
    if (timeout !== undefined) {
      if (timeout < limits.timeoutMs.min) requirement(`duration ${timeout} milliseconds below allowed threshold of ${limits.timeoutMs.min} milliseconds`);
      if (timeout > limits.timeoutMs.max) requirement(`duration ${timeout} milliseconds exceeds allowed threshold of ${limits.timeoutMs.max} milliseconds`);
      l.timeout = timeout;
    }
    const memory = wholeNumber(rawLimits['memory'], 'memory');
    if (memory !== undefined) {
      if (memory < limits.memoryMb.min) requirement(`memory ${memory} MB below allowed threshold of ${limits.memoryMb.min} MB`);
      if (memory > limits.memoryMb.max) requirement(`memory ${memory} MB exceeds allowed threshold of ${limits.memoryMb.max} MB`);
      l.memory = memory;
    }
    const logs = wholeNumber(rawLimits['logs'], 'log');
    if (logs !== undefined) {
      if (logs < limits.logsMb.min) requirement(`log size ${logs} MB below allowed threshold of ${limits.logsMb.min} MB`);
      if (logs > limits.logsMb.max) requirement(`log size ${logs} MB exceeds allowed threshold of ${limits.logsMb.max} MB`);
      l.logs = logs;
    }
    const concurrency = wholeNumber(rawLimits['concurrency'], 'concurrency');
    if (concurrency !== undefined) {
      if (concurrency < limits.concurrency.min) requirement(`concurrency ${concurrency} below allowed threshold of ${limits.concurrency.min}`);
      if (concurrency > limits.concurrency.max) requirement(`concurrency ${concurrency} exceeds allowed threshold of ${limits.concurrency.max}`);
      l.concurrency = concurrency;
    }
    put.limits = l;
  }
  checkSizes(put, limits);
  return put;
}

function keyValuesSize(kvs: readonly KeyValue[]): number {
  let size = 0;
  for (const kv of kvs) size += Buffer.byteLength(kv.key) + Buffer.byteLength(JSON.stringify(kv.value));
  return size;
}

/** Upstream LimitedWhiskEntityPut.isWithinSizeLimits: 413 "exec larger than allowed: X > Y bytes." */
function checkSizes(put: ActionPut, limits: ActionLimitsConfig): void {
  const exec = put.exec;
  if (exec !== undefined) {
    let size = 0;
    if ('code' in exec && exec.code !== undefined) size += Buffer.byteLength(exec.code);
    if ('main' in exec && exec.main !== undefined) size += Buffer.byteLength(exec.main);
    if (exec.kind === 'blackbox' && 'image' in exec) size += Buffer.byteLength(exec.image);
    if (size > limits.execSizeBytes) throw new ActionRequestError(413, Messages.entityTooBig('exec', size, limits.execSizeBytes));
  }
  for (const [field, kvs] of [['parameters', put.parameters], ['annotations', put.annotations]] as const) {
    if (kvs === undefined) continue;
    const size = keyValuesSize(kvs);
    if (size > limits.parametersSizeBytes) throw new ActionRequestError(413, Messages.entityTooBig(field, size, limits.parametersSizeBytes));
  }
}
