import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mat, type Mat } from '../../../models/linalg/index.js';
import { conditioning, extremePairs, kappa, kappaPaper, matrixCondition } from '../../../models/engine/spectrum.js';
import { add, assertRel, EPS, eye, gram, jacobi, mul, normals, randn, randomSpd, robustKappa, tr, withSpectrum } from '../../helpers/reference.js';

function zeroColumnsGram(N: number, D: number, zero: number[], next: () => number): Mat {
  const X = randn(N, D, next);
  for (let i = 0; i < N; i++) for (const j of zero) X.data[i * D + j] = 0;
  return gram(X);
}

describe('spectrum: robust κ against Jacobi eigenvalues', () => {
  for (const [seed, cond] of [
    [1, 10],
    [2, 1e4],
    [3, 1e8],
  ] as const) {
    it(`random SPD, κ ≈ ${cond}`, () => {
      const next = normals(seed);
      const S = randomSpd(9, cond, next, 3.5);
      const ref = robustKappa(jacobi(S).values);
      assertRel(kappa(S), ref.kappa!, cond > 1e6 ? 1e-6 : 1e-9, 'kappa');
      const c = conditioning(S);
      assert.equal(c.rank, 9);
      assertRel(c.lambdaMax, jacobi(S).values[8], 1e-12, 'lambdaMax');
    });
  }

  it('rank-deficient (zero columns): κ over the range, rank counted', () => {
    const next = normals(5);
    const D = 10;
    const S = zeroColumnsGram(30, D, [0, 3, 7], next);
    const v = jacobi(S).values;
    const ref = robustKappa(v);
    assert.equal(ref.rank, 7, 'reference rank');
    const c = conditioning(S);
    assert.equal(c.rank, 7);
    assertRel(c.kappa, ref.kappa!, 1e-9, 'kappa');
    assertRel(c.lambdaMinPositive, ref.lmin!, 1e-9, 'lambdaMinPositive');
  });

  it('rank-deficient (fewer rows than columns, no zero columns)', () => {
    const next = normals(6);
    const D = 12;
    const S = gram(randn(5, D, next));
    const ref = robustKappa(jacobi(S).values);
    assert.equal(ref.rank, 5);
    const c = conditioning(S);
    assert.equal(c.rank, 5);
    assertRel(c.kappa, ref.kappa!, 1e-9, 'kappa');
  });

  it('an eigenvalue just above / below the D·eps·λ_max threshold is kept / dropped', () => {
    const next = normals(7);
    const D = 6;
    const thr = D * EPS;
    // comfortably above and below the threshold, with λ_max = 1
    const above = withSpectrum([0, 0, 1000 * thr, 0.2, 0.5, 1], next);
    const below = withSpectrum([0, 0, thr / 100, 0.2, 0.5, 1], next);
    assert.equal(conditioning(above).rank, robustKappa(jacobi(above).values).rank);
    assert.equal(conditioning(below).rank, robustKappa(jacobi(below).values).rank);
    assert.equal(conditioning(below).rank, 3);
    assertRel(kappa(below), robustKappa(jacobi(below).values).kappa!, 1e-9, 'below');
    assert.equal(conditioning(above).rank, 4);
    // λ = 1000·thr: its absolute error is ~eps, so allow a loose relative tolerance
    assertRel(kappa(above), 1 / (1000 * thr), 0.01, 'above');
  });

  it('a diagonal matrix (exact eigenvalues): 1e-13·λ_max is above D·eps·λ_max and counts', () => {
    const S = mat(4, 4);
    [1, 0, 1e-13, 0.3].forEach((v, i) => (S.data[i * 4 + i] = v));
    const c = conditioning(S);
    assert.equal(c.rank, robustKappa(jacobi(S).values).rank);
    assert.equal(c.rank, 3);
    assertRel(c.kappa, 1e13, 1e-12, 'κ');
    assertRel(c.lambdaMinPositive, 1e-13, 1e-12, 'λ_min');
  });

  it('the zero matrix has no κ', () => {
    assert.equal(kappa(mat(4, 4)), null);
    assert.equal(kappaPaper(mat(4, 4)), null);
  });
});

