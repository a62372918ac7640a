/** The engine thread pool: jobs run off the main thread, report progress, and stop on cancel between steps. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StepEvent } from '../../models/engine/progress.js';
import { EngineJobError, EnginePool } from '../../workers/enginePool.js';
import { describeJobError } from '../../workers/jobErrors.js';
import type { ModeJobSpec } from '../../workers/jobSpec.js';
import { parseJobPayload } from '../../workers/registry.js';
import { randomNpy } from '../helpers/service.js';

let dir: string;
let pool: EnginePool;
const paths: Record<string, string> = {};
/** The pool takes payloads already validated, as the queue worker hands them over. */
const spec = (raw: unknown) => parseJobPayload('immunize', raw);

before(async () => {
  await import('../../models/linalg/index.js');
  dir = await mkdtemp(join(tmpdir(), 'immunize-pool-'));
  for (const [id, rows, cols, seed] of [
    ['small-b', 50, 8, 1],
    ['small-h', 50, 8, 2],
    ['long-b', 200, 32, 3],
    ['long-h', 200, 32, 4],
    ['wide', 50, 9, 5],
  ] as const) {
    paths[id] = join(dir, `${id}.npy`);
    await writeFile(paths[id], randomNpy(rows, cols, seed));
  }
  pool = new EnginePool({ size: 1, cancelGraceMs: 5000 });
});

after(async () => {
  await pool?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('engine pool', () => {
  it('runs a job in a thread and reports its steps', async () => {
    const events: StepEvent[] = [];
    const phases = new Set<string>();
    const out = await pool.run(
      {
        name: 'immunize',
        payload: spec({ benign: { dataset: 'small-b' }, harmful: { dataset: 'small-h' }, method: 'paper', steps: 300 }),
        paths,
        stagingDir: join(dir, 'stage1'),
      },
      { onEvent: (e) => events.push(e), onTimings: (t) => t.forEach(([p]) => phases.add(p)) },
    );
    assert.equal(out.metrics.method, 'paper');
    assert.deepEqual(
      out.artifacts.slice(0, 3).map((a) => [a.name, a.file]),
      [
        ['metrics.json', 'a0.bin'],
        ['curves.json', 'a1.bin'],
        ['theta.safetensors', 'a2.bin'],
      ],
    );
    assert.deepEqual((await readdir(join(dir, 'stage1'))).sort(), out.artifacts.map((a) => a.file).sort(), 'one stored file per artifact, nothing else');
    assert.ok(events.some((e) => e.phase === 'optimize' && (e.step ?? 0) > 0));
    assert.equal(events[events.length - 1].phase, 'done');
    assert.ok(phases.has('optimize') && phases.has('attacks'));
    assert.equal(pool.threads, 1);
  });

  it('stops a running engine between steps when the signal aborts, and reuses the thread', async () => {
    const controller = new AbortController();
    let steps = 0;
    const started = Date.now();
    const run = pool.run(
      {
        name: 'immunize',
        payload: spec({ benign: { dataset: 'long-b' }, harmful: { dataset: 'long-h' }, method: 'paper', steps: 500_000 }),
        paths,
        stagingDir: join(dir, 'stage2'),
      },
      {
        onEvent: (e) => {
          if (e.phase === 'optimize' && (e.step ?? 0) > 0 && ++steps === 3) controller.abort();
        },
      },
      controller.signal,
    );
    await assert.rejects(run, (err: unknown) => {
      assert.ok(err instanceof EngineJobError);
      assert.equal(err.described.code, 'cancelled');
      assert.equal(err.described.permanent, true);
      return true;
    });
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    assert.equal(pool.threads, 1, 'the thread survived the cancel');
    const again = await pool.run(
      {
        name: 'immunize',
        payload: spec({ benign: { dataset: 'small-b' }, harmful: { dataset: 'small-h' }, method: 'closed-form' }),
        paths,
        stagingDir: join(dir, 'stage3'),
      },
      {},
    );
    assert.ok(again.artifacts.length >= 3);
  });

  it('reports bad input as a permanent failure with a code', async () => {
    const run = async (payload: unknown) => pool.run({ name: 'immunize', payload: spec(payload), paths, stagingDir: join(dir, 'stage4') }, {});
    await assert.rejects(
      run({ benign: { dataset: 'small-b' }, harmful: { dataset: 'wide' } }),
      (e: EngineJobError) => e.described.code === 'dimension_mismatch' && e.described.permanent,
    );
    await assert.rejects(
      run({ benign: { dataset: 'small-b' }, harmful: { dataset: 'missing' } }),
      (e: EngineJobError) => e.described.code === 'not_found' && e.described.permanent,
    );
    // A payload that does not parse is refused where it is validated, before any thread sees it.
    await assert.rejects(run({ benign: { dataset: 'small-b' } }), (e: unknown) => describeJobError(e).code === 'invalid_spec' && describeJobError(e).permanent);
    await assert.rejects(
      pool.run({ name: 'no-such-job', payload: {} as ModeJobSpec, paths, stagingDir: join(dir, 'stage5') }, {}),
      (e: EngineJobError) => e.described.code === 'unknown_job' && e.described.permanent,
    );
  });

  it('runs the payload it is handed without parsing it again', async () => {
    // A field the schema refuses: a thread that validated the payload again would fail the job as invalid_spec.
    const payload = { ...spec({ benign: { dataset: 'small-b' }, harmful: { dataset: 'small-h' }, method: 'closed-form' }), notInTheSchema: true };
    const out = await pool.run({ name: 'immunize', payload, paths, stagingDir: join(dir, 'stage7') }, {});
    assert.equal(out.metrics.method, 'closed-form');
  });

  it('keeps the main thread free while the engine computes', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const t0 = Date.now();
    await pool.run(
      {
        name: 'immunize',
        payload: spec({ benign: { dataset: 'long-b' }, harmful: { dataset: 'long-h' }, method: 'paper', steps: 1500 }),
        paths,
        stagingDir: join(dir, 'stage6'),
      },
      {},
    );
    clearInterval(timer);
    const expected = (Date.now() - t0) / 10;
    assert.ok(ticks >= expected * 0.5, `only ${ticks} of ~${Math.round(expected)} timer ticks ran during the job`);
  });
});
