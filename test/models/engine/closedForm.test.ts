import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mat, type Mat } from '../../../models/linalg/index.js';
import { closedFormImmunize, generalizedBasis, rirBound, thetaFor } from '../../../models/engine/closedForm.js';
import { immunize } from '../../../models/engine/immunize.js';
import { add, assertRel, congr, eye, gram, jacobi, maxRelDiff, mul, normals, randn, randomSpd, robustKappa, spectralFn, tr } from '../../helpers/reference.js';

const D = 12;

function pair(seed: number): { KP: Mat; KH: Mat } {
  const next = normals(seed);
  return { KP: randomSpd(D, 20, next, 1.3), KH: randomSpd(D, 50, next, 0.8) };
}

function kappaRef(S: Mat): number {
  return robustKappa(jacobi(S).values).kappa!;
}

/** M = K_P^{-1/2}·K_H·K_P^{-1/2}, computed from a Jacobi decomposition of K_P. */
function mRef(KP: Mat, KH: Mat): Mat {
  const R = spectralFn(KP, (l) => 1 / Math.sqrt(l));
  return congr(KH, R);
}

function thetaKappa(theta: Mat): number {
  const v = jacobi(mul(tr(theta), theta)).values;
  return Math.sqrt(v[v.length - 1] / v[0]);
}

describe('closedForm: the design θ = K_P^{-1/2}·Q·diag(λ^{α/2})', () => {
  for (const seed of [1, 2]) {
    it(`κ(H_P) = κ(M)^α and κ(H_H) = κ(M)^{1+α} (seed ${seed})`, () => {
      const { KP, KH } = pair(seed);
      const M = mRef(KP, KH);
      const mVals = jacobi(M).values;
      const kM = mVals[D - 1] / mVals[0];
      const basis = generalizedBasis(KP, KH, 0);
      assertRel(basis.kappaM, kM, 1e-9, 'κ(M)');
      for (const alpha of [0, 0.5, 1, 1.3]) {
        const theta = thetaFor(basis, alpha);
        const sP = jacobi(congr(KP, theta)).values;
        const sH = jacobi(congr(KH, theta)).values;
        assertRel(sP[D - 1] / sP[0], Math.pow(kM, alpha), 1e-6, `κ(H_P) at α=${alpha}`);
        assertRel(sH[D - 1] / sH[0], Math.pow(kM, 1 + alpha), 1e-6, `κ(H_H) at α=${alpha}`);
        // the whole spectra, not only the extremes: H_P = diag(λ(M)^α), H_H = diag(λ(M)^{1+α})
        const wantP = mVals.map((l) => Math.pow(l, alpha));
        const wantH = mVals.map((l) => Math.pow(l, 1 + alpha));
        assert.ok(maxRelDiff(sP, wantP) <= 1e-9, `spectrum of H_P at α=${alpha}`);
        assert.ok(maxRelDiff(sH, wantH) <= 1e-9, `spectrum of H_H at α=${alpha}`);
      }
    });
  }

  it('with a ridge, R = (K_P + ε·λ_max·I)^{-1/2}', () => {
    const { KP, KH } = pair(3);
    const eps = 1e-2;
    const lmax = jacobi(KP).values[D - 1];
    const Rref = spectralFn(add(KP, eye(D, eps * lmax)), (l) => 1 / Math.sqrt(l));
    const b = generalizedBasis(KP, KH, eps);
    assert.ok(maxRelDiff(b.R.data, Rref.data) <= 1e-10, `R mismatch ${maxRelDiff(b.R.data, Rref.data)}`);
    assertRel(b.kappaM, kappaRef(congr(KH, Rref)), 1e-9, 'κ(M) with ridge');
  });
});

