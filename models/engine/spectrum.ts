import { eigenpairsAt, gemm, syevr } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { column, symmetrize } from './dense.js';

export const MACHINE_EPS = 2.220446049250313e-16;
export const PAPER_SHIFT = 1e-6;

/** numpy matrix_rank's rule: eigenvalues at or below D·eps·λ_max are rounding noise. */
export function defaultRtol(dim: number): number {
  return dim * MACHINE_EPS;
}

export interface Conditioning {
  kappa: number | null;
  lambdaMax: number;
  lambdaMinPositive: number | null;
  rank: number;
}

/** Robust κ from an ascending spectrum: λ_max over the smallest eigenvalue above rtol·λ_max. */
export function conditioningFromSpectrum(values: Float64Array, rtol: number): Conditioning {
  const lambdaMax = values[values.length - 1];
  if (!(lambdaMax > 0)) return { kappa: null, lambdaMax, lambdaMinPositive: null, rank: 0 };
  const threshold = rtol * lambdaMax;
  let first = values.length - 1;
  for (let i = 0; i < values.length; i++) {
    if (values[i] > threshold) {
      first = i;
      break;
    }
  }
  const lambdaMinPositive = values[first];
  return { kappa: lambdaMax / lambdaMinPositive, lambdaMax, lambdaMinPositive, rank: values.length - first };
}

/**
 * κ of θᵀKθ for a θ applied to a Gram matrix of known rank: rounding noise in its null space scales with ‖θ‖²‖K‖
 * rather than with λ_max(θᵀKθ), so the threshold rule alone could count it; the rank caps the range.
 */
export function conditioningWithRank(values: Float64Array, rtol: number, rank: number): Conditioning {
  const c = conditioningFromSpectrum(values, rtol);
  if (c.kappa === null || c.rank <= rank) return c;
  const lambdaMinPositive = values[values.length - rank];
  return { kappa: c.lambdaMax / lambdaMinPositive, lambdaMax: c.lambdaMax, lambdaMinPositive, rank };
}

export function conditioning(S: Mat, rtol = defaultRtol(S.rows)): Conditioning {
  return conditioningFromSpectrum(syevr(S, { vectors: false }).values, rtol);
}

export function kappa(S: Mat, rtol = defaultRtol(S.rows)): number | null {
  return conditioning(S, rtol).kappa;
}

/** The paper's convention: eigenvalues of S + 1e-6·I, keeping those above 1e-6. */
export function kappaPaperFromSpectrum(values: Float64Array): number | null {
  const kept: number[] = [];
  for (const v of values) if (v + PAPER_SHIFT > PAPER_SHIFT) kept.push(v + PAPER_SHIFT);
  if (kept.length === 0) return null;
  return kept[kept.length - 1] / kept[0];
}

export function kappaPaper(S: Mat): number | null {
  return kappaPaperFromSpectrum(syevr(S, { vectors: false }).values);
}

export interface ExtremePairs {
  lambdaMax: number;
  uMax: Float64Array;
  lambdaMin: number;
  uMin: Float64Array;
}

/**
 * λ_max and the smallest eigenvalue in the range, with their vectors. For H = θᵀKθ with invertible θ the rank
 * equals rank(K), so the range's smallest eigenvalue sits at a known index and an index-range solve suffices.
 */
export function extremePairs(S: Mat, rank: number): ExtremePairs {
  const n = S.rows;
  const lowIndex = Math.max(0, n - rank);
  return pairsOf(eigenpairsAt(S, lowIndex === n - 1 ? [n - 1] : [n - 1, lowIndex]));
}

/** Extreme pairs from eigenpairs listed top first, the low one last (one pair when they coincide). */
export function pairsOf(e: { values: Float64Array; vectors: Mat }): ExtremePairs {
  const low = e.values.length - 1;
  return { lambdaMax: e.values[0], uMax: column(e.vectors, 0), lambdaMin: e.values[low], uMin: column(e.vectors, low) };
}

/** κ(θ) from the singular values of θ: sqrt of the eigenvalues of θᵀθ. */
export function matrixCondition(theta: Mat): number | null {
  const vals = syevr(symmetrize(gemm(theta, theta, { transA: true })), { vectors: false }).values;
  const lo = vals[0];
  const hi = vals[vals.length - 1];
  if (!(lo > 0) || !(hi > 0)) return null;
  return Math.sqrt(hi / lo);
}
