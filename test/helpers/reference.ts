/**
 * Independent reference computations for the engine tests: plain JS loops, no BLAS/LAPACK, no engine code.
 * (Not a test file itself; the *.test.ts files import it.)
 */
import assert from 'node:assert/strict';
import { mat, type Mat } from '../../models/linalg/index.js';

export const EPS = 2.220446049250313e-16;

/** Park–Miller minimal standard generator (exact in doubles), uniform in (0, 1). */
export function lcg(seed: number): () => number {
  let s = (Math.abs(Math.floor(seed)) % 2147483646) + 1;
  return () => {
    s = (s * 48271) % 2147483647;
    return s / 2147483647;
  };
}

/** Standard normals via the polar Marsaglia method over `lcg`. */
export function normals(seed: number): () => number {
  const u = lcg(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const v = spare;
      spare = null;
      return v;
    }
    for (;;) {
      const a = 2 * u() - 1;
      const b = 2 * u() - 1;
      const r = a * a + b * b;
      if (r > 0 && r < 1) {
        const f = Math.sqrt((-2 * Math.log(r)) / r);
        spare = b * f;
        return a * f;
      }
    }
  };
}

export function randn(rows: number, cols: number, next: () => number, scale = 1): Mat {
  const A = mat(rows, cols);
  for (let i = 0; i < A.data.length; i++) A.data[i] = scale * next();
  return A;
}

export function get(A: Mat, i: number, j: number): number {
  return A.data[i * A.cols + j];
}

export function mul(A: Mat, B: Mat): Mat {
  assert.equal(A.cols, B.rows, 'mul: inner dimensions');
  const C = mat(A.rows, B.cols);
  for (let i = 0; i < A.rows; i++) {
    for (let k = 0; k < A.cols; k++) {
      const a = A.data[i * A.cols + k];
      if (a === 0) continue;
      for (let j = 0; j < B.cols; j++) C.data[i * B.cols + j] += a * B.data[k * B.cols + j];
    }
  }
  return C;
}

export function tr(A: Mat): Mat {
  const T = mat(A.cols, A.rows);
  for (let i = 0; i < A.rows; i++) for (let j = 0; j < A.cols; j++) T.data[j * A.rows + i] = A.data[i * A.cols + j];
  return T;
}

export function add(A: Mat, B: Mat, beta = 1): Mat {
  const C = mat(A.rows, A.cols);
  for (let i = 0; i < C.data.length; i++) C.data[i] = A.data[i] + beta * B.data[i];
  return C;
}

export function eye(n: number, scale = 1): Mat {
  const I = mat(n, n);
  for (let i = 0; i < n; i++) I.data[i * n + i] = scale;
  return I;
}

/** Gram matrix XᵀX by explicit sums. */
export function gram(X: Mat): Mat {
  return mul(tr(X), X);
}

/** θᵀKθ, symmetrised. */
export function congr(K: Mat, theta: Mat): Mat {
  return sym(mul(tr(theta), mul(K, theta)));
}

export function sym(S: Mat): Mat {
  const n = S.rows;
  const out = mat(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out.data[i * n + j] = 0.5 * (S.data[i * n + j] + S.data[j * n + i]);
  return out;
}

export function froNorm(A: Mat): number {
  let s = 0;
  for (const v of A.data) s += v * v;
  return Math.sqrt(s);
}

export interface Eig {
  /** ascending */
  values: number[];
  /** n×n, column j belongs to values[j] */
  vectors: Mat;
}

/**
 * Cyclic Jacobi eigen-decomposition of a symmetric matrix: sweeps of plane rotations, each zeroing one off-diagonal
 * entry, until the off-diagonal mass is negligible. Backward stable; absolute accuracy about eps·‖S‖.
 */
export function jacobi(S: Mat): Eig {
  const n = S.rows;
  const A = Float64Array.from(S.data);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (A[i * n + j] + A[j * n + i]);
      A[i * n + j] = v;
      A[j * n + i] = v;
    }
  }
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  let total = 0;
  for (const v of A) total += v * v;
  const scale = Math.sqrt(total);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q] * A[p * n + q];
    if (Math.sqrt(off) <= 1e-18 * scale || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (apq === 0) continue;
        const app = A[p * n + p];
        const aqq = A[q * n + q];
        const tau = (aqq - app) / (2 * apq);
        let t: number;
        if (Math.abs(tau) > 1e150) t = 1 / (2 * tau);
        else t = (tau >= 0 ? 1 : -1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        // columns p, q
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p];
          const akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        // rows p, q
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k];
          const aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        A[p * n + q] = 0;
        A[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p];
          const vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => A[a * n + a] - A[b * n + b]);
  const values = order.map((i) => A[i * n + i]);
  const vectors = mat(n, n);
  for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) vectors.data[k * n + j] = V[k * n + order[j]];
  return { values, vectors };
}

