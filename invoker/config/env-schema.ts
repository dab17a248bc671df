/**
 * A small declarative reader for environment variables: each setting names its
 * variable, its default and how to parse it, so that validation, the error
 * message and the README table all come from one place.
 */

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export interface Setting<T> {
  readonly variable: string;
  readonly description: string;
  /** The default as an operator would write it in the environment; undefined: unset. */
  readonly defaultText: string | undefined;
  /** Never printed (startup log, errors show only whether it is set). */
  readonly secret?: boolean;
  parse(raw: string | undefined): T;
}

type Parser<T> = (raw: string, variable: string) => T;

function setting<T>(
  variable: string,
  description: string,
  defaultText: string | undefined,
  parse: Parser<T>,
  options: { secret?: boolean } = {},
): Setting<T> {
  return {
    variable,
    description,
    defaultText,
    secret: options.secret ?? false,
    parse(raw) {
      const text = raw === undefined || raw === '' ? defaultText : raw;
      if (text === undefined) throw new Error(`${variable} is required`);
      return parse(text, variable);
    },
  };
}

function optionalSetting<T>(
  variable: string,
  description: string,
  parse: Parser<T>,
  options: { secret?: boolean } = {},
): Setting<T | undefined> {
  return {
    variable,
    description,
    defaultText: undefined,
    secret: options.secret ?? false,
    parse(raw) {
      return raw === undefined || raw === '' ? undefined : parse(raw, variable);
    },
  };
}

export const text = (variable: string, description: string, defaultText: string): Setting<string> =>
  setting(variable, description, defaultText, (raw) => raw);

export const optionalText = (
  variable: string,
  description: string,
  options: { secret?: boolean } = {},
): Setting<string | undefined> => optionalSetting(variable, description, (raw) => raw, options);

export function integer(
  variable: string,
  description: string,
  defaultValue: number | undefined,
  bounds: { min?: number; max?: number } = {},
): Setting<number> {
  return setting(variable, description, defaultValue?.toString(), (raw, name) => parseInteger(raw, name, bounds));
}

export function optionalInteger(
  variable: string,
  description: string,
  bounds: { min?: number; max?: number } = {},
): Setting<number | undefined> {
  return optionalSetting(variable, description, (raw, name) => parseInteger(raw, name, bounds));
}

function parseInteger(raw: string, variable: string, bounds: { min?: number; max?: number }): number {
  if (!/^-?\d+$/.test(raw.trim())) throw new Error(`${variable} must be a whole number, got "${raw}"`);
  const value = Number(raw.trim());
  if (!Number.isSafeInteger(value)) throw new Error(`${variable} is out of range, got "${raw}"`);
  if (bounds.min !== undefined && value < bounds.min) throw new Error(`${variable} must be at least ${bounds.min}, got ${value}`);
  if (bounds.max !== undefined && value > bounds.max) throw new Error(`${variable} must be at most ${bounds.max}, got ${value}`);
  return value;
}

export const boolean = (variable: string, description: string, defaultValue: boolean): Setting<boolean> =>
  setting(variable, description, String(defaultValue), (raw, name) => {
    const normalized = raw.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(normalized)) return true;
    if (['false', '0', 'no', 'off'].includes(normalized)) return false;
    throw new Error(`${name} must be true or false, got "${raw}"`);
  });

export function oneOf<T extends string>(
  variable: string,
  description: string,
  defaultValue: T,
  allowed: readonly T[],
): Setting<T> {
  return setting(variable, description, defaultValue, (raw, name) => {
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    throw new Error(`${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
  });
}

/** Comma-separated list; empty entries dropped. */
export const list = (variable: string, description: string, defaultText: string): Setting<string[]> =>
  setting(variable, description, defaultText, (raw) =>
    raw
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry.length > 0),
  );

export type SettingsShape = Record<string, Setting<unknown>>;
export type SettingsValues<S extends SettingsShape> = { [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

/** Reads every setting, collecting all problems before failing, so one run shows them all. */
export function readSettings<S extends SettingsShape>(
  settings: S,
  environment: Readonly<Record<string, string | undefined>>,
): SettingsValues<S> {
  const values: Partial<Record<keyof S, unknown>> = {};
  const problems: string[] = [];
  for (const key of Object.keys(settings) as (keyof S)[]) {
    const definition = settings[key]!;
    try {
      values[key] = definition.parse(environment[definition.variable]);
    } catch (error) {
      problems.push(error instanceof Error ? error.message : String(error));
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return values as SettingsValues<S>;
}

/** Markdown table of the settings, for the README. */
export function settingsTable(settings: SettingsShape): string {
  const rows = Object.values(settings).map((s) => {
    const defaultCell = s.defaultText === undefined ? '(unset)' : `\`${s.defaultText}\``;
    return `| \`${s.variable}\` | ${defaultCell} | ${s.description} |`;
  });
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

/** What the startup log may show: values, with secrets reduced to whether they are set. */
export function describeSettings(
  settings: SettingsShape,
  environment: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const shown: Record<string, string> = {};
  for (const s of Object.values(settings)) {
    const raw = environment[s.variable];
    if (s.secret) shown[s.variable] = raw ? '[set]' : '[unset]';
    else shown[s.variable] = raw ?? s.defaultText ?? '';
  }
  return shown;
}
