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
 * Without a destination, lines go to stdout asynchronously (pino's
 * SonicBoom with `sync: false`): the write happens off the event loop, and
 * lines logged while one is in flight go out together in the next write, so
 * the per-activation line costs no synchronous syscall on the hot path.
 * pino flushes what is buffered on process exit (`process.exit` included);
 * a SIGKILL can lose the last lines, never a record (records have their own
 * journal).
 */
export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: false });
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

/** For tests and tools that need a Logger but no output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
