import { gemm, mat, identity } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';

export { mat, identity };

export function frobenius(A: Mat): number {
  let s = 0;
  for (let i = 0; i < A.data.length; i++) s += A.data[i] * A.data[i];
  return Math.sqrt(s);
}

/** θᵀKθ, symmetrised so that rounding never breaks the symmetry the eigen-solver relies on. */
export function congruence(K: Mat, theta: Mat): Mat {
  const Kt = gemm(K, theta);
  const H = gemm(theta, Kt, { transA: true });
  return symmetrize(H);
}

export function symmetrize(S: Mat): Mat {
  const n = S.rows;
  const d = S.data;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (d[i * n + j] + d[j * n + i]);
      d[i * n + j] = v;
      d[j * n + i] = v;
    }
  }
  return S;
}

/** A ← A + alpha·B (in place). */
export function axpy(A: Mat, B: Mat, alpha: number): Mat {
  for (let i = 0; i < A.data.length; i++) A.data[i] += alpha * B.data[i];
  return A;
}

export function scaled(A: Mat, alpha: number): Mat {
  const out = mat(A.rows, A.cols);
  for (let i = 0; i < A.data.length; i++) out.data[i] = alpha * A.data[i];
  return out;
}

export function copyMat(A: Mat): Mat {
  return { rows: A.rows, cols: A.cols, data: Float64Array.from(A.data) };
}

/** S ← S + alpha·u·uᵀ (in place). */
export function addOuter(S: Mat, u: Float64Array, alpha: number): Mat {
  const n = S.rows;
  for (let i = 0; i < n; i++) {
    const ai = alpha * u[i];
    for (let j = 0; j < n; j++) S.data[i * n + j] += ai * u[j];
  }
  return S;
}

export function column(A: Mat, j: number): Float64Array {
  const out = new Float64Array(A.rows);
  for (let i = 0; i < A.rows; i++) out[i] = A.data[i * A.cols + j];
  return out;
}

export function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
