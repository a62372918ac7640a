/** The queue's events are read while some listener follows a job, and a while after, not for nobody. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { JobQueue, type QueueEventKind } from '../../services/queue.js';
import { deleteByPrefix } from '../../services/redis.js';
import { eventually, REDIS_URL, requireRedis } from '../helpers/service.js';

await requireRedis();

const prefix = `immunize-test-${randomBytes(5).toString('hex')}`;
const LINGER_MS = 300;
let redis: Redis;
let queue: JobQueue;

before(async () => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  await redis.ping();
  queue = new JobQueue(
    { redisUrl: REDIS_URL, prefix: `${prefix}:q`, queueName: 'events', attempts: 1, keepFinishedSeconds: 60, readerLingerMs: LINGER_MS },
    redis,
  );
});

after(async () => {
  await queue.close();
  await deleteByPrefix(redis, prefix);
  redis.disconnect();
});

/** Writes progress events for the job until `listener` has seen one. */
async function progressSeen(jobId: string, seen: QueueEventKind[]): Promise<void> {
  const job = (await queue.queue.getJob(jobId))!;
  await eventually(
    'a progress event',
    async () => {
      await job.updateProgress(seen.length + 1);
      return seen.includes('progress') ? true : undefined;
    },
    10_000,
    100,
  );
}

test('the reader starts with the first listener, relays its job, and stops once the last has been gone a while', async () => {
  await queue.add('immunize', 'job-a', { tenant: 't' });
  await queue.add('immunize', 'job-b', { tenant: 't' });
  assert.equal(queue.relaying, false, 'nobody follows a job: nothing is read');

  const a: QueueEventKind[] = [];
  const b: QueueEventKind[] = [];
  const offA = queue.onJob('job-a', (k) => a.push(k));
  assert.equal(queue.relaying, true);
  await progressSeen('job-a', a);
  assert.equal(b.length, 0, "the other job's listener hears nothing of it");

  offA();
  offA(); // a second call changes nothing
  assert.equal(queue.relaying, true, 'it lingers after the last listener leaves');
  await sleep(LINGER_MS / 3);
  const offB = queue.onJob('job-b', (k) => b.push(k));
  await sleep(LINGER_MS);
  assert.equal(queue.relaying, true, 'a listener that came within the linger keeps it');
  await progressSeen('job-b', b);
  const aSeen = a.length;

  offB();
  await eventually('the reader to stop', async () => (queue.relaying ? undefined : true), 5000, 20);
  await (await queue.queue.getJob('job-a'))!.updateProgress(99);
  await sleep(200);
  assert.equal(a.length, aSeen, 'a listener that left hears nothing more');

  const again: QueueEventKind[] = [];
  const off = queue.onJob('job-a', (k) => again.push(k));
  assert.equal(queue.relaying, true, 'a new listener starts it again');
  await progressSeen('job-a', again);
  off();
});
