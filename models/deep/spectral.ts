/**
 * The spectral part of the deep objective, in float64 through the engine. For a batch of tail features F (B×D):
 * S = FᵀF, R = R_ill(S) (harmful) or R_well(S) (benign), G = ∂R/∂S, and since S is symmetric and G too,
 * ∂R/∂F = 2·F·G. tfjs sees R as a scalar whose gradient with respect to F is that matrix (customGrad).
 */
import type * as TF from '@tensorflow/tfjs';
import { column } from '../engine/index.js';
import { rIll, rWell } from '../engine/index.js';
import { conditioningFromSpectrum } from '../engine/index.js';
import { float32Rtol } from './evaluate.js';
import { gemm, syevr, syrk } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import type { Tf } from './backend.js';

export type SpectralKind = 'ill' | 'well';

export interface SpectralTerm {
  value: number;
  /** ∂R/∂F, B×D row-major. */
  gradF: Float64Array;
  /** ∂ log κ(S)/∂F = 2·F·(u_max u_maxᵀ/λ_max − u_min u_minᵀ/λ_min), λ_min the smallest eigenvalue in the range. */
  gradLogKappa: Float64Array;
  kappa: number | null;
}

export function spectralTerm(F: ArrayLike<number>, rows: number, dim: number, kind: SpectralKind, rtol = float32Rtol(dim)): SpectralTerm {
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
  const uMax = column(eig.vectors!, top);
  const uMin = column(eig.vectors!, low);
  const K: Mat = { rows: dim, cols: dim, data: new Float64Array(dim * dim) };
  const lMax = eig.values[top];
  const lMin = eig.values[low];
  if (lMax > 0 && lMin > 0) {
    for (let i = 0; i < dim; i++) for (let j = 0; j < dim; j++) K.data[i * dim + j] = (uMax[i] * uMax[j]) / lMax - (uMin[i] * uMin[j]) / lMin;
  }
  const gradLogKappa = gemm(X, K, { alpha: 2 }).data;
  return { value: r.value, gradF, gradLogKappa, kappa: c.kappa };
}

export interface SpectralTiming {
  seconds: number;
  last: SpectralTerm | null;
}

function unitNorm(v: Float64Array): Float64Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s);
  return n > 0 ? v.map((x) => x / n) : v;
}

/**
 * The projector onto the null space of a linear head's weights W (C×D, as logits = F·Wᵀ + b): I − Wᵀ(WWᵀ)⁺W.
 * A feature change F·P leaves every logit as it was, so spectral steps projected with it spare the benign task to
 * first order (the task term corrects the rest). Null when W has no null space (C ≥ D).
 */
export function headNullProjector(W: Mat): Mat | null {
  const C = W.rows;
  const D = W.cols;
  if (C >= D) return null;
  const eig = syevr(gemm(W, W, { transB: true }));
  const top = eig.values[C - 1];
  const P: Mat = { rows: D, cols: D, data: new Float64Array(D * D) };
  for (let i = 0; i < D; i++) P.data[i * D + i] = 1;
  for (let k = 0; k < C; k++) {
    const lambda = eig.values[k];
    if (!(lambda > C * 2.220446049250313e-16 * top)) continue;
    // Row-space direction r = Wᵀu/√λ (unit norm); P −= r·rᵀ.
    const r = new Float64Array(D);
    for (let d = 0; d < D; d++) {
      let v = 0;
      for (let c = 0; c < C; c++) v += W.data[c * D + d] * eig.vectors!.data[c * C + k];
      r[d] = v / Math.sqrt(lambda);
    }
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) P.data[i * D + j] -= r[i] * r[j];
  }
  return P;
}

/**
 * R(F) as a tfjs scalar with a float64 gradient attached; `timing` collects the engine's share of the time.
 *
 * With `withLogKappa`, the feature-space gradient also carries ∓∂ log κ/∂F (raise κ for the harmful side, lower it
 * for the benign side), each part scaled to unit norm. R_ill and R_well act mostly through λ_max and ‖S‖_F; when a
 * batch's κ comes from a tiny λ_min, as with uncentred features whose mean dominates, they hardly move it, and the
 * log κ part is what reaches it.
 */
export function spectralLoss(
  tf: Tf,
  kind: SpectralKind,
  timing: SpectralTiming,
  opts: { rtol?: number; withLogKappa?: boolean; projector?: Mat | null } = {},
): (features: TF.Tensor2D) => TF.Scalar {
  const rtol = opts.rtol;
  return tf.customGrad((...args: unknown[]) => {
    const features = args[0] as TF.Tensor2D;
    const [rows, dim] = features.shape;
    const data = features.dataSync();
    const start = performance.now();
    const term = spectralTerm(data, rows, dim, kind, rtol);
    timing.seconds += (performance.now() - start) / 1000;
    timing.last = term;
    let g = term.gradF;
    if (opts.withLogKappa) {
      const a = unitNorm(term.gradF);
      const b = unitNorm(term.gradLogKappa);
      const sign = kind === 'ill' ? -1 : 1;
      g = a.map((x, i) => x + sign * b[i]);
    }
    if (opts.projector) g = gemm({ rows, cols: dim, data: g }, opts.projector).data;
    const grad = Float32Array.from(g);
    return {
      value: tf.scalar(term.value),
      gradFunc: (dy: TF.Tensor) => [tf.mul(dy, tf.tensor2d(grad, [rows, dim]))],
    };
  }) as unknown as (features: TF.Tensor2D) => TF.Scalar;
}
