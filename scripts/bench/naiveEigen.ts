/**
 * Plain-JS symmetric eigensolvers, following the same route as LAPACK's dsyevr so the timings compare like
 * with like: Householder reduction to tridiagonal form, then either implicit QL with Wilkinson shifts (all
 * pairs) or Sturm bisection plus inverse iteration (one pair), and the back-transformation.
 */
import type { Mat } from '../../models/linalg/types.js';

const EPS = 2.220446049250313e-16;

interface Tridiagonal {
  n: number;
  /** Diagonal. */
  d: Float64Array;
  /** e[i] couples rows i and i+1; e[n-1] = 0. */
  e: Float64Array;
  /** reflectors[k], a unit vector over indices k+1..n-1, or null where column k needed no reflection. */
  reflectors: Array<Float64Array | null>;
}

/** S = Q·T·Qᵀ with Q = H_0·H_1·…·H_{n-3}, H_k = I − 2·v_k·v_kᵀ. */
function tridiagonalize(S: Mat): Tridiagonal {
  const n = S.rows;
  const a = Float64Array.from(S.data);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const reflectors: Array<Float64Array | null> = [];
  const p = new Float64Array(n);
  const w = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    const off = k + 1;
    const m = n - off;
    d[k] = a[k * n + k];
    let norm2 = 0;
    for (let i = off; i < n; i++) norm2 += a[i * n + k] * a[i * n + k];
    const x0 = a[off * n + k];
    // The sign opposite to x0 avoids cancellation in v0 = x0 − alpha.
    const alpha = x0 >= 0 ? -Math.sqrt(norm2) : Math.sqrt(norm2);
    const v = new Float64Array(m);
    for (let i = 0; i < m; i++) v[i] = a[(off + i) * n + k];
    v[0] -= alpha;
    let vn = 0;
    for (let i = 0; i < m; i++) vn += v[i] * v[i];
    vn = Math.sqrt(vn);
    if (vn === 0) {
      e[k] = x0;
      reflectors.push(null);
      continue;
    }
    e[k] = alpha;
    for (let i = 0; i < m; i++) v[i] /= vn;
    // Trailing block A22 ← H·A22·H = A22 − v·wᵀ − w·vᵀ with p = A22·v, w = 2(p − (vᵀp)·v).
    let c = 0;
    for (let i = 0; i < m; i++) {
      const row = (off + i) * n + off;
      let s = 0;
      for (let j = 0; j < m; j++) s += a[row + j] * v[j];
      p[i] = s;
      c += v[i] * s;
    }
    for (let i = 0; i < m; i++) w[i] = 2 * (p[i] - c * v[i]);
    for (let i = 0; i < m; i++) {
      const row = (off + i) * n + off;
      const vi = v[i];
      const wi = w[i];
      for (let j = 0; j < m; j++) a[row + j] -= vi * w[j] + wi * v[j];
    }
    reflectors.push(v);
  }
  if (n >= 2) {
    d[n - 2] = a[(n - 2) * n + n - 2];
    e[n - 2] = a[(n - 1) * n + n - 2];
  }
  if (n >= 1) d[n - 1] = a[(n - 1) * n + n - 1];
  return { n, d, e, reflectors };
}

/** Qᵀ = H_{n-3}·…·H_0 as a dense row-major matrix, accumulated from the smallest trailing block outwards. */
function formQt(t: Tridiagonal): Float64Array {
  const n = t.n;
  const W = new Float64Array(n * n);
  for (let i = 0; i < n; i++) W[i * n + i] = 1;
  const wv = new Float64Array(n);
  for (let k = t.reflectors.length - 1; k >= 0; k--) {
    const v = t.reflectors[k];
    if (!v) continue;
    const off = k + 1;
    const m = n - off;
    // W ← W·H_k; W is still the identity outside rows/columns off.., so only that block changes.
    for (let i = 0; i < m; i++) {
      const row = (off + i) * n + off;
      let s = 0;
      for (let j = 0; j < m; j++) s += W[row + j] * v[j];
      wv[i] = 2 * s;
    }
    for (let i = 0; i < m; i++) {
      const row = (off + i) * n + off;
      const f = wv[i];
      for (let j = 0; j < m; j++) W[row + j] -= f * v[j];
    }
  }
  return W;
}

export interface JsEigenResult {
  values: Float64Array;
  /** n×n, column j is the eigenvector of values[j] (as from syevr). */
  vectors: Mat;
  /** True when the QL iteration was cut short by maxIterationsPerValue: the result has not converged. */
  truncated: boolean;
  qlIterations: number;
}

export interface JsEigenOptions {
  /** QL iterations allowed per eigenvalue; past it the solver moves on (result marked truncated). Default 60, then it throws. */
  maxIterationsPerValue?: number;
}

