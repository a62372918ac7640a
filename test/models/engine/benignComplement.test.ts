import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Mat } from '../../../models/linalg/index.js';
import { complementBasis, complementTheta } from '../../../models/engine/benignComplement.js';
import { randomRotation } from '../../../models/engine/closedForm.js';
import { add, assertRel, congr, eye, gram, jacobi, mul, normals, randn, spectralFn, tr } from '../../helpers/reference.js';

const D = 8;
const N = 60;
const C = 2;

function columns(A: Mat, from: number, to: number): Mat {
  const out = { rows: A.rows, cols: to - from, data: new Float64Array(A.rows * (to - from)) };
  for (let i = 0; i < A.rows; i++) for (let k = from; k < to; k++) out.data[i * out.cols + k - from] = A.data[i * A.cols + k];
  return out;
}

const norm = (A: Mat) => Math.sqrt(A.data.reduce((a, v) => a + v * v, 0));

describe('benign complement: the basis and θ against an independent eigensolver', () => {
  const next = normals(11);
  const XP = mul(randn(N, D, next), randn(D, D, next));
  const XH = mul(randn(N, D, next), randn(D, D, next));
  const YP = randn(N, C, next);
  const SP = gram(XP);
  const SH = gram(XH);
  for (const S of [SP, SH]) for (let i = 0; i < S.data.length; i++) S.data[i] /= N;
  const cross = mul(tr(XP), YP);
  for (let i = 0; i < cross.data.length; i++) cross.data[i] /= N;
  const mean = Float64Array.from({ length: D }, (_, j) => {
    let s = 0;
    for (let r = 0; r < N; r++) s += XP.data[r * D + j];
    return s / N;
  });
  // Exact whitening (a negligible ridge), computed here with the reference eigensolver.
  const W = spectralFn(add(SP, eye(D, 1e-13 * Math.max(...jacobi(SP).values))), (l) => 1 / Math.sqrt(l));
  const M = congr(SH, W);
  const { basis, signalDims } = complementBasis(W, cross, mean, M);

  it('is orthonormal, with the benign signal and the mean (C + 1 directions) first', () => {
    assert.equal(signalDims, C + 1);
    const BtB = mul(tr(basis), basis);
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) assert.ok(Math.abs(BtB.data[i * D + j] - (i === j ? 1 : 0)) < 1e-10, `BᵀB[${i}][${j}]`);
  });

  it('leaves no benign signal in the complement', () => {
    const signal = mul(W, cross);
    const wMean = mul(W, { rows: D, cols: 1, data: mean });
    const complement = columns(basis, signalDims, D);
    for (const s of [signal, wMean]) assert.ok(norm(mul(tr(complement), s)) < 1e-10 * norm(s), 'complementᵀ·signal ≈ 0');
  });

  it('orders the complement by the harmful curvature within it, largest first', () => {
    const complement = columns(basis, signalDims, D);
    const inner = congr(M, complement);
    const k = D - signalDims;
    for (let i = 0; i < k; i++)
      for (let j = 0; j < k; j++) if (i !== j) assert.ok(Math.abs(inner.data[i * k + j]) < 1e-9 * inner.data[0], `off-diagonal ${i},${j}`);
    const want = jacobi(inner).values.sort((a, b) => b - a);
    for (let i = 0; i < k; i++) assertRel(inner.data[i * k + i], want[i], 1e-9, `axis ${i}`);
  });

  it('θ: the benign Hessian has eigenvalues 1 (signal and kept axes) and δ (the rest), and the benign gradient never points into the δ ones', () => {
    const delta = 1e-3;
    const keep = 2;
    const theta = complementTheta(W, { basis, signalDims }, keep, delta, randomRotation(D, 4));
    const H = congr(SP, theta);
    const e = jacobi(H);
    const values = [...e.values].sort((a, b) => a - b);
    const suppressed = D - signalDims - keep;
    for (let i = 0; i < D; i++) assertRel(values[i], i < suppressed ? delta : 1, 1e-8, `benign eigenvalue ${i}`);
    // The benign least-squares gradient at 0, θᵀ·Xᵀy/n (and θᵀ·μ for the bias), projected on the δ eigenvectors.
    const grad = mul(tr(theta), cross);
    const gMean = mul(tr(theta), { rows: D, cols: 1, data: mean });
    for (let j = 0; j < D; j++) {
      if (Math.abs(e.values[j] - delta) > 1e-6) continue;
      const v = { rows: D, cols: 1, data: Float64Array.from({ length: D }, (_, i) => e.vectors.data[i * D + j]) };
      for (const g of [grad, gMean]) assert.ok(norm(mul(tr(v), g)) < 1e-9 * norm(g), `gradient along δ eigenvector ${j}`);
    }
  });

  it('θ: the harmful curvature along the suppressed axes shrinks by exactly δ', () => {
    const delta = 1e-2;
    const theta = complementTheta(W, { basis, signalDims }, 0, delta, eye(D));
    const inner = congr(SH, theta);
    const before = congr(M, basis);
    for (let k = signalDims; k < D; k++) assertRel(inner.data[k * D + k], delta * before.data[k * D + k], 1e-9, `axis ${k}`);
  });
});
