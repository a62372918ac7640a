/**
 * Each request's logger (req.log). Fastify gives every request a pino child with the request id bound; making one
 * costs more than most of a read's answer, and a request that logs nothing at the configured level never uses it.
 * This logger makes the child the first time a line at an enabled level is written (or a child or the level is
 * asked for), and answers with the parent's level until then.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, LevelWithSilent, LogFn } from 'pino';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/** pino loggers answer isLevelEnabled; other loggers are taken to log every level. */
export function enabled(logger: FastifyBaseLogger, level: Level): boolean {
  const check = (logger as { isLevelEnabled?: (l: string) => boolean }).isLevelEnabled;
  return typeof check === 'function' ? check.call(logger, level) : true;
}

class RequestLogger implements FastifyBaseLogger {
  private made: FastifyBaseLogger | null = null;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly childBindings: Bindings,
    private readonly options: ChildLoggerOptions,
  ) {}

  private get real(): FastifyBaseLogger {
    return (this.made ??= this.parent.child(this.childBindings, this.options));
  }

  private writer(level: Level): LogFn {
    return ((...args: Parameters<LogFn>) => {
      const logger = this.made ?? (enabled(this.parent, level) ? this.real : null);
      if (logger) logger[level](...args);
    }) as LogFn;
  }

  get level(): LevelWithSilent | string {
    return this.made?.level ?? this.parent.level;
  }
  set level(level: LevelWithSilent | string) {
    this.real.level = level;
  }

  fatal = this.writer('fatal');
  error = this.writer('error');
  warn = this.writer('warn');
  info = this.writer('info');
  debug = this.writer('debug');
  trace = this.writer('trace');
  silent: LogFn = () => undefined;

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.real.child(bindings, options);
  }
}

/** Fastify's childLoggerFactory: a request logger whose child is made on first use; one with its own level at once. */
export function requestLogger(logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  if (options.level !== undefined) return logger.child(bindings, options);
  return new RequestLogger(logger, bindings, options);
}
