/**
 * Identities from the `subjects` database, in upstream's document shape
 * (what `wskadmin user create` writes):
 *
 *   {"_id": "guest", "subject": "guest",
 *    "namespaces": [{"name": "guest", "uuid": "<uuid>", "key": "<key>"}],
 *    "blocked": true?}
 *
 * plus optional `<namespace>/limits` documents (invocationsPerMinute,
 * concurrentInvocations, firesPerMinute, allowedKinds, storeActivations).
 * Lookups go through upstream's view `subjects.v2.0.0/identities` (key
 * `[uuid, key]`, blocked subjects left out, the limits document joined with
 * include_docs), installed at startup. Answers are cached briefly; while
 * CouchDB is unreachable a cached identity keeps working (bounded).
 */
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Identity, JsonObject } from '../protocol/index.js';
import type { CouchDatabase } from './couch-db.js';

/** Upstream's well-known development identity (ansible/files/auth.guest). */
export const GUEST_UUID = '23bc46b1-71f6-4ed5-8c54-816aa4f8c502';
export const GUEST_KEY = '123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP';

export const ALL_RIGHTS = ['READ', 'PUT', 'DELETE', 'ACTIVATE'] as const;

/**
 * Upstream's `subjects.v2.0.0/identities` view (same name, keys and values,
 * so upstream-initialised databases work too): rows keyed `[namespace]` and
 * `[uuid, key]` per namespace of every subject not blocked; the value's `_id`
 * joins the namespace's limits document under include_docs.
 */
export const SUBJECTS_DESIGN_DOC: JsonObject = {
  _id: '_design/subjects.v2.0.0',
  language: 'javascript',
  views: {
    identities: {
      map: [
        'function (doc) {',
        '  if (!doc.namespaces || doc.blocked) return;',
        '  for (var i = 0; i < doc.namespaces.length; i++) {',
        '    var ns = doc.namespaces[i];',
        "    var row = { _id: ns.name + '/limits', namespace: ns.name, uuid: ns.uuid, key: ns.key };",
        '    emit([ns.name], row);',
        '    emit([ns.uuid, ns.key], row);',
        '  }',
        '}',
      ].join('\n'),
    },
  },
};

const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** Upstream Secret: 64 characters. */
const KEY_PATTERN = /^[A-Za-z0-9]{64}$/;

export function isWellFormedAuthKey(uuid: string, key: string): boolean {
  return UUID_PATTERN.test(uuid) && KEY_PATTERN.test(key);
}

/** A fresh `uuid:key` pair as wskadmin makes them. */
export function generateAuthKey(): { uuid: string; key: string } {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let key = '';
  while (key.length < 64) {
    for (const b of randomBytes(96)) {
      if (b < 248 && key.length < 64) key += alphabet[b % 62];
    }
  }
  return { uuid: randomUUID(), key };
}

const LIMIT_FIELDS = ['invocationsPerMinute', 'concurrentInvocations', 'firesPerMinute', 'allowedKinds', 'storeActivations'] as const;

export interface IdentityLookup {
  /** The identity of these credentials, or undefined when they are unknown, wrong or blocked. Rejects when the store fails. */
  authenticate(uuid: string, key: string): Promise<Identity | undefined>;
}

interface CacheEntry {
  identity: Identity | undefined;
  at: number;
}

export interface IdentityStoreOptions {
  /** How long an answer is used without asking CouchDB again. Default 10 s. */
  ttlMs?: number;
  /** How long a known identity keeps working while CouchDB fails. Default 10 min. */
  staleMs?: number;
  now?: () => number;
}

export class CouchIdentityStore implements IdentityLookup {
  readonly #cache = new Map<string, CacheEntry>();
  readonly #ttlMs: number;
  readonly #staleMs: number;
  readonly #now: () => number;

  constructor(
    readonly db: CouchDatabase,
    options: IdentityStoreOptions = {},
  ) {
    this.#ttlMs = options.ttlMs ?? 10_000;
    this.#staleMs = options.staleMs ?? 600_000;
    this.#now = options.now ?? Date.now;
  }

  async prepare(): Promise<void> {
    await this.db.ensureExists();
    await this.db.ensureDesignDoc(SUBJECTS_DESIGN_DOC);
  }

  async authenticate(uuid: string, key: string): Promise<Identity | undefined> {
    if (!isWellFormedAuthKey(uuid, key)) return undefined;
    const cacheKey = `${uuid}:${key}`;
    const cached = this.#cache.get(cacheKey);
    const now = this.#now();
    if (cached !== undefined && now - cached.at < this.#ttlMs) return cached.identity;
    try {
      const identity = await this.#lookup(uuid, key);
      if (identity === undefined) this.#cache.delete(cacheKey);
      else this.#remember(cacheKey, { identity, at: now });
      return identity;
    } catch (error) {
      if (cached?.identity !== undefined && now - cached.at < this.#staleMs) return cached.identity;
      throw error;
    }
  }

  #remember(key: string, entry: CacheEntry): void {
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    while (this.#cache.size > 10_000) {
      const oldest = this.#cache.keys().next();
      if (oldest.done === true) break;
      this.#cache.delete(oldest.value);
    }
  }

  async #lookup(uuid: string, key: string): Promise<Identity | undefined> {
    const { rows } = await this.db.view('subjects.v2.0.0', 'identities', { key: [uuid, key], include_docs: true });
    for (const row of rows) {
      const value = row.value as JsonObject;
      if (typeof value !== 'object' || value === null) continue;
      const storedKey = String(value['key'] ?? '');
      if (value['uuid'] !== uuid || !sameSecret(storedKey, key)) continue;
      return {
        subject: row.id ?? String(value['namespace']),
        namespace: { name: String(value['namespace']), uuid },
        authkey: { api_key: `${uuid}:${key}` },
        rights: [...ALL_RIGHTS],
        limits: limitsFrom(row.doc ?? undefined),
      };
    }
    return undefined;
  }
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function limitsFrom(doc: JsonObject | undefined): JsonObject {
  const limits: JsonObject = {};
  if (doc === undefined) return limits;
  for (const field of LIMIT_FIELDS) {
    if (doc[field] !== undefined) limits[field] = doc[field];
  }
  return limits;
}

/** A subject document (upstream shape). */
export interface SubjectDocument extends JsonObject {
  _id: string;
  subject: string;
  namespaces: Array<{ name: string; uuid: string; key: string }>;
}
