/**
 * Queue entries from the learned template are what BullMQ itself builds for the same job, byte for byte; a layout
 * the template does not understand, or one its check disagrees with, leaves BullMQ building every entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { JobQueue } from '../../services/queue.js';
import { REDIS_URL, requireRedis } from '../helpers/service.js';
import { EntryTemplate, packStr, packTime, type BuildEntry } from '../../services/queueEntry.js';

await requireRedis();

/** A queue client; entries are built, nothing is sent. */
function offlineQueue(): { queue: JobQueue; close: () => Promise<void> } {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const queue = new JobQueue({ redisUrl: REDIS_URL, prefix: 'pfx:q', queueName: 'entries', attempts: 3, keepFinishedSeconds: 3600 }, redis);
  return { queue, close: () => queue.close().finally(() => redis.disconnect()) };
}

const sameArgs = (a: Array<string | Buffer>, b: Array<string | Buffer>) =>
  a.length === b.length && a.every((v, i) => (typeof v === 'string' ? v === b[i] : Buffer.isBuffer(b[i]) && v.equals(b[i] as Buffer)));

test('the template this BullMQ version yields gives BullMQ’s own entry for ids, times and data of every kind', async () => {
  const { queue, close } = offlineQueue();
  try {
    const template = EntryTemplate.learn((id, data) => queue.bullEntry('immunize', id, data as { tenant: string }));
    assert.ok(template, 'a template is learned from the installed BullMQ');
    // Ids across the str length classes (fixstr up to 31 bytes, str8 up to 255, str16 past it); tenants with quotes,
    // backslashes and non-ASCII text.
    const ids = ['j', 'job_01JABCDEFGHJKMNPQRSTVWXYZ0', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(255), 'w'.repeat(256)];
    const tenants = ['acme', 'a "quoted" \\ tenant', 'mañana-ü-日本'];
    for (const [i, id] of ids.entries()) {
      const data = { tenant: tenants[i % tenants.length] };
      const bull = queue.bullEntry('immunize', id, data);
      const made = template.make(id, bull.timestamp, data);
      assert.deepEqual(made.keys, bull.keys);
      assert.ok(sameArgs(made.args, bull.args), `entry of ${id.slice(0, 12)}… (${id.length} chars)`);
      // Another time gives other bytes: the time is really spliced in, not carried over.
      assert.ok(!sameArgs(template.make(id, bull.timestamp + 1, data).args, bull.args));
    }
    // JobQueue.entry uses it: the same keys and arguments as BullMQ's for a job made in the same millisecond.
    let compared = false;
    for (let tries = 0; tries < 50 && !compared; tries++) {
      const before = Date.now();
      const e = queue.entry('immunize', 'job_same_ms', { tenant: 'acme' });
      const bull = queue.bullEntry('immunize', 'job_same_ms', { tenant: 'acme' });
      if (bull.timestamp !== before) continue;
      assert.deepEqual([...e.keys], bull.keys);
      assert.ok(sameArgs(e.args, bull.args));
      compared = true;
    }
    assert.ok(compared, 'an entry and BullMQ’s were made in one millisecond');
  } finally {
    await close();
  }
});

test('a layout without the marks, or one the check disagrees with, yields no template', () => {
  const keys = ['q:wait'];
  const packed = (id: string, time: number) => Buffer.concat([Buffer.from([0x93]), packStr('q:'), packStr(id), packTime(time)]);
  let clock = 1_800_000_000_000;
  const good: BuildEntry = (id, data) => {
    const timestamp = clock++;
    return { keys, args: [packed(id, timestamp), JSON.stringify(data)], timestamp };
  };
  assert.ok(EntryTemplate.learn(good), 'a layout as BullMQ writes it is learned');
  // The time written as a uint64 rather than a float 64: not found, no template.
  const uintTime: BuildEntry = (id, data) => {
    const timestamp = clock++;
    const time = Buffer.alloc(9);
    time[0] = 0xcf;
    time.writeBigUInt64BE(BigInt(timestamp), 1);
    return { keys, args: [Buffer.concat([Buffer.from([0x93]), packStr('q:'), packStr(id), time]), JSON.stringify(data)], timestamp };
  };
  assert.equal(EntryTemplate.learn(uintTime), null);
  // Data not written as its JSON: no template.
  const otherData: BuildEntry = (id, data) => {
    const timestamp = clock++;
    return { keys, args: [packed(id, timestamp), JSON.stringify({ wrapped: data })], timestamp };
  };
  assert.equal(EntryTemplate.learn(otherData), null);
  // Something else that changes from job to job (a counter): the check disagrees, no template.
  let n = 0;
  const counter: BuildEntry = (id, data) => {
    const timestamp = clock++;
    return { keys, args: [packed(id, timestamp), JSON.stringify(data), Buffer.from([n++])], timestamp };
  };
  assert.equal(EntryTemplate.learn(counter), null);
});
