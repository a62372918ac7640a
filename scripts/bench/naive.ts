/**
 * Plain-JS reference kernels: straightforward loops with no blocking or unrolling, used to show what the
 * native OpenBLAS/LAPACKE calls buy and to cross-check their results. Same conventions as models/linalg
 * (row-major Mat, inputs never modified).
 */
import type { Mat } from '../../models/linalg/types.js';

function zeros(rows: number, cols: number): Mat {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

/** A·B with the i-k-j loop order, so the innermost loop walks rows of B and C contiguously. */
export function jsGemm(A: Mat, B: Mat): Mat {
  if (A.cols !== B.rows) throw new RangeError(`jsGemm: ${A.rows}x${A.cols} times ${B.rows}x${B.cols}`);
  const m = A.rows;
  const k = A.cols;
  const n = B.cols;
  const C = zeros(m, n);
  const a = A.data;
  const b = B.data;
  const c = C.data;
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p];
      const bp = p * n;
      for (let j = 0; j < n; j++) c[ci + j] += aip * b[bp + j];
    }
  }
  return C;
}

/** XᵀX for X of shape N×D: the lower triangle in i-k-j order (k running over rows of X), then mirrored. */
export function jsSyrk(X: Mat): Mat {
  const N = X.rows;
  const D = X.cols;
  const K = zeros(D, D);
  const x = X.data;
  const out = K.data;
  for (let i = 0; i < D; i++) {
    const ki = i * D;
    for (let r = 0; r < N; r++) {
      const row = r * D;
      const xri = x[row + i];
      for (let j = 0; j <= i; j++) out[ki + j] += xri * x[row + j];
    }
  }
  for (let i = 0; i < D; i++) {
    for (let j = i + 1; j < D; j++) out[i * D + j] = out[j * D + i];
  }
  return K;
}

/** Lower Cholesky factor (dot-product form, row by row); the upper triangle is left zero. */
export function jsCholesky(S: Mat): Mat {
  const n = S.rows;
  const L = zeros(n, n);
  const s = S.data;
  const l = L.data;
  for (let i = 0; i < n; i++) {
    const li = i * n;
    for (let j = 0; j <= i; j++) {
      const lj = j * n;
      let sum = s[li + j];
      for (let k = 0; k < j; k++) sum -= l[li + k] * l[lj + k];
      if (i === j) {
        if (!(sum > 0)) throw new RangeError(`jsCholesky: not positive definite at column ${j}`);
        l[li + i] = Math.sqrt(sum);
      } else {
        l[li + j] = sum / l[lj + j];
      }
    }
  }
  return L;
}

/** Solves (L·Lᵀ)·X = B: a forward then a backward triangular solve, each a sequence of row updates. */
export function jsCholeskySolve(L: Mat, B: Mat): Mat {
  const n = L.rows;
  const m = B.cols;
  if (B.rows !== n) throw new RangeError(`jsCholeskySolve: L is ${n}x${n}, B has ${B.rows} rows`);
  const l = L.data;
  const x = Float64Array.from(B.data);
  for (let i = 0; i < n; i++) {
    const xi = i * m;
    for (let k = 0; k < i; k++) {
      const f = l[i * n + k];
      const xk = k * m;
      for (let j = 0; j < m; j++) x[xi + j] -= f * x[xk + j];
    }
    const inv = 1 / l[i * n + i];
    for (let j = 0; j < m; j++) x[xi + j] *= inv;
  }
  for (let i = n - 1; i >= 0; i--) {
    const xi = i * m;
    for (let k = i + 1; k < n; k++) {
      const f = l[k * n + i];
      const xk = k * m;
      for (let j = 0; j < m; j++) x[xi + j] -= f * x[xk + j];
    }
    const inv = 1 / l[i * n + i];
    for (let j = 0; j < m; j++) x[xi + j] *= inv;
  }
  return { rows: n, cols: m, data: x };
}

/** Solves A·X = B by Gaussian elimination with partial pivoting, then back substitution. */
export function jsGaussSolve(A: Mat, B: Mat): Mat {
  const n = A.rows;
  const m = B.cols;
  if (A.cols !== n || B.rows !== n) throw new RangeError(`jsGaussSolve: A is ${A.rows}x${A.cols}, B is ${B.rows}x${B.cols}`);
  const a = Float64Array.from(A.data);
  const b = Float64Array.from(B.data);
  for (let k = 0; k < n; k++) {
    let p = k;
    let best = Math.abs(a[k * n + k]);
    for (let i = k + 1; i < n; i++) {
      const v = Math.abs(a[i * n + k]);
      if (v > best) {
        best = v;
        p = i;
      }
    }
    if (best === 0) throw new RangeError(`jsGaussSolve: singular at column ${k}`);
    if (p !== k) {
      for (let j = k; j < n; j++) {
        const t = a[k * n + j];
        a[k * n + j] = a[p * n + j];
        a[p * n + j] = t;
      }
      for (let j = 0; j < m; j++) {
        const t = b[k * m + j];
        b[k * m + j] = b[p * m + j];
        b[p * m + j] = t;
      }
    }
    const pivot = a[k * n + k];
    for (let i = k + 1; i < n; i++) {
      const f = a[i * n + k] / pivot;
      if (f === 0) continue;
      a[i * n + k] = 0;
      for (let j = k + 1; j < n; j++) a[i * n + j] -= f * a[k * n + j];
      for (let j = 0; j < m; j++) b[i * m + j] -= f * b[k * m + j];
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    const bi = i * m;
    for (let k = i + 1; k < n; k++) {
      const f = a[i * n + k];
      const bk = k * m;
      for (let j = 0; j < m; j++) b[bi + j] -= f * b[bk + j];
    }
    const inv = 1 / a[i * n + i];
    for (let j = 0; j < m; j++) b[bi + j] *= inv;
  }
  return { rows: n, cols: m, data: b };
}
