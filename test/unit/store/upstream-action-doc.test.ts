/**
 * The upstream document builder and the attachment references: shapes as
 * upstream's WhiskAction.put / CouchDbRestStore.attachToCouch write them (see
 * invoker/store/upstream-action-doc.ts for the sources).
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import {
  BINARY_CODE_TYPE,
  DEFAULT_MAX_INLINE_SIZE,
  TEXT_CODE_TYPE,
  decodeInlineAttachment,
  encodeInlineAttachment,
  isBinaryCode,
  upstreamActionDocument,
} from '../../../invoker/store/upstream-action-doc.js';
import { largeTextCode, smallTextCode, upstreamCodeForms, zipCode } from '../../fixtures/upstream-action-docs.js';

t.test('small text code is inlined as mem:<base64url> with length and sha256 digest, no _attachments', async (t) => {
  const code = smallTextCode();
  const { doc, attachment } = upstreamActionDocument({ namespace: 'guest', name: 'small', exec: { kind: 'nodejs:20', code }, updated: 1 });
  t.equal(attachment, undefined);
  t.equal(doc._attachments, undefined);
  const bytes = Buffer.from(code, 'utf8');
  t.same(doc.exec, {
    binary: false,
    code: {
      attachmentName: `mem:${bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_')}`,
      attachmentType: 'text/plain; charset=UTF-8',
      digest: `sha256-${createHash('sha256').update(bytes).digest('hex')}`,
      length: bytes.length,
    },
    kind: 'nodejs:20',
  });
  t.same(doc, {
    _id: 'guest/small',
    annotations: [],
    entityType: 'action',
    exec: doc.exec,
    limits: { concurrency: 1, logs: 10, memory: 256, timeout: 60000 },
    name: 'small',
    namespace: 'guest',
    parameters: [],
    publish: false,
    updated: 1,
    version: '0.0.1',
  });
});

t.test('base64url keeps the padding (java.util.Base64.getUrlEncoder) and round-trips every byte', async (t) => {
  for (const length of [0, 1, 2, 3, 4, 5, 255, 256]) {
    const bytes = Buffer.alloc(length);
    for (let i = 0; i < length; i++) bytes[i] = (i * 31 + 251) % 256;
    const ref = encodeInlineAttachment(bytes, BINARY_CODE_TYPE);
    t.equal(ref.attachmentName.length, 4 + Math.ceil(length / 3) * 4, `padded for ${length} bytes`);
    t.notMatch(ref.attachmentName.slice(4), /[+/]/, 'url-safe alphabet');
    t.same(decodeInlineAttachment(ref.attachmentName), bytes, `round trip of ${length} bytes`);
  }
  t.same(decodeInlineAttachment('mem:_-8'), Buffer.from([0xff, 0xef]), 'unpadded is accepted too, as Java decodes it');
  t.throws(() => decodeInlineAttachment('mem:ab+/'), /not valid base64url/, 'the standard alphabet is not base64url');
  t.throws(() => decodeInlineAttachment('mem:a'), /not valid base64url/);
  t.throws(() => decodeInlineAttachment('couch:x'), /not an inlined attachment/);
});

t.test('code of max-inline-size bytes or more becomes a couch: attachment without length or digest', async (t) => {
  const code = largeTextCode();
  const built = upstreamActionDocument({ namespace: 'guest/pkg', name: 'big', exec: { kind: 'nodejs:20', code, main: 'run' } }, { attachmentName: () => 'f00' });
  t.same(built.doc.exec, { binary: false, code: { attachmentName: 'couch:f00', attachmentType: TEXT_CODE_TYPE }, kind: 'nodejs:20', main: 'run' });
  t.same(built.attachment, { name: 'f00', contentType: TEXT_CODE_TYPE, data: Buffer.from(code, 'utf8') });
  t.equal(built.doc._id, 'guest/pkg/big');

  const exact = '*'.repeat(DEFAULT_MAX_INLINE_SIZE); // not base64, so text
  t.ok(upstreamActionDocument({ namespace: 'g', name: 'a', exec: { kind: 'nodejs:20', code: exact } }).attachment, 'exactly the limit: attached');
  t.notOk(upstreamActionDocument({ namespace: 'g', name: 'a', exec: { kind: 'nodejs:20', code: exact.slice(1) } }).attachment, 'one byte less: inlined');
  t.ok(upstreamActionDocument({ namespace: 'g', name: 'a', exec: { kind: 'nodejs:20', code: 'x' } }, { maxInlineSize: 0 }).attachment, 'limit 0: always attached');
});

t.test('zip code: binary detected from the base64 text, stored as the decoded bytes', async (t) => {
  const inline = upstreamActionDocument(upstreamCodeForms().zipInline);
  const exec = inline.doc.exec as { binary: boolean; code: { attachmentName: string; attachmentType: string } };
  t.equal(exec.binary, true);
  t.equal(exec.code.attachmentType, BINARY_CODE_TYPE);
  t.same(decodeInlineAttachment(exec.code.attachmentName), Buffer.from(zipCode('zip-inline'), 'base64'), 'the zip bytes, not the base64 text');
  const attached = upstreamActionDocument(upstreamCodeForms().zipAttached);
  t.equal(attached.attachment?.contentType, BINARY_CODE_TYPE);
  t.ok((attached.attachment?.data.length ?? 0) >= DEFAULT_MAX_INLINE_SIZE);
  t.equal(attached.attachment?.data.subarray(0, 2).toString('latin1'), 'PK');
});

t.test('isBinaryCode as upstream Exec.isBinaryCode', async (t) => {
  t.equal(isBinaryCode('UEsDBA=='), true);
  t.equal(isBinaryCode('  UEsDBA==\n'), true, 'trimmed');
  t.equal(isBinaryCode('abcd'), true, 'any padded base64, even if meant as text');
  t.equal(isBinaryCode('function main(){}'), false);
  t.equal(isBinaryCode('abc'), false, 'length not a multiple of 4');
  t.equal(isBinaryCode(''), false);
});

t.test('blackbox: code attached like any other, blank code left out; sequences; non-attached kinds inline', async (t) => {
  const withCode = upstreamActionDocument({ namespace: 'g', name: 'b', exec: { kind: 'blackbox', image: 'openwhisk/dockerskeleton', code: '#!/bin/sh\necho {}' } });
  t.match(withCode.doc.exec, { kind: 'blackbox', image: 'openwhisk/dockerskeleton', binary: false, code: { attachmentName: /^mem:/ } });
  const blank = upstreamActionDocument({ namespace: 'g', name: 'b', exec: { kind: 'blackbox', image: 'u/img', code: '  ' } });
  t.same(blank.doc.exec, { binary: false, image: 'u/img', kind: 'blackbox' });
  const seq = upstreamActionDocument({ namespace: 'g', name: 's', exec: { kind: 'sequence', components: ['/g/a', '/g/p/b'] } });
  t.same(seq.doc.exec, { components: ['/g/a', '/g/p/b'], kind: 'sequence' });
  const plain = upstreamActionDocument({ namespace: 'g', name: 'p', exec: { kind: 'nodejs:20', code: 'x', attached: false } });
  t.same(plain.doc.exec, { binary: false, code: 'x', kind: 'nodejs:20' });
});

t.test('parameters: encryption and init only when set', async (t) => {
  const { doc } = upstreamActionDocument({
    namespace: 'g',
    name: 'p',
    exec: { kind: 'nodejs:20', code: 'x', attached: false },
    parameters: [{ key: 'a', value: 1 }, { key: 'b', value: 'v', init: true }, { key: 'c', value: 'enc', encryption: 'aes-256' }],
    annotations: [{ key: 'web-export', value: true }, { key: 'nested', value: { x: [1] } }],
  });
  t.same(doc.parameters, [
    { key: 'a', value: 1 },
    { init: true, key: 'b', value: 'v' },
    { encryption: 'aes-256', key: 'c', value: 'enc' },
  ]);
  t.same(doc.annotations, [{ key: 'web-export', value: true }, { key: 'nested', value: { x: [1] } }]);
});
