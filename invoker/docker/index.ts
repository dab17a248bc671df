/**
 * Action containers for the invocation core: create, drive, read logs,
 * pause, destroy. See container-factory.ts (creation, images, cleanup) and
 * action-container.ts (the per-container handle).
 */

export {
  ContainerFactory,
  ImagePullError,
  LABELS,
  LABEL_PREFIX,
  RUNTIME_PORT,
  DEFAULT_HARDENING,
  cpuSharesFor,
  mibToBytes,
  sanitizeNamePart,
  type ContainerFactoryOptions,
  type ContainerHardening,
  type ContainerCreateSpec,
} from './container-factory.js';
export { ActionContainer, DEFAULT_EXIT_WAIT_MS } from './action-container.js';
export { DockerTimeoutError, DEFAULT_DOCKER_TIMEOUTS, type DockerTimeouts, type EngineContainerState } from './docker-engine.js';
export {
  DEFAULT_LOG_LIMIT_BYTES,
  DEFAULT_SENTINEL_WAIT_MS,
  type BeginActivationOptions,
  type CollectOptions,
  type LogCollection,
} from './log-collector.js';
export { LOG_SENTINEL, DEFAULT_MAX_LINE_BYTES, formatLogLine } from './log-lines.js';
export { type DroppedLogLineReason, type DroppedLogLines } from './log-router.js';
export { LOG_TAGS_ENV, LOG_TAGS_HEADER } from './log-tags.js';
export {
  DEFAULT_MAX_RESPONSE_BYTES,
  INIT_RETRY_INTERVAL_MS,
  isConnectionError,
  type RuntimeResult,
} from './runtime-client.js';
