import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.ts';
import { errorMessage } from '../errors/error-message.ts';
import type { Logger } from '../logger.ts';
import type { AuthService, CreatedKey } from '../services/auth.service.ts';

/**
 * Start-up keys of an API process. API_KEY set: that value is the deployment's admin key (created, or
 * updated when it changed). Unset: the keys already in PostgreSQL, and on a first start without any, a
 * new admin key. Returns that new key, to be announced once the port is known.
 */
export async function prepareApiKeys(auth: AuthService, config: Pick<Config, 'apiKey'>, logger: Logger): Promise<CreatedKey | undefined> {
  if (config.apiKey !== undefined) {
    const key = await auth.ensureEnvironmentKey(config.apiKey);
    logger.info('API_KEY is the admin key', { keyId: key.id });
    return undefined;
  }
  return auth.bootstrapAdminKey();
}

/**
 * Like Jupyter's token: the new admin key is written to API_KEY_FILE (mode 600) and a sign-in URL is
 * logged. The key travels in the URL's fragment, which browsers never send, so it reaches no server log.
 */
export async function announceFirstKey(created: CreatedKey, config: Pick<Config, 'apiKeyFile' | 'host'>, port: number, logger: Logger): Promise<void> {
  const host = ['0.0.0.0', '::', ''].includes(config.host) ? 'localhost' : config.host.includes(':') ? `[${config.host}]` : config.host;
  const signInUrl = `http://${host}:${port}/#/login?key=${created.key}`;
  try {
    await fs.mkdir(path.dirname(config.apiKeyFile), { recursive: true, mode: 0o700 });
    await fs.writeFile(config.apiKeyFile, `${created.key}\n`, { mode: 0o600 });
    await fs.chmod(config.apiKeyFile, 0o600); // writeFile's mode applies only to a file it creates
  } catch (error) {
    logger.warn('could not write the new admin key to API_KEY_FILE; it is in the sign-in URL below', { file: config.apiKeyFile, error: errorMessage(error) });
  }
  logger.info(`no API key existed: created an admin key, saved in ${config.apiKeyFile}; sign in at ${signInUrl}`, { keyId: created.record.id, file: config.apiKeyFile, signInUrl });
}
