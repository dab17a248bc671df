/** The store's action documents, as the invocation core needs them. */
import type { Annotation } from '../../protocol/index.js';
import type { ActionSource, ExecutableAction } from '../invocation/invocation-core.js';
import { ActionNotFoundError, type ActionDocument, type ActionStore } from '../store/action-store.js';

/**
 * `resolveKind` maps a document's kind to the one the runtime manifest runs
 * (`nodejs:default` -> the family's default kind, as upstream's Exec reader
 * does through ExecManifest.resolveDefaultRuntime), so that the pool, the
 * stem cells and the activation's `kind` annotation see the real
 * kind. Unknown kinds pass unchanged and fail later as unprovisionable.
 */
export function storeActionSource(store: ActionStore, resolveKind: (kind: string) => string = (kind) => kind): ActionSource {
  return {
    async get(action, revision) {
      try {
        return executable(await store.get(action, revision), resolveKind);
      } catch (error) {
        if (error instanceof ActionNotFoundError) return 'not-found';
        throw error;
      }
    },
  };
}

function executable(doc: ActionDocument, resolveKind: (kind: string) => string): ExecutableAction {
  const annotations: Annotation[] = doc.annotations.map(({ key, value }) => ({ key, value }));
  const base = { namespace: doc.namespace, version: doc.version, limits: doc.limits };
  const runtime = { name: doc.name, annotations, version: doc.version };
  const exec = doc.exec;
  switch (exec.type) {
    case 'sequence':
      return { ...base, kind: exec.kind, isSequence: true, runtime: { ...runtime, binary: false } };
    case 'blackbox':
      return {
        ...base,
        kind: exec.kind,
        image: exec.image,
        isSequence: false,
        runtime: {
          ...runtime,
          binary: exec.binary,
          ...(exec.code !== undefined ? { code: exec.code } : {}),
          ...(exec.main !== undefined ? { main: exec.main } : {}),
        },
      };
    case 'code':
      return {
        ...base,
        kind: resolveKind(exec.kind),
        isSequence: false,
        runtime: { ...runtime, code: exec.code, binary: exec.binary, ...(exec.main !== undefined ? { main: exec.main } : {}) },
      };
  }
}
