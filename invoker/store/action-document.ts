/**
 * The action document as the invoker reads it from `whisks`: the validated
 * shape (ActionDocument) and parseActionDocument, which accepts every form
 * an upstream controller writes (see upstream-action-doc.ts). Reading it
 * from CouchDB, the attachment and the cache are in action-store.ts.
 */
import type { JsonValue } from '../../protocol/json.js';
import { COUCH_SCHEME, MEM_SCHEME, decodeInlineAttachment, isBinaryCode } from './upstream-action-doc.js';

/** Upstream ActionLimits defaults (wire spec section 9). */
export const DEFAULT_ACTION_LIMITS: Readonly<ActionLimits> = Object.freeze({
  timeoutMs: 60_000,
  memoryMb: 256,
  logsMb: 10,
  concurrency: 1,
});

export interface ActionLimits {
  timeoutMs: number;
  memoryMb: number;
  logsMb: number;
  concurrency: number;
}

export interface KeyValue {
  key: string;
  value: JsonValue;
  /** Upstream marks parameters that go to `/init` as environment with `init: true`. */
  init?: boolean;
}

/** An action whose code runs in the runtime image of its kind (`nodejs:20`, ...). */
export interface CodeExec {
  type: 'code';
  kind: string;
  /** Source text, or base64 of the bytes (a zip) when `binary`. */
  code: string;
  binary: boolean;
  main?: string;
}

/** An action that runs in an image the user names; code, if any, goes to its `/init`. */
export interface BlackboxExec {
  type: 'blackbox';
  kind: 'blackbox';
  image: string;
  code?: string;
  binary: boolean;
  main?: string;
}

/** Sequences are run by the controller, never by an invoker; returned so the caller can say so. */
export interface SequenceExec {
  type: 'sequence';
  kind: 'sequence';
  /** Fully qualified names of the component actions. */
  components: string[];
}

export type ActionExec = CodeExec | BlackboxExec | SequenceExec;

export interface ActionDocument {
  /** Document id, `<path>/<name>`. */
  id: string;
  rev: string;
  namespace: string;
  name: string;
  version: string;
  publish: boolean;
  exec: ActionExec;
  limits: ActionLimits;
  parameters: KeyValue[];
  annotations: KeyValue[];
}

/** A validated action document whose code attachment, if any, is not read yet. */
export interface ParsedAction {
  doc: Omit<ActionDocument, 'exec'>;
  exec: ActionExec;
  /** Set when the code lives in `_attachments` and still has to be read. */
  attachment?: CodeAttachment;
}

export interface CodeAttachment {
  name: string;
  contentType: string | undefined;
  /**
   * False when `_attachments` does not list it: reading it would answer 404,
   * which upstream reports as a missing action (NoDocumentException), so the
   * store says not found without asking.
   */
  inDocument: boolean;
}

/**
 * Validates the upstream WhiskAction JSON. Throws an Error naming the field;
 * the caller wraps it into ActionFetchError.
 */
export function parseActionDocument(doc: Record<string, unknown>, docId: string, revision: string | null): ParsedAction {
  const rev = requireString(doc, '_rev');
  if (typeof doc._id === 'string' && doc._id !== docId) throw new Error(`_id is ${doc._id}, expected ${docId}`);
  if (revision !== null && rev !== revision) throw new Error(`_rev is ${rev}, expected ${revision}`);
  if (doc.entityType !== undefined && doc.entityType !== 'action') {
    throw new Error(`entityType is ${JSON.stringify(doc.entityType)}, not "action"`);
  }
  const namespace = requireString(doc, 'namespace');
  const name = requireString(doc, 'name');
  const version = optionalString(doc, 'version') ?? '0.0.1';
  const publish = doc.publish === undefined ? false : requireBoolean(doc, 'publish');
  const limits = parseLimits(doc.limits);
  const parameters = parseKeyValues(doc.parameters, 'parameters');
  const annotations = parseKeyValues(doc.annotations, 'annotations');
  const { exec, attachment } = parseExec(doc.exec, doc._attachments);
  const result: ParsedAction = {
    doc: { id: docId, rev, namespace, name, version, publish, limits, parameters, annotations },
    exec,
  };
  if (attachment !== undefined) result.attachment = attachment;
  return result;
}

function parseExec(
  value: unknown,
  attachments: unknown,
): { exec: ActionExec; attachment?: CodeAttachment } {
  if (!isObject(value)) throw new Error('exec is missing or not an object');
  // Upstream Exec.serdes.read: the kind is trimmed and lower-cased.
  const kind = requireString(value, 'kind', 'exec.kind').trim().toLowerCase();
  if (kind === 'sequence') {
    const components = value.components;
    if (!Array.isArray(components) || !components.every((c) => typeof c === 'string')) {
      throw new Error('exec.components must be an array of action names');
    }
    return { exec: { type: 'sequence', kind: 'sequence', components: components as string[] } };
  }
  const main = optionalString(value, 'main', 'exec.main');
  if (kind === 'blackbox') {
    const image = requireString(value, 'image', 'exec.image');
    // A blackbox's code is optional; absent or blank means none (and binary false).
    const blank = value.code === undefined || value.code === null || (typeof value.code === 'string' && value.code.trim() === '');
    const exec: BlackboxExec = { type: 'blackbox', kind: 'blackbox', image, binary: false };
    if (main !== undefined) exec.main = main;
    if (blank) return { exec };
    const code = readCode(value.code, value, attachments);
    exec.binary = code.binary;
    if (code.attachment !== undefined) return { exec: { ...exec, code: '' }, attachment: code.attachment };
    exec.code = code.text;
    return { exec };
  }
  // Java actions once stored their code under `jar` (upstream Exec.serdes.read).
  const raw = value.code ?? value.jar;
  if (raw === undefined || raw === null) throw new Error(`exec.code is missing for kind ${kind}`);
  const code = readCode(raw, value, attachments);
  const exec: CodeExec = { type: 'code', kind, code: code.text, binary: code.binary };
  if (main !== undefined) exec.main = main;
  return code.attachment === undefined ? { exec } : { exec, attachment: code.attachment };
}

