/**
 * Action documents exactly as upstream's controller writes them to `whisks`
 * (WhiskAction.put with the CouchDB attachment support):
 *
 *   {"_id": "guest/hello", "entityType": "action", "namespace": "guest",
 *    "name": "hello", "version": "0.0.1", "publish": false,
 *    "exec": {"kind": "nodejs:20", "binary": false,
 *             "code": {"attachmentName": "mem:<base64url>", "attachmentType": "text/plain; charset=UTF-8",
 *                      "length": 42, "digest": "sha256-<hex>"}},
 *    "parameters": [], "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1},
 *    "annotations": [{"key": "provide-api-key", "value": false}, {"key": "exec", "value": "nodejs:20"}],
 *    "updated": 1717171717000}
 *
 * Code shorter than the inline limit (upstream `maxInlineSize`, 16 KiB) is
 * inlined in the attachment name (`mem:`); longer code is a real CouchDB
 * attachment named by a UUID (`couch:<uuid>`). The document itself comes
 * from invoker/store/upstream-action-doc.ts, the builder the invoker's
 * reader is tested against; `decodeCode` reads every form back (and plain
 * string code, as older tools store it).
 *
 * Also here: the JSON the API answers with. The PUT body is read and
 * validated in action-put.ts.
 */
import type { JsonObject, JsonValue } from '../protocol/index.js';
import {
  decodeInlineAttachment,
  isInlineAttachment,
  TEXT_CODE_TYPE,
  upstreamActionDocument,
  type ExecInput,
} from '../invoker/store/upstream-action-doc.js';
import { ActionRequestError, type ActionLimitsConfig, type ActionPut, type KeyValue, type PutExec } from './action-put.js';
import { Messages } from './api/errors.js';

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------
// Code: stored by invoker/store/upstream-action-doc.ts (the builder shared
// with the invoker's reader and the tests), read back here for the API.

/**
 * The code of a stored `exec` as the API shows it (source text, or base64
 * when binary). `attachments` is the document's `_attachments` read with
 * `?attachments=true` (base64 `data`). Undefined when there is no code.
 */
export function decodeCode(exec: JsonObject, attachments: JsonValue | undefined): string | undefined {
  const code = exec['code'];
  if (code === undefined || code === null) return undefined;
  if (typeof code === 'string') return code;
  if (!isObject(code) || typeof code['attachmentName'] !== 'string') return undefined;
  const name = code['attachmentName'];
  const type = typeof code['attachmentType'] === 'string' ? code['attachmentType'] : TEXT_CODE_TYPE;
  const binary = exec['binary'] === true || !type.startsWith('text/');
  let bytes: Buffer;
  if (isInlineAttachment(name)) {
    try {
      bytes = decodeInlineAttachment(name);
    } catch {
      return undefined;
    }
  } else {
    const key = name.startsWith('couch:') ? name.slice(6) : name;
    const attachment = isObject(attachments) ? attachments[key] : undefined;
    if (!isObject(attachment) || typeof attachment['data'] !== 'string') return undefined;
    bytes = Buffer.from(attachment['data'], 'base64');
  }
  return binary ? bytes.toString('base64') : bytes.toString('utf8');
}

// ---------------------------------------------------------------------------
// Building documents

export interface BuiltDocument {
  doc: JsonObject;
  /** The action as the PUT answer shows it (code inline). */
  view: JsonObject;
}

function setKeyValue(list: KeyValue[], key: string, value: JsonValue): KeyValue[] {
  return [...list.filter((kv) => kv.key !== key), { key, value }];
}

/** Upstream WhiskActionsApi.amendAnnotations. */
function amendAnnotations(annotations: KeyValue[], kind: string, create: boolean): KeyValue[] {
  let out = annotations;
  if (create && !out.some((a) => a.key === 'provide-api-key')) out = [...out, { key: 'provide-api-key', value: false }];
  return setKeyValue(out, 'exec', kind);
}

function upPatch(version: string): string {
  const [major, minor, patch] = version.split('.').map(Number);
  return `${major ?? 0}.${minor ?? 0}.${(patch ?? 0) + 1}`;
}


type CodePutExec = Exclude<PutExec, { components: string[] }>;

