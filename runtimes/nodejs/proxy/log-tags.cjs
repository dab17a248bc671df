'use strict';
// Per-activation log tags, for containers that run several activations at once
// (intra-container concurrency). Without them the output of parallel runs
// interleaves on one stdout and one stderr and cannot be told apart.
//
// The invoker asks for tags by starting the container with
// __OW_LOG_TAGS=<key> (16-64 lowercase hex characters, random per container).
// When it is set, every line written on process.stdout or process.stderr
// (console.*, direct writes, the uncaught-error report below) from inside an
// activation's async context (AsyncLocalStorage: promises, timers, callbacks
// started by the activation) goes out as
//
//   \x1e<key>:<activation id>\x1f<text>\n
//
// and each activation ends with its own tagged sentinel on both streams,
// instead of the bare one. The invoker strips the tag and routes the line to
// that activation's log; untagged lines (written outside any activation) and
// lines of an activation that already ended are dropped by the invoker.
// /init and /run answers carry the header `x-ow-log-tags: 1`, which is how the
// invoker learns that this runtime tags (upstream runtimes do not, and keep
// the untagged behaviour).
//
// Why this framing: \x1e at the start of a line plus a per-container random
// key cannot appear by accident, and code inside an activation cannot forge
// another activation's lines, since its own tag always comes first. The key is
// removed from process.env before any action code loads.
//
// Partial lines (writes without a newline) are kept per activation and stream
// until their newline, so that interleaved writes of other activations cannot
// split them; they are flushed before the activation's sentinel, and cut at
// 16 KiB characters like the invoker cuts long lines.

const { AsyncLocalStorage } = require('node:async_hooks');
const { StringDecoder } = require('node:string_decoder');
const { inspect } = require('node:util');

const ENV = '__OW_LOG_TAGS';
const HEADER = 'x-ow-log-tags';
const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX';
const KEY_PATTERN = /^[0-9a-f]{16,64}$/;
// What the invoker accepts between the key and \x1f.
const ID_PATTERN = /^[0-9A-Za-z._-]{1,128}$/;
const MAX_PARTIAL = 16 * 1024;
const STDOUT = 0;
const STDERR = 1;

/**
 * Reads (and removes) __OW_LOG_TAGS from `env`; undefined when tags were not
 * asked for or the key is malformed (then nothing is tagged, as upstream).
 */
function fromEnvironment(env = process.env, streams = undefined) {
  const key = env[ENV];
  if (key === undefined) return undefined;
  delete env[ENV];
  if (!KEY_PATTERN.test(key)) return undefined;
  return createLogTags(key, streams);
}

/**
 * Hooks `write` of both streams. `streams` defaults to process.stdout and
 * process.stderr; `installMonitor` (default true) reports uncaught errors.
 */
