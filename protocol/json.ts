/**
 * JSON values as `JSON.parse` produces them. Free-form payloads (results,
 * user limits, annotation values) are carried as these, untouched, and
 * written back with JSON.stringify. Action parameters (ActivationMessage
 * `content`) are not: they stay text (raw-json.ts), so none of the
 * differences below applies to them.
 *
 * Known differences from upstream's spray-json (BigDecimal numbers, ordered
 * maps), inherent to JavaScript values:
 * - integers beyond 2^53 lose precision; -0 is written as 0;
 * - integer-like keys ("0", "42") of an object come first, in ascending order,
 *   when it is written back; other keys keep their order.
 * Numbers that overflow a double are rejected by the parsers rather than
 * being written back as null (see json-read.ts).
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}
