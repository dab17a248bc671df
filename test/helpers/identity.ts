import type { Identity } from '../../protocol/index.js';

/** Upstream's development identity (`guest`), as controllers put it into messages. */
export function guestIdentity(namespace = 'guest'): Identity {
  return {
    subject: namespace,
    namespace: { name: namespace, uuid: '23bc46b1-71f6-4ed5-8c54-816aa4f8c502' },
    authkey: { api_key: '23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZ' },
    rights: ['READ', 'PUT', 'DELETE', 'ACTIVATE'],
    limits: {},
  };
}
