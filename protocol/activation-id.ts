/**
 * Activation ids: 32 lowercase hex characters, a random UUID without dashes
 * (upstream ActivationId.generate/parse). Upstream rejects anything else,
 * including uppercase hex, so we do too.
 */
import { randomUUID } from 'node:crypto';
import type { JsonObject } from './json.js';
import { describe, fail } from './json-read.js';

export const ACTIVATION_ID_LENGTH = 32;

export function generateActivationId(): string {
  return randomUUID().replaceAll('-', '');
}

export function isActivationId(value: unknown): value is string {
  if (typeof value !== 'string' || value.length !== ACTIVATION_ID_LENGTH) return false;
  // A char loop beats a regex here and this runs on every message.
  for (let i = 0; i < ACTIVATION_ID_LENGTH; i++) {
    const c = value.charCodeAt(i);
    const digit = c >= 48 && c <= 57; // 0-9
    const hex = c >= 97 && c <= 102; // a-f
    if (!digit && !hex) return false;
  }
  return true;
}

/** Why `value` is not an activation id, for error messages (never echoes the value). */
export function activationIdProblem(value: unknown): string {
  if (value === undefined) return 'missing (expected an activation id)';
  if (typeof value !== 'string') return `expected an activation id, got ${describe(value)}`;
  if (value.length !== ACTIVATION_ID_LENGTH) {
    return `expected an activation id of ${ACTIVATION_ID_LENGTH} characters, got ${value.length}`;
  }
  return 'expected an activation id of lowercase hex characters';
}

export function reqActivationId(o: JsonObject, key: string, path: string): string {
  const v = o[key];
  if (isActivationId(v)) return v;
  return fail(`${path}.${key}`, activationIdProblem(v));
}

export function optActivationId(o: JsonObject, key: string, path: string): string | undefined {
  const v = o[key];
  if (v === undefined || isActivationId(v)) return v;
  return fail(`${path}.${key}`, activationIdProblem(v));
}
