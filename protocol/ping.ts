/**
 * Health ping: invoker -> `health` topic, about once a second (wire spec
 * section 4, upstream PingMessage). The invoker id travels in a field named
 * `name`; `isEnabled: false` announces a disabled invoker.
 */
import { invokerInstanceIdFromJson, writeInvokerInstanceId, type InvokerInstanceId } from './instance-ids.js';
import { asObject, optBoolean, parseRootObject, type WireInput } from './json-read.js';

export interface PingMessage {
  /** Written as `name` on the wire. */
  instance: InvokerInstanceId;
  /** Absent in pings from invokers that predate enable/disable. */
  isEnabled?: boolean;
}

export function pingMessageFromJson(value: unknown, path: string = 'PingMessage'): PingMessage {
  const o = asObject(value, path);
  const ping: PingMessage = { instance: invokerInstanceIdFromJson(o['name'], `${path}.name`) };
  const isEnabled = optBoolean(o, 'isEnabled', path);
  if (isEnabled !== undefined) ping.isEnabled = isEnabled;
  return ping;
}

export function parsePingMessage(input: WireInput): PingMessage {
  return pingMessageFromJson(parseRootObject(input, 'PingMessage'));
}

export function serializePingMessage(ping: PingMessage): string {
  const name = writeInvokerInstanceId(ping.instance);
  if (ping.isEnabled === undefined) return `{"name":${name}}`;
  return `{"name":${name},"isEnabled":${ping.isEnabled ? 'true' : 'false'}}`;
}
