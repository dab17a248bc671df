import t from 'tap';
import { createLogger, wideEventLogger } from '../../../invoker/telemetry/logger.js';
import { captureLines } from '../../helpers/log-capture.js';


const SECRET = '23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZ';

t.test('the invoker logger redacts secrets at depth (message, identity, headers)', async (t) => {
  const { lines, stream } = captureLines();
  const logger = createLogger({ level: 'info', destination: stream });
  logger.info({ msg: { user: { authkey: { api_key: SECRET } }, content: { password: SECRET } } }, 'a message');
  logger.info({ identity: { authkey: { api_key: SECRET } } }, 'an identity');
  logger.info({ request: { headers: { authorization: `Basic ${SECRET}` } } }, 'headers');
  logger.info({ args: { token: SECRET, password: SECRET } }, 'arguments');
  t.equal(lines.length, 4);
  for (const line of lines) t.notMatch(JSON.stringify(line), SECRET, `no secret in "${String(line.msg)}"`);
});

t.test('the wide-event logger keeps the event and redacts secret-named top-level keys', async (t) => {
  const { lines, stream } = captureLines();
  const wide = wideEventLogger(createLogger({ level: 'info', destination: stream }), { component: 'activation' });
  const event = { event: 'activation', activationId: 'a1', action: 'guest/hello', request: { 'X-Request-Id': 'r1' }, statusCode: 0 };
  wide.info(event, 'activation finished');
  wide.info({ ...event, authkey: { api_key: SECRET }, content: { password: SECRET }, token: SECRET, user: { authkey: SECRET } }, 'activation finished');
  t.equal(lines.length, 2);
  t.match(lines[0], { ...event, component: 'activation', msg: 'activation finished' });
  t.notMatch(JSON.stringify(lines[1]), SECRET);
  t.match(lines[1], { authkey: '[redacted]', content: '[redacted]', token: '[redacted]', user: '[redacted]', activationId: 'a1' });
});
