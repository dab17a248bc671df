import { createCipheriv, randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import {
  ParameterDecryptionError,
  ParameterDecryptor,
  encryptParameterValue,
  parseActivationMessage,
  RawJson,
  type JsonValue,
} from '../../../protocol/index.js';
import { fixture } from '../../fixtures/protocol/codecs.js';

const aes128 = randomBytes(16);
const aes256 = randomBytes(32);
const goKeyA = randomBytes(32);
const goKeyB = randomBytes(16);

const raw = (value: JsonValue): RawJson => RawJson.of(value);

/** Encrypts the way upstream's Scala code does, written independently of the module under test. */
function upstreamEncrypt(value: unknown, key: Buffer, ivLength: number): string {
  const iv = randomBytes(ivLength);
  const cipher = createCipheriv(key.length === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final(), cipher.getAuthTag()]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(ivLength);
  return Buffer.concat([len, iv, ct]).toString('base64');
}

function expectError(t: Test, fn: () => unknown, param: string, keyName: string, reason: RegExp): void {
  try {
    fn();
    t.fail('no error');
  } catch (err) {
    t.type(err, ParameterDecryptionError);
    const e = err as ParameterDecryptionError;
    t.equal(e.param, param);
    t.equal(e.keyName, keyName);
    t.match(e.message, reason);
  }
}

t.test('upstream aes-128 / aes-256 format', async (t) => {
  const d = new ParameterDecryptor({ 'aes-128': aes128.toString('base64'), 'aes-256': aes256.toString('base64') });
  t.same(d.keyNames(), ['aes-128', 'aes-256']);
  const a = upstreamEncrypt('secret', aes128, 12);
  const content = raw({ a, b: upstreamEncrypt({ nested: [1, 'ü'] }, aes256, 128), plain: 'untouched' });
  const before = content.text;
  const out = d.decryptContent(content, { a: 'aes-128', b: 'aes-256' });
  t.same(out?.value(), { a: 'secret', b: { nested: [1, 'ü'] }, plain: 'untouched' });
  t.same(out?.members()?.map((m) => m.key), ['a', 'b', 'plain'], 'key order kept');
  t.not(out, content, 'a new value');
  t.equal(content.text, before, 'input not modified');
  t.same(content.value(), { a, b: JSON.parse(before).b, plain: 'untouched' });
  // Our encrypt helper produces what upstream can read, with upstream's IV lengths.
  const ours = encryptParameterValue(42, 'aes-128', aes128);
  t.equal(Buffer.from(ours, 'base64').readUInt32BE(0), 12);
  t.equal(d.decryptValue('x', 'aes-128', ours), 42);
  t.equal(Buffer.from(encryptParameterValue(1, 'aes-256', aes256), 'base64').readUInt32BE(0), 128);
});

t.test('Go invoker rollover: named keys, 128-byte nonce, several at once', async (t) => {
  const d = new ParameterDecryptor({ '2024-01': goKeyA, '2024-06': { key: goKeyB.toString('base64') } });
  const content = {
    old: encryptParameterValue('from the old key', '2024-01', goKeyA),
    new: encryptParameterValue({ token: 't' }, '2024-06', goKeyB),
    n: 5,
  };
  t.equal(Buffer.from(content.old, 'base64').readUInt32BE(0), 128);
  t.same(d.decryptContent(raw(content), { old: '2024-01', new: '2024-06' })?.value(), { old: 'from the old key', new: { token: 't' }, n: 5 });
  t.same(d.decryptValue('x', '2024-01', upstreamEncrypt(null, goKeyA, 128)), null, 'independently encrypted value');
});

t.test('ActivationMessage convenience and fast path', async (t) => {
  const d = new ParameterDecryptor({ 'aes-256': aes256 });
  const msg = parseActivationMessage(fixture('activation-message-binding-trace.json'));
  msg.content = raw({ ...(msg.content?.value() as object), secret: encryptParameterValue('s3cr3t', 'aes-256', aes256) });
  t.equal((d.decryptMessage(msg)?.value() as Record<string, unknown>)['secret'], 's3cr3t');
  const plain = parseActivationMessage(fixture('activation-message.json'));
  t.equal(d.decryptMessage(plain), plain.content, 'nothing locked: the same object');
  t.equal(d.decryptContent(undefined, { a: 'aes-256' }), undefined);
  const c = raw({ other: 1 });
  t.equal(d.decryptContent(c, { missing: 'aes-256' }), c, 'locked argument not present: nothing to do');
  t.same(d.decryptContent(raw({ n: 7 }), { n: 'aes-256' })?.value(), { n: 7 }, 'non-string values pass through like upstream');
  t.same(d.decryptContent(raw({ n: 'x' }), { n: 'noop' })?.value(), { n: 'x' }, 'the noop scheme passes through');
  const list = raw([encryptParameterValue('s', 'aes-256', aes256)]);
  t.equal(d.decryptContent(list, { 0: 'aes-256' }), list, 'an array is kept as it is (upstream unlockArguments)');
});

t.test('errors name the parameter and the key, never the value or key bytes', async (t) => {
  const d = new ParameterDecryptor({ a: goKeyA, 'aes-128': aes128 });
  const wrongKey = encryptParameterValue('plaintext-value', 'b', goKeyB);
  expectError(t, () => d.decryptContent(raw({ p: wrongKey }), { p: 'a' }), 'p', 'a', /authentication failed/);
  expectError(t, () => d.decryptContent(raw({ p: 'x' }), { p: 'nope' }), 'p', 'nope', /no key with this name/);
  expectError(t, () => d.decryptValue('p', 'a', 'not base64!'), 'p', 'a', /not valid base64/);
  expectError(t, () => d.decryptValue('p', 'a', 'AAA='), 'p', 'a', /too short/);
  expectError(t, () => d.decryptValue('p', 'aes-128', upstreamEncrypt('v', aes128, 128)), 'p', 'aes-128', /IV length 128 does not match the key's 12/);
  const truncated = Buffer.from(encryptParameterValue('v', 'a', goKeyA), 'base64').subarray(0, 140).toString('base64');
  expectError(t, () => d.decryptValue('p', 'a', truncated), 'p', 'a', /too short/);
  const tampered = Buffer.from(encryptParameterValue('v', 'a', goKeyA), 'base64');
  tampered.writeUInt8((tampered.at(-20) ?? 0) ^ 1, tampered.length - 20);
  expectError(t, () => d.decryptValue('p', 'a', tampered.toString('base64')), 'p', 'a', /authentication failed/);
  // Valid ciphertext of something that is not JSON.
  const iv = randomBytes(128);
  const cipher = createCipheriv('aes-256-gcm', goKeyA, iv);
  const ct = Buffer.concat([cipher.update('not json {', 'utf8'), cipher.final(), cipher.getAuthTag()]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(128);
  expectError(t, () => d.decryptValue('p', 'a', Buffer.concat([len, iv, ct]).toString('base64')), 'p', 'a', /not JSON/);

  try {
    d.decryptContent(raw({ p: wrongKey }), { p: 'a' });
  } catch (err) {
    const text = `${(err as Error).message} ${(err as Error).stack ?? ''}`;
    t.notMatch(text, 'plaintext-value');
    t.notMatch(text, goKeyA.toString('base64'));
    t.notMatch(text, goKeyA.toString('hex'));
  }
});

t.test('key configuration errors', async (t) => {
  expectError(t, () => new ParameterDecryptor({ 'aes-128': aes256 }), '', 'aes-128', /expected a 16-byte key, got 32/);
  expectError(t, () => new ParameterDecryptor({ 'aes-256': aes128 }), '', 'aes-256', /expected a 32-byte key, got 16/);
  expectError(t, () => new ParameterDecryptor({ k: randomBytes(20) }), '', 'k', /16, 24 or 32-byte key, got 20/);
  expectError(t, () => new ParameterDecryptor({ k: 'not*base64' }), '', 'k', /not valid base64/);
  expectError(t, () => new ParameterDecryptor({ k: { key: goKeyA, ivLength: 0 } }), '', 'k', /IV length/);
  const custom = new ParameterDecryptor({ k: { key: goKeyA, ivLength: 12 } });
  t.equal(custom.decryptValue('p', 'k', upstreamEncrypt('ok', goKeyA, 12)), 'ok', 'explicit IV length');
});

t.test('decrypted values reach the parameters as their plaintext JSON text, numbers exact', async (t) => {
  const d = new ParameterDecryptor({ 'aes-256': aes256 });
  const plaintext = '{"big":12345678901234567890,"huge":1E+400,"one":1.0}';
  const iv = randomBytes(128);
  const cipher = createCipheriv('aes-256-gcm', aes256, iv);
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(128);
  const secret = Buffer.concat([len, iv, ct]).toString('base64');
  const content = RawJson.parse(`{"n":9007199254740993,"secret":"${secret}"}`);
  t.equal(d.decryptContent(content, { secret: 'aes-256' })?.text, `{"n":9007199254740993,"secret":${plaintext}}`);
  t.equal(d.decryptText('secret', 'aes-256', JSON.stringify(secret)), plaintext);
});
