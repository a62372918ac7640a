/**
 * Two worker processes, 20 small jobs and one longer job; the worker holding the long job is SIGKILLed while it
 * optimizes. The other worker picks the job up after its lock expires and every job completes once, with no
 * duplicate or half-written artifact. (scripts/soakJobs.ts runs the same check with 1,000 jobs.)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { soak } from '../../scripts/soakJobs.js';
import { REDIS_URL, requireRedis } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

describe('a worker SIGKILLed mid-job', () => {
  it('loses no job: another worker completes it', { timeout: 120_000 }, async () => {
    const lines: string[] = [];
    const report = await soak({
      jobs: 20,
      longSteps: 8000,
      concurrency: 1,
      lockMs: 1500,
      redisUrl: REDIS_URL,
      timeoutMs: 90_000,
      log: (line) => lines.push(line),
    });
    const context = `${JSON.stringify(report)}\n${lines.join('\n')}`;
    assert.notEqual(report.killedPid, null, context);
    assert.equal(report.submitted, 21, context);
    assert.equal(report.completed, 21, context);
    assert.equal(report.lost, 0, context);
    assert.equal(report.duplicateArtifactNames, 0, context);
    assert.equal(report.badArtifacts, 0, context);
    assert.equal(report.leftoverAttempts, 0, context);
    assert.equal(report.killedJob?.status, 'completed', context);
    assert.ok((report.killedJob?.attempts ?? 0) >= 2, `the killed job reports ${report.killedJob?.attempts} attempts\n${context}`);
  });
});
