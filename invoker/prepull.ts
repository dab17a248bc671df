/**
 * Pulls the image of every kind in the runtime manifest (`RUNTIMES_MANIFEST`,
 * else `RUNTIMES_MANIFEST_FILE`, else the built-in one) before the invoker
 * starts, as the init container of the Kubernetes manifests (`k8s/`) does,
 * so no activation's cold start waits for a pull. Images already on the
 * engine are left alone. Exits 1 naming every image that could not be pulled.
 * Run: `node dist/invoker/prepull.js` (or `node --import tsx invoker/prepull.ts`).
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { INVOKER_SETTINGS } from './config/config.js';
import { ConfigError, readSettings } from './config/env-schema.js';
import { DockerEngine } from './docker/docker-engine.js';
import { defaultRuntimeManifest, parseRuntimeManifest, type RuntimeManifest } from './runtime-manifest.js';

export interface PrepullEngine {
  imageExists(image: string): Promise<boolean>;
  pull(image: string): Promise<void>;
}

export interface PrepullResult {
  present: string[];
  pulled: string[];
  failed: { image: string; error: string }[];
}

/** Every distinct image of the manifest's kinds, in manifest order. */
export function manifestImages(manifest: RuntimeManifest): string[] {
  return [...new Set([...manifest.kinds.values()].map((kind) => kind.image))];
}

/** One image at a time: the node's engine and network are shared with running actions. */
export async function prepullImages(images: readonly string[], engine: PrepullEngine): Promise<PrepullResult> {
  const result: PrepullResult = { present: [], pulled: [], failed: [] };
  for (const image of images) {
    try {
      if (await engine.imageExists(image)) {
        result.present.push(image);
        continue;
      }
      await engine.pull(image);
      result.pulled.push(image);
    } catch (error) {
      result.failed.push({ image, error: error instanceof Error ? error.message : String(error) });
    }
  }
  return result;
}

/** The manifest from the same settings the invoker reads. */
export function manifestFromEnvironment(env: Readonly<Record<string, string | undefined>>): RuntimeManifest {
  const settings = readSettings(
    {
      runtimesManifest: INVOKER_SETTINGS.runtimesManifest,
      runtimesManifestFile: INVOKER_SETTINGS.runtimesManifestFile,
      nodejsImage: INVOKER_SETTINGS.nodejsImage,
      nodejs24Image: INVOKER_SETTINGS.nodejs24Image,
    },
    env,
  );
  if (settings.runtimesManifest !== undefined) return parseRuntimeManifest(settings.runtimesManifest, 'RUNTIMES_MANIFEST');
  if (settings.runtimesManifestFile !== undefined) {
    return parseRuntimeManifest(readFileSync(settings.runtimesManifestFile, 'utf8'), settings.runtimesManifestFile);
  }
  return defaultRuntimeManifest({ image: settings.nodejsImage, nodejs24Image: settings.nodejs24Image });
}

async function main(): Promise<void> {
  let images: string[];
  try {
    images = manifestImages(manifestFromEnvironment(process.env));
  } catch (error) {
    process.stderr.write(`prepull: cannot read the runtime manifest: ${error instanceof ConfigError ? error.message : (error as Error).message}\n`);
    process.exit(2);
  }
  const result = await prepullImages(images, new DockerEngine());
  process.stdout.write(`${JSON.stringify({ event: 'prepull', present: result.present, pulled: result.pulled, failed: result.failed })}\n`);
  if (result.failed.length > 0) {
    process.stderr.write(`prepull: could not pull ${result.failed.map((f) => f.image).join(', ')}\n`);
    process.exit(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