describe('spectrum: kappaPaper against its definition', () => {
  function paperRef(S: Mat): number | null {
    const shifted = add(S, eye(S.rows, 1e-6));
    const kept = jacobi(shifted).values.filter((v) => v > 1e-6);
    return kept.length === 0 ? null : kept[kept.length - 1] / kept[0];
  }

  it('full-rank SPD', () => {
    const S = randomSpd(8, 1e5, normals(8), 0.7);
    assertRel(kappaPaper(S), paperRef(S)!, 1e-8, 'kappaPaper');
  });

  it('small eigenvalues are lifted by the shift (differs from the robust κ)', () => {
    const S = withSpectrum([1e-7, 1e-3, 0.1, 1], normals(9));
    assertRel(kappaPaper(S), paperRef(S)!, 1e-6, 'kappaPaper');
    assertRel(kappaPaper(S), (1 + 1e-6) / (1e-7 + 1e-6), 1e-6, 'closed form');
    assertRel(kappa(S), 1e7, 1e-6, 'robust κ');
  });

  it('eigenvalues at or below 0 are dropped, a tiny positive one is kept', () => {
    // (exact zero eigenvalues are a knife edge for this convention: ±1e-15 rounding decides, so none here)
    const S = withSpectrum([-1e-3, 1e-9, 0.25, 0.5, 1], normals(10));
    assertRel(kappaPaper(S), paperRef(S)!, 1e-6, 'kappaPaper');
    assertRel(kappaPaper(S), (1 + 1e-6) / (1e-9 + 1e-6), 1e-6, 'closed form');
  });
});

describe('spectrum: matrixCondition(θ) against Jacobi on θᵀθ', () => {
  for (const seed of [11, 12]) {
    it(`random θ (seed ${seed})`, () => {
      const next = normals(seed);
      const theta = randn(7, 7, next);
      const v = jacobi(mul(tr(theta), theta)).values;
      assertRel(matrixCondition(theta), Math.sqrt(v[6] / v[0]), 1e-7, 'κ(θ)');
    });
  }

  it('diagonal θ: the ratio of the extreme |entries|', () => {
    const theta = mat(4, 4);
    [2, -0.5, 8, 1].forEach((v, i) => (theta.data[i * 4 + i] = v));
    assertRel(matrixCondition(theta), 16, 1e-12, 'κ(diag)');
  });

  it('singular θ (a zero column) gives null', () => {
    const theta = randn(5, 5, normals(13));
    for (let i = 0; i < 5; i++) theta.data[i * 5 + 2] = 0;
    assert.equal(matrixCondition(theta), null);
  });
});

describe('spectrum: extremePairs against Jacobi', () => {
  function checkPairs(S: Mat, rank: number) {
    const D = S.rows;
    const ref = jacobi(S);
    const p = extremePairs(S, rank);
    const lmax = ref.values[D - 1];
    assertRel(p.lambdaMax, lmax, 1e-10, 'λ_max');
    assertRel(p.lambdaMin, ref.values[D - rank], 1e-8, 'λ_min of the range');
    const col = (j: number) => Array.from({ length: D }, (_, i) => ref.vectors.data[i * D + j]);
    const align = (u: Float64Array, v: number[]) => Math.abs(u.reduce((s, x, i) => s + x * v[i], 0));
    assert.ok(Math.abs(align(p.uMax, col(D - 1)) - 1) < 1e-8, 'u_max aligned with the Jacobi vector');
    assert.ok(Math.abs(align(p.uMin, col(D - rank)) - 1) < 1e-6, 'u_min aligned with the Jacobi vector');
    // residuals ‖S·u − λ·u‖ relative to λ_max
    for (const [u, l] of [
      [p.uMax, p.lambdaMax],
      [p.uMin, p.lambdaMin],
    ] as const) {
      let r = 0;
      for (let i = 0; i < D; i++) {
        let s = -l * u[i];
        for (let j = 0; j < D; j++) s += S.data[i * D + j] * u[j];
        r += s * s;
      }
      assert.ok(Math.sqrt(r) <= 1e-10 * lmax, `residual ${Math.sqrt(r)}`);
    }
  }

  it('full-rank SPD', () => {
    checkPairs(randomSpd(9, 300, normals(14), 4), 9);
  });

  it('rank-deficient: λ_min is the smallest eigenvalue of the range', () => {
    const next = normals(15);
    const K = zeroColumnsGram(30, 9, [1, 5], next);
    const theta = add(eye(9), randn(9, 9, next, 0.2));
    const S = mul(tr(theta), mul(K, theta));
    for (let i = 0; i < 9; i++) for (let j = 0; j < i; j++) S.data[i * 9 + j] = S.data[j * 9 + i];
    checkPairs(S, 7);
  });

  it('rank 1', () => {
    const next = normals(16);
    checkPairs(gram(randn(1, 6, next)), 1);
  });
});
