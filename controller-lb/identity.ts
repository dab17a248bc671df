/**
 * Identity administration (upstream `wskadmin user ...`) on the `subjects`
 * database the controller authenticates against:
 *
 *   node dist/controller-lb/identity.js create <subject> [--namespace NS] [--auth UUID:KEY]
 *   node dist/controller-lb/identity.js get <subject>
 *   node dist/controller-lb/identity.js list
 *   node dist/controller-lb/identity.js delete <subject>
 *   node dist/controller-lb/identity.js block <subject> | unblock <subject>
 *
 * `create guest` without --auth uses upstream's well-known guest key
 * (ansible/files/auth.guest); other subjects get a fresh one. `create`
 * prints the `uuid:key` to use as the API key (wsk --auth, openwhisk npm
 * client api_key). COUCHDB_URL (default http://127.0.0.1:5984) and
 * COUCHDB_SUBJECTS_DB (default `subjects`) name the database.
 * Exit codes: 0 done, 1 refused (exists, not found), 2 bad usage.
 */
import type { JsonObject } from '../protocol/index.js';
import { CouchServer, isConflict, type CouchDatabase } from './couch-db.js';
import { CouchIdentityStore, generateAuthKey, GUEST_KEY, GUEST_UUID, isWellFormedAuthKey, type SubjectDocument } from './identity-store.js';

const NAME = /^[\w][\w@ .-]{0,255}$/;

export interface IdentityCommandResult {
  code: 0 | 1 | 2;
  out: string;
}

const usage = `usage:
  identity create <subject> [--namespace NS] [--auth UUID:KEY]
  identity get <subject>
  identity list
  identity delete <subject>
  identity block <subject>
  identity unblock <subject>`;

function asSubject(doc: JsonObject | undefined): SubjectDocument | undefined {
  if (doc === undefined || !Array.isArray(doc['namespaces'])) return undefined;
  return doc as SubjectDocument;
}

export async function runIdentityCommand(db: CouchDatabase, args: readonly string[]): Promise<IdentityCommandResult> {
  const [command, subject, ...rest] = args;
  const option = (name: string): string | undefined => {
    const i = rest.indexOf(name);
    return i >= 0 ? rest[i + 1] : undefined;
  };
  if (command === 'list') {
    const answer = (await db.server.call('GET', `/${encodeURIComponent(db.name)}/_all_docs?include_docs=true`)) as JsonObject;
    const rows = (answer['rows'] as Array<{ doc?: JsonObject }>) ?? [];
    const lines = rows
      .map((row) => asSubject(row.doc))
      .filter((doc): doc is SubjectDocument => doc !== undefined)
      .map((doc) => `${doc.subject}\t${doc.namespaces.map((n) => n.name).join(',')}${doc['blocked'] === true ? '\t(blocked)' : ''}`);
    return { code: 0, out: lines.join('\n') };
  }
  if (command === undefined || subject === undefined || !NAME.test(subject)) return { code: 2, out: usage };

  await new CouchIdentityStore(db).prepare();
  const existing = asSubject(await db.get(subject));
  switch (command) {
    case 'create': {
      const namespace = option('--namespace') ?? subject;
      if (!NAME.test(namespace)) return { code: 2, out: `invalid namespace name: ${namespace}` };
      const auth = option('--auth');
      let uuid: string;
      let key: string;
      if (auth !== undefined) {
        const colon = auth.indexOf(':');
        uuid = auth.slice(0, colon);
        key = auth.slice(colon + 1);
        if (colon < 0 || !isWellFormedAuthKey(uuid, key)) return { code: 2, out: '--auth must be <uuid>:<64 alphanumeric characters>' };
      } else if (subject === 'guest' && namespace === 'guest') {
        uuid = GUEST_UUID;
        key = GUEST_KEY;
      } else {
        ({ uuid, key } = generateAuthKey());
      }
      if (existing?.namespaces.some((n) => n.name === namespace) === true) {
        const found = existing.namespaces.find((n) => n.name === namespace);
        return { code: 1, out: `Namespace already exists for subject ${subject}: ${found?.uuid}:${found?.key}` };
      }
      const doc: SubjectDocument = existing ?? { _id: subject, subject, namespaces: [] };
      doc.namespaces = [...doc.namespaces, { name: namespace, uuid, key }];
      try {
        await db.put(doc);
      } catch (error) {
        if (isConflict(error)) return { code: 1, out: `subject ${subject} changed meanwhile; try again` };
        throw error;
      }
      return { code: 0, out: `${uuid}:${key}` };
    }
    case 'get':
      if (existing === undefined) return { code: 1, out: `Failed to get subject (not found): ${subject}` };
      return { code: 0, out: existing.namespaces.map((n) => `${n.name}\t${n.uuid}:${n.key}`).join('\n') };
    case 'delete':
      if (existing === undefined) return { code: 1, out: `Failed to delete subject (not found): ${subject}` };
      await db.delete(subject, String(existing['_rev']));
      return { code: 0, out: 'Subject deleted' };
    case 'block':
    case 'unblock': {
      if (existing === undefined) return { code: 1, out: `Failed to ${command} subject (not found): ${subject}` };
      const doc: JsonObject = { ...existing };
      if (command === 'block') doc['blocked'] = true;
      else delete doc['blocked'];
      await db.put(doc);
      return { code: 0, out: `"${subject}" ${command}ed` };
    }
    default:
      return { code: 2, out: usage };
  }
}

const invokedDirectly = process.argv[1] !== undefined && /identity\.(js|ts)$/.test(process.argv[1]);
if (invokedDirectly) {
  const server = new CouchServer({ url: process.env['COUCHDB_URL'] ?? 'http://127.0.0.1:5984' });
  const db = server.db(process.env['COUCHDB_SUBJECTS_DB'] ?? 'subjects');
  runIdentityCommand(db, process.argv.slice(2)).then(
    async (result) => {
      (result.code === 0 ? process.stdout : process.stderr).write(result.out === '' ? '' : `${result.out}\n`);
      await server.close();
      process.exit(result.code);
    },
    (error: unknown) => {
      process.stderr.write(`identity: ${(error as Error).message}\n`);
      process.exit(1);
    },
  );
}
