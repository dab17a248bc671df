/**
 * Entity names as upstream allows them (EntityPath.scala): an EntityName is
 * one word character, or a word character, up to 254 of `[\w@ .&-]`, and a
 * final `[\w@.&-]` (256 at most, no trailing blank); an EntityPath is
 * EntityNames joined by `/`. `\w` is ASCII `[A-Za-z0-9_]`, in Java's regex as
 * in JavaScript's.
 *
 * On top of upstream: an invoker turns names into CouchDB document ids
 * (`<namespace>/<activationId>` in `activations`, `<path>/<name>` in
 * `whisks`), and CouchDB reserves every id that starts with `_` (`_design/`,
 * `_local/`). So a namespace, and the first segment of a path, must not start
 * with `_` (upstream's `_` is the "default namespace" placeholder of its API
 * and never reaches an invoker), and a path has no empty segments (upstream
 * drops them; the invoker uses the string as given, so it must be the
 * normalised one).
 *
 * Checked where messages enter the invoker (HTTP push, Kafka feed), after
 * parsing; the parsers themselves only require non-empty strings.
 */
import type { ActivationMessage } from './activation-message.js';
import { ProtocolParseError } from './parse-error.js';

export const ENTITY_NAME_MAX_LENGTH = 256;
const ENTITY_NAME = new RegExp(`^(?:\\w|\\w[\\w@ .&-]{0,${ENTITY_NAME_MAX_LENGTH - 2}}[\\w@.&-])$`);

/** Upstream EntityName. */
export function isEntityName(value: unknown): value is string {
  return typeof value === 'string' && ENTITY_NAME.test(value);
}

/** Upstream EntityPath, without empty segments. */
export function isEntityPath(value: unknown): value is string {
  return typeof value === 'string' && value.split('/').every((part) => ENTITY_NAME.test(part));
}

/** A name that may start a CouchDB document id: an EntityName not starting with `_`. */
export function isNamespaceName(value: unknown): value is string {
  return isEntityName(value) && !value.startsWith('_');
}

/** An EntityPath whose first segment is a namespace name. */
export function isRootedEntityPath(value: unknown): value is string {
  return isEntityPath(value) && !value.startsWith('_');
}

const P = 'ActivationMessage';
const NAME_RULE = `upstream's EntityName: 1 to ${ENTITY_NAME_MAX_LENGTH} of [A-Za-z0-9_@ .&-], starting with [A-Za-z0-9_], not ending in a blank`;

/**
 * Throws ProtocolParseError naming the first name of `msg` that upstream
 * would refuse or that would pick a reserved CouchDB id. The message names
 * the field and the rule, never the value.
 */
export function validateActivationMessageNames(msg: ActivationMessage): void {
  const ns = msg.user.namespace.name;
  if (!isEntityName(ns)) throw new ProtocolParseError(`${P}.user.namespace.name`, `expected ${NAME_RULE}`);
  if (ns.startsWith('_')) throw new ProtocolParseError(`${P}.user.namespace.name`, 'must not start with "_" (CouchDB reserves such document ids)');
  const { path, name, binding } = msg.action;
  if (!isEntityPath(path)) throw new ProtocolParseError(`${P}.action.path`, `expected names separated by "/", each ${NAME_RULE}`);
  if (path.startsWith('_')) throw new ProtocolParseError(`${P}.action.path`, 'must not start with "_" (CouchDB reserves such document ids)');
  if (!isEntityName(name)) throw new ProtocolParseError(`${P}.action.name`, `expected ${NAME_RULE}`);
  if (binding !== undefined && !isEntityPath(binding)) {
    throw new ProtocolParseError(`${P}.action.binding`, `expected names separated by "/", each ${NAME_RULE}`);
  }
}
