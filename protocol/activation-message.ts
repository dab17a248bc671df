/**
 * ActivationMessage: controller -> invoker, the Kafka value on `invoker<N>`
 * and the body of POST /invoke (wire spec section 2, upstream Message.scala).
 *
 * Wire order: transid, action, revision, user, activationId,
 * rootControllerIndex, blocking, content?, initArgs, lockedArgs, cause?,
 * traceContext?. Optional fields are left out when absent; `revision` is
 * required but may be null (the health-test action has none).
 *
 * `content` is kept as its source text (raw-json.ts) and written back, and
 * into the /run body, exactly as received.
 */
import { optActivationId, reqActivationId } from './activation-id.js';
import {
  controllerInstanceIdFromJson,
  writeControllerInstanceId,
  type ControllerInstanceId,
} from './instance-ids.js';
import type { JsonObject } from './json.js';
import {
  asObject,
  fail,
  optString,
  optStringMap,
  parseText,
  rootObject,
  reqBoolean,
  reqName,
  reqObject,
  reqString,
  reqStringArray,
  reqStringMap,
  rejectNonFiniteNumbers,
  type WireInput,
} from './json-read.js';
import { quote, writeStringArray, writeValue } from './json-write.js';
import { memberText, RawJson } from './raw-json.js';
import { transactionIdFromJson, writeTransactionId, type TransactionId } from './transaction-id.js';

/** `{path, name, version?, binding?}`; `path` may include a package: `guest/pkg`. */
export interface FullyQualifiedEntityName {
  path: string;
  name: string;
  version?: string;
  /** The package binding the action was invoked through. */
  binding?: string;
}

export interface Identity {
  subject: string;
  namespace: { name: string; uuid: string };
  /**
   * Credentials, usually `{"api_key": "<uuid>:<key>"}`. Free-form because
   * upstream passes every field on to the action (`api_key` -> `__OW_API_KEY`).
   */
  authkey: JsonObject;
  rights: string[];
  /** User limits (all optional upstream): storeActivations, allowedKinds, ... */
  limits: JsonObject;
}

export interface ActivationMessage {
  transid: TransactionId;
  action: FullyQualifiedEntityName;
  /** CouchDB `_rev` of the action, null for the health-test action. */
  revision: string | null;
  user: Identity;
  activationId: string;
  rootControllerIndex: ControllerInstanceId;
  blocking: boolean;
  /**
   * The action's parameters as their exact JSON text: usually an object, an
   * array when a sequence component returned one (upstream passes it on as
   * the /run `value`), in principle any JSON value. Absent for e.g. the
   * health-test action; `null` on the wire reads as absent, as upstream's
   * reader has it.
   */
  content?: RawJson;
  /** Parameter names sent to /init as environment instead of to /run. */
  initArgs: string[];
  /** Parameter name -> encryption scheme or key name of encrypted values in `content`. */
  lockedArgs: Record<string, string>;
  /** Parent activation id (sequences). */
  cause?: string;
  traceContext?: Record<string, string>;
}

const P = 'ActivationMessage';

export function fullyQualifiedNameFromJson(value: unknown, path: string): FullyQualifiedEntityName {
  const o = asObject(value, path);
  const fqn: FullyQualifiedEntityName = { path: reqName(o, 'path', path), name: reqName(o, 'name', path) };
  const version = optString(o, 'version', path);
  if (version !== undefined) fqn.version = version;
  const binding = optString(o, 'binding', path);
  if (binding !== undefined) fqn.binding = binding;
  return fqn;
}

export function writeFullyQualifiedName(n: FullyQualifiedEntityName): string {
  let out = `{"path":${quote(n.path)},"name":${quote(n.name)}`;
  if (n.version !== undefined) out += `,"version":${quote(n.version)}`;
  if (n.binding !== undefined) out += `,"binding":${quote(n.binding)}`;
  return out + '}';
}

/** `path/name`: the action's document id in the `whisks` database. */
export function actionDocId(n: FullyQualifiedEntityName): string {
  return `${n.path}/${n.name}`;
}

/** `/path/name`, as the runtime sees it in `__OW_ACTION_NAME`. */
export function qualifiedNameWithLeadingSlash(n: FullyQualifiedEntityName): string {
  return `/${n.path}/${n.name}`;
}

