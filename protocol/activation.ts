/**
 * WhiskActivation, the activation record (wire spec section 6, upstream
 * WhiskActivation.scala). Wire order: namespace, name, subject, activationId,
 * start, end, cause?, response, logs, version, publish, annotations, duration?.
 *
 * The same shape travels in acknowledgements; the CouchDB document adds
 * `_id` (`<namespace>/<activationId>`), `entityType` and `updated` in front.
 */
import { optActivationId, reqActivationId } from './activation-id.js';
import {
  activationResponseFromJson,
  writeActivationResponse,
  type ActivationResponse,
} from './activation-response.js';
import { annotationsFromJson, writeAnnotations, type Annotation } from './annotations.js';
import type { JsonObject } from './json.js';
import {
  asObject,
  fail,
  optNonNegativeInteger,
  optString,
  parseRootObject,
  reqBoolean,
  reqInteger,
  reqName,
  reqString,
  reqStringArray,
  type WireInput,
} from './json-read.js';
import { quote, writeStringArray } from './json-write.js';

export interface WhiskActivation {
  /** The invoking namespace. */
  namespace: string;
  /** The action's name. */
  name: string;
  subject: string;
  activationId: string;
  /** Epoch ms: init start on a cold start, else run start. */
  start: number;
  /** Epoch ms. */
  end: number;
  /** Parent activation id (sequences). */
  cause?: string;
  response: ActivationResponse;
  /** Formatted log lines. */
  logs: string[];
  version: string;
  publish: boolean;
  annotations: Annotation[];
  /** Milliseconds. */
  duration?: number;
}

/** The record as stored in the `activations` database. */
export interface ActivationDocument {
  _id: string;
  /** Present on documents read back from CouchDB. */
  _rev?: string;
  updated: number;
  activation: WhiskActivation;
}

export function whiskActivationFromJson(value: unknown, path: string): WhiskActivation {
  return readActivation(asObject(value, path), path);
}

function readActivation(o: JsonObject, path: string): WhiskActivation {
  const a: WhiskActivation = {
    namespace: reqName(o, 'namespace', path),
    name: reqName(o, 'name', path),
    subject: reqString(o, 'subject', path),
    activationId: reqActivationId(o, 'activationId', path),
    start: reqInteger(o, 'start', path),
    end: reqInteger(o, 'end', path),
    response: activationResponseFromJson(o['response'], `${path}.response`),
    logs: reqStringArray(o, 'logs', path),
    version: reqString(o, 'version', path),
    publish: reqBoolean(o, 'publish', path),
    annotations: annotationsFromJson(o['annotations'], `${path}.annotations`),
  };
  const cause = optActivationId(o, 'cause', path);
  if (cause !== undefined) a.cause = cause;
  const duration = optNonNegativeInteger(o, 'duration', path);
  if (duration !== undefined) a.duration = duration;
  return a;
}

/** The activation's fields, without the surrounding braces. */
function writeFields(a: WhiskActivation): string {
  let out =
    `"namespace":${quote(a.namespace)},"name":${quote(a.name)},"subject":${quote(a.subject)}` +
    `,"activationId":${quote(a.activationId)},"start":${a.start},"end":${a.end}`;
  if (a.cause !== undefined) out += `,"cause":${quote(a.cause)}`;
  out +=
    `,"response":${writeActivationResponse(a.response)},"logs":${writeStringArray(a.logs)}` +
    `,"version":${quote(a.version)},"publish":${a.publish ? 'true' : 'false'}` +
    `,"annotations":${writeAnnotations(a.annotations)}`;
  if (a.duration !== undefined) out += `,"duration":${a.duration}`;
  return out;
}

export function writeWhiskActivation(a: WhiskActivation): string {
  return `{${writeFields(a)}}`;
}

export function parseWhiskActivation(input: WireInput): WhiskActivation {
  return whiskActivationFromJson(parseRootObject(input, 'WhiskActivation'), 'WhiskActivation');
}

export function serializeWhiskActivation(a: WhiskActivation): string {
  return writeWhiskActivation(a);
}

/** The CouchDB document id of an activation. */
export function activationDocId(a: WhiskActivation): string {
  return `${a.namespace}/${a.activationId}`;
}

/** Wraps an activation for storing; `updated` is the write time in epoch ms. */
export function activationDocument(activation: WhiskActivation, updated: number): ActivationDocument {
  return { _id: activationDocId(activation), updated, activation };
}

/** The stored document as JSON text, in upstream's field order. */
export function serializeActivationDocument(doc: ActivationDocument): string {
  let out = `{"_id":${quote(doc._id)}`;
  if (doc._rev !== undefined) out += `,"_rev":${quote(doc._rev)}`;
  return `${out},"entityType":"activation","updated":${doc.updated},${writeFields(doc.activation)}}`;
}

/**
 * The stored document as a plain object (for a database client that takes
 * objects), with the same field order as serializeActivationDocument.
 */
export function activationDocumentJson(doc: ActivationDocument): JsonObject {
  return JSON.parse(serializeActivationDocument(doc)) as JsonObject;
}

export function activationDocumentFromJson(value: unknown, path: string): ActivationDocument {
  const o = asObject(value, path);
  const entityType = o['entityType'];
  if (entityType !== 'activation') {
    return fail(`${path}.entityType`, entityType === undefined ? 'missing (expected "activation")' : 'expected "activation"');
  }
  const doc: ActivationDocument = {
    _id: reqName(o, '_id', path),
    updated: reqInteger(o, 'updated', path),
    activation: readActivation(o, path),
  };
  const rev = optString(o, '_rev', path);
  if (rev !== undefined) doc._rev = rev;
  return doc;
}

export function parseActivationDocument(input: WireInput): ActivationDocument {
  return activationDocumentFromJson(parseRootObject(input, 'ActivationDocument'), 'ActivationDocument');
}
