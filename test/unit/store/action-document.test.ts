/**
 * Validation of upstream WhiskAction documents, without a server: defaults,
 * the three exec families, attachment references, and what is malformed.
 */
import t from 'tap';
import { DEFAULT_ACTION_LIMITS, parseActionDocument } from '../../../invoker/store/action-document.js';
import { largeTextCode, upstreamActionDocument, zipCode } from '../../fixtures/upstream-action-docs.js';

function upstream(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _id: 'guest/hello',
    _rev: '1-abc',
    entityType: 'action',
    namespace: 'guest',
    name: 'hello',
    version: '0.0.1',
    publish: false,
    exec: { kind: 'nodejs:20', code: 'function main(){return {}}', binary: false, main: 'main' },
    limits: { timeout: 60000, memory: 256, logs: 10, concurrency: 1 },
    parameters: [{ key: 'p', value: 1 }],
    annotations: [{ key: 'provide-api-key', value: false }],
    updated: 1717171717171,
    ...overrides,
  };
}

t.test('a plain code action', async (t) => {
  const parsed = parseActionDocument(upstream(), 'guest/hello', '1-abc');
  t.same(parsed.exec, { type: 'code', kind: 'nodejs:20', code: 'function main(){return {}}', binary: false, main: 'main' });
  t.same(parsed.doc, {
    id: 'guest/hello',
    rev: '1-abc',
    namespace: 'guest',
    name: 'hello',
    version: '0.0.1',
    publish: false,
    limits: { timeoutMs: 60000, memoryMb: 256, logsMb: 10, concurrency: 1 },
    parameters: [{ key: 'p', value: 1 }],
    annotations: [{ key: 'provide-api-key', value: false }],
  });
  t.equal(parsed.attachment, undefined);
});

t.test('absent limits, parameters and annotations take upstream defaults', async (t) => {
  const doc = upstream({ limits: undefined, parameters: undefined, annotations: undefined, version: undefined, publish: undefined });
  const parsed = parseActionDocument(doc, 'guest/hello', null);
  t.same(parsed.doc.limits, DEFAULT_ACTION_LIMITS);
  t.same(parsed.doc.parameters, []);
  t.same(parsed.doc.annotations, []);
  t.equal(parsed.doc.version, '0.0.1');
  t.equal(parsed.doc.publish, false);
  const partial = parseActionDocument(upstream({ limits: { memory: 512 } }), 'guest/hello', null);
  t.same(partial.doc.limits, { ...DEFAULT_ACTION_LIMITS, memoryMb: 512 }, 'missing fields of limits too');
});

t.test('init parameters keep their flag', async (t) => {
  const parsed = parseActionDocument(upstream({ parameters: [{ key: 'e', value: 'x', init: true }, { key: 'q' }] }), 'guest/hello', null);
  t.same(parsed.doc.parameters, [{ key: 'e', value: 'x', init: true }, { key: 'q', value: null }]);
});

t.test('code in an attachment is announced, with its upstream URI prefix removed', async (t) => {
  const doc = upstream({
    exec: { kind: 'nodejs:20', code: { attachmentName: 'couch:abc-123', attachmentType: 'application/zip' }, binary: true },
    _attachments: { 'abc-123': { content_type: 'application/zip', stub: true, length: 10 } },
  });
  const parsed = parseActionDocument(doc, 'guest/hello', null);
  t.same(parsed.attachment, { name: 'abc-123', contentType: 'application/zip', inDocument: true });
  t.match(parseActionDocument(upstream({ exec: { kind: 'nodejs:20', code: { attachmentName: 'gone' } } }), 'guest/hello', null).attachment, { name: 'gone', inDocument: false });
  t.match(parsed.exec, { type: 'code', binary: true });
});