/**
 * `exec.code` as upstream reads it (Exec.serdes.read, Attachments.serdes,
 * CouchDbRestStore.readAttachment):
 * - a string: the code itself (older documents, and kinds without `attached`);
 *   `binary` is computed from it (Exec.isBinaryCode), whatever the document says;
 * - `{attachmentName: "mem:<base64url>"}`: the bytes inlined in the reference;
 * - `{attachmentName: "couch:<name>"}` or a bare name (`codefile`, `jarfile`):
 *   a CouchDB attachment of the document, read afterwards;
 * and for references `binary` is the document's flag (default false). Binary
 * bytes become standard base64, text bytes UTF-8 text (WhiskAction.get).
 */
function readCode(
  code: unknown,
  exec: Record<string, unknown>,
  attachments: unknown,
): { text: string; binary: boolean; attachment?: CodeAttachment } {
  if (typeof code === 'string') return { text: code, binary: isBinaryCode(code) };
  if (!isObject(code)) throw new Error('exec.code must be a string or an attachment reference');
  const binary = exec.binary === undefined || exec.binary === null ? false : requireBoolean(exec, 'binary', 'exec.binary');
  const rawName = requireString(code, 'attachmentName', 'exec.code.attachmentName');
  const contentType = optionalString(code, 'attachmentType', 'exec.code.attachmentType');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rawName)?.[1];
  if (scheme === MEM_SCHEME) {
    let bytes: Buffer;
    try {
      bytes = decodeInlineAttachment(rawName);
    } catch (err) {
      throw new Error(`exec.code: ${(err as Error).message}`, { cause: err });
    }
    if (typeof code.length === 'number' && code.length !== bytes.length) {
      throw new Error(`exec.code: the inlined attachment has ${bytes.length} bytes, its length says ${code.length}`);
    }
    return { text: binary ? bytes.toString('base64') : bytes.toString('utf8'), binary };
  }
  if (scheme !== undefined && scheme !== COUCH_SCHEME) {
    throw new Error(`exec.code is in attachment store "${scheme}:", which this invoker cannot read (it reads CouchDB attachments and inlined ones)`);
  }
  // `couch:<uuid>`, or a relative name from before attachment URIs (upstream reads both from CouchDB).
  const name = scheme === COUCH_SCHEME ? rawName.slice(COUCH_SCHEME.length + 1) : rawName;
  const inDocument = isObject(attachments) && isObject(attachments[name]);
  return { text: '', binary, attachment: { name, contentType, inDocument } };
}

function parseLimits(value: unknown): ActionLimits {
  if (value === undefined || value === null) return { ...DEFAULT_ACTION_LIMITS };
  if (!isObject(value)) throw new Error('limits must be an object');
  return {
    timeoutMs: limit(value, 'timeout', DEFAULT_ACTION_LIMITS.timeoutMs),
    memoryMb: limit(value, 'memory', DEFAULT_ACTION_LIMITS.memoryMb),
    logsMb: limit(value, 'logs', DEFAULT_ACTION_LIMITS.logsMb, 0),
    concurrency: limit(value, 'concurrency', DEFAULT_ACTION_LIMITS.concurrency),
  };
}

function limit(limits: Record<string, unknown>, key: string, fallback: number, min = 1): number {
  const value = limits[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new Error(`limits.${key} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function parseKeyValues(value: unknown, field: string): KeyValue[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${field} must be an array`);
  return value.map((entry: unknown, index) => {
    if (!isObject(entry) || typeof entry.key !== 'string') throw new Error(`${field}[${index}] must be {key, value}`);
    const kv: KeyValue = { key: entry.key, value: (entry.value ?? null) as JsonValue };
    if (entry.init === true) kv.init = true;
    return kv;
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requireString(obj: Record<string, unknown>, key: string, path = key): string {
  const value = obj[key];
  if (typeof value !== 'string' || value === '') throw new Error(`${path} must be a non-empty string`);
  return value;
}

function optionalString(obj: Record<string, unknown>, key: string, path = key): string | undefined {
  const value = obj[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new Error(`${path} must be a string`);
  return value;
}

function requireBoolean(obj: Record<string, unknown>, key: string, path = key): boolean {
  const value = obj[key];
  if (typeof value !== 'boolean') throw new Error(`${path} must be a boolean`);
  return value;
}