describe('closedForm: rirBound', () => {
  for (const seed of [4, 5]) {
    it(`RIR* = κ(M)·κ(K_P)/κ(K_H) for full-rank K_P (seed ${seed})`, () => {
      const { KP, KH } = pair(seed);
      const expected = (kappaRef(mRef(KP, KH)) * kappaRef(KP)) / kappaRef(KH);
      assertRel(rirBound(KP, KH), expected, 1e-8, 'RIR*');
      assert.ok(expected > 1, 'a random pair should be immunizable');
    });
  }

  it('aligned pair K_H = K_P² (same eigenvectors): RIR* = 1', () => {
    const { KP } = pair(6);
    const b = rirBound(KP, mul(KP, KP))!;
    assert.ok(Math.abs(b - 1) <= 1e-9, `RIR* = ${b}`);
  });

  it('aligned pair K_H = c·K_P: RIR* = 1', () => {
    const { KP } = pair(7);
    const KH = add(KP, KP, 2.5); // 3.5·K_P
    const b = rirBound(KP, KH)!;
    assert.ok(Math.abs(b - 1) <= 1e-9, `RIR* = ${b}`);
  });
});

describe('closedForm: closedFormImmunize', () => {
  for (const budget of [1e4, 6]) {
    it(`respects the κ(θ) budget ${budget} and keeps the benign ratio ≤ 1`, () => {
      const { KP, KH } = pair(8);
      const r = closedFormImmunize(KP, KH, { kappaBudget: budget, ridges: [0, 1e-3] });
      const kt = thetaKappa(r.theta);
      assert.ok(kt <= budget * (1 + 1e-9), `κ(θ) = ${kt} > ${budget}`);
      assertRel(r.thetaCondition, kt, 1e-7, 'reported κ(θ)');
      const kP0 = kappaRef(KP);
      const kH0 = kappaRef(KH);
      const benign = kappaRef(congr(KP, r.theta)) / kP0;
      const harmful = kappaRef(congr(KH, r.theta)) / kH0;
      assert.ok(benign <= 1 + 1e-9, `benign ratio ${benign}`);
      assertRel(r.benignRatio, benign, 1e-7, 'reported benign ratio');
      assertRel(r.harmfulRatio, harmful, 1e-7, 'reported harmful ratio');
      assert.ok(harmful > 1, `harmful ratio ${harmful}`);
    });
  }

  it('with an unbounded budget the harmful ratio reaches RIR* (up to the bisection resolution)', () => {
    const { KP, KH } = pair(9);
    const kP0 = kappaRef(KP);
    const bound = (kappaRef(mRef(KP, KH)) * kP0) / kappaRef(KH);
    const r = closedFormImmunize(KP, KH, { kappaBudget: 1e12, ridges: [0] });
    const harmful = kappaRef(congr(KH, r.theta)) / kappaRef(KH);
    assert.ok(harmful <= bound * (1 + 1e-7), `harmful ratio ${harmful} above RIR* ${bound}`);
    assert.ok(harmful >= bound * Math.pow(kP0, -1e-3), `harmful ratio ${harmful} far below RIR* ${bound}`);
  });

  it('a fixed α gives κ(H_P) = κ(M)^α with ridge 0', () => {
    const { KP, KH } = pair(10);
    const kM = kappaRef(mRef(KP, KH));
    const r = closedFormImmunize(KP, KH, { kappaBudget: 1e12, ridges: [0], alpha: 0.4 });
    assertRel(kappaRef(congr(KP, r.theta)), Math.pow(kM, 0.4), 1e-6, 'κ(H_P)');
  });
});

