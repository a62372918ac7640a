import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summaryLines } from '../../services/cli/summary.js';
import type { Metrics } from '../../models/engine/index.js';

// A last-block job's benign quality is the model's own head on held-out images; a linear-head job's is the best probe.
function metrics(extra: Record<string, unknown>): Metrics {
  const base: Metrics = {
    method: 'gradient',
    task: 'multiclass',
    dim: 4,
    rows: { benign: 10, harmful: 10, benignTest: null },
    rir: 1,
    benignRatio: 1,
    harmfulRatio: 1,
    rirBound: 2,
    thetaCondition: 3,
    kappaBudget: 1e4,
    kappa: { benign: { before: 1, after: 1 }, harmful: { before: 1, after: 1 } },
    paperConvention: { rir: 1, benignRatio: 1, harmfulRatio: 1, kappa: { benign: { before: 1, after: 1 }, harmful: { before: 1, after: 1 } } },
    benignQuality: { metric: 'accuracy', before: 0.96, after: 0.959, headMaxDeviation: null },
    attacks: [],
    verdict: 'weak',
    verdictReasons: [],
    kappaCriterion: 'tested',
    verdictNotes: [],
    optimizer: { steps: 20, stopReason: 'steps', details: {} },
    timings: { engineSeconds: 1, solveSeconds: 1, metricsSeconds: 0, attackSeconds: 0 },
    warnings: [],
    openblasCore: 'x',
  };
  return { ...base, ...extra } as Metrics;
}

const deep = {
  draws: 20,
  sampleSize: 100,
  rir: { mean: 1, std: 0 },
  harmfulRatio: { mean: 1, std: 0 },
  benignRatio: { mean: 1, std: 0 },
  training: { steps: 20, accepted: 1 },
};

test('a last-block job names the model’s own head and the held-out images it was scored on', () => {
  const lines = summaryLines(metrics({ deep: { ...deep, benignAccuracy: { before: 0.96, after: 0.959, rows: 1000, heldOut: 'benignTest' } } }));
  const line = lines.find((l) => l.startsWith('benign accuracy'));
  assert.equal(line, "benign accuracy of the model's own head on 1000 held-out images (the --benign-test images): before 0.960, after 0.959");
  assert.ok(!lines.some((l) => l.includes('best linear probe')));
  const split = summaryLines(
    metrics({ deep: { ...deep, benignAccuracy: { before: 0.9, after: 0.9, rows: 20, heldOut: 'a random fifth of the benign images' } } }),
  );
  assert.ok(split.some((l) => l.includes('on 20 held-out images (a random fifth of the benign images)')));
});

test('a linear-head job names the best probe on the benign rows', () => {
  const lines = summaryLines(metrics({}));
  assert.ok(lines.some((l) => l.startsWith('benign accuracy of the best linear probe on the benign rows: before θ 0.960, after θ 0.959')));
});
