/** Request loggers: the pino child with the request id is made only when a request writes a line at an enabled level. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { requestLogger } from '../../services/api/requestLogger.js';

function capture(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level }, stream);
  let children = 0;
  const child = logger.child;
  logger.child = function (this: typeof logger, ...args: Parameters<typeof child>) {
    children++;
    return child.apply(this, args);
  } as typeof logger.child;
  return { logger: logger as unknown as FastifyBaseLogger, lines, children: () => children };
}

const flushed = () => new Promise((r) => setImmediate(r));

describe('request loggers', () => {
  it('make no child for lines below the level, and one child for the lines at or above it', async () => {
    const c = capture('warn');
    const log = requestLogger(c.logger, { reqId: 'r-1' }, {});
    log.info('incoming request');
    log.debug({ a: 1 }, 'detail');
    assert.equal(c.children(), 0);
    assert.equal(log.level, 'warn');
    log.warn({ err: 'x' }, 'redis unavailable');
    log.error('request failed');
    await flushed();
    assert.equal(c.children(), 1);
    assert.deepEqual(
      c.lines.map((l) => [l.msg, l.reqId, l.err]),
      [
        ['redis unavailable', 'r-1', 'x'],
        ['request failed', 'r-1', undefined],
      ],
    );
  });

  it('write every line once the level allows it, with the bindings of the child', async () => {
    const c = capture('info');
    const log = requestLogger(c.logger, { reqId: 'r-2' }, {});
    log.info('incoming request');
    log.child({ jobId: 'j' }).info('nested');
    log.level = 'error';
    log.info('dropped');
    await flushed();
    assert.deepEqual(
      c.lines.map((l) => [l.msg, l.reqId, l.jobId]),
      [
        ['incoming request', 'r-2', undefined],
        ['nested', 'r-2', 'j'],
      ],
    );
    assert.equal(log.level, 'error');
  });

  it('give a request with its own level a child at once', () => {
    const c = capture('warn');
    const log = requestLogger(c.logger, { reqId: 'r-3' }, { level: 'debug' });
    assert.equal(c.children(), 1);
    assert.equal(log.level, 'debug');
  });
});
