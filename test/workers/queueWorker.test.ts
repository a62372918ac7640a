/** The queue worker's per-attempt helpers: the progress throttle and the cancel watch. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobProgress } from '../../workers/ports.js';
import { CancelWatch, ProgressThrottle } from '../../workers/queueWorker.js';
import { eventually } from '../helpers/service.js';

const at = (fraction: number): JobProgress => ({ fraction, phase: 'optimize' });

describe('progress throttle', () => {
  it('writes at most once per interval and the latest value of a quiet spell at its end', async () => {
    const written: number[] = [];
    const throttle = new ProgressThrottle(
      100,
      async (p) => void written.push(p.fraction),
      () => assert.fail('no write fails'),
    );
    for (let i = 1; i <= 5; i++) throttle.push(at(i / 10));
    assert.deepEqual(written, [0.1], 'the first value goes out at once');
    await eventually('the trailing write', async () => (written.length > 1 ? true : undefined), 5000, 10);
    assert.deepEqual(written, [0.1, 0.5], 'then the latest one, when the interval ends');
    await throttle.stop();
  });

  it('writes nothing after stop, which waits for the write in flight', async () => {
    const written: number[] = [];
    let landed = false;
    const throttle = new ProgressThrottle(
      50,
      async (p) => {
        await sleep(40);
        written.push(p.fraction);
        landed = true;
      },
      () => undefined,
    );
    throttle.push(at(0.1));
    throttle.push(at(0.2));
    await throttle.stop();
    assert.ok(landed, 'stop waited for the write in flight');
    throttle.push(at(0.3));
    await sleep(120);
    assert.deepEqual(written, [0.1]);
  });

  it('reports a failed write and goes on', async () => {
    const errors: unknown[] = [];
    const written: number[] = [];
    let calls = 0;
    const throttle = new ProgressThrottle(
      20,
      async (p) => {
        if (calls++ === 0) throw new Error('redis hiccup');
        written.push(p.fraction);
      },
      (err) => errors.push(err),
    );
    throttle.push(at(0.1));
    await sleep(5);
    throttle.push(at(0.2));
    await sleep(80);
    await throttle.stop();
    assert.equal(errors.length, 1);
    assert.deepEqual(written, [0.2]);
  });
});

describe('cancel watch', () => {
  it("aborts on the queue's signal, on abort() and on a polled cancel request", async () => {
    const queue = new AbortController();
    const a = new CancelWatch(async () => false, 10_000, queue.signal);
    queue.abort();
    assert.ok(a.signal.aborted);
    a.stop();

    const b = new CancelWatch(async () => false, 10_000);
    b.abort();
    assert.ok(b.signal.aborted);
    b.stop();

    let requested = false;
    const c = new CancelWatch(async () => requested, 10);
    await sleep(40);
    assert.ok(!c.signal.aborted);
    requested = true;
    await eventually('the polled cancel', async () => (c.signal.aborted ? true : undefined), 5000, 10);
    c.stop();
  });

  it('stops polling and listening once stopped; a failed poll is ignored', async () => {
    let polls = 0;
    const queue = new AbortController();
    const watch = new CancelWatch(
      async () => {
        polls++;
        throw new Error('redis down');
      },
      10,
      queue.signal,
    );
    await eventually('a poll', async () => (polls > 0 ? true : undefined), 5000, 10);
    assert.ok(!watch.signal.aborted);
    watch.stop();
    const seen = polls;
    queue.abort();
    await sleep(50);
    assert.equal(polls, seen);
    assert.ok(!watch.signal.aborted);
  });
});
