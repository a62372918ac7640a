/**
 * The spectral part of the deep objective, in float64 through the engine. For a batch of tail features F (B×D):
 * S = FᵀF, R = R_ill(S) (harmful) or R_well(S) (benign), G = ∂R/∂S, and since S is symmetric and G too,
 * ∂R/∂F = 2·F·G. tfjs sees R as a scalar whose gradient with respect to F is that matrix (customGrad).
 */
import type * as TF from '@tensorflow/tfjs';
import { column } from '../engine/dense.js';
import { rIll, rWell } from '../engine/regularizers.js';
import { conditioningFromSpectrum, defaultRtol } from '../engine/spectrum.js';
import { gemm, syevr, syrk } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import type { Tf } from './backend.js';

export type SpectralKind = 'ill' | 'well';

export interface SpectralTerm {
  value: number;
  /** ∂R/∂F, B×D row-major. */
  gradF: Float64Array;
  kappa: number | null;
}

export function spectralTerm(F: ArrayLike<number>, rows: number, dim: number, kind: SpectralKind, rtol = defaultRtol(dim)): SpectralTerm {
  const X: Mat = { rows, cols: dim, data: Float64Array.from(F) };
  const S = syrk(X);
  const eig = syevr(S);
  const c = conditioningFromSpectrum(eig.values, rtol);
  const top = dim - 1;
  const low = Math.max(0, dim - Math.max(1, c.rank));
  const r =
    kind === 'ill'
      ? rIll(S, { lambdaMin: eig.values[low], uMin: column(eig.vectors!, low) })
      : rWell(S, { lambdaMax: eig.values[top], uMax: column(eig.vectors!, top) });
  const gradF = gemm(X, r.gradS, { alpha: 2 }).data;
  return { value: r.value, gradF, kappa: c.kappa };
}

export interface SpectralTiming {
  seconds: number;
  last: SpectralTerm | null;
}

/** R(F) as a tfjs scalar with the float64 gradient attached; `timing` collects the engine's share of the time. */
export function spectralLoss(tf: Tf, kind: SpectralKind, timing: SpectralTiming, rtol?: number): (features: TF.Tensor2D) => TF.Scalar {
  return tf.customGrad((...args: unknown[]) => {
    const features = args[0] as TF.Tensor2D;
    const [rows, dim] = features.shape;
    const data = features.dataSync();
    const start = performance.now();
    const term = spectralTerm(data, rows, dim, kind, rtol);
    timing.seconds += (performance.now() - start) / 1000;
    timing.last = term;
    const grad = Float32Array.from(term.gradF);
    return {
      value: tf.scalar(term.value),
      gradFunc: (dy: TF.Tensor) => [tf.mul(dy, tf.tensor2d(grad, [rows, dim]))],
    };
  }) as unknown as (features: TF.Tensor2D) => TF.Scalar;
}
