import { ConfigError, loadConfig, type Config } from '../config.ts';
import { createRuntime, type Runtime } from './runtime.ts';

/**
 * Runs one entry point: reads config, builds the runtime, starts the role and stops it once on
 * SIGTERM/SIGINT (a second signal, or the timeout, exits at once).
 */
export async function runProcess(role: string, start: (runtime: Runtime) => Promise<{ stop(): Promise<void> }>): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(2);
    }
    throw error;
  }
  let runtime: Runtime;
  try {
    runtime = await createRuntime(config, role);
  } catch (error) {
    console.error(`${role} cannot start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
  const started = await start(runtime);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    runtime.logger.info('shutting down', { signal });
    const deadline = setTimeout(() => {
      runtime.logger.error('shutdown timed out; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    started
      .stop()
      .then(() => runtime.close())
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        runtime.logger.error('shutdown failed', { error });
        process.exit(1);
      });
  };
  // `on`, not `once`: execa's signal-exit re-raises a signal that has no other listener left, which
  // would kill the process in the middle of its graceful shutdown. A second signal exits at once.
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

export function main(role: string, start: (runtime: Runtime) => Promise<{ stop(): Promise<void> }>): void {
  runProcess(role, start).catch((error: unknown) => {
    console.error(`${role} failed to start:`, error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