/** The robust rule restated: λ_max over the smallest eigenvalue above n·eps·λ_max. */
export function robustKappa(values: number[], rtol = values.length * EPS): { kappa: number | null; rank: number; lmin: number | null } {
  const lmax = values[values.length - 1];
  if (!(lmax > 0)) return { kappa: null, rank: 0, lmin: null };
  const kept = values.filter((v) => v > rtol * lmax);
  return { kappa: lmax / kept[0], rank: kept.length, lmin: kept[0] };
}

/** κ over the top `rank` eigenvalues (for θᵀKθ with invertible θ the rank is rank(K)). */
export function kappaWithRank(values: number[], rank: number): number {
  return values[values.length - 1] / values[values.length - rank];
}

/** f(S) for a function of the eigenvalues: V·diag(f(λ))·Vᵀ. */
export function spectralFn(S: Mat, f: (lambda: number) => number): Mat {
  const { values, vectors } = jacobi(S);
  const n = S.rows;
  const out = mat(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += vectors.data[i * n + k] * f(values[k]) * vectors.data[j * n + k];
      out.data[i * n + j] = s;
    }
  }
  return out;
}

/** Gaussian elimination with partial pivoting: solves A·X = B (A square). */
export function solve(A: Mat, B: Mat): Mat {
  const n = A.rows;
  const m = B.cols;
  const a = Float64Array.from(A.data);
  const b = Float64Array.from(B.data);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r * n + col]) > Math.abs(a[piv * n + col])) piv = r;
    if (a[piv * n + col] === 0) throw new Error('solve: singular matrix');
    if (piv !== col) {
      for (let k = 0; k < n; k++) [a[col * n + k], a[piv * n + k]] = [a[piv * n + k], a[col * n + k]];
      for (let k = 0; k < m; k++) [b[col * m + k], b[piv * m + k]] = [b[piv * m + k], b[col * m + k]];
    }
    for (let r = col + 1; r < n; r++) {
      const f = a[r * n + col] / a[col * n + col];
      if (f === 0) continue;
      for (let k = col; k < n; k++) a[r * n + k] -= f * a[col * n + k];
      for (let k = 0; k < m; k++) b[r * m + k] -= f * b[col * m + k];
    }
  }
  const x = new Float64Array(n * m);
  for (let r = n - 1; r >= 0; r--) {
    for (let k = 0; k < m; k++) {
      let s = b[r * m + k];
      for (let c = r + 1; c < n; c++) s -= a[r * n + c] * x[c * m + k];
      x[r * m + k] = s / a[r * n + r];
    }
  }
  return mat(n, m, x);
}

/** Random orthogonal matrix by Gram–Schmidt (twice) on a Gaussian matrix. */
export function randomOrthogonal(n: number, next: () => number): Mat {
  const Q = randn(n, n, next);
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < n; j++) {
      for (let k = 0; k < j; k++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += Q.data[i * n + j] * Q.data[i * n + k];
        for (let i = 0; i < n; i++) Q.data[i * n + j] -= d * Q.data[i * n + k];
      }
      let norm = 0;
      for (let i = 0; i < n; i++) norm += Q.data[i * n + j] ** 2;
      norm = Math.sqrt(norm);
      for (let i = 0; i < n; i++) Q.data[i * n + j] /= norm;
    }
  }
  return Q;
}

