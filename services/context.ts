/**
 * Builds the services one process needs (records, store, queue, datasets, jobs, keys, metrics) from the config.
 * The API reaches them through a Fastify decoration; a worker is handed the parts it needs.
 */
import type { Redis } from 'ioredis';
import { assertRegistry } from '../workers/registry.js';
import { ApiKeys } from './auth.js';
import type { Config } from './config.js';
import { DatasetService } from './datasets.js';
import { JobService } from './jobs.js';
import type { Logger } from './logger.js';
import { createMetrics, type ServiceMetrics } from './metrics.js';
import { JobQueue } from './queue.js';
import { Records } from './records.js';
import { createCommandClient, createSubscriber } from './redis.js';
import { watchRedisSettings } from './redisSettings.js';
import { FsStore } from './storage/fsStore.js';

export interface Services {
  config: Config;
  logger: Logger;
  redis: Redis;
  records: Records;
  store: FsStore;
  queue: JobQueue;
  datasets: DatasetService;
  jobs: JobService;
  keys: ApiKeys;
  metrics: ServiceMetrics;
  /** Redis answers a PING within `ms`, and the data directory can be written. */
  ready(ms?: number): Promise<{ redis: boolean; storage: boolean }>;
  close(): Promise<void>;
}

export interface ServiceOptions {
  metrics?: ServiceMetrics;
}

/** BullMQ's keys live under P:q so that everything the service writes shares the prefix P. */
export function bullPrefix(config: Config): string {
  return `${config.redisPrefix}:q`;
}

export async function createServices(config: Config, logger: Logger, opts: ServiceOptions = {}): Promise<Services> {
  assertRegistry();
  const store = new FsStore(config.dataDir);
  await store.init();
  const redis = createCommandClient(config.redisUrl, logger);
  // Warns (API and worker alike) when Redis may evict keys, or when that cannot be checked.
  const stopSettingsWatch = watchRedisSettings(redis, logger);
  const subscribers: Redis[] = [];
  const records = new Records(redis, config.redisPrefix, () => {
    const sub = createSubscriber(config.redisUrl, logger);
    subscribers.push(sub);
    return sub;
  });
  const queue = new JobQueue(
    {
      redisUrl: config.redisUrl,
      prefix: bullPrefix(config),
      queueName: config.queueName,
      attempts: config.jobAttempts,
      keepFinishedSeconds: 7 * 86_400,
    },
    redis,
    logger,
  );
  const datasets = new DatasetService(records, store, config.maxUploadBytes);
  const jobs = new JobService(records, queue, datasets, store, logger);
  records.purgeHook = (id) => jobs.purge(id);
  const metrics = opts.metrics ?? createMetrics();
  metrics.setQueueCounts(() => queue.counts());
  const keys = new ApiKeys(config.apiKeys, config.adminKey);

  return {
    config,
    logger,
    redis,
    records,
    store,
    queue,
    datasets,
    jobs,
    keys,
    metrics,
    async ready(ms = 1000) {
      const ping =
        redis.status === 'ready'
          ? Promise.race([redis.ping().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]).catch(() => false)
          : Promise.resolve(false);
      const [ok, storage] = await Promise.all([ping, store.writable()]);
      return { redis: ok, storage };
    },
    async close() {
      stopSettingsWatch();
      await queue.close();
      for (const s of subscribers) s.disconnect();
      redis.disconnect();
    },
  };
}
