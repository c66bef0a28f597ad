import { ConfigError, loadConfig, type Config } from '../config.ts';
import { errorMessage } from '../errors/error-message.ts';
import { createRuntime, type Runtime } from './runtime.ts';

/** A signal this soon after the first is the same stop request delivered twice, not a second one. */
const REPEATED_SIGNAL_GRACE_MS = 1_000;

/**
 * Runs one entry point: reads config, builds the runtime, starts the role and stops it once on
 * SIGTERM/SIGINT (a second signal a second or more later, or the timeout, exits at once).
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
    console.error(`${role} cannot start: ${errorMessage(error)}`);
    process.exit(1);
  }
  const started = await start(runtime);
  let stoppingSince: number | undefined;
  const shutdown = (signal: string) => {
    if (stoppingSince !== undefined) {
      // One stop request often arrives twice: Ctrl-C signals the whole process group and npm relays
      // the signal to its child as well. Only a signal sent later is someone insisting.
      if (performance.now() - stoppingSince < REPEATED_SIGNAL_GRACE_MS) return;
      runtime.logger.warn('second signal: exiting without finishing the shutdown', { signal });
      process.exit(1);
    }
    stoppingSince = performance.now();
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
  // would kill the process in the middle of its graceful shutdown.
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

export function main(role: string, start: (runtime: Runtime) => Promise<{ stop(): Promise<void> }>): void {
  runProcess(role, start).catch((error: unknown) => {
    console.error(`${role} failed to start:`, errorMessage(error));
    process.exit(1);
  });
}
