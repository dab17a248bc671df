/**
 * Validation of upstream WhiskAction documents, without a server: defaults,
 * the three exec families, attachment references, and what is malformed.
 */
import t from 'tap';
import { DEFAULT_ACTION_LIMITS, parseActionDocument } from '../../../invoker/store/action-store.js';

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
  t.same(parsed.attachment, { name: 'abc-123', contentType: 'application/zip' });
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
    ['attachment not in the document', upstream({ exec: { kind: 'nodejs:20', code: { attachmentName: 'gone' } } }), /attachment gone/],
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
