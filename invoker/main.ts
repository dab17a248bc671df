/**
 * Process entry point: configuration from the environment, the invoker, and
 * signals. SIGTERM (or SIGINT) drains and exits 0; a second one exits at once.
 */
import { loadInvokerConfig } from './config/config.js';
import { ConfigError } from './config/env-schema.js';
import { startInvoker } from './invoker.js';
import { createLogger } from './telemetry/logger.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadInvokerConfig({ env: process.env });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`invoker: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel, base: { service: 'invoker', invoker: config.invokerId } });
  let invoker;
  try {
    invoker = await startInvoker(config, { logger, environment: process.env });
  } catch (error) {
    logger.fatal({ err: error }, 'invoker failed to start');
    process.exit(1);
  }
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'signal received: draining');
    invoker.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.fatal({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

void main();
