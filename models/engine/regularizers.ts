import { gemm } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { frobenius, scaledPlusOuter } from './dense.js';
import type { ExtremePairs } from './spectrum.js';

export interface RegularizerValue {
  value: number;
  /** ∂R/∂S, symmetric D×D. */
  gradS: Mat;
}

/** R_well(S) = λ_max²/2 − ‖S‖_F²/(2D); it is zero exactly when all eigenvalues are equal. */
export function rWell(S: Mat, pairs: Pick<ExtremePairs, 'lambdaMax' | 'uMax'>): RegularizerValue {
  const D = S.rows;
  const fro = frobenius(S);
  const value = (pairs.lambdaMax * pairs.lambdaMax) / 2 - (fro * fro) / (2 * D);
  const gradS = scaledPlusOuter(S, -1 / D, pairs.uMax, pairs.lambdaMax);
  return { value, gradS };
}

/**
 * R_ill(S) = 1 / (‖S‖_F²/(2D) − λ_min²/2). λ_min is the smallest eigenvalue in the range of S (the rank is fixed by
 * the data), since a rank-deficient S would otherwise pin it to an exact zero that no step can move.
 */
export function rIll(S: Mat, pairs: Pick<ExtremePairs, 'lambdaMin' | 'uMin'>): RegularizerValue {
  const D = S.rows;
  const fro = frobenius(S);
  const denom = (fro * fro) / (2 * D) - (pairs.lambdaMin * pairs.lambdaMin) / 2;
  const value = 1 / denom;
  const gradS = scaledPlusOuter(S, -(value * value) / D, pairs.uMin, value * value * pairs.lambdaMin);
  return { value, gradS };
}

/** ∂R/∂θ for H = θᵀKθ: 2·K·θ·G. */
export function thetaGradient(K: Mat, theta: Mat, gradS: Mat): Mat {
  return gemm(gemm(K, theta), gradS, { alpha: 2 });
}

/** The K⁻¹-preconditioned gradient (the paper's Theorem 4.3): 2·θ·G. */
export function preconditionedGradient(theta: Mat, gradS: Mat): Mat {
  return gemm(theta, gradS, { alpha: 2 });
}
