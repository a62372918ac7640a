import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Mat } from '../../../models/linalg/index.js';
import { randomRotation } from '../../../models/engine/closedForm.js';
import { immunize } from '../../../models/engine/immunize.js';
import { spectralGeometry, spectralTheta, suppressedSet } from '../../../models/engine/spectralMethod.js';
import { statsOf } from '../../../models/engine/stats.js';
import { add, assertRel, congr, eye, gram, jacobi, mul, normals, randn, spectralFn, tr } from '../../helpers/reference.js';

const D = 6;
const N = 40;

function data(seed: number): { XP: Mat; XH: Mat; YP: Mat; YH: Mat } {
  const next = normals(seed);
  const XP = randn(N, D, next);
  const XH = mul(randn(N, D, next), randn(D, D, next));
  const YP = randn(N, 1, next);
  const YH = randn(N, 1, next);
  return { XP, XH, YP, YH };
}

const sorted = (v: ArrayLike<number>) => Array.from(v).sort((a, b) => a - b);

describe('spectral method: θ = W·Q·diag(g)·U against an independent eigensolver', () => {
  const { XP, XH, YP, YH } = data(5);
  const benign = statsOf(XP, YP);
  const harmful = statsOf(XH, YH);
  const ridge = 1e-3;
  const g = spectralGeometry(benign, harmful, false, ridge, true);
  const SP = gram(XP);
  const SH = gram(XH);
  for (const S of [SP, SH]) for (let i = 0; i < S.data.length; i++) S.data[i] /= N;
  const lmax = Math.max(...jacobi(SP).values);
  const W = spectralFn(add(SP, eye(D, ridge * lmax)), (l) => 1 / Math.sqrt(l));
  const U = randomRotation(D, 3);

  it('m are the eigenvalues of W·A_H·W, with W the ridged inverse square root computed here', () => {
    const m = jacobi(congr(SH, W)).values;
    const got = sorted(g.m);
    const want = sorted(m);
    for (let j = 0; j < D; j++) assertRel(got[j], want[j], 1e-9, `m[${j}]`);
  });

  it('no suppression: the benign Hessian has eigenvalues λ/(λ + ε·λ_max) and the harmful one m', () => {
    const theta = spectralTheta(g, [], 1, U);
    const lambdas = jacobi(SP).values;
    const benignWant = sorted(lambdas.map((l) => l / (l + ridge * lmax)));
    const benignGot = sorted(jacobi(congr(SP, theta)).values);
    for (let j = 0; j < D; j++) assertRel(benignGot[j], benignWant[j], 1e-9, `benign eigenvalue ${j}`);
    const harmfulGot = sorted(jacobi(congr(SH, theta)).values);
    const harmfulWant = sorted(g.m);
    for (let j = 0; j < D; j++) assertRel(harmfulGot[j], harmfulWant[j], 1e-9, `harmful eigenvalue ${j}`);
  });

  it('suppressing a set multiplies exactly those harmful eigenvalues by δ', () => {
    const set = [D - 1, D - 3];
    const delta = 1e-3;
    const theta = spectralTheta(g, set, delta, U);
    const want = sorted(Array.from(g.m, (v, j) => (set.includes(j) ? v * delta : v)));
    const got = sorted(jacobi(congr(SH, theta)).values);
    for (let j = 0; j < D; j++) assertRel(got[j], want[j], 1e-8, `harmful eigenvalue ${j}`);
  });

  it('energy shares: each sums to 1, and the harmful one is (qᵀ·W·Xᵀy/n)²/m normalised', () => {
    const sum = (v: Float64Array) => v.reduce((a, b) => a + b, 0);
    assertRel(sum(g.benignEnergy), 1, 1e-12, 'benign shares');
    assertRel(sum(g.harmfulEnergy), 1, 1e-12, 'harmful shares');
    const b = mul(W, mul(tr(XH), YH));
    const raw = Array.from({ length: D }, (_, j) => {
      let p = 0;
      for (let i = 0; i < D; i++) p += g.Q.data[i * D + j] * (b.data[i] / N);
      return (p * p) / g.m[j];
    });
    const total = raw.reduce((a, c) => a + c, 0);
    for (let j = 0; j < D; j++) assertRel(g.harmfulEnergy[j], raw[j] / total, 1e-8, `harmful share ${j}`);
  });

  it('the suppressed set keeps within the benign share it is given and grows with it', () => {
    const small = suppressedSet(g, 1e-3);
    const large = suppressedSet(g, 0.5);
    const benignOf = (idx: number[]) => idx.reduce((a, j) => a + g.benignEnergy[j], 0);
    assert.ok(benignOf(small.indices) <= 1e-3 + 1e-15);
    assert.ok(benignOf(large.indices) <= 0.5 + 1e-15);
    assert.ok(large.indices.length >= small.indices.length);
    assert.ok(large.harmfulShare >= small.harmfulShare);
  });
});

describe('spectral method: the default job', () => {
  it('keeps κ(θ) within the budget (checked independently), reports what it tried, and its verdict follows its metrics', () => {
    const { XP, XH, YP, YH } = data(9);
    const r = immunize({ benign: { X: XP, y: YP.data }, harmful: { X: XH, y: YH.data } }, { method: 'spectral', kappaBudget: 1e4, seed: 0 });
    const tt = jacobi(mul(tr(r.theta), r.theta)).values;
    const kt = Math.sqrt(Math.max(...tt) / Math.min(...tt));
    assert.ok(kt <= 1e4 * (1 + 1e-9), `κ(θ) ${kt}`);
    assertRel(r.metrics.thetaCondition, kt, 1e-6, 'κ(θ)');
    assert.ok(r.metrics.optimizer.steps >= 1, 'at least one candidate screened');
    assert.match(r.metrics.optimizer.stopReason, /passed-screen|best-of-grid/);
    if (r.metrics.verdict === 'immunized') assert.equal(r.metrics.optimizer.stopReason, 'passed-screen');
    assert.equal(r.metrics.attacks.length, 12);
  });
});
