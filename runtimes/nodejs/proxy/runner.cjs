'use strict';
// Loads the action's code and calls it, mirroring upstream
// openwhisk-runtime-nodejs core/nodejsActionBase/runner.js: the same loading
// rules, the same entry point lookup, the same result and rejection handling.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createRequire } = require('node:module');
const { pathToFileURL } = require('node:url');
const evaluate = require('./evaluate.cjs');
const { extractArchive } = require('./archive.cjs');

/**
 * Resolves to the action's entry function, or rejects with an Error or a
 * string (upstream rejects with strings for the errors it detects itself).
 */
async function initializeActionHandler(message) {
  if (message.binary) {
    return initializeFromArchive(message);
  }
  // Plain code: the source, then its `main` by name, falling back to the
  // CommonJS exports when the name is not a declared binding (upstream's rule).
  const filename = path.join(process.cwd(), '__action.js');
  const module = { exports: {}, filename, id: '.', loaded: false };
  const source = `(function(){
${message.code}
try {
  return ${message.main}
} catch (e) {
  if (e.name === 'ReferenceError') {
    return module.exports.${message.main} || exports.${message.main}
  } else throw e
}
})()`;
  const handler = evaluate(createRequire(filename), module, module.exports, filename, path.dirname(filename), source);
  module.loaded = true;
  return assertMainIsFunction(handler, message.main);
}

async function initializeFromArchive(message) {
  // A zip or a tar.gz; rejects with upstream's texts and logs nothing itself.
  const moduleDir = await extractArchive(message.code, os.tmpdir());

  const parts = splitMainHandler(message.main);
  if (parts === undefined) {
    throw 'Name of main function is not valid.';
  }
  // "file.fn" names a module at the root and a function in it; a bare name is
  // a function of the package (package.json "main", or index.js).
  const [index, main] = parts;
  process.chdir(moduleDir);
  if (index === undefined && !fs.existsSync('package.json') && !fs.existsSync('index.js')) {
    throw 'Zipped actions must contain either package.json or index.js at the root.';
  }

  const whatToRequire = index !== undefined ? path.join(moduleDir, index) : moduleDir;
  const req = createRequire(path.join(moduleDir, '__action.js'));
  let exported;
  try {
    exported = req(whatToRequire);
  } catch (e) {
    // An ES module that require() cannot load synchronously (Node < 20.19, or
    // top-level await): load it the asynchronous way.
    if (!e || (e.code !== 'ERR_REQUIRE_ESM' && e.code !== 'ERR_REQUIRE_ASYNC_MODULE')) throw e;
    exported = await import(pathToFileURL(req.resolve(whatToRequire)).href);
  }
  const handler = evaluate(undefined, { exports: exported }, exported, undefined, moduleDir, `exports.${main}`);
  return assertMainIsFunction(handler, message.main);
}

/**
 * Splits a handler name into module and function path: "fn" -> [undefined,
 * "fn"], "file.fn.x" -> ["file", "fn.x"]; undefined when it is neither.
 */
function splitMainHandler(handler) {
  const matches = handler.match(/^([^.]+)$|^([^.]+)\.(.+)$/);
  if (matches && matches.length === 4) {
    return [matches[2], matches[3] || matches[1]];
  }
  return undefined;
}

function assertMainIsFunction(handler, name) {
  if (typeof handler === 'function') return handler;
  throw "Action entrypoint '" + name + "' is not a function.";
}

/**
 * Calls the action. Rejects only when the action throws synchronously; a
 * rejected promise becomes a successful `{ error }` result, `undefined`
 * becomes `{}`.
 */
function runAction(handler, args) {
  let result;
  try {
    result = handler(args);
  } catch (e) {
    return Promise.reject(e);
  }
  // Fast path: a plain synchronous result needs no promise machinery.
  if (result === null || (typeof result !== 'object' && typeof result !== 'function')) {
    return Promise.resolve(result === undefined ? {} : result);
  }
  return Promise.resolve(result).then(
    (resolved) => (resolved === undefined ? {} : resolved),
    (error) => (error ? { error: serializeError(error) } : { error: {} }),
  );
}

// serialize-error 3.0.0 (what upstream uses): objects are copied without
// functions and cycles, plus the usual non-enumerable Error properties;
// functions are named; anything else is returned as it is.
function serializeError(value) {
  if (typeof value === 'object') return destroyCircular(value, []);
  if (typeof value === 'function') return `[Function: ${value.name || 'anonymous'}]`;
  return value;
}

function destroyCircular(from, seen) {
  const to = Array.isArray(from) ? [] : {};
  seen.push(from);
  for (const key of Object.keys(from)) {
    const value = from[key];
    if (typeof value === 'function') continue;
    if (!value || typeof value !== 'object') {
      to[key] = value;
      continue;
    }
    if (!seen.includes(value)) {
      to[key] = destroyCircular(value, seen.slice());
      continue;
    }
    to[key] = '[Circular]';
  }
  for (const property of ['name', 'message', 'stack', 'code']) {
    if (typeof from[property] === 'string') to[property] = from[property];
  }
  return to;
}

module.exports = { initializeActionHandler, runAction, serializeError, splitMainHandler };
