/**
 * Bodies of the action runtime protocol (wire spec section 7): POST /init
 * once per container and POST /run per activation.
 *
 *   /init {"value":{"name","binary","main","code"?,"env":{<initArgs>, __OW_*}}}
 *   /run  {"value":{<content minus initArgs>},<authkey fields>,"namespace",
 *          "action_name","action_version","activation_id","transaction_id","deadline"}
 *
 * Both are built as JSON text: the /run body is on the hot path. The
 * parameters are spliced in as the text they arrived as (raw-json.ts), so
 * the action gets every value, numbers included, exactly as sent.
 *
 * Parameters that are not an object (an array, passed on by a sequence)
 * become the /run `value` as they are and give /init no environment, as
 * upstream's ContainerProxy.partitionArguments does; none means `{}`.
 */
import { ANNOTATION_PROVIDE_API_KEY, isTruthy, type Annotation } from './annotations.js';
import { qualifiedNameWithLeadingSlash, type ActivationMessage } from './activation-message.js';
import type { JsonObject, JsonValue } from './json.js';
import { quote, setOwn, writeValue } from './json-write.js';
import { omitMembers, rawEnvString, type RawJson } from './raw-json.js';

/**
 * What one /init or /run call to an action container gave: reported by the
 * container layer (invoker/docker/runtime-client.ts), read by the invocation
 * (invoker/invocation/classify.ts).
 */
export type RuntimeResult =
  /**
   * The runtime answered. `bytes` is the full body length even when
   * `truncated`. `logTags`: the runtime announced per-activation log tags
   * (invoker/docker/log-tags.ts).
   */
  | { kind: 'response'; status: number; body: string; bytes: number; truncated: boolean; logTags?: true }
  /** No complete answer within the timeout. */
  | { kind: 'timeout' }
  /** The connection failed or dropped (the process died, was OOM-killed, or never listened). */
  | { kind: 'connection-failed'; error: Error };

/** What the payloads need to know about the action being run. */
export interface RuntimeAction {
  /** The action's name (sent as /init `name`). */
  name: string;
  /** True when `code` is a base64 zip/binary. */
  binary: boolean;
  /** Entry point; defaults to "main". */
  main?: string;
  /** Source or base64 code; absent or null for blackbox images (then left out of /init). */
  code?: string | null;
  /** The action's annotations; `provide-api-key` decides whether the API key is passed on. */
  annotations: readonly Annotation[];
  /** The action's version, used when the message's action name carries none. */
  version?: string;
}

export interface RuntimeCall {
  msg: ActivationMessage;
  /**
   * The parameters with locked arguments already decrypted
   * (ParameterDecryptor.decryptMessage), or `msg.content` when none are locked.
   * Taken separately so that encrypted values can never reach a container by accident.
   */
  content: RawJson | undefined;
  action: RuntimeAction;
  /** Epoch ms by which the call must be done (now + timeout). */
  deadline: number;
}

/** Upstream treats a missing `provide-api-key` annotation as "provide it" (backward compatibility). */
export function providesApiKey(annotations: readonly Annotation[]): boolean {
  return isTruthy(annotations, ANNOTATION_PROVIDE_API_KEY, true);
}

/** Environment values are strings: strings as is, null as "", everything else as compact JSON (for JavaScript values; parameters go through rawEnvString). */
export function envString(value: JsonValue): string {
  if (typeof value === 'string') return value;
  if (value === null) return '';
  return JSON.stringify(value);
}

function actionVersion(call: RuntimeCall): string | undefined {
  return call.msg.action.version ?? call.action.version;
}

/** The `/init` body. */
export function initBody(call: RuntimeCall): string {
  const { msg, content, action } = call;
  const env: JsonObject = {};
  const members = msg.initArgs.length > 0 ? content?.members() : undefined;
  if (members !== undefined) {
    // Upstream's containerInitializer: numbers as BigDecimal.toString, objects as compactPrint.
    for (const m of members) {
      if (msg.initArgs.includes(m.key)) setOwn(env, m.key, rawEnvString(m.text));
    }
  }
  // The per-activation context comes last and wins over an init argument of
  // the same name (upstream: env ++ owEnv); deleting first moves it to the end.
  const put = (key: string, value: string): void => {
    delete env[key];
    setOwn(env, key, value);
  };
  if (providesApiKey(action.annotations)) {
    for (const key in msg.user.authkey) put(`__OW_${key.toUpperCase()}`, envString(msg.user.authkey[key] as JsonValue));
  }
  put('__OW_NAMESPACE', msg.user.namespace.name);
  put('__OW_ACTION_NAME', qualifiedNameWithLeadingSlash(msg.action));
  put('__OW_ACTION_VERSION', actionVersion(call) ?? '');
  put('__OW_ACTIVATION_ID', msg.activationId);
  put('__OW_TRANSACTION_ID', msg.transid.id);
  put('__OW_DEADLINE', String(call.deadline));

  let value = `{"name":${quote(action.name)},"binary":${action.binary ? 'true' : 'false'},"main":${quote(action.main ?? 'main')}`;
  if (action.code !== undefined && action.code !== null) value += `,"code":${quote(action.code)}`;
  return `{"value":${value},"env":${JSON.stringify(env)}}}`;
}

// Names the /run body sets itself; an authkey field of the same name must not duplicate them.
const RUN_FIELDS = new Set(['value', 'namespace', 'action_name', 'action_version', 'activation_id', 'transaction_id', 'deadline']);

/** The `/run` body. */
export function runBody(call: RuntimeCall): string {
  const { msg, content } = call;
  let out = `{"value":${runValue(content, msg.initArgs)}`;
  if (providesApiKey(call.action.annotations)) {
    const authkey = msg.user.authkey;
    for (const key in authkey) {
      if (!RUN_FIELDS.has(key)) out += `,${quote(key)}:${writeValue(authkey[key])}`;
    }
  }
  const version = actionVersion(call);
  return (
    `${out},"namespace":${quote(msg.user.namespace.name)}` +
    `,"action_name":${quote(qualifiedNameWithLeadingSlash(msg.action))}` +
    `,"action_version":${version === undefined ? 'null' : quote(version)}` +
    `,"activation_id":${quote(msg.activationId)},"transaction_id":${quote(msg.transid.id)}` +
    `,"deadline":"${call.deadline}"}`
  );
}

/** The parameters minus the init arguments, as JSON text: the received text itself when nothing is left out. */
function runValue(content: RawJson | undefined, initArgs: readonly string[]): string {
  if (content === undefined) return '{}';
  const text = content.text;
  if (initArgs.length === 0 || text.charCodeAt(0) !== 123) return text === 'null' ? '{}' : text;
  return omitMembers(text, initArgs);
}
