import { gemm, mat, identity } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';

export { mat, identity };

// The helpers below read A.data into a local first: Mat objects come in several shapes, and V8 does not hoist a
// property load out of a loop over a polymorphic object (measured 3.5× slower at 79×79).

export function frobenius(A: Mat): number {
  const d = A.data;
  const n = d.length;
  let s0 = 0;
  let s1 = 0;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    s0 += d[i] * d[i];
    s1 += d[i + 1] * d[i + 1];
  }
  if (i < n) s0 += d[i] * d[i];
  return Math.sqrt(s0 + s1);
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
  const a = A.data;
  const b = B.data;
  for (let i = 0; i < a.length; i++) a[i] += alpha * b[i];
  return A;
}

export function copyMat(A: Mat): Mat {
  return { rows: A.rows, cols: A.cols, data: Float64Array.from(A.data) };
}

/** a·S + b·u·uᵀ as a new matrix. */
export function scaledPlusOuter(S: Mat, a: number, u: Float64Array, b: number): Mat {
  const n = S.rows;
  const out = mat(n, n);
  const s = S.data;
  const o = out.data;
  for (let i = 0; i < n; i++) {
    const bi = b * u[i];
    for (let j = 0; j < n; j++) o[i * n + j] = a * s[i * n + j] + bi * u[j];
  }
  return out;
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
