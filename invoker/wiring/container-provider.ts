/**
 * Adapts the Docker layer to what the pool declares it needs: the pool speaks
 * of stem cell flags, the factory of labels.
 */
import type { ActionContainer, ContainerFactory } from '../docker/index.js';
import type { ContainerProvider, ContainerSpec } from '../pool/types.js';

export function dockerContainerProvider(factory: ContainerFactory): ContainerProvider<ActionContainer> {
  return {
    create(spec: ContainerSpec): Promise<ActionContainer> {
      return factory.create({
        image: spec.image,
        kind: spec.kind,
        memoryMb: spec.memoryMb,
        concurrency: spec.concurrency,
        ...(spec.stemCell || spec.action === undefined ? {} : { action: spec.action }),
      });
    },
  };
}
