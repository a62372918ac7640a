/**
 * The API's reads under load: record reads and creations issued while others wait for Redis leave together at the
 * end of the turn (one script call for the hash reads, in one socket write with the other commands) and still
 * answer each on its own; and the streams that follow one job share its feed's reads.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { newId } from '../../services/ids.js';
import { JobService, type FeedEvent } from '../../services/jobs.js';
import type { JobQueue } from '../../services/queue.js';
import { Records } from '../../services/records.js';
import { createCommandClient, deleteByPrefix, waitReady } from '../../services/redis.js';
import { eventually, REDIS_URL, requireRedis } from '../helpers/service.js';

await requireRedis();

const prefix = `immunize-test-${randomBytes(5).toString('hex')}`;
let redis: Redis;
let records: Records;
/** What left for Redis: one entry per socket write, the commands it carried (scripts by their purpose). */
let sent: string[][];

before(async () => {
  redis = createCommandClient(REDIS_URL);
  await waitReady(redis, 5000);
  records = new Records(redis, prefix);
  // A script is sent by its sha1: its purpose is the command name it was defined under, before the digest.
  const purpose = (sha: string) => {
    for (const [name, script] of Object.entries((redis as unknown as { scriptsSet: Record<string, { sha: string }> }).scriptsSet)) {
      if (script.sha === sha) return name.split('_')[0];
    }
    return 'evalsha';
  };
  let pending: string[] = [];
  const sendCommand = redis.sendCommand.bind(redis);
  redis.sendCommand = ((command: { name: string; args: unknown[] }, stream?: unknown) => {
    const name = command.name === 'evalsha' ? purpose(String(command.args[0])) : command.name;
    pending.push(name);
    return sendCommand(command as never, stream as never);
  }) as typeof redis.sendCommand;
  // Each call of the socket's write or writev is one write to the kernel.
  const socket = redis.stream as unknown as Record<'_write' | '_writev', (...args: unknown[]) => unknown>;
  for (const method of ['_write', '_writev'] as const) {
    const original = socket[method].bind(socket);
    socket[method] = (...args: unknown[]) => {
      sent.push(pending);
      pending = [];
      return original(...args);
    };
  }
});

after(async () => {
  await deleteByPrefix(redis, prefix);
  redis.disconnect();
});

const job = (tenant = 'alice') => ({ id: newId('job'), tenant, name: 'immunize', spec: { method: 'closed-form' }, createdAt: Date.now() });

describe('commands in one turn', () => {
  it('leave at once when none is waiting, and together (the reads as one script call) when some are', async () => {
    const [a, b, c] = [job(), job(), job()];
    sent = [];
    await Promise.all([records.createJob(a), records.createJob(b), records.createJob(c)]);
    assert.deepEqual(
      sent,
      [['immunizeSubmitJob'], ['immunizeSubmitJob', 'immunizeSubmitJob']],
      'the first creation alone, the two issued while it was waiting in one write',
    );

    const wrongId = 'j'.padEnd(26, 'x');
    await redis.set(`${prefix}:job:${wrongId}`, 'not a hash');
    sent = [];
    const d = job();
    const [first, ra, missing, wrong, rb] = await Promise.allSettled([
      records.getJob(c.id),
      records.getJob(a.id),
      records.getJob(newId('job')),
      records.getJob(wrongId),
      records.getJob(b.id),
      records.createJob(d),
    ]);
    assert.deepEqual(
      sent,
      [['immunizeReadHashes'], ['immunizeSubmitJob', 'immunizeReadHashes']],
      'the first read alone; then the creation and one script call for the four reads',
    );
    assert.equal(first.status === 'fulfilled' && first.value?.id, c.id);
    assert.equal(ra.status === 'fulfilled' && ra.value?.id, a.id);
    assert.equal(ra.status === 'fulfilled' && ra.value?.status, 'queued');
    assert.deepEqual(ra.status === 'fulfilled' && ra.value?.spec, a.spec);
    assert.equal(missing.status === 'fulfilled' && missing.value, null);
    assert.equal(wrong.status, 'rejected', 'a key of the wrong type fails its own read');
    assert.match(String((wrong as PromiseRejectedResult).reason), /WRONGTYPE/);
    assert.equal(rb.status === 'fulfilled' && rb.value?.id, b.id);
    assert.equal((await records.getJob(d.id))?.id, d.id);
    assert.deepEqual((await records.listJobIds('alice', 10)).ids.sort(), [a.id, b.id, c.id, d.id].sort());

    // A read on a quiet service is sent at once, alone.
    sent = [];
    assert.equal((await records.getJob(a.id))?.tenant, 'alice');
    assert.deepEqual(sent, [['immunizeReadHashes']]);
  });
});

