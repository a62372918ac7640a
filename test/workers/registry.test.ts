import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Type } from '@sinclair/typebox';
import { CancelledError } from '../../models/engine/progress.js';
import { DataError } from '../../models/io/errors.js';
import { LinalgError } from '../../models/linalg/errors.js';
import { describeJobError } from '../../workers/jobErrors.js';
import { Value } from '@sinclair/typebox/value';
import { BackboneJobSpecSchema, FeaturesJobSpecSchema, JobSpecSchema, LastBlockJobSpecSchema, modeOf, parseJobSpec, SpecError } from '../../workers/jobSpec.js';
import { assertModes, MODE_REGISTRY } from '../../workers/modes.js';
import { PermanentJobError } from '../../workers/ports.js';
import { assertRegistry, jobDefinition, JOB_REGISTRY, UnknownJobError, type JobDefinition } from '../../workers/registry.js';
import { metricsSummary, progressTracker } from '../../workers/queueWorker.js';

describe('job modes', () => {
  const base = { benign: { dataset: 'd1' }, harmful: { dataset: 'd2' } };
  const specs = {
    features: parseJobSpec(base),
    backbone: parseJobSpec({ ...base, backbone: 'b' }),
    'last-block': parseJobSpec({ ...base, backbone: 'b', mode: 'last-block' }),
  };
  const schemas = { features: FeaturesJobSpecSchema, backbone: BackboneJobSpecSchema, 'last-block': LastBlockJobSpecSchema };

  it('has one processor per mode, each with an object schema, checked at startup', () => {
    assert.deepEqual(assertModes(), ['features', 'backbone', 'last-block']);
    for (const [mode, p] of Object.entries(MODE_REGISTRY)) assert.equal(p.schema, schemas[mode as keyof typeof schemas], mode);
  });

  it('a parsed spec is exactly one of the three shapes, and its mode names the processor', () => {
    for (const [mode, spec] of Object.entries(specs)) {
      assert.equal(modeOf(spec), mode);
      const matching = Object.entries(schemas)
        .filter(([, schema]) => Value.Check(schema, spec))
        .map(([m]) => m);
      assert.deepEqual(matching, [mode], `${mode} matches ${matching.join(', ')}`);
    }
    // A features spec carries no backbone field at all, and only the last-block one takes the training fields.
    assert.equal(Value.Check(FeaturesJobSpecSchema, { ...specs.features, backbone: 'b' }), false);
    assert.equal(Value.Check(BackboneJobSpecSchema, { ...specs.backbone, cutTensor: 'x' }), false);
    assert.equal(Value.Check(LastBlockJobSpecSchema, { ...specs['last-block'], backbone: undefined }), false);
  });
});

describe('spec defaults', () => {
  it('are filled exactly as the schema says, and never over a value given', () => {
    const inputs: unknown[] = [
      { benign: { dataset: 'd1' }, harmful: { dataset: 'd2' } },
      { benign: { dataset: 'd1', labels: 'd3' }, harmful: { dataset: 'd2' }, method: 'paper', seed: 7, kappaBudget: 50 },
      { benign: { dataset: 'd1' }, harmful: { dataset: 'd2' }, backbone: 'b', mode: 'last-block', init: 'random' },
      { benign: { dataset: 'd1' }, harmful: { dataset: 'd2' }, backbone: 'b', preprocess: { resize: 64 } },
    ];
    for (const input of inputs) {
      const expected = Value.Default(JobSpecSchema, structuredClone(input)) as Record<string, unknown>;
      if (expected.mode === 'last-block' && !('method' in (input as object))) expected.method = 'gradient';
      assert.deepEqual(parseJobSpec(input), expected);
    }
    // The input itself is left as it was: an Idempotency-Key is bound to the body as sent.
    const sent = { benign: { dataset: 'd1' }, harmful: { dataset: 'd2' } };
    parseJobSpec(sent);
    assert.deepEqual(sent, { benign: { dataset: 'd1' }, harmful: { dataset: 'd2' } });
    const lastBlock = { benign: { dataset: 'd1' }, harmful: { dataset: 'd2' }, backbone: 'b', mode: 'last-block' };
    assert.equal(parseJobSpec(lastBlock).method, 'gradient');
    assert.deepEqual(lastBlock, { benign: { dataset: 'd1' }, harmful: { dataset: 'd2' }, backbone: 'b', mode: 'last-block' });
    assert.throws(() => parseJobSpec([1, 2]), SpecError);
    assert.throws(() => parseJobSpec('spec'), SpecError);
  });
});

