/**
 * HTTPS and mTLS on the invoker's HTTP server, with a throwaway CA, server
 * and client certificates made by the `openssl` CLI for this run only.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { COMPLETION, MESSAGE_BYTES, startHarness } from '../../unit/http/fixtures/harness.js';

interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by a CA the server does not trust. */
  strangerCert: string;
  strangerKey: string;
}

function makePki(dir: string): Pki {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ca = (name: string) => {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.crt`);
  };
  const leaf = (name: string, caName: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`,
      '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
  };
  ca('test-ca');
  ca('stranger-ca');
  leaf('server', 'test-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
  leaf('stranger', 'stranger-ca', 'extendedKeyUsage=clientAuth\n');
  const read = (file: string) => readFileSync(join(dir, file), 'utf8');
  return {
    ca: read('test-ca.crt'),
    serverCert: read('server.crt'),
    serverKey: read('server.key'),
    clientCert: read('client.crt'),
    clientKey: read('client.key'),
    strangerCert: read('stranger.crt'),
    strangerKey: read('stranger.key'),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'invoker-http-tls-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const pki = makePki(dir);

t.test('HTTPS: /invoke acknowledges and answers over TLS', async (t) => {
  const h = await startHarness({ tls: { cert: pki.serverCert, key: pki.serverKey } });
  t.teardown(() => h.server.close());
  const agent = new Agent({ connect: { ca: pki.ca } });
  t.teardown(() => agent.close());

  t.match(h.base, /^https:/);
  const response = await request(`${h.base}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: MESSAGE_BYTES,
    dispatcher: agent,
  });
  t.equal(response.statusCode, 200);
  (await h.handler.next()).resolve();
  t.equal(await response.body.text(), COMPLETION);

  // Plain HTTP to the TLS port gets no answer it could mistake for one.
  const plain = request(h.base.replace('https:', 'http:') + '/ping', { dispatcher: new Agent() });
  await t.rejects(plain);
});

t.test('mTLS: a client certificate from the configured CA is required', async (t) => {
  const h = await startHarness({ tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca } });
  t.teardown(() => h.server.close());

  const withCert = new Agent({ connect: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
  t.teardown(() => withCert.close());
  const response = await request(`${h.base}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: MESSAGE_BYTES,
    dispatcher: withCert,
  });
  t.equal(response.statusCode, 200);
  (await h.handler.next()).resolve();
  t.equal(await response.body.text(), COMPLETION);

  const withoutCert = new Agent({ connect: { ca: pki.ca } });
  t.teardown(() => withoutCert.close());
  await t.rejects(
    request(`${h.base}/ping`, { dispatcher: withoutCert }).then((r) => r.body.text()),
    'no client certificate: the handshake is refused',
  );

  const stranger = new Agent({ connect: { ca: pki.ca, cert: pki.strangerCert, key: pki.strangerKey } });
  t.teardown(() => stranger.close());
  await t.rejects(
    request(`${h.base}/ping`, { dispatcher: stranger }).then((r) => r.body.text()),
    'a certificate from another CA is refused',
  );
  t.equal(h.handler.calls.length, 1, 'only the authenticated call reached the handler');
});