describe('a record read back', () => {
  it('holds every character its fields were written with', async () => {
    const odd = 'κ→ "quoted" back\\slash /slash/ tab\t newline\n nul\u0000 bell\u0007 emoji 🧪 ﻿bom';
    const r = { ...job('tenant-κ'), name: odd, spec: { method: 'closed-form', note: odd, nested: [odd, { odd }] } };
    await records.createJob(r);
    const [alone, ...together] = await Promise.all([records.getJob(r.id), records.getJob(r.id), records.getJob(r.id)]);
    for (const got of [alone, ...together]) {
      assert.equal(got?.tenant, 'tenant-κ');
      assert.equal(got?.name, odd);
      assert.deepEqual(got?.spec, r.spec);
    }
  });
});

describe('a job followed by many streams', () => {
  it('is read once per change for all of them, and each gets only states at least as new as its first', async () => {
    const queueEvents = new EventEmitter();
    const queue = {
      onJob: (id: string, listener: () => void) => {
        queueEvents.on(id, listener);
        return () => queueEvents.off(id, listener);
      },
    } as unknown as JobQueue;
    const jobs = new JobService(records, queue, undefined as never, undefined as never);
    const r = job();
    await records.createJob(r);
    await records.startAttempt(r.id, 'test');

    let reads = 0;
    const getJob = records.getJob.bind(records);
    records.getJob = (id: string) => {
      reads++;
      return getJob(id);
    };
    try {
      const seen: FeedEvent[][] = [];
      const stops = Array.from({ length: 50 }, (_, i) => {
        seen.push([]);
        return jobs.follow(r.id, (e) => seen[i].push(e));
      });
      await eventually('every listener to get the state', async () => (seen.every((s) => s.length >= 1) ? true : undefined), 5000, 10);
      assert.ok(reads <= 2, `50 listeners joining at once cost ${reads} reads`);

      await records.progress(r.id, { fraction: 0.5, phase: 'optimise', step: 3 });
      const before = reads;
      queueEvents.emit(r.id, 'progress');
      queueEvents.emit(r.id, 'progress');
      await eventually(
        'the progress to reach every listener',
        async () => (seen.every((s) => s.some((e) => e.kind === 'state' && e.data.includes('"step":3'))) ? true : undefined),
        5000,
        10,
      );
      assert.ok(reads - before <= 2, `one change cost ${reads - before} reads for 50 listeners`);
      const state = seen[0].at(-1) as Extract<FeedEvent, { kind: 'state' }>;
      assert.equal(state.status, 'running');

      // The job ends: every listener is told, and the feed stops (a later follower starts a new one).
      await records.complete(r.id, { verdict: 'immunized' }, []);
      queueEvents.emit(r.id, 'completed');
      await eventually(
        'completed everywhere',
        async () => (seen.every((s) => s.some((e) => e.kind === 'state' && e.status === 'completed')) ? true : undefined),
        5000,
        10,
      );
      assert.equal(queueEvents.listenerCount(r.id), 0, 'the feed let go of the queue events');
      for (const stop of stops) stop();
      const late: FeedEvent[] = [];
      const stop = jobs.follow(r.id, (e) => late.push(e));
      await eventually('a late follower to get the final state', async () => (late.length > 0 ? true : undefined), 5000, 10);
      assert.equal(late[0].kind === 'state' && late[0].status, 'completed');
      stop();
    } finally {
      records.getJob = getJob;
    }
  });
});