describe('job registry', () => {
  it('passes its startup check and names its jobs', () => {
    assert.deepEqual(assertRegistry(), ['immunize']);
  });

  it('refuses a broken registry with every problem listed', () => {
    const broken = {
      'Bad Name': { ...JOB_REGISTRY.immunize },
      half: { description: 'x', schema: Type.String(), parse: (x: unknown) => x } as unknown as JobDefinition<unknown>,
    } as unknown as Record<string, JobDefinition<unknown>>;
    assert.throws(
      () => assertRegistry(broken),
      (err: Error) => {
        assert.match(err.message, /Bad Name: a job name must match/);
        assert.match(err.message, /half: datasetRefs is not a function/);
        assert.match(err.message, /half: run is not a function/);
        assert.match(err.message, /half: the payload schema must be an object schema/);
        return true;
      },
    );
    assert.throws(() => assertRegistry({}), /the job registry is empty/);
  });

  it('looks processors up by name and refuses unknown names', () => {
    assert.equal(jobDefinition('immunize'), JOB_REGISTRY.immunize);
    assert.throws(() => jobDefinition('mine-bitcoin'), UnknownJobError);
    assert.throws(() => jobDefinition('__proto__'), UnknownJobError);
  });

  it('validates payloads with the CLI schema and lists their dataset references', () => {
    const def = JOB_REGISTRY.immunize;
    const spec = def.parse({ benign: { dataset: 'd1', labels: 'd2' }, harmful: { dataset: 'd3' }, benignTest: { dataset: 'd4' } });
    assert.equal(spec.method, 'spectral');
    assert.equal(
      def.parse({ mode: 'last-block', backbone: 'b', benign: { dataset: 'd1' }, harmful: { dataset: 'd3' } }).method,
      'gradient',
      'last-block trains by gradient steps',
    );
    assert.throws(
      () => def.parse({ mode: 'last-block', backbone: 'b', method: 'spectral', benign: { dataset: 'd1' }, harmful: { dataset: 'd3' } }),
      /linear-head mode only/,
    );
    assert.deepEqual(def.datasetRefs(spec), [
      { field: 'benign.dataset', id: 'd1', role: 'features' },
      { field: 'benign.labels', id: 'd2', role: 'labels' },
      { field: 'harmful.dataset', id: 'd3', role: 'features' },
      { field: 'benignTest.dataset', id: 'd4', role: 'features' },
    ]);
    assert.throws(() => def.parse({ benign: { dataset: 'd1' } }), SpecError);
  });
});

describe('job errors', () => {
  it('says which failures are permanent', () => {
    assert.deepEqual(describeJobError(new DataError('NON_FINITE', 'nan')), { code: 'non_finite', message: 'nan', permanent: true });
    assert.deepEqual(describeJobError(new DataError('DIM_MISMATCH', 'd')), { code: 'dimension_mismatch', message: 'd', permanent: true });
    assert.equal(describeJobError(new DataError('IO_ERROR', 'disk')).permanent, false);
    assert.equal(describeJobError(new SpecError('bad')).code, 'invalid_spec');
    assert.equal(describeJobError(new CancelledError()).code, 'cancelled');
    assert.equal(describeJobError(new LinalgError('SINGULAR', 's')).permanent, true);
    assert.deepEqual(describeJobError(new PermanentJobError('not_found', 'gone')), { code: 'not_found', message: 'gone', permanent: true });
    assert.deepEqual(describeJobError(new Error('ECONNRESET')), { code: 'internal', message: 'ECONNRESET', permanent: false });
  });
});

describe('progress', () => {
  it('maps step events to a fraction that never goes back', () => {
    const track = progressTracker();
    const seen = [
      track({ phase: 'load' }),
      track({ phase: 'optimize', step: 0, of: 100 }),
      track({ phase: 'optimize', step: 50, of: 100, kappaBenign: 2, kappaHarmful: 3 }),
      track({ phase: 'optimize', step: 10, of: 100 }),
      track({ phase: 'evaluate' }),
      ...Array.from({ length: 10 }, () => track({ phase: 'attacks', message: 'gd on benign' })),
      track({ phase: 'done' }),
    ];
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].fraction >= seen[i - 1].fraction);
    assert.equal(seen[2].kappaHarmful, 3);
    assert.ok(seen[seen.length - 1].fraction < 1, 'only completion says 1');
    assert.ok(seen.every((p) => p.fraction >= 0 && p.fraction <= 1));
  });

  it('keeps a metrics summary, not the whole document', () => {
    const s = metricsSummary({ verdict: 'immunized', rir: 3, attacks: [1, 2], timings: {} });
    assert.deepEqual(s, { verdict: 'immunized', rir: 3 });
  });
});