describe('closedForm: aligned pairs through immunize()', () => {
  const N = 40;
  const d = 6;
  const next = normals(12);
  const XP = randn(N, d, next);
  const y = new Float64Array(N).map(() => next());

  it('K_H = 4·K_P exactly (X_H = 2·X_P): verdict infeasible', () => {
    const XH = add(XP, XP);
    const r = immunize({ benign: { X: XP, y }, harmful: { X: XH, y } }, { method: 'gradient', kappaBudget: 1e4, seed: 0 });
    assert.ok(Math.abs(r.metrics.rirBound! - 1) <= 1e-9, `RIR* = ${r.metrics.rirBound}`);
    assert.equal(r.metrics.verdict, 'infeasible', `verdict ${r.metrics.verdict}: ${r.metrics.verdictReasons.join('; ')}`);
  });

  it('K_H = K_P² (harmful rows = the rows of K_P): verdict infeasible', () => {
    const KP = gram(XP);
    const r = immunize({ benign: { X: XP, y }, harmful: { X: KP } }, { method: 'gradient', kappaBudget: 1e4, seed: 0 });
    assert.ok(Math.abs(r.metrics.rirBound! - 1) <= 1e-9, `RIR* = ${r.metrics.rirBound}`);
    assert.equal(r.metrics.verdict, 'infeasible', `verdict ${r.metrics.verdict}: ${r.metrics.verdictReasons.join('; ')}`);
  });

  it('a rank-deficient K_P: RIR* is only a reference, said so, and never makes the verdict infeasible', () => {
    const XP0 = mat(N, d);
    for (let i = 0; i < N; i++) for (let j = 0; j < d - 2; j++) XP0.data[i * d + j] = XP.data[i * d + j];
    const r = immunize({ benign: { X: XP0, y }, harmful: { X: add(XP0, XP0), y } }, { method: 'gradient', kappaBudget: 1e4, seed: 0 });
    assert.ok(r.metrics.warnings.some((w) => w.field === 'rirBound' && /rank 4 of 6/.test(w.reason)));
    assert.notEqual(r.metrics.verdict, 'infeasible');
    assert.notEqual(r.metrics.verdict, 'immunized');
    const full = immunize({ benign: { X: XP, y }, harmful: { X: add(XP, XP), y } }, { method: 'gradient', kappaBudget: 1e4, seed: 0 });
    assert.ok(!full.metrics.warnings.some((w) => w.field === 'rirBound'));
  });

  // With K_P of full rank the bound holds whatever the rank of K_H: κ⁺(AᵀMA) ≤ κ⁺(M)·κ(AᵀA) for A = K_P^{1/2}θ.
  it('a full-rank K_P and a rank-deficient K_H (3 harmful rows, 6 features): RIR ≤ RIR*', () => {
    const XH = randn(3, d, next);
    for (const method of ['gradient', 'closed-form'] as const) {
      const r = immunize({ benign: { X: XP, y }, harmful: { X: XH } }, { method, kappaBudget: 1e4, seed: 0 });
      assert.ok(r.metrics.rirBound !== null && r.metrics.rir !== null);
      assert.ok(r.metrics.rir! <= r.metrics.rirBound! * (1 + 1e-9), `${method}: RIR ${r.metrics.rir} > RIR* ${r.metrics.rirBound}`);
      assert.ok(!r.metrics.warnings.some((w) => w.field === 'rirBound'));
    }
  });

  it('whatever the verdict, an aligned pair is never "immunized" (gradient method)', () => {
    const XH = add(XP, XP);
    const r = immunize({ benign: { X: XP, y }, harmful: { X: XH, y } }, { method: 'gradient', kappaBudget: 1e4, seed: 0 });
    assert.notEqual(r.metrics.verdict, 'immunized');
    assert.ok(r.metrics.harmfulRatio! < 2, `harmful ratio ${r.metrics.harmfulRatio}`);
  });

  it('the closed-form method on an aligned pair returns a finite θ', () => {
    const XH = add(XP, XP);
    const r = immunize({ benign: { X: XP, y }, harmful: { X: XH, y } }, { method: 'closed-form', kappaBudget: 1e4, seed: 0 });
    assert.ok(r.theta.data.every(Number.isFinite));
    assert.notEqual(r.metrics.verdict, 'immunized');
  });

  it('closedFormImmunize on K_H = 3·K_P (full rank) does not throw', () => {
    const { KP } = pair(14);
    const r = closedFormImmunize(KP, add(KP, KP, 2), { kappaBudget: 1e4, ridges: [0] });
    assert.ok(r.theta.data.every(Number.isFinite));
    assert.ok(r.benignRatio <= 1 + 1e-9);
  });

  it('rank-deficient K_P: identical benign and harmful data give RIR* ≈ 1', {}, () => {
    const X = randn(N, d, normals(13));
    for (let i = 0; i < N; i++) X.data[i * d + 2] = 0;
    const K = gram(X);
    const b = rirBound(K, K)!;
    assert.ok(Math.abs(b - 1) <= 1e-6, `RIR* = ${b}`);
  });
});
