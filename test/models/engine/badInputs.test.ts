import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LinalgError, syrk, type Mat } from '../../../models/linalg/index.js';
import { evaluateTheta, immunize, type EngineOptions } from '../../../models/engine/immunize.js';
import { statsOf } from '../../../models/engine/stats.js';
import { assertJsonClean, eye, normals, numbersIn, randn } from '../../helpers/reference.js';
import { housePrice } from '../../helpers/housePrice.js';

const opts: EngineOptions = { method: 'gradient', kappaBudget: 1e4, seed: 0 };

function data(seed: number, n: number, d: number) {
  const next = normals(seed);
  return { X: randn(n, d, next), y: new Float64Array(n).map(() => next()) };
}

const nonFinite = (err: unknown) => err instanceof LinalgError && err.code === 'NON_FINITE';

describe('engine: bad inputs', () => {
  it('evaluateTheta: a θ whose size does not match the features throws a RangeError', () => {
    const benign = data(1, 20, 5);
    const harmful = data(2, 20, 5);
    assert.throws(() => evaluateTheta({ benign, harmful }, eye(4), opts), RangeError);
    assert.throws(() => evaluateTheta({ benign, harmful }, eye(6), opts), RangeError);
    assert.throws(() => evaluateTheta({ benign, harmful }, randn(5, 4, normals(3)), opts), RangeError);
  });

  it('NaN in X: syrk throws LinalgError NON_FINITE', () => {
    const X = randn(6, 3, normals(4));
    X.data[7] = NaN;
    assert.throws(() => syrk(X), nonFinite);
    assert.throws(() => statsOf(X), nonFinite);
  });

  it('NaN or Infinity in the benign or harmful features: immunize / evaluateTheta throw NON_FINITE', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const benign = data(5, 20, 4);
      const harmful = data(6, 20, 4);
      benign.X.data[13] = bad;
      assert.throws(() => immunize({ benign, harmful }, opts), nonFinite, `benign ${bad}`);
      assert.throws(() => evaluateTheta({ benign, harmful }, eye(4), opts), nonFinite, `benign ${bad}`);
      const benign2 = data(5, 20, 4);
      harmful.X.data[3] = bad;
      assert.throws(() => immunize({ benign: benign2, harmful }, opts), nonFinite, `harmful ${bad}`);
    }
  });

  it('NaN in the labels is not silently used', () => {
    const benign = data(7, 20, 4);
    const harmful = data(8, 20, 4);
    benign.y[5] = NaN;
    let threw = false;
    try {
      const r = immunize({ benign, harmful }, opts);
      assertJsonClean(r.metrics);
    } catch (err) {
      threw = true;
      assert.ok(err instanceof Error);
    }
    assert.ok(threw, 'a NaN label should be rejected');
  });

  it('identical benign and harmful data (full rank): finite metrics, not immunized', () => {
    const d = data(9, 30, 6);
    for (const method of ['gradient', 'closed-form'] as const) {
      let r;
      try {
        r = immunize({ benign: d, harmful: { X: d.X, y: d.y } }, { ...opts, method });
      } catch (err) {
        // the closed-form method may refuse (see closedForm.test.ts); it must not return garbage
        assert.equal(method, 'closed-form', String(err));
        continue;
      }
      assertJsonClean(r.metrics);
      assert.notEqual(r.metrics.verdict, 'immunized', method);
      assert.ok(Math.abs(r.metrics.benignRatio! - r.metrics.harmfulRatio!) <= 1e-9 * r.metrics.benignRatio!, 'same data, same ratio');
    }
    const e = evaluateTheta({ benign: d, harmful: { X: d.X, y: d.y } }, eye(6), opts);
    assertJsonClean(e.metrics);
    assert.notEqual(e.metrics.verdict, 'immunized');
  });

  it('identical benign and harmful data (House Price, rank-deficient): finite metrics, not immunized', async () => {
    const hp = await housePrice();
    const harmful = { X: hp.benign.X, y: hp.benign.y };
    const r = immunize({ benign: hp.benign, harmful }, opts);
    assertJsonClean(r.metrics);
    assert.notEqual(r.metrics.verdict, 'immunized');
    assert.ok(Math.abs(r.metrics.rir! - 1) <= 1e-9, `RIR ${r.metrics.rir}`);
  });

  it('a single row: no NaN reaches the metrics, and every null number comes with a warning naming it', () => {
    const benign = data(10, 1, 4);
    const harmful = data(11, 1, 4);
    let r;
    try {
      r = immunize({ benign, harmful: { X: harmful.X } }, opts);
    } catch (err) {
      assert.ok(err instanceof Error);
      return;
    }
    assertJsonClean(r.metrics);
    const warned = new Set(r.metrics.warnings.map((w) => w.field));
    r.metrics.attacks.forEach((a, i) => {
      for (const [k, v] of Object.entries(a)) {
        if (v === null) assert.ok(warned.has(`attacks[${i}].${k}`), `attacks[${i}].${k} is null without a warning`);
      }
    });
    for (const k of ['rir', 'benignRatio', 'harmfulRatio', 'thetaCondition'] as const) {
      if (r.metrics[k] === null) assert.ok(warned.has(k), `${k} is null without a warning`);
    }
    assert.ok(
      numbersIn(r.curves).every(([, v]) => Number.isFinite(v)),
      'curves contain non-finite numbers',
    );
  });

  it('a zero harmful Gram matrix is refused, not turned into NaN', () => {
    const benign = data(12, 10, 3);
    const zero: Mat = { rows: 10, cols: 3, data: new Float64Array(30) };
    assert.throws(() => immunize({ benign, harmful: { X: zero } }, opts));
  });
});
