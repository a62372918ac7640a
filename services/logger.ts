/** pino, pretty-printed only when a person is watching (stdout is a TTY); JSON lines otherwise. */
import { pino, type Logger } from 'pino';

export function createLogger(level: string, pretty: boolean = process.stdout.isTTY === true): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
  });
}

export type { Logger };
