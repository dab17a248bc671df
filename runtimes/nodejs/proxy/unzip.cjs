'use strict';
// A zip extractor with no dependencies: reads the central directory (zip64
// included) and writes stored and deflated entries. The image has no `unzip`
// binary, which is what upstream shells out to.

const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const U32_MAX = 0xffffffff;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

function findEndOfCentralDirectory(buf) {
  // The record is 22 bytes plus a comment of at most 65535 bytes.
  const lowest = Math.max(0, buf.length - 22 - 0xffff);
  for (let i = buf.length - 22; i >= lowest; i--) {
    if (buf.readUInt32LE(i) === SIG_EOCD) return i;
  }
  throw new Error('not a zip archive: no end of central directory record');
}

function readDirectoryLocation(buf) {
  const eocd = findEndOfCentralDirectory(buf);
  let count = buf.readUInt16LE(eocd + 10);
  let size = buf.readUInt32LE(eocd + 12);
  let offset = buf.readUInt32LE(eocd + 16);
  if (count === 0xffff || size === U32_MAX || offset === U32_MAX) {
    const locator = eocd - 20;
    if (locator >= 0 && buf.readUInt32LE(locator) === SIG_ZIP64_LOCATOR) {
      const record = toNumber(buf.readBigUInt64LE(locator + 8));
      if (buf.readUInt32LE(record) !== SIG_ZIP64_EOCD) throw new Error('corrupt zip64 end of central directory');
      count = toNumber(buf.readBigUInt64LE(record + 32));
      size = toNumber(buf.readBigUInt64LE(record + 40));
      offset = toNumber(buf.readBigUInt64LE(record + 48));
    }
  }
  if (offset + size > buf.length) throw new Error('central directory lies outside the archive');
  return { count, offset };
}

function toNumber(big) {
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('zip64 value out of range');
  return Number(big);
}

/** Overrides the 0xffffffff fields of a central directory entry from its zip64 extra field. */
function applyZip64(buf, extraStart, extraEnd, entry) {
  let p = extraStart;
  while (p + 4 <= extraEnd) {
    const id = buf.readUInt16LE(p);
    const len = buf.readUInt16LE(p + 2);
    if (id === 0x0001) {
      let q = p + 4;
      if (entry.size === U32_MAX) { entry.size = toNumber(buf.readBigUInt64LE(q)); q += 8; }
      if (entry.compressedSize === U32_MAX) { entry.compressedSize = toNumber(buf.readBigUInt64LE(q)); q += 8; }
      if (entry.localOffset === U32_MAX) { entry.localOffset = toNumber(buf.readBigUInt64LE(q)); }
      return;
    }
    p += 4 + len;
  }
}

function* centralDirectory(buf) {
  const { count, offset } = readDirectoryLocation(buf);
  let p = offset;
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== SIG_CENTRAL) throw new Error(`corrupt central directory at entry ${n}`);
    const nameLength = buf.readUInt16LE(p + 28);
    const extraLength = buf.readUInt16LE(p + 30);
    const commentLength = buf.readUInt16LE(p + 32);
    const entry = {
      madeBy: buf.readUInt16LE(p + 4) >> 8,
      flags: buf.readUInt16LE(p + 8),
      method: buf.readUInt16LE(p + 10),
      compressedSize: buf.readUInt32LE(p + 20),
      size: buf.readUInt32LE(p + 24),
      externalAttributes: buf.readUInt32LE(p + 38),
      localOffset: buf.readUInt32LE(p + 42),
      // Tools on Unix write UTF-8 names whether or not they set the flag.
      name: buf.toString('utf8', p + 46, p + 46 + nameLength),
    };
    applyZip64(buf, p + 46 + nameLength, p + 46 + nameLength + extraLength, entry);
    yield entry;
    p += 46 + nameLength + extraLength + commentLength;
  }
}

function entryData(buf, entry) {
  const local = entry.localOffset;
  if (buf.readUInt32LE(local) !== SIG_LOCAL) throw new Error(`corrupt local header for ${entry.name}`);
  const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
  const end = start + entry.compressedSize;
  if (end > buf.length) throw new Error(`${entry.name} extends past the end of the archive`);
  const raw = buf.subarray(start, end);
  let data;
  if (entry.method === 0) data = raw;
  else if (entry.method === 8) data = zlib.inflateRawSync(raw);
  else throw new Error(`${entry.name} uses compression method ${entry.method}; only stored and deflate are supported`);
  if (data.length !== entry.size) throw new Error(`${entry.name} has ${data.length} bytes, the directory says ${entry.size}`);
  return data;
}

/** Extracts every entry of the archive in `buf` below `dest`; throws on anything unsafe or unsupported. */
function extractZip(buf, dest) {
  const root = path.resolve(dest);
  for (const entry of centralDirectory(buf)) {
    if (entry.flags & 0x1) throw new Error(`${entry.name} is encrypted`);
    const name = entry.name.replace(/\\/g, '/');
    const target = path.resolve(root, name);
    if (name.startsWith('/') || (target !== root && !target.startsWith(root + path.sep))) {
      throw new Error(`${entry.name} would be written outside the extraction directory`);
    }
    const unixMode = entry.madeBy === 3 ? entry.externalAttributes >>> 16 : 0;
    const type = unixMode & S_IFMT;
    if (name.endsWith('/') || type === S_IFDIR) {
      fs.mkdirSync(target, { recursive: true });
      continue;
    }
    fs.mkdirSync(path.dirname(target), { recursive: true });
    const data = entryData(buf, entry);
    if (type === S_IFLNK) {
      fs.symlinkSync(data.toString('utf8'), target);
      continue;
    }
    // Keep the archived permission bits (executables), but always readable and writable by us.
    fs.writeFileSync(target, data, { mode: ((unixMode & 0o777) || 0o644) | 0o600 });
  }
}

module.exports = { extractZip };
