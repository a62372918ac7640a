#!/usr/bin/env node
/**
 * Boots the service in one of its roles, from the same code and the same configuration:
 *   --role all     the API and one queue worker in this process (npm run serve)
 *   --role api     the API only
 *   --role worker  a queue worker only (npm run worker); several may run side by side
 */
import { createServer, type Server } from 'node:http';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import { startQueueWorker, type QueueWorkerHandle } from '../workers/queueWorker.js';
import app, { fastifyOptions } from './api/app.js';
import { bearerToken } from './auth.js';
import { ConfigError, loadConfig, type Role } from './config.js';
import { bullPrefix, createServices, type Services } from './context.js';
import { errorBody } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import { blockingOptions } from './redis.js';
import { startRetention, startUploadSweep } from './retention.js';

export interface RunningServer {
  role: Role;
  services: Services;
  api: FastifyInstance | null;
  worker: QueueWorkerHandle | null;
  /** The API's address, e.g. http://127.0.0.1:8080 (null without an API). */
  url: string | null;
  close(): Promise<void>;
}

/** Starts the queue worker for these services, with the settings from their config. */
export function startWorker(services: Services, logger: Logger): Promise<QueueWorkerHandle> {
  const c = services.config;
  return startQueueWorker({
    queueName: c.queueName,
    prefix: bullPrefix(c),
    connection: blockingOptions(c.redisUrl),
    concurrency: c.workerConcurrency,
    lockDurationMs: c.lockDurationMs,
    stalledIntervalMs: c.lockDurationMs,
    maxStalledCount: c.maxStalledCount,
    progressIntervalMs: c.progressIntervalMs,
    cancelPollMs: 1000,
    cancelGraceMs: 15_000,
    store: services.store,
    records: services.records,
    datasets: services.datasets,
    logger: logger.child({ component: 'worker' }),
    metrics: services.metrics.worker,
  });
}

/** Builds a Fastify instance with the app registered (not listening yet). */
export async function buildApi(services: Services, logger?: Logger): Promise<FastifyInstance> {
  const fastify = Fastify(fastifyOptions(logger));
  await fastify.register(app, { services });
  return fastify;
}

const METRICS_NEED_ADMIN = 'IMMUNIZE_ADMIN_KEY is not set: /metrics answers 401 or 403 to every caller until it is';

/** A worker's /metrics (admin key only, as on the API) and /healthz (open). */
function metricsServer(services: Services, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers }).end(JSON.stringify(body));
    if (path === '/metrics') {
      const token = bearerToken(req.headers.authorization);
      const principal = token ? services.keys.verify(token) : null;
      if (!principal) {
        const message = token ? 'invalid API key' : 'missing API key: send Authorization: Bearer <admin key>';
        json(401, errorBody('unauthorized', message), { 'www-authenticate': 'Bearer' });
      } else if (!principal.admin) {
        json(403, errorBody('forbidden', '/metrics is for the admin key (IMMUNIZE_ADMIN_KEY) only'));
      } else {
        services.metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': services.metrics.registry.contentType }).end(text),
          () => res.writeHead(500).end(),
        );
      }
    } else if (path === '/healthz') json(200, { status: 'ok' });
    else res.writeHead(404).end();
  });
  return new Promise((ok) => server.listen(port, host, () => ok(server)));
}

export async function startServer(role: Role, env: Record<string, string | undefined> = process.env, logger?: Logger): Promise<RunningServer> {
  const config = loadConfig(env, role);
  const log = logger ?? createLogger(config.logLevel);
  const services = await createServices(config, log);
  let api: FastifyInstance | null = null;
  let worker: QueueWorkerHandle | null = null;
  let metricsHttp: Server | null = null;
  let stopRetention = () => undefined as void;
  let stopUploadSweep = () => undefined as void;
  let url: string | null = null;
  try {
    if (role !== 'worker') {
      // Uploads cut off by the last run's end (a crash, a kill) lose their partial files before new ones come in.
      stopUploadSweep = await startUploadSweep(services.store, log);
      api = await buildApi(services, log);
      await api.listen({ port: config.port, host: config.host });
      const addr = api.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : config.port;
      url = `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${port}`;
      log.info({ url, docs: `${url}/docs` }, 'immunize API listening');
      if (!config.adminKey) log.warn(METRICS_NEED_ADMIN);
    }
    if (role !== 'api') {
      worker = await startWorker(services, log);
      stopRetention = startRetention(services.redis, services.records, services.jobs, config.retentionDays, log);
      if (role === 'worker' && config.workerMetricsPort > 0) {
        metricsHttp = await metricsServer(services, config.workerMetricsPort, config.host);
        if (!config.adminKey) log.warn({ port: config.workerMetricsPort }, METRICS_NEED_ADMIN);
      }
    }
  } catch (err) {
    stopUploadSweep();
    await api?.close().catch(() => undefined);
    await worker?.close(true).catch(() => undefined);
    await services.close();
    throw err;
  }
  let closing: Promise<void> | null = null;
  return {
    role,
    services,
    api,
    worker,
    url,
    close() {
      closing ??= (async () => {
        stopRetention();
        stopUploadSweep();
        await api?.close();
        await worker?.close();
        await new Promise<void>((ok) => (metricsHttp ? metricsHttp.close(() => ok()) : ok()));
        await services.close();
      })();
      return closing;
    },
  };
}

const SHUTDOWN_GRACE_MS = 25_000;

function roleFromArgs(argv: string[]): Role {
  const i = argv.indexOf('--role');
  const value = i >= 0 ? argv[i + 1] : (argv.find((a) => a.startsWith('--role='))?.slice(7) ?? 'all');
  if (value !== 'api' && value !== 'worker' && value !== 'all') {
    process.stderr.write(`immunize server: --role must be api, worker or all (got ${JSON.stringify(value)})\n`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  const role = roleFromArgs(process.argv.slice(2));
  let server: RunningServer;
  try {
    server = await startServer(role);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`immunize server: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`immunize server: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  }
  let signals = 0;
  const stop = (signal: string) => {
    signals++;
    if (signals > 1) process.exit(130);
    server.services.logger.info({ signal }, 'shutting down (a second signal forces it)');
    // A job still running then is abandoned: its lock expires and another worker picks it up.
    setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS).unref();
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) void main();
