import { gemm, syevr } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { mat, symmetrize } from './dense.js';

/**
 * The second family of spectral candidates: suppress everything the benign task does not use.
 *
 * In the benign-whitened space the benign probe's optimum lies in the span of the benign signal, W·Xᵀy/n (and W·μ
 * when uncentred: the probe's bias needs the mean), a handful of directions. Every other direction carries none of
 * the benign task's starting gap, so shrinking it by √δ costs the benign attackers nothing along the way to their
 * target, while a harmful probe whose optimum leans on those directions must grow weights δ^-½ times larger along
 * curvatures δ times smaller. Within that complement the harmful curvature's own axes are used, largest first, so
 * that the few largest can stay at full scale: they set the harmful attacker's step size (and λ_max of its κ)
 * while the rest is suppressed.
 */
export interface ComplementBasis {
  /** D×D orthonormal: the benign signal's directions first, then the complement by decreasing harmful curvature. */
  basis: Mat;
  signalDims: number;
}

/**
 * @param W the whitening map, D×D
 * @param benignSignal the benign cross moment Xᵀy/n (centred or not), D×C, in the original coordinates
 * @param benignMean the benign feature mean when the geometry is uncentred, else null
 * @param harmfulWhitened W·A_H·W, the harmful second moments in the whitened space
 */
export function complementBasis(W: Mat, benignSignal: Mat, benignMean: Float64Array | null, harmfulWhitened: Mat): ComplementBasis {
  const D = W.rows;
  const V = orthonormalColumns(gemm(W, withMean(benignSignal, benignMean)));
  const rank = V.cols;
  // One eigendecomposition gives both parts: (I − VVᵀ)·M·(I − VVᵀ) − VVᵀ has eigenvalue −1 on the signal and the
  // harmful curvatures (≥ 0) of the complement on their axes.
  const M = harmfulWhitened;
  const MV = gemm(M, V);
  const T = gemm(V, gemm(V, MV, { transA: true }));
  // A = M − V·(MV)ᵀ − (MV)·Vᵀ − V·Vᵀ + V·(VᵀMV)·Vᵀ, as M + L·Rᵀ with L = [V MV V T] and R = [−MV −V −V V].
  const L = mat(D, 4 * rank);
  const R = mat(D, 4 * rank);
  for (let i = 0; i < D; i++) {
    for (let a = 0; a < rank; a++) {
      const at = (block: number) => i * 4 * rank + block * rank + a;
      const v = V.data[i * rank + a];
      const mv = MV.data[i * rank + a];
      L.data[at(0)] = v;
      R.data[at(0)] = -mv;
      L.data[at(1)] = mv;
      R.data[at(1)] = -v;
      L.data[at(2)] = v;
      R.data[at(2)] = -v;
      L.data[at(3)] = T.data[i * rank + a];
      R.data[at(3)] = v;
    }
  }
  const A = gemm(L, R, { transB: true });
  for (let i = 0; i < D * D; i++) A.data[i] += M.data[i];
  const e = syevr(symmetrize(A));
  const basis = mat(D, D);
  for (let i = 0; i < D; i++) {
    for (let k = 0; k < rank; k++) basis.data[i * D + k] = V.data[i * rank + k];
    // Ascending eigenvalues: the signal's −1's first, then the complement from its smallest curvature up.
    for (let k = rank; k < D; k++) basis.data[i * D + k] = e.vectors!.data[i * D + (D - 1 - (k - rank))];
  }
  return { basis, signalDims: rank };
}

/** θ = W·B·diag(g)·U with g = 1 on the signal and on the `keep` largest harmful axes of the complement, √δ elsewhere. */
export function complementTheta(W: Mat, c: ComplementBasis, keep: number, delta: number, rotation: Mat): Mat {
  const D = W.rows;
  const scaled = mat(D, D);
  const kept = c.signalDims + keep;
  const shrink = Math.sqrt(delta);
  for (let i = 0; i < D; i++) for (let k = 0; k < D; k++) scaled.data[i * D + k] = c.basis.data[i * D + k] * (k < kept ? 1 : shrink);
  return gemm(gemm(W, scaled), rotation);
}

function withMean(signal: Mat, mean: Float64Array | null): Mat {
  if (!mean) return signal;
  const D = signal.rows;
  const C = signal.cols + 1;
  const out = mat(D, C);
  for (let i = 0; i < D; i++) {
    for (let c = 0; c < signal.cols; c++) out.data[i * C + c] = signal.data[i * signal.cols + c];
    out.data[i * C + C - 1] = mean[i];
  }
  return out;
}

/** An orthonormal basis of the columns' span (modified Gram–Schmidt, twice; columns that add nothing new are dropped). */
function orthonormalColumns(S: Mat): Mat {
  const D = S.rows;
  const kept: Float64Array[] = [];
  let largest = 0;
  for (let c = 0; c < S.cols; c++) largest = Math.max(largest, Math.hypot(...Array.from({ length: D }, (_, i) => S.data[i * S.cols + c])));
  for (let c = 0; c < S.cols; c++) {
    const v = Float64Array.from({ length: D }, (_, i) => S.data[i * S.cols + c]);
    for (let pass = 0; pass < 2; pass++) {
      for (const q of kept) {
        let d = 0;
        for (let i = 0; i < D; i++) d += q[i] * v[i];
        for (let i = 0; i < D; i++) v[i] -= d * q[i];
      }
    }
    const n = Math.hypot(...v);
    if (!(n > 1e-10 * largest)) continue;
    for (let i = 0; i < D; i++) v[i] /= n;
    kept.push(v);
  }
  const out = mat(D, kept.length);
  kept.forEach((q, k) => {
    for (let i = 0; i < D; i++) out.data[i * kept.length + k] = q[i];
  });
  return out;
}
