/**
 * Action documents exactly as an upstream (Apache OpenWhisk) controller
 * stores them in `whisks`, and the attachment references in them. Used by the
 * invoker's action store to read such documents, by anything in this project
 * that writes actions (the controller's REST API), and by the tests.
 *
 * How upstream writes an action (apache/openwhisk, common/scala/.../core):
 *
 * - entity/WhiskEntity.scala `toDocumentRecord` and entity/WhiskStore.scala
 *   `WhiskDocument.toDocumentRecord`: the document is `name`, `updated`
 *   (epoch milliseconds) and `entityType: "action"`, plus the fields of
 *   WhiskAction.toJson (`namespace`, `name`, `exec`, `parameters`, `limits`,
 *   `version`, `publish`, `annotations`, `updated`), plus `_id`
 *   (`<namespace>/<name>`, the namespace possibly `<ns>/<package>`) and `_rev`
 *   when updating.
 * - entity/WhiskAction.scala `WhiskAction.put`: the code of a kind whose
 *   runtime manifest entry has `attached` (every kind of upstream's
 *   ansible/files/runtimes.json), and the code of a blackbox action, is not
 *   written inline: text code as its UTF-8 bytes with content type
 *   `text/plain; charset=UTF-8`, binary code (`binary: true`, i.e. base64 of
 *   a zip) as the decoded bytes with `application/octet-stream`.
 * - database/CouchDbRestStore.scala `attachToCouch` and
 *   database/AttachmentSupport.scala `inlineOrAttach`/`uriOf`: bytes shorter
 *   than `whisk.db.max-inline-size` (default 16 k) are *inlined*: `exec.code`
 *   becomes `{"attachmentName": "mem:<base64url of the bytes>",
 *   "attachmentType": ..., "length": N, "digest": "sha256-<hex>"}` and the
 *   document has no `_attachments`. Longer ones become a real CouchDB
 *   attachment named by a fresh UUID, referenced as
 *   `{"attachmentName": "couch:<uuid>", "attachmentType": ...}` (no length, no
 *   digest), uploaded after the document (`PUT /whisks/<id>/<uuid>?rev=...`),
 *   which gives the document a second revision.
 * - entity/Attachments.scala: the reference is spray's jsonFormat4 of
 *   `Attached(attachmentName, attachmentType, length?, digest?)`; absent
 *   options are left out. database/StoreUtils.scala `encodeDigest`:
 *   `sha256-` + lowercase hex.
 * - entity/Exec.scala `serdes.write`: code kinds are `{kind, code, binary,
 *   main?}`, blackbox `{kind: "blackbox", image, binary, code?, main?}`,
 *   sequences `{kind: "sequence", components: ["/ns/pkg/action", ...]}`.
 *   `binary` is computed from the code text (`Exec.isBinaryCode`: a non-empty
 *   string of valid padded base64 whose trimmed length is a multiple of 4).
 * - entity/Limits.scala: `limits` is `{timeout, memory, logs, concurrency}`
 *   (ms, MB, MB, count). entity/Parameter.scala: parameters and annotations
 *   are `[{key, value}]`, with `init: true` and `encryption` only when set.
 *
 * When reading (WhiskAction.get, CouchDbRestStore.readAttachment), `mem:`
 * references are decoded in place, `couch:` ones (and relative names such as
 * the older `codefile`/`jarfile`) read from CouchDB at the document's
 * revision; binary bytes are handed on as standard base64 (java.util.Base64's
 * encoder, padded), text bytes as UTF-8 text.
 *
 * Key order: CouchDB keeps what it is given and nobody reads by position;
 * this module writes keys sorted, which is what spray-json does for objects
 * it builds from fields, but no byte-for-byte identity with upstream's
 * documents is promised.
 */
import { createHash, randomUUID } from 'node:crypto';

/** Upstream `whisk.db.max-inline-size` default (`16 k`): code of fewer bytes is inlined. */
export const DEFAULT_MAX_INLINE_SIZE = 16 * 1024;
/** The scheme of inlined attachments (AttachmentSupport.MemScheme). */
export const MEM_SCHEME = 'mem';
/** The scheme of CouchDB attachments (CouchDbRestStore.couchScheme). */
export const COUCH_SCHEME = 'couch';
/** Akka's `ContentTypes.text/plain(UTF-8)`, as written into `attachmentType`. */
export const TEXT_CODE_TYPE = 'text/plain; charset=UTF-8';
/** Akka's `ContentTypes.application/octet-stream`. */
export const BINARY_CODE_TYPE = 'application/octet-stream';

