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
  const signal = gemm(W, withMean(benignSignal, benignMean));
  const projector = signalProjector(signal);
  // The projector's eigenvectors: value 1 on the signal, 0 on its complement (ascending, so the signal comes last).
  const split = syevr(projector.P);
  const rank = projector.rank;
  const complementDims = D - rank;
  const basis = mat(D, D);
  for (let i = 0; i < D; i++) for (let k = 0; k < rank; k++) basis.data[i * D + k] = split.vectors!.data[i * D + (D - 1 - k)];
  if (complementDims > 0) {
    const C = mat(D, complementDims);
    for (let i = 0; i < D; i++) for (let k = 0; k < complementDims; k++) C.data[i * complementDims + k] = split.vectors!.data[i * D + k];
    const inner = syevr(symmetrize(gemm(gemm(C, harmfulWhitened, { transA: true }), C)));
    const axes = gemm(C, inner.vectors!);
    for (let i = 0; i < D; i++) {
      for (let k = 0; k < complementDims; k++) basis.data[i * D + rank + k] = axes.data[i * complementDims + (complementDims - 1 - k)];
    }
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

/** The orthogonal projector onto the columns' span, through their Gram matrix (columns may be dependent). */
function signalProjector(S: Mat): { P: Mat; rank: number } {
  const D = S.rows;
  const C = S.cols;
  const gram = syevr(symmetrize(gemm(S, S, { transA: true })));
  const top = gram.values[C - 1];
  const P = mat(D, D);
  let rank = 0;
  for (let k = 0; k < C; k++) {
    const lam = gram.values[k];
    if (!(lam > 1e-12 * top)) continue;
    rank++;
    const v = new Float64Array(D);
    for (let i = 0; i < D; i++) {
      let acc = 0;
      for (let c = 0; c < C; c++) acc += S.data[i * C + c] * gram.vectors!.data[c * C + k];
      v[i] = acc / Math.sqrt(lam);
    }
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) P.data[i * D + j] += v[i] * v[j];
  }
  return { P: symmetrize(P), rank };
}
