import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mat, type Mat } from '../../../models/linalg/index.js';
import { preconditionedGradient, rIll, rWell, thetaGradient } from '../../../models/engine/regularizers.js';
import { extremePairs } from '../../../models/engine/spectrum.js';
import { add, assertRel, congr, eye, froNorm, gram, jacobi, maxRelDiff, mul, normals, randn, randomSpd, solve, sym } from '../../helpers/reference.js';

// Independent definitions of the two regularizers, from a full (Jacobi) eigendecomposition.
function wellRef(S: Mat): number {
  const v = jacobi(S).values;
  const D = S.rows;
  const lmax = v[D - 1];
  return (lmax * lmax) / 2 - v.reduce((s, x) => s + x * x, 0) / (2 * D);
}

function illRef(S: Mat, rank: number): number {
  const v = jacobi(S).values;
  const D = S.rows;
  const lmin = v[D - rank];
  return 1 / (v.reduce((s, x) => s + x * x, 0) / (2 * D) - (lmin * lmin) / 2);
}

/** Central finite differences of θ ↦ f(θ) entry by entry. */
function fdGradient(theta: Mat, f: (t: Mat) => number, h: number): Mat {
  const g = mat(theta.rows, theta.cols);
  for (let i = 0; i < theta.data.length; i++) {
    const plus = mat(theta.rows, theta.cols, Float64Array.from(theta.data));
    const minus = mat(theta.rows, theta.cols, Float64Array.from(theta.data));
    plus.data[i] += h;
    minus.data[i] -= h;
    g.data[i] = (f(plus) - f(minus)) / (2 * h);
  }
  return g;
}

function nearIdentity(D: number, next: () => number, spread = 0.15): Mat {
  return add(eye(D), randn(D, D, next, spread));
}

/** K = XᵀX with the listed feature columns of X set to zero (so K has zero rows/columns there). */
function rankDeficientK(D: number, zeroCols: number[], next: () => number): Mat {
  const X = randn(3 * D, D, next);
  for (let i = 0; i < X.rows; i++) for (const j of zeroCols) X.data[i * D + j] = 0;
  return gram(X);
}

function relGradErr(actual: Mat, expected: Mat): number {
  return froNorm(add(actual, expected, -1)) / froNorm(expected);
}

describe('regularizers: values against a full eigendecomposition', () => {
  for (const seed of [1, 2, 3]) {
    it(`R_well and R_ill values, random SPD K and θ near I (seed ${seed})`, () => {
      const next = normals(seed);
      const D = 7;
      const K = randomSpd(D, 50, next, 2);
      const theta = nearIdentity(D, next);
      const S = congr(K, theta);
      const pairs = extremePairs(S, D);
      assertRel(rWell(S, pairs).value, wellRef(S), 1e-10, 'R_well');
      assertRel(rIll(S, pairs).value, illRef(S, D), 1e-10, 'R_ill');
    });
  }

  it('R_well is zero for a multiple of the identity, and positive otherwise', () => {
    const S = eye(5, 3);
    const pairs = extremePairs(S, 5);
    assert.ok(Math.abs(rWell(S, pairs).value) <= 1e-12 * 9, `R_well(3I) = ${rWell(S, pairs).value}`);
    const next = normals(9);
    const T = randomSpd(5, 10, next);
    assert.ok(rWell(T, extremePairs(T, 5)).value > 0);
  });

  it('R_ill on a rank-deficient S uses the smallest eigenvalue of the range, not the structural zero', () => {
    const next = normals(4);
    const D = 8;
    const K = rankDeficientK(D, [2, 5], next);
    const theta = nearIdentity(D, next);
    const S = congr(K, theta);
    const rank = D - 2;
    const ref = illRef(S, rank);
    const pairs = extremePairs(S, rank);
    assertRel(rIll(S, pairs).value, ref, 1e-9, 'R_ill on the range');
    // the value with the structural zero would be 1/(‖S‖²/2D), noticeably different
    const v = jacobi(S).values;
    const withZero = 1 / (v.reduce((s, x) => s + x * x, 0) / (2 * D));
    assert.ok(Math.abs(withZero - ref) > 1e-6 * ref, 'test must be able to tell the two apart');
  });
});

