import t from 'tap';
import { basicAuthMatches, basicCredentials, bearerMatches, bearerToken, sameSecret } from '../../../invoker/http/auth.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

t.test('sameSecret compares whole values, whatever their lengths', async (t) => {
  t.ok(sameSecret('abc', 'abc'));
  t.notOk(sameSecret('abc', 'abd'));
  t.notOk(sameSecret('abc', 'abcd'));
  t.notOk(sameSecret('', 'a'));
  t.ok(sameSecret('', ''));
});

t.test('bearer tokens', async (t) => {
  t.equal(bearerToken('Bearer xyz'), 'xyz');
  t.equal(bearerToken('bearer   xyz '), 'xyz', 'scheme is case-insensitive (RFC 7235)');
  t.equal(bearerToken('Bearer a b'), undefined);
  t.equal(bearerToken('Basic xyz'), undefined);
  t.equal(bearerToken(undefined), undefined);
  t.ok(bearerMatches('Bearer xyz', 'xyz'));
  t.notOk(bearerMatches('Bearer xy', 'xyz'));
});

t.test('basic credentials: the password may contain colons', async (t) => {
  t.same(basicCredentials(`Basic ${b64('admin:pa:ss')}`), { user: 'admin', password: 'pa:ss' });
  t.same(basicCredentials(`basic ${b64('admin:')}`), { user: 'admin', password: '' });
  t.equal(basicCredentials(`Basic ${b64('no-colon')}`), undefined);
  t.equal(basicCredentials('Basic !!!'), undefined);
  t.equal(basicCredentials(undefined), undefined);
  const expected = { user: 'admin', password: 'pa:ss' };
  t.ok(basicAuthMatches(`Basic ${b64('admin:pa:ss')}`, expected));
  t.notOk(basicAuthMatches(`Basic ${b64('admin:pa')}`, expected));
  t.notOk(basicAuthMatches(`Basic ${b64('Admin:pa:ss')}`, expected));
});
