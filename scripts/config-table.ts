/** Prints the invoker's configuration table (Markdown) for the README. */
import { INVOKER_SETTINGS } from '../invoker/config/config.js';
import { settingsTable } from '../invoker/config/env-schema.js';

process.stdout.write(`${settingsTable(INVOKER_SETTINGS)}\n`);