function execInput(put: PutExec): ExecInput {
  if ('components' in put) return { kind: 'sequence', components: put.components };
  const exec = put as CodePutExec;
  const main = exec.main !== undefined ? { main: exec.main } : {};
  if ('image' in exec) return { kind: 'blackbox', image: exec.image, binary: exec.binary, ...(exec.code !== undefined ? { code: exec.code } : {}), ...main };
  return { kind: exec.kind, code: exec.code, binary: exec.binary, ...main };
}

/** The exec as the PUT answer shows it: code as sent. */
function execShown(put: PutExec): JsonObject {
  if ('components' in put) return { kind: 'sequence', components: put.components };
  const exec = put as CodePutExec;
  const shown: JsonObject = { kind: exec.kind };
  if ('image' in exec) shown['image'] = exec.image;
  if (exec.code !== undefined) shown['code'] = exec.code;
  shown['binary'] = exec.binary;
  if (exec.main !== undefined) shown['main'] = exec.main;
  return shown;
}

/** Current action fields of a stored document, for an update. */
export interface StoredAction {
  rev: string;
  exec: JsonObject;
  /** The exec as a PutExec, with its code decoded (for re-encoding unchanged code). */
  execPut: PutExec | undefined;
  parameters: KeyValue[];
  annotations: KeyValue[];
  limits: { timeout: number; memory: number; logs: number; concurrency: number };
  version: string;
  publish: boolean;
}

/** The PUT answer and the document of a new action (upstream WhiskActionsApi.makeWhiskAction). */
export function newActionDocument(namespace: string, name: string, put: ActionPut, limits: ActionLimitsConfig, now: number): BuiltDocument {
  const exec = put.exec;
  if (exec === undefined) throw new ActionRequestError(400, 'exec undefined');
  if ('deprecated' in exec && exec.deprecated) throw new ActionRequestError(400, Messages.runtimeDeprecated(exec.kind));
  const l = {
    timeout: put.limits?.timeout ?? limits.timeoutMs.std,
    memory: put.limits?.memory ?? limits.memoryMb.std,
    logs: put.limits?.logs ?? limits.logsMb.std,
    concurrency: put.limits?.concurrency ?? limits.concurrency.std,
  };
  const parameters = 'components' in exec ? [{ key: '_actions', value: exec.components }] : (put.parameters ?? []);
  const annotations = amendAnnotations(put.annotations ?? [], exec.kind, true);
  return build(namespace, name, exec, parameters, l, put.version ?? '0.0.1', put.publish ?? false, annotations, limits, now, undefined);
}

/** The PUT answer and the document of an updated action (upstream WhiskActionsApi.updateWhiskAction). */
export function updatedActionDocument(namespace: string, name: string, put: ActionPut, old: StoredAction, limits: ActionLimitsConfig, now: number): BuiltDocument {
  const exec = put.exec ?? old.execPut;
  if (exec === undefined) throw new ActionRequestError(400, 'exec undefined');
  if ('deprecated' in exec && exec.deprecated) throw new ActionRequestError(400, Messages.runtimeDeprecated(exec.kind));
  const l = {
    timeout: put.limits?.timeout ?? old.limits.timeout,
    memory: put.limits?.memory ?? old.limits.memory,
    logs: put.limits?.logs ?? old.limits.logs,
    concurrency: put.limits?.concurrency ?? old.limits.concurrency,
  };
  const oldIsSequence = old.exec['kind'] === 'sequence';
  let parameters: KeyValue[];
  if (put.exec !== undefined) {
    parameters = 'components' in put.exec ? [{ key: '_actions', value: put.exec.components }] : (put.parameters ?? (oldIsSequence ? [] : old.parameters));
  } else {
    parameters = oldIsSequence ? old.parameters : (put.parameters ?? old.parameters);
  }
  let annotations = old.annotations;
  if (put.delAnnotations !== undefined) {
    const del = new Set(put.delAnnotations);
    annotations = annotations.filter((a) => !del.has(a.key));
  }
  for (const a of put.annotations ?? []) annotations = setKeyValue(annotations, a.key, a.value);
  annotations = amendAnnotations(annotations, exec.kind, false);
  return build(namespace, name, exec, parameters, l, put.version ?? upPatch(old.version), put.publish ?? old.publish, annotations, limits, now, old.rev);
}

