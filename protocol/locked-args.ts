/**
 * Locked (encrypted) action parameters.
 *
 * An ActivationMessage's `lockedArgs` maps a parameter name to the name of
 * the key its value in `content` was encrypted with. Two conventions are
 * covered by one format:
 *
 * - upstream OpenWhisk (ParameterEncryption.scala): key names "aes-128"
 *   (16-byte key, 12-byte IV) and "aes-256" (32-byte key, 128-byte IV);
 * - the Go invoker: arbitrary key names, several live at once for rollover,
 *   128-byte nonce.
 *
 * Value format (both): base64 (standard alphabet, padded) of
 *   uint32 big-endian IV length | IV | AES-GCM ciphertext | 16-byte tag
 * and the plaintext is the UTF-8 JSON text of the parameter's value. The
 * upstream format was confirmed against apache/openwhisk
 * common/scala/.../entity/ParameterEncryption.scala (GCM tag 128 bits, the
 * IV length must match the scheme's exactly).
 *
 * Errors name the parameter and the key name, never key bytes or values.
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import type { ActivationMessage } from './activation-message.js';
import type { JsonValue } from './json.js';
import { RawJson } from './raw-json.js';

export const AES_128 = 'aes-128';
export const AES_256 = 'aes-256';
/** Upstream's "no encryption" scheme: the value is passed through. */
export const NO_ENCRYPTION = 'noop';

const TAG_LENGTH = 16;
const HEADER_LENGTH = 4;
// The longest IV we accept from configuration; upstream's longest is 128.
const MAX_IV_LENGTH = 1024;

export interface KeySpec {
  /** 16, 24 or 32 raw bytes, or their standard base64 (how keys are configured). */
  key: Uint8Array | string;
  /** Expected IV length in bytes; defaults to 12 for "aes-128" and 128 otherwise. */
  ivLength?: number;
}

/** A key as configured: raw bytes, base64 text, or a spec with an explicit IV length. */
export type KeyMaterial = Uint8Array | string | KeySpec;

export class ParameterDecryptionError extends Error {
  override readonly name = 'ParameterDecryptionError';
  /** The parameter that could not be decrypted (empty for configuration errors). */
  readonly param: string;
  readonly keyName: string;

  constructor(param: string, keyName: string, reason: string, options?: { cause?: unknown }) {
    super(
      param === ''
        ? `configuring parameter key "${keyName}": ${reason}`
        : `decrypting locked argument "${param}" with key "${keyName}": ${reason}`,
      options,
    );
    this.param = param;
    this.keyName = keyName;
  }
}

interface PreparedKey {
  algorithm: 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm';
  key: KeyObject;
  ivLength: number;
}

