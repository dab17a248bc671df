/**
 * The controller's API (see api/server.ts and README.md): upstream's REST API
 * subset for actions, activations and namespaces, and `/invokers`.
 */
export { buildApi, type ApiDeps, type ApiTimeouts } from './api/server.js';
export { mergeArguments, type MergedArguments } from './api/invoke.js';
