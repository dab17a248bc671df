'use strict';
// Action archives (`/init` with `binary: true`): a base64 zip or tar.gz, told
// apart by its first four bytes as upstream does, extracted with yauzl (zip)
// or node-tar (tar.gz) into a fresh folder. Every failure is one of upstream's
// texts (a string, as upstream rejects with), with nothing logged here: the
// caller's "Error during initialization:" line is the only one, as upstream.
//
// Upstream (apache/openwhisk-runtime-nodejs core/nodejsActionBase/runner.js,
// tar.gz support of pull request #235) writes the archive to a file and
// shells out to `unzip -qq` or `tar -xzf`; the image has no shell and no such
// binaries, hence the libraries.

const fs = require('node:fs');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');
// yauzl and tar are loaded on first use: tar alone takes tens of milliseconds
// to load, which a container that never sees an archive should not pay at start.

const UNSUPPORTED = 'There was an error uncompressing the action archive. The file type is unsupported';
const BAD_ZIP = 'There was an error uncompressing the action Zip archive.';
const BAD_TAR_GZ = 'There was an error uncompressing the action Tar GZ archive.';
const NOT_WRITTEN = 'There was an error reading the action archive.';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const MADE_BY_UNIX = 3;

/**
 * 'zip', 'tar.gz' or undefined, from the first four bytes exactly as upstream's
 * detectFileType: a zip's local file header, or a gzip member (deflate) whose
 * flags are none or just FNAME. Anything else is unsupported, like upstream.
 */
function archiveType(buf) {
  const magic = buf.subarray(0, 4).toString('hex');
  if (magic === '504b0304') return 'zip';
  if (magic === '1f8b0800' || magic === '1f8b0808') return 'tar.gz';
  return undefined;
}

/**
 * Extracts the base64 archive into a new folder `<parent>/action-XXXXXX` and
 * resolves to its path; rejects with one of upstream's texts.
 */
async function extractArchive(base64, parent) {
  const buf = Buffer.from(base64, 'base64');
  const type = archiveType(buf);
  if (type === undefined) throw UNSUPPORTED;
  let dir;
  try {
    dir = fs.mkdtempSync(path.join(parent, 'action-'));
  } catch {
    throw NOT_WRITTEN;
  }
  try {
    if (type === 'zip') await extractZip(buf, dir);
    else await extractTarGz(buf, dir);
  } catch {
    throw type === 'zip' ? BAD_ZIP : BAD_TAR_GZ;
  }
  return dir;
}

/**
 * `tar -xzf`, which upstream's extraction fails on whenever GNU tar exits
 * non-zero: corruption, and also entries it skips (a `..` in a name, an entry
 * it cannot write). node-tar reports those as warnings, and they fail here
 * likewise; only its informational ones pass (a leading `/` stripped, where
 * GNU tar too only warns).
 */
function extractTarGz(buf, dir) {
  return new Promise((resolve, reject) => {
    let skipped;
    // No decompression-ratio limit: GNU tar has none (the container's own limits apply).
    const unpack = require('tar').x({ cwd: dir, preserveOwner: false, maxDecompressionRatio: Infinity });
    unpack.on('warn', (code, message) => {
      if (code !== 'TAR_ENTRY_INFO') skipped ??= new Error(`${code}: ${message}`);
    });
    unpack.on('error', reject);
    unpack.on('close', () => (skipped ? reject(skipped) : resolve()));
    unpack.end(buf);
  });
}

/**
 * `unzip -qq`: every entry below `dir`, named as Info-ZIP's unzip names it
 * (see entryPath), Unix permission bits kept, symbolic links created last so
 * that no entry is ever written through one.
 */
async function extractZip(buf, dir) {
  const yauzl = require('yauzl');
  // Names are decoded below (yauzl's own decoding refuses the `..` that unzip strips).
  const options = { lazyEntries: true, validateEntrySizes: true, decodeStrings: false };
  const zip = await new Promise((resolve, reject) =>
    yauzl.fromBuffer(buf, options, (e, z) => (e ? reject(e) : resolve(z))),
  );
  const links = [];
  try {
    for (;;) {
      const entry = await nextEntry(zip);
      if (entry === undefined) break;
      // UTF-8 by flag or Info-ZIP's Unicode path field, else CP437; `\` read as `/`.
      const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, false);
      const relative = entryPath(name);
      if (relative === '') continue;
      const target = path.join(dir, relative);
      const unixMode = entry.versionMadeBy >> 8 === MADE_BY_UNIX ? entry.externalFileAttributes >>> 16 : 0;
      const type = unixMode & S_IFMT;
      if (name.endsWith('/') || type === S_IFDIR) {
        fs.mkdirSync(target, { recursive: true, mode: ((unixMode & 0o777) || 0o755) | 0o700 });
        continue;
      }
      fs.mkdirSync(path.dirname(target), { recursive: true });
      if (type === S_IFLNK) {
        links.push({ target, link: (await readEntry(zip, entry)).toString('utf8') });
        continue;
      }
      // The archived permission bits (executables), always readable and writable by us.
      const mode = ((unixMode & 0o777) || 0o644) | 0o600;
      await pipeline(await openEntry(zip, entry), fs.createWriteStream(target, { mode }));
      fs.chmodSync(target, mode);
      const mtime = entry.getLastModDate();
      if (!Number.isNaN(mtime.getTime())) fs.utimesSync(target, mtime, mtime);
    }
  } finally {
    zip.close();
  }
  for (const { target, link } of links) fs.symlinkSync(link, target);
}

/**
 * An entry's path below the extraction folder, as Info-ZIP's unzip 6 makes it:
 * `.` and `..` components dropped (silently, exit status 0), and an absolute
 * name refused (unzip strips it with a warning and exit status 1, which fails
 * upstream's extraction).
 */
function entryPath(name) {
  if (name.startsWith('/') || /^[a-zA-Z]:/.test(name)) throw new Error(`absolute path: ${name}`);
  return name
    .split('/')
    .filter((part) => part !== '' && part !== '.' && part !== '..')
    .join('/');
}

function nextEntry(zip) {
  return new Promise((resolve, reject) => {
    const onEntry = (entry) => settle(resolve, entry);
    const onEnd = () => settle(resolve, undefined);
    const onError = (e) => settle(reject, e);
    function settle(fn, value) {
      zip.off('entry', onEntry).off('end', onEnd).off('error', onError);
      fn(value);
    }
    zip.on('entry', onEntry).on('end', onEnd).on('error', onError);
    zip.readEntry();
  });
}

function openEntry(zip, entry) {
  return new Promise((resolve, reject) => zip.openReadStream(entry, (e, s) => (e ? reject(e) : resolve(s))));
}

async function readEntry(zip, entry) {
  const chunks = [];
  for await (const chunk of await openEntry(zip, entry)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

module.exports = { extractArchive, archiveType, UNSUPPORTED, BAD_ZIP, BAD_TAR_GZ };
