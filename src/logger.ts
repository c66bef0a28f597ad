import winston from 'winston';
import type { Config } from './config.ts';

export type Logger = winston.Logger;

export function createLogger(config: Pick<Config, 'logLevel' | 'logFormat'>, role: string, options: { silent?: boolean } = {}): Logger {
  const format =
    config.logFormat === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json())
      : winston.format.combine(
          winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
          winston.format.errors({ stack: true }),
          winston.format.printf(({ timestamp, level, message, role: r, stack, ...meta }) => {
            const extra = Object.keys(meta).length > 0 ? ` ${JSON.stringify(meta)}` : '';
            return `${String(timestamp)} ${level.padEnd(5)} [${String(r)}] ${String(message)}${extra}${stack ? `\n${String(stack)}` : ''}`;
          }),
        );
  return winston.createLogger({ level: config.logLevel, silent: options.silent, defaultMeta: { role }, format, transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })] });
}
