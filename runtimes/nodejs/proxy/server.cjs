'use strict';
// The OpenWhisk action proxy: POST /init and POST /run on port 8080, with the
// state machine, status codes and texts of upstream openwhisk-runtime-nodejs
// (core/nodejsActionBase/src/service.js and app.js), on node:http alone.

const http = require('node:http');
const { initializeActionHandler, runAction } = require('./runner.cjs');
const logTags = require('./log-tags.cjs');

const PORT = 8080;
const HOST = '0.0.0.0';
// body-parser's "48mb", as upstream configures it.
const BODY_LIMIT = 48 * 1024 * 1024;
const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n';

const Status = { ready: 'ready', starting: 'starting', running: 'running', stopped: 'stopped' };

/** Upstream's NodeActionService: endpoint handlers resolve or reject with { code, response }. */
function createService(config) {
  const ignoreRunStatus = config.allowConcurrent === undefined ? false : config.allowConcurrent.toLowerCase() === 'true';
  let status = Status.ready;
  let handler;

  function setStatus(next) {
    if (status !== Status.stopped) status = next;
  }

  // Both streams are synchronous for files, pipes and TTYs on Linux, so the
  // action's own output is already written when the sentinel is.
  // With per-activation log tags (log-tags.cjs), the current activation's own sentinels.
  function writeMarkers() {
    if (config.logTags && config.logTags.end()) return;
    process.stdout.write(SENTINEL);
    process.stderr.write(SENTINEL);
  }

  function initCode(body) {
    if (status === Status.ready && handler === undefined) {
      setStatus(Status.starting);
      const message = (body && body.value) || {};
      // The invoker always sends "main"; default it like the invoker does.
      if (message.main === undefined || message.main === null) message.main = 'main';
      if (message.main && message.code && typeof message.main === 'string' && typeof message.code === 'string') {
        return doInit(message).then(
          () => {
            setStatus(Status.ready);
            return reply(200, { OK: true });
          },
          (error) => {
            setStatus(Status.stopped);
            const errStr = `Initialization has failed due to: ${error && error.stack ? String(error.stack) : error}`;
            return Promise.reject(reply(502, { error: errStr }));
          },
        );
      }
      setStatus(Status.ready);
      return Promise.reject(reply(403, { error: 'Missing main/no code to execute.' }));
    }
    if (handler !== undefined) {
      const msg = 'Cannot initialize the action more than once.';
      console.error('Internal system error:', msg);
      return Promise.reject(reply(403, { error: msg }));
    }
    const msg = `System not ready, status is ${status}.`;
    console.error('Internal system error:', msg);
    return Promise.reject(reply(403, { error: msg }));
  }

  function doInit(message) {
    // Before the code loads, so that module-level code sees them.
    if (message.env && typeof message.env === 'object') {
      for (const k of Object.keys(message.env)) {
        const val = message.env[k];
        if (typeof val !== 'object' || val == null) {
          process.env[k] = val ? val.toString() : '';
        } else {
          process.env[k] = JSON.stringify(val);
        }
      }
    }
    return initializeActionHandler(message).then(
      (h) => {
        handler = h;
      },
      (error) => {
        // The activation ends here: its log gets the error and the markers.
        console.error('Error during initialization:', error);
        writeMarkers();
        return Promise.reject(error);
      },
    );
  }

  function runCode(body) {
    if (status === Status.ready && handler !== undefined) {
      const msg = body && typeof body === 'object' ? body : {};
      if (msg.value === null || msg.value === undefined) {
        msg.value = {};
      } else if (typeof msg.value !== 'object') {
        const errStr = `Internal system error: the argument must be a dictionary but has type '${typeof msg.value}'.`;
        console.error('Internal system error:', errStr);
        return Promise.reject(reply(403, { error: errStr }));
      }
      if (!ignoreRunStatus) setStatus(Status.running);

      return doRun(msg).then(
        (result) => {
          if (!ignoreRunStatus) setStatus(Status.ready);
          if (typeof result !== 'object') return reply(502, { error: 'The action did not return a dictionary.' });
          return reply(200, result);
        },
        (error) => {
          setStatus(Status.stopped);
          return Promise.reject(reply(502, { error: `An error has occurred: ${error}` }));
        },
      );
    }
    const msg = handler ? `System not ready, status is ${status}.` : 'System not initialized.';
    console.error('Internal system error:', msg);
    return Promise.reject(reply(403, { error: msg }));
  }

  function doRun(msg) {
    // Per-activation keys become __OW_ environment variables.
    for (const k of Object.keys(msg)) {
      if (k !== 'value' && typeof msg[k] === 'string') process.env['__OW_' + k.toUpperCase()] = msg[k];
    }
    return runAction(handler, msg.value).then(
      (result) => {
        if (typeof result !== 'object') {
          console.error(`Result must be of type object but has type "${typeof result}":`, result);
        }
        writeMarkers();
        return result;
      },
      (error) => {
        console.error(error);
        writeMarkers();
        return Promise.reject(error);
      },
    );
  }

  return { initCode, runCode };
}

