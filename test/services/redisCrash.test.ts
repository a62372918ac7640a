/**
 * A Redis crash under load (scripts/soakRedisCrash.ts, small): a Redis of the test's own, with appendonly yes and
 * appendfsync always, is SIGKILLed while clients submit jobs and workers run them, then started again from its AOF.
 * No acknowledged job is lost, none runs twice, and every artifact matches its recorded sha256.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { describeRedisCrash, soakRedisCrash, type RedisCrashOptions } from '../../scripts/soakRedisCrash.js';

const base: RedisCrashOptions = {
  jobs: 40,
  appendfsync: 'always',
  kills: 1,
  downMs: 1000,
  clients: 4,
  retry: false,
  workers: 2,
  concurrency: 1,
  lockMs: 2000,
  timeoutMs: 120_000,
  log: () => undefined,
};

describe('Redis SIGKILLed mid-run', { timeout: 180_000 }, () => {
  it('loses no acknowledged job, runs none twice, and keeps every artifact whole', async () => {
    const report = await soakRedisCrash(base);
    const { lines, ok } = describeRedisCrash(report);
    assert.ok(ok, lines.join('\n'));
    assert.equal(report.kills.length, 1);
    assert.ok(report.acknowledged >= base.jobs / 2, lines.join('\n'));
    assert.equal(report.completed, report.acknowledged);
  });

  it(
    'loses nothing either for a client that sends a refused submit again with the same Idempotency-Key',
    {
      todo:
        'JobService.submit: a submit cut off by the crash leaves its key claimed with no record, or a record never queued, ' +
        'and the retry is answered 202 for that job',
    },
    async () => {
      const report = await soakRedisCrash({ ...base, retry: true, clients: 8 });
      const { lines, ok } = describeRedisCrash(report);
      assert.ok(ok, lines.join('\n'));
    },
  );
});