/** All eigenpairs of a symmetric matrix, ascending. */
export function jsSymmetricEigen(S: Mat, opts: JsEigenOptions = {}): JsEigenResult {
  const limit = opts.maxIterationsPerValue;
  const t = tridiagonalize(S);
  const n = t.n;
  const d = t.d;
  const e = t.e;
  // Rows of Z are eigenvectors (Zᵀ in the usual notation), so each plane rotation combines two contiguous rows.
  const Z = formQt(t);
  let truncated = false;
  let total = 0;
  for (let l = 0; l < n; l++) {
    let iter = 0;
    for (;;) {
      let m = l;
      while (m < n - 1) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= EPS * dd) break;
        m++;
      }
      if (m === l) break;
      if (limit !== undefined && iter >= limit) {
        truncated = true;
        break;
      }
      if (++iter > 60) throw new Error(`jsSymmetricEigen: no convergence for eigenvalue ${l}`);
      total++;
      // Wilkinson shift from the leading 2×2 block.
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let p = 0;
      let i = m - 1;
      let deflated = false;
      for (; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          // Underflow: the matrix split at i; restart the search for this l.
          d[i + 1] -= p;
          e[m] = 0;
          deflated = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        const ri = i * n;
        const rj = (i + 1) * n;
        for (let k = 0; k < n; k++) {
          const zi = Z[ri + k];
          const zj = Z[rj + k];
          Z[rj + k] = s * zi + c * zj;
          Z[ri + k] = c * zi - s * zj;
        }
      }
      if (deflated) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[x] - d[y]);
  const values = new Float64Array(n);
  const vectors: Mat = { rows: n, cols: n, data: new Float64Array(n * n) };
  for (let j = 0; j < n; j++) {
    const src = order[j];
    values[j] = d[src];
    for (let r = 0; r < n; r++) vectors.data[r * n + j] = Z[src * n + r];
  }
  return { values, vectors, truncated, qlIterations: total };
}

/** Number of eigenvalues of the tridiagonal matrix below x (Sturm sequence count). */
function countBelow(t: Tridiagonal, x: number, pivmin: number): number {
  let count = 0;
  let q = 1;
  for (let i = 0; i < t.n; i++) {
    const off = i > 0 ? (t.e[i - 1] * t.e[i - 1]) / q : 0;
    q = t.d[i] - x - off;
    if (Math.abs(q) < pivmin) q = -pivmin;
    if (q < 0) count++;
  }
  return count;
}

/** Solves (T − shift·I)·x = b by tridiagonal LU with partial pivoting; b is overwritten with x. */
function shiftedTridiagonalSolve(t: Tridiagonal, shift: number, b: Float64Array, tiny: number): void {
  const n = t.n;
  const dm = new Float64Array(n);
  const du = new Float64Array(n);
  const du2 = new Float64Array(n);
  const dl = new Float64Array(n);
  const lo = new Float64Array(n);
  const swapped = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    dm[i] = t.d[i] - shift;
    du[i] = t.e[i];
    dl[i] = t.e[i];
  }
  for (let i = 0; i < n - 1; i++) {
    if (Math.abs(dm[i]) >= Math.abs(dl[i])) {
      if (dm[i] === 0) dm[i] = tiny;
      const f = dl[i] / dm[i];
      lo[i] = f;
      dm[i + 1] -= f * du[i];
    } else {
      // Swap rows i and i+1 first; row i then carries a second superdiagonal entry.
      const f = dm[i] / dl[i];
      lo[i] = f;
      swapped[i] = 1;
      const oldDu = du[i];
      const nextDm = dm[i + 1];
      const nextDu = i + 1 < n - 1 ? du[i + 1] : 0;
      dm[i] = dl[i];
      du[i] = nextDm;
      du2[i] = nextDu;
      dm[i + 1] = oldDu - f * nextDm;
      if (i + 1 < n - 1) du[i + 1] = -f * nextDu;
    }
  }
  if (dm[n - 1] === 0) dm[n - 1] = tiny;
  for (let i = 0; i < n - 1; i++) {
    if (swapped[i]) {
      const tmp = b[i];
      b[i] = b[i + 1];
      b[i + 1] = tmp;
    }
    b[i + 1] -= lo[i] * b[i];
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i];
    if (i + 1 < n) s -= du[i] * b[i + 1];
    if (i + 2 < n) s -= du2[i] * b[i + 2];
    b[i] = s / dm[i];
  }
}

export interface JsEigenpair {
  value: number;
  /** Unit eigenvector. */
  vector: Float64Array;
}

/** The index-th smallest eigenpair (0 = lowest) of a symmetric matrix. */
export function jsEigenpairAt(S: Mat, index: number): JsEigenpair {
  const t = tridiagonalize(S);
  const n = t.n;
  if (!(index >= 0 && index < n)) throw new RangeError(`jsEigenpairAt: index ${index} outside 0..${n - 1}`);
  let lo = Infinity;
  let hi = -Infinity;
  let norm = 0;
  for (let i = 0; i < n; i++) {
    const radius = (i > 0 ? Math.abs(t.e[i - 1]) : 0) + (i < n - 1 ? Math.abs(t.e[i]) : 0);
    lo = Math.min(lo, t.d[i] - radius);
    hi = Math.max(hi, t.d[i] + radius);
    norm = Math.max(norm, Math.abs(t.d[i]) + radius);
  }
  const pivmin = Math.max(Number.MIN_VALUE * 1e10, EPS * EPS * norm);
  for (let it = 0; it < 200 && hi - lo > 2 * EPS * Math.max(Math.abs(lo), Math.abs(hi)) + pivmin; it++) {
    const mid = 0.5 * (lo + hi);
    if (countBelow(t, mid, pivmin) > index) hi = mid;
    else lo = mid;
  }
  const value = 0.5 * (lo + hi);
  const z = new Float64Array(n).fill(1 / Math.sqrt(n));
  for (let it = 0; it < 3; it++) {
    shiftedTridiagonalSolve(t, value, z, EPS * norm);
    let s = 0;
    for (let i = 0; i < n; i++) s += z[i] * z[i];
    s = 1 / Math.sqrt(s);
    for (let i = 0; i < n; i++) z[i] *= s;
  }
  // Back-transform: y = H_0·(H_1·(…·(H_{n-3}·z))).
  for (let k = t.reflectors.length - 1; k >= 0; k--) {
    const v = t.reflectors[k];
    if (!v) continue;
    const off = k + 1;
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * z[off + i];
    s *= 2;
    for (let i = 0; i < v.length; i++) z[off + i] -= s * v[i];
  }
  return { value, vector: z };
}
