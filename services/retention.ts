/**
 * Retention: jobs that finished more than IMMUNIZE_RETENTION_DAYS ago lose their record and their artifacts.
 * Any number of processes may run the sweep; a short Redis lock lets one of them act at a time.
 *
 * Uploads that will never finish (the API stopped or crashed while receiving them) lose their temporary file: the API
 * sweeps them when it starts and then every hour (FsStore.sweepUploads says which).
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { JobService } from './jobs.js';
import type { Logger } from './logger.js';
import type { Records } from './records.js';
import type { FsStore } from './storage/fsStore.js';

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export async function sweepOnce(redis: Redis, records: Records, jobs: JobService, retentionDays: number, now = Date.now()): Promise<number> {
  if (retentionDays <= 0) return 0;
  const lockKey = `${records.prefix}:lock:retention`;
  const token = randomBytes(8).toString('hex');
  if ((await redis.set(lockKey, token, 'PX', 60_000, 'NX')) !== 'OK') return 0;
  let purged = 0;
  try {
    const before = now - retentionDays * 86_400_000;
    for (;;) {
      const ids = await records.finishedBefore(before, 100);
      if (ids.length === 0) break;
      for (const id of ids) {
        await jobs.purge(id);
        purged++;
      }
    }
  } finally {
    await redis.eval(RELEASE, 1, lockKey, token);
  }
  return purged;
}

/** Runs the sweep now and then every `everyMs`; returns the function that stops it. */
export function startRetention(redis: Redis, records: Records, jobs: JobService, retentionDays: number, logger: Logger, everyMs = 3_600_000): () => void {
  if (retentionDays <= 0) return () => undefined;
  const run = () =>
    sweepOnce(redis, records, jobs, retentionDays).then(
      (n) => n > 0 && logger.info({ purged: n, retentionDays }, 'retention sweep'),
      (err: unknown) => logger.warn({ err: String(err) }, 'retention sweep failed'),
    );
  const first = setTimeout(run, 5_000);
  const timer = setInterval(run, everyMs);
  first.unref();
  timer.unref();
  return () => {
    clearTimeout(first);
    clearInterval(timer);
  };
}

/**
 * Removes abandoned uploads now (awaited: the API starts with none left behind by its last run), then every `everyMs`;
 * returns the function that stops it. A failed sweep is logged, never thrown.
 */
export async function startUploadSweep(store: FsStore, logger: Logger, everyMs = 3_600_000): Promise<() => void> {
  const run = () =>
    store.sweepUploads().then(
      (n) => n > 0 && logger.info({ removed: n }, 'removed the temporary files of unfinished uploads'),
      (err: unknown) => logger.warn({ err: String(err) }, 'upload sweep failed'),
    );
  await run();
  const timer = setInterval(run, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