/** Q·diag(values)·Qᵀ with a random orthogonal Q. */
export function withSpectrum(values: number[], next: () => number): Mat {
  const n = values.length;
  const Q = randomOrthogonal(n, next);
  const out = mat(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += Q.data[i * n + k] * values[k] * Q.data[j * n + k];
      out.data[i * n + j] = s;
    }
  }
  return sym(out);
}

/** Random SPD matrix with eigenvalues log-spaced between 1 and `cond` (times `scale`). */
export function randomSpd(n: number, cond: number, next: () => number, scale = 1): Mat {
  const values = Array.from({ length: n }, (_, i) => scale * Math.pow(cond, n === 1 ? 0 : i / (n - 1)));
  return withSpectrum(values, next);
}

/**
 * Orthogonal projection of the columns of Y onto span(columns of A), by modified Gram–Schmidt (run twice per
 * column), dropping columns whose remainder is below `dropTol` of their original norm.
 */
export function project(A: Mat, Y: Mat, dropTol = 1e-9): Mat {
  const n = A.rows;
  const basis: Float64Array[] = [];
  for (let j = 0; j < A.cols; j++) {
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = A.data[i * A.cols + j];
    let norm0 = 0;
    for (const x of v) norm0 += x * x;
    norm0 = Math.sqrt(norm0);
    if (norm0 === 0) continue;
    for (let pass = 0; pass < 2; pass++) {
      for (const q of basis) {
        let d = 0;
        for (let i = 0; i < n; i++) d += q[i] * v[i];
        for (let i = 0; i < n; i++) v[i] -= d * q[i];
      }
    }
    let norm = 0;
    for (const x of v) norm += x * x;
    norm = Math.sqrt(norm);
    if (norm <= dropTol * norm0) continue;
    for (let i = 0; i < n; i++) v[i] /= norm;
    basis.push(v);
  }
  const P = mat(Y.rows, Y.cols);
  for (let c = 0; c < Y.cols; c++) {
    for (const q of basis) {
      let d = 0;
      for (let i = 0; i < n; i++) d += q[i] * Y.data[i * Y.cols + c];
      for (let i = 0; i < n; i++) P.data[i * Y.cols + c] += d * q[i];
    }
  }
  return P;
}

export function relErr(actual: number, expected: number): number {
  if (actual === expected) return 0;
  return Math.abs(actual - expected) / Math.max(Math.abs(expected), Number.MIN_VALUE);
}

export function assertRel(actual: number | null | undefined, expected: number, tol: number, what = ''): void {
  assert.ok(typeof actual === 'number' && Number.isFinite(actual), `${what}: expected a finite number, got ${actual}`);
  const e = relErr(actual, expected);
  assert.ok(e <= tol, `${what}: ${actual} vs ${expected} (relative error ${e.toExponential(2)} > ${tol})`);
}

/** max |a − b| / max(‖b‖_max, floor) over matching entries. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let scale = floor;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return scale === 0 ? d : d / scale;
}

/** Every number reachable from `value` (arrays and plain objects), with its path. */
export function numbersIn(value: unknown, path = '', out: Array<[string, number]> = []): Array<[string, number]> {
  if (typeof value === 'number') out.push([path, value]);
  else if (Array.isArray(value)) value.forEach((v, i) => numbersIn(v, `${path}[${i}]`, out));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) numbersIn(v, path ? `${path}.${k}` : k, out);
  return out;
}

/** No NaN/Infinity anywhere, none in the JSON text, and no number lost in a JSON round trip. */
export function assertJsonClean(metrics: unknown): void {
  const bad = numbersIn(metrics).filter(([, v]) => !Number.isFinite(v));
  assert.deepEqual(bad, [], 'non-finite numbers in metrics');
  const json = JSON.stringify(metrics);
  assert.ok(!/NaN|Infinity/.test(json), 'NaN/Infinity text in the metrics JSON');
  assert.deepEqual(numbersIn(JSON.parse(json)), numbersIn(metrics));
}