function createLogTags(key, { stdout = process.stdout, stderr = process.stderr, installMonitor = true } = {}) {
  const storage = new AsyncLocalStorage();
  // Open activations by id: an activation's /init and /run share one context.
  const open = new Map();
  const writes = [hook(stdout, STDOUT), hook(stderr, STDERR)];
  const streams = [stdout, stderr];
  const put = (index, text) => {
    if (text !== '') writes[index].call(streams[index], text);
  };

  function Activation(id) {
    this.id = id;
    this.prefix = `\x1e${key}:${id}\x1f`;
    this.ended = false;
    this.partial = ['', ''];
    this.decoders = undefined;
  }

  function hook(stream, index) {
    const original = stream.write;
    stream.write = function write(chunk, encoding, callback) {
      const activation = storage.getStore();
      // Outside any activation: untouched (`apply` with `arguments` costs far more on Node 24).
      if (activation === undefined) return original.call(stream, chunk, encoding, callback);
      if (typeof encoding === 'function') {
        callback = encoding;
        encoding = undefined;
      }
      let text;
      if (typeof chunk === 'string' && (encoding === undefined || encoding === 'utf8' || encoding === 'utf-8')) {
        text = chunk;
      } else {
        // Bytes (or a string in another encoding): decode with a per-stream
        // decoder, so a character split over two writes stays whole.
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
        activation.decoders ??= [new StringDecoder('utf8'), new StringDecoder('utf8')];
        text = activation.decoders[index].write(bytes);
      }
      const out = frame(activation, index, text);
      if (out === '') {
        if (typeof callback === 'function') process.nextTick(callback);
        return true;
      }
      return original.call(stream, out, callback);
    };
    return original;
  }

  /** The tagged lines `text` completes; what is left of it waits in `partial`. */
  function frame(activation, index, text) {
    const pending = activation.partial[index];
    const last = text.lastIndexOf('\n');
    const prefix = activation.prefix;
    if (last === -1) {
      const line = pending + text;
      if (line === '') return '';
      // After its end nothing is held back for an activation: the line goes out (and is dropped there).
      if (activation.ended || line.length >= MAX_PARTIAL) {
        activation.partial[index] = '';
        return `${prefix}${line}\n`;
      }
      activation.partial[index] = line;
      return '';
    }
    let lines = last === text.length - 1 ? text : text.slice(0, last + 1);
    if (pending !== '') lines = pending + lines;
    // Every newline but the last starts another line of this activation.
    const body = lines.length - 1;
    let out = lines.indexOf('\n') === body ? prefix + lines : prefix + lines.slice(0, body).replaceAll('\n', `\n${prefix}`) + '\n';
    const rest = last === text.length - 1 ? '' : text.slice(last + 1);
    if (rest !== '' && (activation.ended || rest.length >= MAX_PARTIAL)) {
      out += `${prefix}${rest}\n`;
      activation.partial[index] = '';
    } else {
      activation.partial[index] = rest;
    }
    return out;
  }

  /** What is still held back for one stream, as tagged lines. */
  function drain(activation, index) {
    let rest = activation.partial[index];
    if (activation.decoders) rest += activation.decoders[index].end();
    activation.partial[index] = '';
    return rest === '' ? '' : `${activation.prefix}${rest}\n`;
  }

  if (installMonitor) {
    // An error thrown (or a rejection left unhandled) inside an activation's
    // context: report it on that activation's stderr before Node prints its
    // own, untagged report and exits. Async context survives into the
    // monitor for both origins (Node 20 and 24).
    process.on('uncaughtExceptionMonitor', (error, origin) => {
      const activation = storage.getStore();
      if (activation === undefined) return;
      // Handled by the action itself: not fatal, so nothing to report.
      if (origin === 'uncaughtException' && process.listenerCount('uncaughtException') > 0) return;
      const what = origin === 'unhandledRejection' ? 'Unhandled promise rejection' : 'Uncaught exception';
      try {
        const report = `${drain(activation, STDERR)}${frame(activation, STDERR, `${what}: ${inspect(error)}\n`)}`;
        // The process is about to exit: hand over what other activations still hold, too.
        for (const other of open.values()) {
          if (other === activation) continue;
          put(STDOUT, drain(other, STDOUT));
          put(STDERR, drain(other, STDERR));
        }
        put(STDOUT, drain(activation, STDOUT));
        put(STDERR, report);
      } catch {
        // Reporting must never mask the original error.
      }
    });
  }

  return {
    header: HEADER,

    /**
     * Runs `fn` in the context of activation `id` (the same context for an
     * activation's /init and /run). Without a usable id, `fn` runs untagged.
     */
    run(id, fn) {
      if (typeof id !== 'string' || !ID_PATTERN.test(id)) return fn();
      let activation = open.get(id);
      if (activation === undefined) {
        activation = new Activation(id);
        open.set(id, activation);
      }
      return storage.run(activation, fn);
    },

    /**
     * Ends the current activation: its held-back text, then its tagged
     * sentinel, on both streams. False when there is no open activation in
     * this context (the caller then writes the bare sentinels).
     */
    end() {
      const activation = storage.getStore();
      if (activation === undefined || activation.ended) return false;
      const out = drain(activation, STDOUT);
      const err = drain(activation, STDERR);
      activation.ended = true;
      open.delete(activation.id);
      put(STDOUT, `${out}${activation.prefix}${SENTINEL}\n`);
      put(STDERR, `${err}${activation.prefix}${SENTINEL}\n`);
      return true;
    },

    /**
     * Forgets activation `id` once its request is answered without an end
     * (a refused /run): its context keeps tagging, nothing is held for it.
     */
    release(id) {
      const activation = open.get(id);
      if (activation === undefined) return;
      open.delete(id);
      put(STDOUT, drain(activation, STDOUT));
      put(STDERR, drain(activation, STDERR));
    },

    /**
     * The service's endpoints, each request in its activation's context: /init
     * under the activation id of its environment (`__OW_ACTIVATION_ID`, what
     * the invoker sends with the first activation), /run under its
     * `activation_id`. A request answered without an end is released.
     */
    wrap(service) {
      const self = this;
      const within = (id, endpoint, body, keepOnSuccess) => {
        let pending;
        try {
          pending = self.run(id, () => endpoint(body));
        } catch (error) {
          self.release(id);
          throw error;
        }
        return Promise.resolve(pending).then(
          (result) => {
            if (!keepOnSuccess) self.release(id);
            return result;
          },
          (error) => {
            self.release(id);
            return Promise.reject(error);
          },
        );
      };
      return {
        // A successful /init leaves the activation open: its /run follows.
        initCode: (body) => within(initActivationId(body), service.initCode, body, true),
        runCode: (body) => within(body && body.activation_id, service.runCode, body, false),
      };
    },

    /** Activations between their first request and their end. */
    get openCount() {
      return open.size;
    },
  };
}

function initActivationId(body) {
  const env = body && body.value && body.value.env;
  return env && typeof env === 'object' ? env.__OW_ACTIVATION_ID : undefined;
}

module.exports = { fromEnvironment, createLogTags, ENV, HEADER, SENTINEL };