function build(
  namespace: string,
  name: string,
  exec: PutExec,
  parameters: KeyValue[],
  l: { timeout: number; memory: number; logs: number; concurrency: number },
  version: string,
  publish: boolean,
  annotations: KeyValue[],
  limits: ActionLimitsConfig,
  now: number,
  rev: string | undefined,
): BuiltDocument {
  const built = upstreamActionDocument(
    { namespace, name, exec: execInput(exec), parameters, annotations, limits: l, version, publish, updated: now, ...(rev !== undefined ? { rev } : {}) },
    { maxInlineSize: limits.inlineCodeMaxBytes },
  );
  // Code too large to inline goes into the same write as a real CouchDB
  // attachment (upstream uploads it right after the document: same stored result).
  const doc = (
    built.attachment === undefined
      ? built.doc
      : { ...built.doc, _attachments: { [built.attachment.name]: { content_type: built.attachment.contentType, data: built.attachment.data.toString('base64') } } }
  ) as JsonObject;
  const view: JsonObject = {
    namespace,
    name,
    version,
    publish,
    exec: execShown(exec),
    parameters: doc['parameters'] as JsonValue,
    limits: doc['limits'] as JsonValue,
    annotations: doc['annotations'] as JsonValue,
    updated: now,
  };
  return { doc, view };
}
// ---------------------------------------------------------------------------
// Reading stored documents

function keyValuesOf(value: JsonValue | undefined): KeyValue[] {
  if (!Array.isArray(value)) return [];
  return value.filter(isObject).map((kv) => ({
    key: String(kv['key']),
    value: kv['value'] === undefined ? null : kv['value'],
    ...(kv['init'] === true ? { init: true } : {}),
  }));
}

function num(value: JsonValue | undefined, fallback: number): number {
  return typeof value === 'number' ? value : fallback;
}

/** A stored document (read with `?attachments=true`) as the fields an update starts from. */
export function storedAction(doc: JsonObject, limits: ActionLimitsConfig): StoredAction {
  const exec = isObject(doc['exec']) ? doc['exec'] : {};
  const l = isObject(doc['limits']) ? doc['limits'] : {};
  const kind = typeof exec['kind'] === 'string' ? exec['kind'] : 'unknown';
  let execPut: PutExec | undefined;
  if (kind === 'sequence') {
    execPut = { kind, components: Array.isArray(exec['components']) ? exec['components'].map(String) : [] };
  } else {
    const code = decodeCode(exec, doc['_attachments']);
    const binary = exec['binary'] === true;
    const main = typeof exec['main'] === 'string' ? { main: exec['main'] } : {};
    if (kind === 'blackbox') execPut = { kind, image: String(exec['image'] ?? ''), binary, ...(code !== undefined ? { code } : {}), ...main };
    else if (code !== undefined) execPut = { kind, code, binary, deprecated: false, ...main };
  }
  return {
    rev: String(doc['_rev']),
    exec,
    execPut,
    parameters: keyValuesOf(doc['parameters']),
    annotations: keyValuesOf(doc['annotations']),
    limits: {
      timeout: num(l['timeout'], limits.timeoutMs.std),
      memory: num(l['memory'], limits.memoryMb.std),
      logs: num(l['logs'], limits.logsMb.std),
      concurrency: num(l['concurrency'], limits.concurrency.std),
    },
    version: typeof doc['version'] === 'string' ? doc['version'] : '0.0.1',
    publish: doc['publish'] === true,
  };
}

/** The action as GET answers it (upstream WhiskAction JSON); `withCode` false is `?code=false` (WhiskActionMetaData). */
export function actionView(doc: JsonObject, withCode: boolean): JsonObject {
  const exec = isObject(doc['exec']) ? doc['exec'] : {};
  const shown: JsonObject = { kind: exec['kind'] ?? 'unknown' };
  if (exec['kind'] === 'sequence') {
    shown['components'] = exec['components'] ?? [];
  } else {
    if (exec['image'] !== undefined) shown['image'] = exec['image'];
    if (withCode) {
      const code = decodeCode(exec, doc['_attachments']);
      if (code !== undefined) shown['code'] = code;
    }
    shown['binary'] = exec['binary'] === true;
    if (exec['main'] !== undefined) shown['main'] = exec['main'];
  }
  const view: JsonObject = {
    namespace: doc['namespace'] ?? null,
    name: doc['name'] ?? null,
    version: doc['version'] ?? '0.0.1',
    publish: doc['publish'] ?? false,
    exec: shown,
    parameters: doc['parameters'] ?? [],
    limits: doc['limits'] ?? {},
    annotations: doc['annotations'] ?? [],
  };
  if (doc['updated'] !== undefined) view['updated'] = doc['updated'];
  return view;
}