t.test('blackbox and sequence actions are their own types', async (t) => {
  const blackbox = parseActionDocument(upstream({ exec: { kind: 'blackbox', image: 'user/img', binary: false } }), 'guest/hello', null);
  t.same(blackbox.exec, { type: 'blackbox', kind: 'blackbox', image: 'user/img', binary: false });
  const withCode = parseActionDocument(
    upstream({ exec: { kind: 'blackbox', image: 'user/img', code: 'UEsDBA==', binary: true, main: 'run' } }),
    'guest/hello',
    null,
  );
  t.same(withCode.exec, { type: 'blackbox', kind: 'blackbox', image: 'user/img', code: 'UEsDBA==', binary: true, main: 'run' });
  const sequence = parseActionDocument(upstream({ exec: { kind: 'sequence', components: ['/guest/a', '/guest/b'] } }), 'guest/hello', null);
  t.same(sequence.exec, { type: 'sequence', kind: 'sequence', components: ['/guest/a', '/guest/b'] });
});

t.test('malformed documents are refused naming the field', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['no exec', upstream({ exec: undefined }), /exec is missing/],
    ['no kind', upstream({ exec: { code: 'x' } }), /exec\.kind/],
    ['no code', upstream({ exec: { kind: 'nodejs:20' } }), /exec\.code is missing/],
    ['blackbox without image', upstream({ exec: { kind: 'blackbox' } }), /exec\.image/],
    ['negative memory', upstream({ limits: { memory: -1 } }), /limits\.memory/],
    ['another entity', upstream({ entityType: 'trigger' }), /entityType/],
    ['another revision', upstream({ _rev: '2-zzz' }), /_rev is 2-zzz, expected 1-abc/],
    ['parameters not a list', upstream({ parameters: { p: 1 } }), /parameters must be an array/],
    ['no name', upstream({ name: undefined }), /name must be/],
  ];
  for (const [what, doc, message] of cases) {
    t.throws(() => parseActionDocument(doc, 'guest/hello', '1-abc'), message, what);
  }
});

// Documents as upstream's controller writes them (test/fixtures/upstream-action-docs.ts
// names the upstream code each shape comes from).

function stored(input: Parameters<typeof upstreamActionDocument>[0]): Record<string, unknown> {
  return { ...upstreamActionDocument(input).doc, _rev: '1-abc' };
}

t.test('mem: inlined code is decoded in place: text as UTF-8, zip bytes as standard base64', async (t) => {
  const text = 'function main(p) { return { ü: "é", echo: p.name }; }';
  const small = parseActionDocument(stored({ namespace: 'guest', name: 'hello', exec: { kind: 'nodejs:20', code: text, main: 'main' } }), 'guest/hello', '1-abc');
  t.same(small.exec, { type: 'code', kind: 'nodejs:20', code: text, binary: false, main: 'main' });
  t.equal(small.attachment, undefined, 'nothing left to read from CouchDB');

  const zip = zipCode('inline');
  const binary = parseActionDocument(stored({ namespace: 'guest', name: 'hello', exec: { kind: 'nodejs:20', code: zip } }), 'guest/hello', '1-abc');
  t.same(binary.exec, { type: 'code', kind: 'nodejs:20', code: zip, binary: true }, 'the same base64 the user sent, padded, standard alphabet');

  const box = parseActionDocument(stored({ namespace: 'guest', name: 'hello', exec: { kind: 'blackbox', image: 'u/img', code: 'echo hi' } }), 'guest/hello', '1-abc');
  t.same(box.exec, { type: 'blackbox', kind: 'blackbox', image: 'u/img', code: 'echo hi', binary: false });
});

t.test('mem: references that are not upstream-valid are refused', async (t) => {
  const ref = (attachmentName: string, extra: Record<string, unknown> = {}) =>
    upstream({ exec: { kind: 'nodejs:20', code: { attachmentName, attachmentType: 'text/plain; charset=UTF-8', ...extra }, binary: false } });
  t.throws(() => parseActionDocument(ref('mem:a+b/'), 'guest/hello', '1-abc'), /not valid base64url/);
  t.throws(() => parseActionDocument(ref('mem:YWJj', { length: 4 }), 'guest/hello', '1-abc'), /has 3 bytes, its length says 4/);
  t.throws(() => parseActionDocument(ref('s3:some-key'), 'guest/hello', '1-abc'), /attachment store "s3:"/);
  t.same(parseActionDocument(ref('mem:YWJj', { length: 3 }), 'guest/hello', '1-abc').exec, { type: 'code', kind: 'nodejs:20', code: 'abc', binary: false });
});

