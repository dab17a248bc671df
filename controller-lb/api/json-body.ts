/**
 * The only body parser of the API: `application/json`, read as text and
 * parsed with protocol's limits (at most 1000 levels of nesting, as
 * spray-json; numbers beyond the double range refused instead of silently
 * becoming `null`). An empty body is "no body" (upstream's
 * emptyEntityToJsObject). Any other content type is 415, as upstream; the
 * size limits are per route (see actions.ts).
 */
import type { FastifyInstance } from 'fastify';
import { ProtocolParseError, type JsonValue } from '../../protocol/index.js';
import { parseRoot } from '../../protocol/json-read.js';
import { malformed } from './errors.js';

/** Marks "the request had no body" (distinct from a body of `null`). */
export const NO_BODY: unique symbol = Symbol('no body');
export type ParsedBody = JsonValue | typeof NO_BODY;

export function installJsonBodyParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, text, done) => {
    const source = typeof text === 'string' ? text : text.toString('utf8');
    if (source.trim() === '') {
      done(null, NO_BODY);
      return;
    }
    try {
      done(null, parseRoot(source, 'request'));
    } catch (error) {
      if (error instanceof ProtocolParseError) {
        done(malformed(describeJsonProblem(error.reason)), undefined);
        return;
      }
      done(error as Error, undefined);
    }
  });
}

function describeJsonProblem(reason: string): string {
  if (reason.startsWith('invalid JSON: ')) return reason.slice('invalid JSON: '.length);
  return reason;
}

/** The body as a JSON object, or undefined when there was none; throws 400 for anything else. */
export function bodyObject(body: unknown): Record<string, JsonValue> | undefined {
  if (body === undefined || body === null || body === NO_BODY) return undefined;
  if (typeof body !== 'object' || Array.isArray(body)) throw malformed('JSON object expected');
  return body as Record<string, JsonValue>;
}
