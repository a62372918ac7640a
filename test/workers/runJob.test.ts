import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../../models/io/npy.js';
import { encodeSafetensors } from '../../models/io/safetensors.js';
import { DirectorySink } from '../../workers/artifacts.js';
import { parseJobSpec, SpecError } from '../../workers/jobSpec.js';
import { runJob } from '../../workers/modes.js';
import { housePrice } from '../helpers/housePrice.js';

async function features(): Promise<{ dir: string; spec: ReturnType<typeof parseJobSpec> }> {
  const hp = await housePrice();
  const dir = await mkdtemp(join(tmpdir(), 'immunize-runjob-'));
  for (const [name, split] of [
    ['benign', hp.benign],
    ['harmful', hp.harmful],
  ] as const) {
    await writeNpy(join(dir, `${name}.npy`), split.X);
    await writeNpy(join(dir, `${name}-y.npy`), { shape: [split.y.length], data: split.y });
  }
  const spec = parseJobSpec({
    benign: { dataset: join(dir, 'benign.npy'), labels: join(dir, 'benign-y.npy') },
    harmful: { dataset: join(dir, 'harmful.npy'), labels: join(dir, 'harmful-y.npy') },
  });
  return { dir, spec };
}

// The same θ scored at the end of its optimization and again read back from its file: equal to rounding.
function assertSameScores(a: Record<string, unknown>, b: Record<string, unknown>): void {
  assert.equal(a.verdict, b.verdict);
  for (const key of ['rir', 'benignRatio', 'harmfulRatio']) {
    const x = a[key] as number;
    const y = b[key] as number;
    assert.ok(Math.abs(x - y) <= 1e-9 * Math.abs(y), `${key}: ${x} vs ${y}`);
  }
}

describe('runJob, the one entry', () => {
  it('scores a given θ (evaluate) with the figures the job that made it reported', async () => {
    const { dir, spec } = await features();
    const made = await runJob(spec, { sink: new DirectorySink(join(dir, 'made')) });
    const evaluated = await runJob(spec, { sink: new DirectorySink(join(dir, 'evaluated')) }, undefined, { theta: join(dir, 'made', 'theta.safetensors') });
    const m = evaluated.metrics as unknown as Record<string, unknown>;
    assert.equal((m.optimizer as { stopReason: string }).stopReason, 'evaluate');
    assertSameScores(m, made.metrics as unknown as Record<string, unknown>);
  });

  it('runs on data already loaded instead of the spec files, with the report options given', async () => {
    const { dir, spec } = await features();
    const hp = await housePrice();
    // The spec's files do not exist: only the preloaded input can have been read.
    const missing = parseJobSpec({ ...spec, benign: { dataset: join(dir, 'nope.npy') }, harmful: { dataset: join(dir, 'nope.npy') } });
    const out = join(dir, 'preloaded');
    const input = { benign: hp.benign, harmful: hp.harmful, benignTest: hp.benignTest };
    const result = await runJob(missing, { sink: new DirectorySink(out) }, undefined, { input, report: { title: 'preloaded run' } });
    assert.equal((result.metrics as unknown as { rows: { benign: number } }).rows.benign, hp.benign.X.rows);
    assert.match(await readFile(join(out, 'report.html'), 'utf8'), /<title>Immunization report: preloaded run/);
  });

  it('refuses a θ or preloaded data for a job with a backbone', async () => {
    const spec = parseJobSpec({ backbone: 'b.onnx', benign: { dataset: 'a' }, harmful: { dataset: 'b' } });
    await assert.rejects(runJob(spec, { sink: new DirectorySink('/nonexistent') }, undefined, { theta: 't.safetensors' }), SpecError);
  });

  it('refuses a θ of the wrong width with a dimension mismatch', async () => {
    const { dir, spec } = await features();
    await writeFile(join(dir, 'small.safetensors'), encodeSafetensors({ theta: { shape: [4, 4], data: new Float64Array(16) } }));
    await assert.rejects(runJob(spec, { sink: new DirectorySink(join(dir, 'x')) }, undefined, { theta: join(dir, 'small.safetensors') }), {
      code: 'DIM_MISMATCH',
    });
  });
});