t.test('couch: attachments stay to be read; binary is the document flag, default false (upstream Exec.isBinary)', async (t) => {
  const built = upstreamActionDocument({ namespace: 'guest', name: 'hello', exec: { kind: 'nodejs:20', code: largeTextCode() } }, { attachmentName: () => 'uuid-1' });
  const doc = { ...built.doc, _rev: '2-abc', _attachments: { 'uuid-1': { content_type: 'text/plain; charset=UTF-8', stub: true, length: 1, digest: 'md5-x' } } };
  const parsed = parseActionDocument(doc, 'guest/hello', '2-abc');
  t.same(parsed.attachment, { name: 'uuid-1', contentType: 'text/plain; charset=UTF-8', inDocument: true });
  t.match(parsed.exec, { type: 'code', binary: false });
  const noFlag = upstream({
    exec: { kind: 'nodejs:20', code: { attachmentName: 'codefile', attachmentType: 'application/zip' } },
    _attachments: { codefile: { content_type: 'application/zip', stub: true } },
  });
  t.match(parseActionDocument(noFlag, 'guest/hello', null), { attachment: { name: 'codefile' }, exec: { binary: false } }, 'a relative name (older documents) is a CouchDB attachment');
});

t.test('inline string code: binary computed from the code as upstream does, whatever the document says', async (t) => {
  const zipText = parseActionDocument(upstream({ exec: { kind: 'nodejs:20', code: 'UEsDBA==', binary: false } }), 'guest/hello', null);
  t.equal((zipText.exec as { binary: boolean }).binary, true);
  const js = parseActionDocument(upstream({ exec: { kind: 'nodejs:20', code: 'function main(){}', binary: true } }), 'guest/hello', null);
  t.equal((js.exec as { binary: boolean }).binary, false);
});

t.test('kind trimmed and lower-cased; java code under `jar`; blank blackbox code is no code', async (t) => {
  t.match(parseActionDocument(upstream({ exec: { kind: ' NodeJS:20 ', code: 'x;' } }), 'guest/hello', null).exec, { kind: 'nodejs:20' });
  t.match(parseActionDocument(upstream({ exec: { kind: 'nodejs:default', code: 'x;' } }), 'guest/hello', null).exec, { kind: 'nodejs:default' }, 'resolved by the runtime manifest later');
  t.match(parseActionDocument(upstream({ exec: { kind: 'java:8', jar: 'UEsDBA==', main: 'Hello' } }), 'guest/hello', null).exec, { code: 'UEsDBA==', binary: true, main: 'Hello' });
  t.same(parseActionDocument(upstream({ exec: { kind: 'blackbox', image: 'u/i', code: ' ', binary: true } }), 'guest/hello', null).exec, {
    type: 'blackbox',
    kind: 'blackbox',
    image: 'u/i',
    binary: false,
  });
  t.throws(() => parseActionDocument(upstream({ exec: { kind: 'nodejs:20', code: 'x', main: 7 } }), 'guest/hello', null), /exec\.main must be a string/);
});

t.test('annotations and parameters keep values of any JSON type; extra limits fields are ignored', async (t) => {
  const annotations = [
    { key: 'web-export', value: true },
    { key: 'raw-http', value: false },
    { key: 'final', value: 1 },
    { key: 'nested', value: { a: [1, null, 'x'] } },
    { key: 'nothing', value: null },
  ];
  const parsed = parseActionDocument(upstream({ annotations, limits: { timeout: 1000, memory: 128, maxContainerConcurrency: 5 } }), 'guest/hello', null);
  t.same(parsed.doc.annotations, annotations);
  t.same(parsed.doc.limits, { timeoutMs: 1000, memoryMb: 128, logsMb: 10, concurrency: 1 }, 'logs and concurrency default as upstream ActionLimits.read');
});
