import { gemm, syevrMany } from '../linalg/index.js';
import type { EigenResult, Mat } from '../linalg/types.js';
import { mat, symmetrize } from './dense.js';
import { defaultRtol } from './spectrum.js';
import type { SufficientStats } from './stats.js';
import type { Task } from './targets.js';

/** A linear head with bias: predictions = X·weights + bias. */
export interface LinearHead {
  weights: Mat;
  bias: Float64Array;
}

/**
 * The best squared-loss linear probe (with intercept) from the sufficient statistics, solved through the
 * pseudo-inverse so that rank-deficient features are handled the way least squares defines it.
 */
export function fitProbe(s: SufficientStats): LinearHead {
  return fitProbes([s])[0];
}

/** fitProbe for each set of statistics, the eigendecompositions two at a time. */
export function fitProbes(list: SufficientStats[]): LinearHead[] {
  const systems = list.map(normalEquations);
  const eigens = syevrMany(systems.map((sys) => sys.A));
  return systems.map((sys, i) => {
    const D = sys.A.rows - 1;
    const C = sys.rhs.cols;
    const solution = pseudoSolve(eigens[i], sys.rhs);
    const weights = mat(D, C);
    weights.data.set(solution.data.subarray(0, D * C));
    return { weights, bias: solution.data.slice(D * C) };
  });
}

/** [K, Xᵀ1; 1ᵀX, n]·[w; b] = [XᵀY; 1ᵀY]. */
function normalEquations(s: SufficientStats): { A: Mat; rhs: Mat } {
  if (!s.XtY || !s.ySum) throw new Error('fitting a probe needs targets');
  const D = s.dim;
  const C = s.XtY.cols;
  const A = mat(D + 1, D + 1);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) A.data[i * (D + 1) + j] = s.K.data[i * D + j];
    A.data[i * (D + 1) + D] = s.colSum[i];
    A.data[D * (D + 1) + i] = s.colSum[i];
  }
  A.data[D * (D + 1) + D] = s.n;
  const rhs = mat(D + 1, C);
  for (let i = 0; i < D; i++) for (let c = 0; c < C; c++) rhs.data[i * C + c] = s.XtY.data[i * C + c];
  for (let c = 0; c < C; c++) rhs.data[D * C + c] = s.ySum[c];
  return { A: symmetrize(A), rhs };
}

function pseudoSolve(eig: EigenResult, B: Mat): Mat {
  const n = eig.values.length;
  const V = eig.vectors!;
  const threshold = defaultRtol(n) * eig.values[n - 1];
  const proj = gemm(V, B, { transA: true });
  for (let i = 0; i < n; i++) {
    const l = eig.values[i];
    const inv = l > threshold ? 1 / l : 0;
    for (let c = 0; c < B.cols; c++) proj.data[i * B.cols + c] *= inv;
  }
  return gemm(V, proj);
}

export function predict(X: Mat, head: LinearHead): Mat {
  const P = gemm(X, head.weights);
  for (let i = 0; i < P.rows; i++) for (let c = 0; c < P.cols; c++) P.data[i * P.cols + c] += head.bias[c];
  return P;
}

/** MSE for regression, accuracy for classification (sign for ±1 targets, argmax for one-hot). */
export function score(task: Task, predictions: Mat, Y: Mat): number {
  const n = Y.rows;
  const C = Y.cols;
  if (task === 'regression') {
    let s = 0;
    for (let i = 0; i < predictions.data.length; i++) s += (predictions.data[i] - Y.data[i]) ** 2;
    return s / (n * C);
  }
  let correct = 0;
  for (let i = 0; i < n; i++) {
    if (C === 1) {
      if (Math.sign(predictions.data[i]) === Math.sign(Y.data[i])) correct++;
    } else {
      let best = 0;
      let truth = 0;
      for (let c = 1; c < C; c++) {
        if (predictions.data[i * C + c] > predictions.data[i * C + best]) best = c;
        if (Y.data[i * C + c] > Y.data[i * C + truth]) truth = c;
      }
      if (best === truth) correct++;
    }
  }
  return correct / n;
}
