/**
 * A redis-server of our own (Debian's binary on PATH) on a free port, with its own directory: for the soak that
 * kills Redis and for tests that need a Redis configured differently from the shared one. It can be SIGKILLed and
 * started again on the same port from the same directory (hence the same AOF).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export interface PrivateRedisOptions {
  /** Its working directory: the AOF (appendonlydir/) and the log live there. */
  dir: string;
  /** Extra redis-server options, e.g. ['--appendonly', 'yes', '--appendfsync', 'always']. */
  args?: string[];
  port?: number;
  /** How long a start may take (loading a large AOF included). */
  startTimeoutMs?: number;
}

export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** The running server's pid (null while it is down). */
  readonly pid: number | null;
  /** SIGKILLs the server (no shutdown, no final AOF flush) and waits until it is gone. */
  kill(): Promise<void>;
  /** Starts it again with the same options: same port, same directory, so the same AOF is loaded. */
  restart(): Promise<void>;
  /** A field of INFO (e.g. aof_delayed_fsync), or null. */
  info(field: string): Promise<string | null>;
  /** Stops it for good (SIGTERM, then SIGKILL). */
  stop(): Promise<void>;
}

/** A TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => ok(port));
    });
  });
}

async function ping(url: string): Promise<boolean> {
  // No ready check: it sends INFO, which a server under test may have disabled.
  const client = new Redis(url, { lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, connectTimeout: 500, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    // While the AOF loads, Redis answers -LOADING.
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => child.once('exit', () => ok()));
}

export async function startPrivateRedis(opts: PrivateRedisOptions): Promise<PrivateRedis> {
  const port = opts.port ?? (await freePort());
  const url = `redis://127.0.0.1:${port}`;
  const logfile = join(opts.dir, 'redis.log');
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--dir', opts.dir, '--logfile', logfile, '--save', '', ...(opts.args ?? [])];
  let child: ChildProcess | null = null;

  const launch = async () => {
    const c = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const failed = new Promise<never>((_, reject) => {
      c.once('error', (err) => reject(new Error(`redis-server could not be started (${err.message}); install it (apt-get install redis-server)`)));
      c.once('exit', (code, signal) => {
        void readFile(logfile, 'utf8')
          .catch(() => '')
          .then((log) => reject(new Error(`redis-server exited at start (${code ?? signal}): ${stderr}${log.split('\n').slice(-5).join('\n')}`)));
      });
    });
    failed.catch(() => undefined);
    child = c;
    const until = Date.now() + (opts.startTimeoutMs ?? 30_000);
    try {
      for (;;) {
        const up = await Promise.race([ping(url), failed]);
        if (up) return;
        if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer within ${opts.startTimeoutMs ?? 30_000} ms (see ${logfile})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } catch (err) {
      await halt('SIGKILL');
      throw err;
    }
  };
  const halt = async (signal: NodeJS.Signals) => {
    const c = child;
    child = null;
    if (!c) return;
    c.kill(signal);
    await exited(c);
  };

  await launch();
  return {
    port,
    url,
    get pid() {
      return (child as ChildProcess | null)?.pid ?? null;
    },
    kill: () => halt('SIGKILL'),
    restart: launch,
    async info(field) {
      const client = new Redis(url, { enableReadyCheck: false, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => null });
      client.on('error', () => undefined);
      try {
        const text = await client.info();
        const line = text.split('\r\n').find((l) => l.startsWith(`${field}:`));
        return line ? line.slice(field.length + 1) : null;
      } catch {
        return null;
      } finally {
        client.disconnect();
      }
    },
    async stop() {
      const c = child;
      if (!c) return;
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
      await halt('SIGTERM');
      clearTimeout(timer);
    },
  };
}
