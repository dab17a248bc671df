/** A logger (and its stream) whose JSON lines land, parsed, in an array. */
import { Writable } from 'node:stream';
import type { LevelWithSilent } from 'pino';
import { createLogger, type Logger } from '../../invoker/telemetry/logger.js';

export function captureLines(): { lines: Array<Record<string, unknown>>; stream: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

export function captureLogger(level: LevelWithSilent = 'info'): { lines: Array<Record<string, unknown>>; logger: Logger } {
  const { lines, stream } = captureLines();
  return { lines, logger: createLogger({ level, destination: stream }) };
}
