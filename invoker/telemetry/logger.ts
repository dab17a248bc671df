import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;

export interface LoggerOptions {
  level: LevelWithSilent;
  /** Fields on every line, e.g. the invoker id. */
  base?: Record<string, unknown>;
  destination?: NodeJS.WritableStream;
}

/**
 * Keys whose values must never reach a log line, wherever they appear in an
 * object that is logged: API keys, credentials, locked (encrypted) arguments.
 */
export const REDACTED_PATHS = [
  'authkey',
  '*.authkey',
  '*.*.authkey',
  'api_key',
  '*.api_key',
  'password',
  '*.password',
  'token',
  '*.token',
  'headers.authorization',
  '*.headers.authorization',
  'content',
  '*.content',
  'msg.content',
  'msg.user.authkey',
];

/**
 * For the per-activation wide event ("activation finished"), logged once per
 * activation. Its fields are built by the invoker itself - ids, names,
 * timings, flags, error texts and the allowlisted request tags - never a
 * message, identity or headers object, so it cannot carry a secret at depth.
 * The wildcard paths above make pino walk every field of every line they
 * apply to; on the wide event that walk is pure cost on the hot path.
 * These paths are top-level only (a property check each), kept as a guard in
 * case a secret-named key is ever added to the event.
 */
export const WIDE_EVENT_REDACTED_PATHS = ['authkey', 'api_key', 'password', 'token', 'content', 'headers.authorization', 'user', 'message'];

/**
 * A child of `logger` for the wide event: same destination and level, the
 * cheap top-level redaction of WIDE_EVENT_REDACTED_PATHS instead of the
 * wildcard one. Use it only for objects whose fields the invoker builds.
 */
export function wideEventLogger(logger: Logger, bindings: Record<string, unknown>): Logger {
  return logger.child(bindings, { redact: { paths: WIDE_EVENT_REDACTED_PATHS, censor: '[redacted]' } });
}

/**
 * Without a destination, lines go to stdout asynchronously (pino's
 * SonicBoom with `sync: false`): the write happens off the event loop. Lines
 * are gathered until STDOUT_BUFFER_BYTES are waiting or STDOUT_FLUSH_MS has
 * passed, so that a busy invoker pays one write per few lines, not one per
 * activation (each asynchronous write is a thread-pool hand-off of 40-120 us
 * of CPU). pino flushes what is buffered on process exit (`process.exit`
 * included); a SIGKILL can lose the last lines, never a record (records
 * have their own journal).
 */
export const STDOUT_BUFFER_BYTES = 4096;
export const STDOUT_FLUSH_MS = 200;

export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? bufferedStdout();
  return pino(
    {
      level: options.level,
      base: options.base ?? null,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as pino.DestinationStream,
  );
}

function bufferedStdout(): NodeJS.WritableStream {
  const stream = pino.destination({ dest: 1, sync: false, minLength: STDOUT_BUFFER_BYTES });
  // Lines wait at most this long, however quiet the invoker is.
  setInterval(() => {
    try {
      stream.flush();
    } catch {
      // Destroyed at exit: nothing left to flush.
    }
  }, STDOUT_FLUSH_MS).unref();
  return stream as unknown as NodeJS.WritableStream;
}

/** For tests and tools that need a Logger but no output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