/** The IV length a key name implies when none is configured. */
export function defaultIvLength(keyName: string): number {
  return keyName === AES_128 ? 12 : 128;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function prepareKey(keyName: string, material: KeyMaterial): PreparedKey {
  const spec: KeySpec = typeof material === 'string' || material instanceof Uint8Array ? { key: material } : material;
  let bytes: Buffer;
  if (typeof spec.key === 'string') {
    if (!BASE64.test(spec.key)) throw new ParameterDecryptionError('', keyName, 'key is not valid base64');
    bytes = Buffer.from(spec.key, 'base64');
  } else {
    bytes = Buffer.from(spec.key);
  }
  const n = bytes.length;
  if (keyName === AES_128 && n !== 16) throw new ParameterDecryptionError('', keyName, `expected a 16-byte key, got ${n} bytes`);
  if (keyName === AES_256 && n !== 32) throw new ParameterDecryptionError('', keyName, `expected a 32-byte key, got ${n} bytes`);
  if (n !== 16 && n !== 24 && n !== 32) {
    throw new ParameterDecryptionError('', keyName, `expected a 16, 24 or 32-byte key, got ${n} bytes`);
  }
  const ivLength = spec.ivLength ?? defaultIvLength(keyName);
  if (!Number.isInteger(ivLength) || ivLength < 1 || ivLength > MAX_IV_LENGTH) {
    throw new ParameterDecryptionError('', keyName, `IV length must be 1..${MAX_IV_LENGTH}, got ${ivLength}`);
  }
  const algorithm = n === 16 ? 'aes-128-gcm' : n === 24 ? 'aes-192-gcm' : 'aes-256-gcm';
  // A KeyObject keeps the bytes out of plain buffers that could end up logged or inspected.
  const key = createSecretKey(bytes);
  bytes.fill(0);
  return { algorithm, key, ivLength };
}

/**
 * Decrypts locked arguments with a fixed set of named keys. Build one at
 * startup from configuration and share it; it holds no per-call state.
 */
export class ParameterDecryptor {
  readonly #keys = new Map<string, PreparedKey>();

  /** @throws ParameterDecryptionError when a key is malformed (names the key, never its bytes). */
  constructor(keys: Readonly<Record<string, KeyMaterial>>) {
    for (const name of Object.keys(keys)) this.#keys.set(name, prepareKey(name, keys[name] as KeyMaterial));
  }

  /** Names of the configured keys (for startup logging; the keys themselves are never exposed). */
  keyNames(): string[] {
    return [...this.#keys.keys()];
  }

  /**
   * Decrypts one value. Like upstream, a value that is not a string (so cannot
   * be a ciphertext) and the "noop" scheme pass through unchanged.
   */
  decryptValue(param: string, keyName: string, value: JsonValue): JsonValue {
    return JSON.parse(this.decryptText(param, keyName, JSON.stringify(value))) as JsonValue;
  }

  /**
   * decryptValue on JSON text: the JSON text of the decrypted value (the
   * plaintext, as the controller encrypted it, so its numbers stay exact),
   * or `text` itself when it is not a string or the scheme is "noop".
   */
  decryptText(param: string, keyName: string, text: string): string {
    const key = this.#keys.get(keyName);
    if (key === undefined) {
      if (keyName === NO_ENCRYPTION) return text;
      throw new ParameterDecryptionError(param, keyName, 'no key with this name is configured');
    }
    if (text.charCodeAt(0) !== 34) return text;
    return decryptWith(param, keyName, key, JSON.parse(text) as string);
  }

  /**
   * `content` with every locked argument decrypted, members in the same
   * order; `content` itself is not modified. Returns `content` as is when
   * nothing is locked, and when it is not an object (upstream's
   * unlockArguments keeps an array as it is).
   */
  decryptContent(content: RawJson | undefined, lockedArgs: Readonly<Record<string, string>>): RawJson | undefined {
    const members = content?.members();
    if (members === undefined) return content;
    if (!members.some((m) => Object.hasOwn(lockedArgs, m.key))) return content;
    let out = '{';
    for (const m of members) {
      const keyName = Object.hasOwn(lockedArgs, m.key) ? lockedArgs[m.key] : undefined;
      out += `${out.length > 1 ? ',' : ''}${m.keyText}:${keyName === undefined ? m.text : this.decryptText(m.key, keyName, m.text)}`;
    }
    return RawJson.trusted(`${out}}`);
  }

  /** The message's content with its locked arguments decrypted. */
  decryptMessage(msg: ActivationMessage): RawJson | undefined {
    return this.decryptContent(msg.content, msg.lockedArgs);
  }
}

/** Decrypts one value; returns the plaintext, checked to be JSON. */
function decryptWith(param: string, keyName: string, key: PreparedKey, text: string): string {
  if (!BASE64.test(text)) throw new ParameterDecryptionError(param, keyName, 'value is not valid base64');
  const data = Buffer.from(text, 'base64');
  if (data.length < HEADER_LENGTH) throw new ParameterDecryptionError(param, keyName, 'value too short');
  const ivLength = data.readUInt32BE(0);
  if (ivLength !== key.ivLength) {
    throw new ParameterDecryptionError(param, keyName, `IV length ${ivLength} does not match the key's ${key.ivLength}`);
  }
  if (data.length < HEADER_LENGTH + ivLength + TAG_LENGTH) {
    throw new ParameterDecryptionError(param, keyName, 'value too short');
  }
  const iv = data.subarray(HEADER_LENGTH, HEADER_LENGTH + ivLength);
  const tag = data.subarray(data.length - TAG_LENGTH);
  const ciphertext = data.subarray(HEADER_LENGTH + ivLength, data.length - TAG_LENGTH);
  let plaintext: string;
  try {
    const decipher = createDecipheriv(key.algorithm, key.key, iv, { authTagLength: TAG_LENGTH });
    decipher.setAuthTag(tag);
    plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
  } catch (err) {
    // Deliberately not the OpenSSL message: it adds nothing and must not vary with the input.
    throw new ParameterDecryptionError(param, keyName, 'authentication failed (wrong key or corrupted value)', {
      cause: err,
    });
  }
  try {
    // Parsed only to check it: the text itself is what the action gets.
    JSON.parse(plaintext);
  } catch {
    // No cause: the JSON error message would quote the plaintext.
    throw new ParameterDecryptionError(param, keyName, 'decrypted value is not JSON');
  }
  return plaintext.trim();
}

/**
 * Encrypts a parameter value for `keyName` in the format above (the
 * controller's side; also used by tests). The IV is random per call.
 */
export function encryptParameterValue(value: JsonValue, keyName: string, material: KeyMaterial): string {
  const key = prepareKey(keyName, material);
  const iv = randomBytes(key.ivLength);
  const cipher = createCipheriv(key.algorithm, key.key, iv, { authTagLength: TAG_LENGTH });
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  const header = Buffer.alloc(HEADER_LENGTH);
  header.writeUInt32BE(key.ivLength, 0);
  return Buffer.concat([header, iv, ciphertext, cipher.getAuthTag()]).toString('base64');
}
