/**
 * Wire formats shared by the invoker and the controller-side balancer. Pure:
 * no I/O, no module state. Parsers take bytes or a string and either return a
 * typed value or throw ProtocolParseError naming the offending field;
 * serializers write compact JSON with upstream's fields and values (not its
 * bytes: upstream sorts object keys; see README.md for what is guaranteed).
 */
export * from './acknowledgement.js';
export { ACTIVATION_ID_LENGTH, generateActivationId, isActivationId } from './activation-id.js';
export * from './activation-message.js';
export * from './activation-response.js';
export * from './activation.js';
export * from './annotations.js';
export { byteSize, byteSizeBytes, formatByteSize, megabytes, parseByteSize, type ByteSize } from './byte-size.js';
export * from './entity-names.js';
export * from './error-texts.js';
export * from './forced-completion.js';
export * from './instance-ids.js';
export type { JsonObject, JsonValue } from './json.js';
export { MAX_JSON_DEPTH, type WireInput } from './json-read.js';
export * from './locked-args.js';
export { bigDecimalString, RawJson, rawEnvString, upstreamCompact, type RawJsonType, type RawMember } from './raw-json.js';
export * from './parse-error.js';
export * from './ping.js';
export * from './runtime-payloads.js';
export * from './salvage.js';
export * from './transaction-id.js';
