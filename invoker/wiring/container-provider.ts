/**
 * Adapts the Docker layer to what the pool declares it needs: the pool speaks
 * of stem cell flags and `<path>/<name>` action names, the factory of labels.
 */
import type { ActionContainer, ContainerFactory } from '../docker/index.js';
import type { ContainerProvider, ContainerSpec } from '../pool/types.js';

export function dockerContainerProvider(factory: ContainerFactory): ContainerProvider<ActionContainer> {
  return {
    create(spec: ContainerSpec): Promise<ActionContainer> {
      const action =
        spec.stemCell || spec.actionName === undefined ? undefined : splitActionName(spec.namespace ?? '', spec.actionName);
      return factory.create({
        image: spec.image,
        kind: spec.kind,
        memoryMb: spec.memoryMb,
        concurrency: spec.concurrency,
        ...(action ? { action } : {}),
      });
    },
  };
}

/** `guest/pkg/hello` -> path `guest/pkg`, name `hello`. */
function splitActionName(namespace: string, actionName: string): { namespace: string; path: string; name: string } {
  const slash = actionName.lastIndexOf('/');
  return slash < 0
    ? { namespace, path: namespace, name: actionName }
    : { namespace, path: actionName.slice(0, slash), name: actionName.slice(slash + 1) };
}
