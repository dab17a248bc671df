/**
 * Invoker and controller instance ids (upstream InstanceId.scala).
 *
 * Invoker wire order: instance, userMemory, busyMemory?, instanceType, tags,
 * dedicatedNamespaces, uniqueName?, displayedName?.
 * Controller: asString, instanceType.
 */
import type { JsonObject } from './json.js';
import { byteSizeBytes, formatByteSize, fromParsed, type ByteSize } from './byte-size.js';
import {
  asObject,
  fail,
  optString,
  parseRootObject,
  reqNonNegativeInteger,
  reqString,
  reqStringArray,
  type WireInput,
} from './json-read.js';
import { quote, writeStringArray } from './json-write.js';

export interface InvokerInstanceId {
  /** The N of the `invoker<N>` topic. */
  instance: number;
  userMemory: ByteSize;
  busyMemory?: ByteSize;
  /** Annotation tags of actions this invoker may run. */
  tags: string[];
  /** If not empty, only these namespaces' actions run here. */
  dedicatedNamespaces: string[];
  uniqueName?: string;
  displayedName?: string;
}

export interface ControllerInstanceId {
  /** The C of the `completed<C>` topic. */
  asString: string;
}

// Controller ids become part of Kafka topic names: upstream allows the topic
// name characters and reserves room for a prefix.
const CONTROLLER_ID = /^[a-zA-Z0-9._-]{1,128}$/;

function readByteSize(o: JsonObject, key: string, path: string, required: boolean): ByteSize | undefined {
  const v = o[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string') {
    return fail(`${path}.${key}`, v === undefined ? 'missing (expected a byte size string)' : 'expected a byte size string');
  }
  const bytes = byteSizeBytes(v);
  if (typeof bytes === 'string') return fail(`${path}.${key}`, bytes);
  return fromParsed(v, bytes);
}

export function invokerInstanceIdFromJson(value: unknown, path: string): InvokerInstanceId {
  const o = asObject(value, path);
  const instanceType = o['instanceType'];
  if (instanceType !== 'invoker') {
    return fail(`${path}.instanceType`, instanceType === undefined ? 'missing (expected "invoker")' : 'expected "invoker"');
  }
  const id: InvokerInstanceId = {
    instance: reqNonNegativeInteger(o, 'instance', path),
    userMemory: readByteSize(o, 'userMemory', path, true) as ByteSize,
    // Older invokers do not send these two; upstream's defaults are empty.
    tags: o['tags'] === undefined ? [] : reqStringArray(o, 'tags', path),
    dedicatedNamespaces: o['dedicatedNamespaces'] === undefined ? [] : reqStringArray(o, 'dedicatedNamespaces', path),
  };
  const busyMemory = readByteSize(o, 'busyMemory', path, false);
  if (busyMemory !== undefined) id.busyMemory = busyMemory;
  const uniqueName = optString(o, 'uniqueName', path);
  if (uniqueName !== undefined) id.uniqueName = uniqueName;
  const displayedName = optString(o, 'displayedName', path);
  if (displayedName !== undefined) id.displayedName = displayedName;
  return id;
}

export function writeInvokerInstanceId(id: InvokerInstanceId): string {
  let out = `{"instance":${id.instance},"userMemory":${quote(formatByteSize(id.userMemory))}`;
  if (id.busyMemory !== undefined) out += `,"busyMemory":${quote(formatByteSize(id.busyMemory))}`;
  out += `,"instanceType":"invoker","tags":${writeStringArray(id.tags)}`;
  out += `,"dedicatedNamespaces":${writeStringArray(id.dedicatedNamespaces)}`;
  if (id.uniqueName !== undefined) out += `,"uniqueName":${quote(id.uniqueName)}`;
  if (id.displayedName !== undefined) out += `,"displayedName":${quote(id.displayedName)}`;
  return out + '}';
}

export function controllerInstanceIdFromJson(value: unknown, path: string): ControllerInstanceId {
  const o = asObject(value, path);
  const asString = reqString(o, 'asString', path);
  if (!CONTROLLER_ID.test(asString)) {
    return fail(`${path}.asString`, 'expected 1 to 128 characters of [a-zA-Z0-9._-]');
  }
  // Upstream accepts a controller id without instanceType.
  const instanceType = o['instanceType'];
  if (instanceType !== undefined && instanceType !== 'controller') {
    return fail(`${path}.instanceType`, 'expected "controller"');
  }
  return { asString };
}

export function writeControllerInstanceId(id: ControllerInstanceId): string {
  return `{"asString":${quote(id.asString)},"instanceType":"controller"}`;
}

export function parseInvokerInstanceId(input: WireInput): InvokerInstanceId {
  return invokerInstanceIdFromJson(parseRootObject(input, 'InvokerInstanceId'), 'InvokerInstanceId');
}

export function serializeInvokerInstanceId(id: InvokerInstanceId): string {
  return writeInvokerInstanceId(id);
}

export function parseControllerInstanceId(input: WireInput): ControllerInstanceId {
  return controllerInstanceIdFromJson(parseRootObject(input, 'ControllerInstanceId'), 'ControllerInstanceId');
}

export function serializeControllerInstanceId(id: ControllerInstanceId): string {
  return writeControllerInstanceId(id);
}

/** The Kafka topic an invoker consumes: `invoker<N>`. */
export function invokerTopic(id: InvokerInstanceId): string {
  return `invoker${id.instance}`;
}

/** The Kafka topic a controller reads acknowledgements from: `completed<C>`. */
export function completedTopic(id: ControllerInstanceId): string {
  return `completed${id.asString}`;
}