/** An attachment reference as upstream writes it into `exec.code` (Attachments.Attached). */
export interface AttachmentReference {
  attachmentName: string;
  attachmentType: string;
  length?: number;
  digest?: string;
}

/** `sha256-<lowercase hex>` of the bytes (StoreUtils.encodeDigest). */
export function attachmentDigest(bytes: Uint8Array): string {
  return `sha256-${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * The inlined reference upstream writes for code shorter than the inline
 * limit: `mem:` + base64url of the bytes (java.util.Base64.getUrlEncoder,
 * padded), with the length and digest of the bytes.
 */
export function encodeInlineAttachment(bytes: Uint8Array, attachmentType: string): AttachmentReference {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    attachmentName: `${MEM_SCHEME}:${toBase64UrlPadded(buffer)}`,
    attachmentType,
    length: buffer.length,
    digest: attachmentDigest(buffer),
  };
}

/** Java's URL-safe encoder keeps the `=` padding; Node's `base64url` drops it. */
function toBase64UrlPadded(bytes: Buffer): string {
  return bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

// java.util.Base64.getUrlDecoder: the URL-safe alphabet, padding optional but
// correct if present, nothing else (no whitespace, no `+` or `/`).
const BASE64URL = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}(?:==)?|[A-Za-z0-9_-]{3}=?)?$/;

/** A reference names inline bytes when its URI scheme is `mem` (AttachmentSupport.isInlined). */
export function isInlineAttachment(attachmentName: string): boolean {
  return attachmentName.startsWith(`${MEM_SCHEME}:`);
}

/**
 * The bytes of an inlined reference (`mem:<base64url>`, AttachmentSupport.decode).
 * Throws when the name is not a `mem:` URI or not valid base64url, as
 * upstream's decoder would.
 */
export function decodeInlineAttachment(attachmentName: string): Buffer {
  if (!isInlineAttachment(attachmentName)) throw new Error(`not an inlined attachment: ${describeName(attachmentName)}`);
  const encoded = attachmentName.slice(MEM_SCHEME.length + 1);
  if (!BASE64URL.test(encoded)) throw new Error(`inlined attachment is not valid base64url: ${describeName(attachmentName)}`);
  return Buffer.from(encoded, 'base64url');
}

function describeName(name: string): string {
  return JSON.stringify(name.length > 48 ? `${name.slice(0, 48)}...` : name);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$/;

/** Upstream `Exec.isBinaryCode`: the trimmed code is non-empty, padded base64. */
export function isBinaryCode(code: string): boolean {
  const trimmed = code.trim();
  return trimmed.length > 0 && trimmed.length % 4 === 0 && BASE64.test(trimmed);
}

/** The bytes upstream stores for code: base64-decoded when binary, UTF-8 otherwise (WhiskAction.put). */
export function codeBytes(code: string, binary: boolean): Buffer {
  return binary ? Buffer.from(code.trim(), 'base64') : Buffer.from(code, 'utf8');
}

export interface KeyValueInput {
  key: string;
  value: unknown;
  init?: boolean;
  encryption?: unknown;
}

export type ExecInput =
  /** A managed kind (`nodejs:20`, `python:3`, ...). */
  | {
      kind: string;
      /** Source text, or base64 of an archive. */
      code: string;
      main?: string;
      /** Default: upstream's detection, `isBinaryCode(code)`. */
      binary?: boolean;
      /**
       * Whether the kind's manifest entry has `attached` (default true, as for
       * every kind upstream ships). False writes the code inline as a string
       * (CodeExecAsString), which is also how older documents look.
       */
      attached?: boolean;
    }
  | { kind: 'blackbox'; image: string; code?: string; main?: string; binary?: boolean }
  | { kind: 'sequence'; components: string[] };

export interface ActionDocumentInput {
  /** Entity path: `guest` or `guest/pkg`. */
  namespace: string;
  name: string;
  exec: ExecInput;
  parameters?: KeyValueInput[];
  annotations?: KeyValueInput[];
  /** Missing fields take upstream's defaults (60 000 ms, 256 MB, 10 MB, 1). */
  limits?: Partial<{ timeout: number; memory: number; logs: number; concurrency: number }>;
  version?: string;
  publish?: boolean;
  /** Epoch milliseconds; default now. */
  updated?: number;
  /** Set when updating an existing document. */
  rev?: string;
}

export interface ActionDocumentOptions {
  /** `whisk.db.max-inline-size` in bytes; default 16 KiB. 0 attaches everything. */
  maxInlineSize?: number;
  /** Names new CouchDB attachments; default a random UUID, as upstream. */
  attachmentName?: () => string;
}

/** A document to write, and the CouchDB attachment to upload after it, if any. */
export interface UpstreamActionDocument {
  doc: Record<string, unknown> & { _id: string };
  /**
   * Code too large to inline: upload it as `PUT /<db>/<_id>/<name>?rev=<rev
   * of the document just written>` with `contentType`, as upstream does right
   * after writing the document.
   */
  attachment?: { name: string; contentType: string; data: Buffer };
}

/** Upstream ActionLimits defaults (TimeLimit, MemoryLimit std, LogLimit, ConcurrencyLimit). */
const LIMIT_DEFAULTS = { timeout: 60_000, memory: 256, logs: 10, concurrency: 1 };

/** Builds the document (and attachment) upstream's controller writes for an action. */
export function upstreamActionDocument(input: ActionDocumentInput, options: ActionDocumentOptions = {}): UpstreamActionDocument {
  const maxInlineSize = options.maxInlineSize ?? DEFAULT_MAX_INLINE_SIZE;
  const newName = options.attachmentName ?? randomUUID;
  let attachment: UpstreamActionDocument['attachment'];

  const attach = (code: string, binary: boolean): AttachmentReference => {
    const bytes = codeBytes(code, binary);
    const type = binary ? BINARY_CODE_TYPE : TEXT_CODE_TYPE;
    if (bytes.length < maxInlineSize) return encodeInlineAttachment(bytes, type);
    const name = newName();
    attachment = { name, contentType: type, data: bytes };
    return { attachmentName: `${COUCH_SCHEME}:${name}`, attachmentType: type };
  };

  const e = input.exec;
  let exec: Record<string, unknown>;
  if ('components' in e) {
    exec = { kind: 'sequence', components: e.components };
  } else if ('image' in e) {
    const code = e.code !== undefined && e.code.trim() !== '' ? e.code : undefined;
    const binary = code === undefined ? false : (e.binary ?? isBinaryCode(code));
    exec = { kind: 'blackbox', image: e.image, binary };
    if (code !== undefined) exec.code = attach(code, binary);
    if (e.main !== undefined) exec.main = e.main;
  } else {
    const binary = e.binary ?? isBinaryCode(e.code);
    exec = { kind: e.kind, code: e.attached === false ? e.code : attach(e.code, binary), binary };
    if (e.main !== undefined) exec.main = e.main;
  }

  const doc: Record<string, unknown> & { _id: string } = {
    _id: `${input.namespace}/${input.name}`,
    ...(input.rev !== undefined ? { _rev: input.rev } : {}),
    annotations: keyValues(input.annotations ?? []),
    entityType: 'action',
    exec: sortKeys(exec),
    limits: sortKeys({ ...LIMIT_DEFAULTS, ...input.limits }),
    name: input.name,
    namespace: input.namespace,
    parameters: keyValues(input.parameters ?? []),
    publish: input.publish ?? false,
    updated: input.updated ?? Date.now(),
    version: input.version ?? '0.0.1',
  };
  return attachment === undefined ? { doc } : { doc, attachment };
}

/** Parameters.toJsArray: `encryption` and `init` only when set, then `key` and `value`. */
function keyValues(list: KeyValueInput[]): Record<string, unknown>[] {
  return list.map((kv) => ({
    ...(kv.encryption !== undefined && kv.encryption !== null ? { encryption: kv.encryption } : {}),
    ...(kv.init === true ? { init: true } : {}),
    key: kv.key,
    value: kv.value ?? null,
  }));
}

function sortKeys(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