function reply(code, response) {
  return { code, response };
}

function send(res, code, response) {
  let body;
  try {
    body = JSON.stringify(response);
  } catch (e) {
    // Upstream: express's res.json throws (a cycle, a BigInt) and wrapEndpoint answers 500.
    console.error('[wrapEndpoint]', 'invalid errored promise', e && e.message);
    code = 500;
    body = '{"error":"Internal error."}';
  }
  if (body === undefined) body = '';
  res.writeHead(code, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** Answers and drops the connection: used when the request body is not read to its end. */
function sendAndClose(req, res, code, response) {
  res.setHeader('Connection', 'close');
  send(res, code, response);
  res.on('finish', () => req.destroy());
}

/** Resolves with the parsed body: {} when empty; rejects on bad JSON, a non-object/array, or too large. */
function readJsonBody(req) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > BODY_LIMIT) {
      reject(new Error('request entity too large'));
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > BODY_LIMIT) {
        req.removeAllListeners('data');
        req.pause();
        reject(new Error('request entity too large'));
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (size === 0) {
        resolve({});
        return;
      }
      const text = chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks, size).toString('utf8');
      // body-parser's strict mode: only an object or an array at the top.
      const first = text.trimStart()[0];
      if (first !== '{' && first !== '[') {
        reject(new Error('body is not a JSON object or array'));
        return;
      }
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** `logTags`: the per-activation log tags in use, if any (announced on every answer). */
function createServer(service, logTags) {
  if (logTags) service = logTags.wrap(service);
  const routes = new Map([
    ['/init', service.initCode],
    ['/run', service.runCode],
  ]);
  const server = http.createServer((req, res) => {
    const q = req.url.indexOf('?');
    const route = routes.get(q === -1 ? req.url : req.url.slice(0, q));
    if (logTags) res.setHeader(logTags.header, '1');
    if (route === undefined) {
      sendAndClose(req, res, 404, { error: 'Not found.' });
      return;
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      sendAndClose(req, res, 405, { error: 'Method not allowed.' });
      return;
    }
    readJsonBody(req).then(
      (body) => {
        let pending;
        try {
          pending = route(body);
        } catch (e) {
          console.error('[wrapEndpoint]', 'exception caught', e && e.message);
          send(res, 500, { error: 'Internal error (exception).' });
          return;
        }
        pending.then(
          (result) => send(res, result.code, result.response),
          (error) => {
            if (error && typeof error.code === 'number' && error.response !== undefined) {
              send(res, error.code, error.response);
            } else {
              console.error('[wrapEndpoint]', 'invalid errored promise', error);
              send(res, 500, { error: 'Internal error.' });
            }
          },
        );
      },
      // Upstream's express error handler answers every body-parser failure this way.
      () => sendAndClose(req, res, 500, { error: 'Bad request.' }),
    );
  });
  // A run may legitimately take minutes; the invoker enforces the time limit.
  server.timeout = 0;
  server.requestTimeout = 0;
  return server;
}

function main() {
  // Before any action code loads: the key leaves process.env.
  const tags = logTags.fromEnvironment(process.env);
  const service = createService({ allowConcurrent: process.env.__OW_ALLOW_CONCURRENT, logTags: tags });
  const server = createServer(service, tags);
  server.on('error', (e) => {
    console.error(`action proxy: cannot listen on ${HOST}:${PORT}: ${e.message}`);
    process.exit(1);
  });
  server.listen(PORT, HOST);
  // As PID 1 in a container, node would otherwise ignore SIGTERM and `docker stop` would wait for SIGKILL.
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
}

if (require.main === module) main();

module.exports = { createService, createServer };
