import { encodeNpy } from '../models/io/index.js';

/** The environment both soaks give the API and the worker processes they start: their own prefix, queue and data dir. */
export function soakEnv(o: {
  redisUrl: string;
  tag: string;
  dataDir: string;
  key: string;
  logLevel: string;
  lockMs: number;
  concurrency: number;
}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    REDIS_URL: o.redisUrl,
    IMMUNIZE_REDIS_PREFIX: `immunize-soak-${o.tag}`,
    IMMUNIZE_QUEUE: `soak-${o.tag}`,
    IMMUNIZE_DATA_DIR: o.dataDir,
    IMMUNIZE_API_KEYS: `soak:${o.key}`,
    IMMUNIZE_LOG_LEVEL: o.logLevel,
    IMMUNIZE_LOCK_MS: String(o.lockMs),
    IMMUNIZE_WORKER_CONCURRENCY: String(o.concurrency),
    IMMUNIZE_RATE_LIMIT: '100000000',
    IMMUNIZE_RETENTION_DAYS: '0',
    IMMUNIZE_PROGRESS_MS: '100',
    PORT: '0',
    HOST: '127.0.0.1',
  };
  for (const k of ['OPENBLAS_CORETYPE', 'IMMUNIZE_OPENBLAS_CORETYPE_AUTO', 'HOME']) if (process.env[k]) env[k] = process.env[k]!;
  return env;
}

/** A seeded rows×cols float64 .npy of uniform values in [−0.5, 0.5): the soaks' datasets. */
export function matrix(rows: number, cols: number, seed: number): Buffer {
  let s = seed >>> 0 || 1;
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return encodeNpy({ rows, cols, data });
}
