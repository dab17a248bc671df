/** Images for the core: managed kinds from the runtime manifest, blackbox images pulled on demand. */
import type { ContainerFactory } from '../docker/index.js';
import type { ImageSource } from '../invocation/invocation-core.js';
import type { RuntimeManifest } from '../runtime-manifest.js';

export function manifestImages(manifest: RuntimeManifest, factory: ContainerFactory): ImageSource {
  return {
    imageFor(kind: string): string | undefined {
      try {
        return manifest.imageFor(kind);
      } catch {
        return undefined;
      }
    },
    ensureImage: (image: string) => factory.ensureImage(image),
  };
}