export function identityFromJson(value: unknown, path: string): Identity {
  const o = asObject(value, path);
  const nsPath = `${path}.namespace`;
  const ns = reqObject(o, 'namespace', path);
  return {
    subject: reqString(o, 'subject', path),
    namespace: { name: reqName(ns, 'name', nsPath), uuid: reqString(ns, 'uuid', nsPath) },
    authkey: reqObject(o, 'authkey', path),
    rights: reqStringArray(o, 'rights', path),
    limits: reqObject(o, 'limits', path),
  };
}

export function writeIdentity(u: Identity): string {
  return (
    `{"subject":${quote(u.subject)},"namespace":{"name":${quote(u.namespace.name)},"uuid":${quote(u.namespace.uuid)}}` +
    `,"authkey":${writeValue(u.authkey)},"rights":${writeStringArray(u.rights)},"limits":${writeValue(u.limits)}}`
  );
}

/** Upstream default: activations are stored unless the user's limits say `storeActivations: false`. */
export function storesActivations(user: Identity): boolean {
  return user.limits['storeActivations'] !== false;
}

/**
 * Validates an already parsed JSON value (e.g. a body parsed by the HTTP
 * framework). Prefer parseActivationMessage on the raw bytes: only it can
 * enforce the nesting and number-range limits of json-read.ts, and keep the
 * numbers of `content` exact. `source`: the JSON text `value` was parsed
 * from, where `content` is then taken from verbatim.
 */
export function activationMessageFromJson(value: unknown, path: string = P, source?: string): ActivationMessage {
  const o = asObject(value, path);
  const revision = o['revision'];
  if (revision !== null && typeof revision !== 'string') {
    return fail(`${path}.revision`, revision === undefined ? 'missing (expected a string or null)' : 'expected a string or null');
  }
  const msg: ActivationMessage = {
    transid: transactionIdFromJson(o['transid'], `${path}.transid`),
    action: fullyQualifiedNameFromJson(o['action'], `${path}.action`),
    revision,
    user: identityFromJson(o['user'], `${path}.user`),
    activationId: reqActivationId(o, 'activationId', path),
    rootControllerIndex: controllerInstanceIdFromJson(o['rootControllerIndex'], `${path}.rootControllerIndex`),
    blocking: reqBoolean(o, 'blocking', path),
    // Both have upstream defaults and older controllers leave them out.
    initArgs: o['initArgs'] === undefined ? [] : reqStringArray(o, 'initArgs', path),
    lockedArgs: o['lockedArgs'] === undefined ? {} : reqStringMap(o, 'lockedArgs', path),
  };
  const content = o['content'];
  if (content !== undefined && content !== null) {
    const text = source === undefined ? undefined : memberText(source, 'content');
    msg.content = text === undefined ? RawJson.of(content) : RawJson.trusted(text);
  }
  const cause = optActivationId(o, 'cause', path);
  if (cause !== undefined) msg.cause = cause;
  const traceContext = optStringMap(o, 'traceContext', path);
  if (traceContext !== undefined) msg.traceContext = traceContext;
  return msg;
}

export function parseActivationMessage(input: WireInput): ActivationMessage {
  const { text, value } = parseText(input, P);
  const o = rootObject(value, P);
  // Numbers in content stay text, so any size is fine there; elsewhere they must fit a double.
  rejectNonFiniteNumbers(text, o, P, 'content');
  return activationMessageFromJson(o, P, text);
}

export function serializeActivationMessage(m: ActivationMessage): string {
  let out =
    `{"transid":${writeTransactionId(m.transid)},"action":${writeFullyQualifiedName(m.action)}` +
    `,"revision":${m.revision === null ? 'null' : quote(m.revision)},"user":${writeIdentity(m.user)}` +
    `,"activationId":${quote(m.activationId)},"rootControllerIndex":${writeControllerInstanceId(m.rootControllerIndex)}` +
    `,"blocking":${m.blocking ? 'true' : 'false'}`;
  if (m.content !== undefined) out += `,"content":${m.content.text}`;
  out += `,"initArgs":${writeStringArray(m.initArgs)},"lockedArgs":${writeValue(m.lockedArgs)}`;
  if (m.cause !== undefined) out += `,"cause":${quote(m.cause)}`;
  if (m.traceContext !== undefined) out += `,"traceContext":${writeValue(m.traceContext)}`;
  return out + '}';
}