describe('regularizers: ∂R/∂S as a directional derivative', () => {
  it('⟨gradS, E⟩ matches a central difference of R along a symmetric direction E', () => {
    const next = normals(11);
    const D = 6;
    const S = randomSpd(D, 20, next);
    const E = sym(randn(D, D, next));
    const h = 1e-6;
    const dir = (f: (T: Mat) => number) => (f(add(S, E, h)) - f(add(S, E, -h))) / (2 * h);
    const inner = (G: Mat) => G.data.reduce((s, g, i) => s + g * E.data[i], 0);
    assertRel(inner(rWell(S, extremePairs(S, D)).gradS), dir(wellRef), 1e-6, 'R_well directional');
    assertRel(
      inner(rIll(S, extremePairs(S, D)).gradS),
      dir((T) => illRef(T, D)),
      1e-6,
      'R_ill directional',
    );
  });
});

describe('regularizers: thetaGradient = 2KθG against finite differences of θ ↦ R(θᵀKθ)', () => {
  for (const seed of [21, 22, 23]) {
    it(`R_well, full-rank SPD K (seed ${seed})`, () => {
      const next = normals(seed);
      const D = 6;
      const K = randomSpd(D, 30, next);
      const theta = nearIdentity(D, next);
      const S = congr(K, theta);
      const g = thetaGradient(K, theta, rWell(S, extremePairs(S, D)).gradS);
      const fd = fdGradient(theta, (t) => wellRef(congr(K, t)), 1e-5);
      const e = relGradErr(g, fd);
      assert.ok(e <= 1e-6, `relative gradient error ${e.toExponential(2)}`);
    });

    it(`R_ill, full-rank SPD K (seed ${seed})`, () => {
      const next = normals(seed + 100);
      const D = 6;
      const K = randomSpd(D, 30, next);
      const theta = nearIdentity(D, next);
      const S = congr(K, theta);
      const g = thetaGradient(K, theta, rIll(S, extremePairs(S, D)).gradS);
      const fd = fdGradient(theta, (t) => illRef(congr(K, t), D), 1e-5);
      const e = relGradErr(g, fd);
      assert.ok(e <= 1e-6, `relative gradient error ${e.toExponential(2)}`);
    });
  }

  it('R_ill, rank-deficient K (zero columns) with the range λ_min from extremePairs(S, rank)', () => {
    const next = normals(31);
    const D = 7;
    const zero = [1, 4];
    const K = rankDeficientK(D, zero, next);
    const rank = D - zero.length;
    const theta = nearIdentity(D, next);
    const S = congr(K, theta);
    const g = thetaGradient(K, theta, rIll(S, extremePairs(S, rank)).gradS);
    const fd = fdGradient(theta, (t) => illRef(congr(K, t), rank), 1e-5);
    const e = relGradErr(g, fd);
    assert.ok(e <= 1e-6, `relative gradient error ${e.toExponential(2)}`);
  });

  it('R_well, rank-deficient K (zero columns)', () => {
    const next = normals(32);
    const D = 7;
    const K = rankDeficientK(D, [0, 6], next);
    const theta = nearIdentity(D, next);
    const S = congr(K, theta);
    const g = thetaGradient(K, theta, rWell(S, extremePairs(S, D - 2)).gradS);
    const fd = fdGradient(theta, (t) => wellRef(congr(K, t)), 1e-5);
    const e = relGradErr(g, fd);
    assert.ok(e <= 1e-6, `relative gradient error ${e.toExponential(2)}`);
  });
});

describe('regularizers: preconditionedGradient is K⁻¹ times thetaGradient', () => {
  it('2θG = K⁻¹·(2KθG) for a full-rank K', () => {
    const next = normals(41);
    const D = 6;
    const K = randomSpd(D, 40, next);
    const theta = nearIdentity(D, next);
    const S = congr(K, theta);
    const G = rIll(S, extremePairs(S, D)).gradS;
    const expected = solve(K, thetaGradient(K, theta, G));
    const got = preconditionedGradient(theta, G);
    assert.ok(maxRelDiff(got.data, expected.data) <= 1e-9, `max rel diff ${maxRelDiff(got.data, expected.data)}`);
    // and also against 2θG by explicit product
    const direct = mul(theta, G);
    for (let i = 0; i < direct.data.length; i++) direct.data[i] *= 2;
    assert.ok(maxRelDiff(got.data, direct.data) <= 1e-12);
  });
});
