import { gemm, syevrMany } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { mat, symmetrize } from './dense.js';
import { defaultRtol, MACHINE_EPS } from './spectrum.js';
import { transformStats, type SufficientStats } from './stats.js';

/**
 * Linear probing with squared loss, f(W) = ‖ZW − Y‖²/(2N) = ½tr(WᵀHW) − tr(BᵀW) + c, kept in the eigenbasis of
 * H = ZᵀZ/N so that first-order attackers cost O(D) per step. Everything comes from the sufficient statistics.
 */
export interface ProbeProblem {
  dim: number;
  outputs: number;
  H: Mat;
  B: Mat;
  c: number;
  /** Eigenvalues of H in its numerical range, ascending. */
  lambdas: Float64Array;
  /** Eigenvectors for `lambdas`, D×r. */
  basis: Mat;
  /** Optimum in eigen coordinates, r×C. */
  optimum: Float64Array;
  fStar: number;
  /** f(0) − f*: the suboptimality every attacker starts from. */
  gap: number;
}

export interface Eigen {
  values: Float64Array;
  vectors: Mat;
}

/**
 * `eigenOfK`, the eigendecomposition of the (transformed) K when the caller already has it, spares one: without
 * standardization H = K/n has the same vectors and the values divided by n.
 */
export function probeProblem(stats: SufficientStats, theta: Mat | null, standardize: boolean, eigenOfK?: Eigen): ProbeProblem {
  return probeProblems([{ stats, theta, standardize, eigenOfK }])[0];
}

export interface ProbeSpec {
  stats: SufficientStats;
  theta: Mat | null;
  standardize: boolean;
  eigenOfK?: Eigen;
}

/** probeProblem for each spec, the eigendecompositions they need two at a time (syevrMany). */
export function probeProblems(specs: ProbeSpec[]): ProbeProblem[] {
  const quadratics = specs.map(quadraticOf);
  const known = specs.map((spec, i) =>
    spec.eigenOfK && !spec.standardize ? { values: spec.eigenOfK.values.map((v) => v / quadratics[i].n), vectors: spec.eigenOfK.vectors } : null,
  );
  const missing = quadratics.filter((_, i) => known[i] === null).map((q) => q.H);
  const computed = syevrMany(missing);
  let next = 0;
  return quadratics.map((q, i) => inEigenbasis(q, known[i] ?? (computed[next++] as Eigen)));
}

interface Quadratic {
  n: number;
  H: Mat;
  B: Mat;
  c: number;
}

function quadraticOf({ stats, theta, standardize }: ProbeSpec): Quadratic {
  if (!stats.XtY || !stats.yty || !stats.ySum) throw new Error('probe problems need targets');
  const s = theta ? transformStats(stats, theta) : stats;
  const n = s.n;
  const D = s.dim;
  const C = s.XtY!.cols;
  const H = mat(D, D);
  const B = mat(D, C);
  if (standardize) {
    const mu = s.colSum.map((v) => v / n);
    const sigma = new Float64Array(D);
    let maxDiag = 0;
    for (let j = 0; j < D; j++) maxDiag = Math.max(maxDiag, s.K.data[j * D + j]);
    const floor = D * MACHINE_EPS * maxDiag;
    for (let j = 0; j < D; j++) {
      const centred = s.K.data[j * D + j] - n * mu[j] * mu[j];
      sigma[j] = centred > floor ? Math.sqrt(centred / (n - 1)) : 1;
    }
    for (let i = 0; i < D; i++) {
      for (let j = 0; j < D; j++) {
        H.data[i * D + j] = (s.K.data[i * D + j] - n * mu[i] * mu[j]) / (sigma[i] * sigma[j] * n);
      }
      for (let c = 0; c < C; c++) {
        B.data[i * C + c] = (s.XtY!.data[i * C + c] - mu[i] * s.ySum![c]) / (sigma[i] * n);
      }
    }
  } else {
    for (let i = 0; i < D * D; i++) H.data[i] = s.K.data[i] / n;
    for (let i = 0; i < D * C; i++) B.data[i] = s.XtY!.data[i] / n;
  }
  symmetrize(H);
  let c = 0;
  for (let k = 0; k < C; k++) c += s.yty![k] / (2 * n);
  return { n, H, B, c };
}

function inEigenbasis({ H, B, c }: Quadratic, eig: Eigen): ProbeProblem {
  const D = H.rows;
  const C = B.cols;
  const values = eig.values;
  const threshold = defaultRtol(D) * values[D - 1];
  let first = 0;
  while (first < D && !(values[first] > threshold)) first++;
  const r = D - first;
  const basis = mat(D, r);
  for (let i = 0; i < D; i++) for (let j = 0; j < r; j++) basis.data[i * r + j] = eig.vectors.data[i * D + first + j];
  const lambdas = values.slice(first);
  const projected = gemm(basis, B, { transA: true });
  const optimum = new Float64Array(r * C);
  let gap = 0;
  for (let i = 0; i < r; i++) {
    for (let k = 0; k < C; k++) {
      const a = projected.data[i * C + k];
      optimum[i * C + k] = a / lambdas[i];
      gap += (a * a) / lambdas[i] / 2;
    }
  }
  return { dim: D, outputs: C, H, B, c, lambdas, basis, optimum, fStar: c - gap, gap };
}

/** f(W) − f* for W in the original coordinates, relative to the starting gap. */
export function relativeSuboptimality(p: ProbeProblem, W: Mat): number {
  const HW = gemm(p.H, W);
  let quad = 0;
  let lin = 0;
  for (let i = 0; i < W.data.length; i++) {
    quad += W.data[i] * HW.data[i];
    lin += p.B.data[i] * W.data[i];
  }
  const f = quad / 2 - lin + p.c;
  return Math.max(0, (f - p.fStar) / p.gap);
}
