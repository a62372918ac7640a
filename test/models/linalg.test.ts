import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  LinalgError,
  adamQuadratic,
  congruenceExtremes,
  eigenpairsAt,
  eigenDescent,
  startAdamQuadratic,
  syevrMany,
  coreSelection,
  gemm,
  gesv,
  getThreads,
  identity,
  mat,
  matvec,
  openblasConfig,
  openblasCore,
  potrf,
  potrs,
  setThreads,
  syevr,
  syrk,
  transpose,
  type LinalgErrorCode,
  type Mat,
} from '../../models/linalg/index.js';

// ---------- independent reference helpers (plain JS, no BLAS) ----------

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
}

function randMat(rows: number, cols: number, r: () => number): Mat {
  const m = mat(rows, cols);
  for (let i = 0; i < m.data.length; i++) m.data[i] = r();
  return m;
}

function at(A: Mat, i: number, j: number): number {
  return A.data[i * A.cols + j];
}

function naiveMul(A: Mat, B: Mat, transA = false, transB = false): Mat {
  const m = transA ? A.cols : A.rows;
  const k = transA ? A.rows : A.cols;
  const n = transB ? B.rows : B.cols;
  const C = mat(m, n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (transA ? at(A, p, i) : at(A, i, p)) * (transB ? at(B, j, p) : at(B, p, j));
      C.data[i * n + j] = s;
    }
  }
  return C;
}

function naiveTranspose(A: Mat): Mat {
  const T = mat(A.cols, A.rows);
  for (let i = 0; i < A.rows; i++) for (let j = 0; j < A.cols; j++) T.data[j * A.rows + i] = at(A, i, j);
  return T;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  const d = maxDiff(actual, expected);
  assert.ok(d <= tol, `${what}: max |diff| = ${d} > ${tol}`);
}

function randSym(n: number, r: () => number): Mat {
  const G = randMat(n, n, r);
  const S = mat(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) S.data[i * n + j] = at(G, i, j) + at(G, j, i);
  return S;
}

function randSpd(n: number, r: () => number): Mat {
  const G = randMat(n + 3, n, r);
  const S = naiveMul(G, G, true, false);
  for (let i = 0; i < n; i++) S.data[i * n + i] += n;
  return S;
}

/** Cyclic Jacobi rotations; eigenvalues of a symmetric matrix, ascending. */
function jacobiEigenvalues(S: Mat): number[] {
  const n = S.rows;
  const a = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => at(S, i, j)));
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) off += a[i][j] * a[i][j];
    if (off < 1e-26) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(a[p][q]) < 1e-300) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k];
          const aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
      }
    }
  }
  return a.map((row, i) => row[i]).sort((x, y) => x - y);
}

/** Q·diag(d)·Qᵀ with Q = I − 2vvᵀ/(vᵀv), a Householder reflection: the spectrum is exactly d. */
function knownSpectrum(d: number[], r: () => number): Mat {
  const n = d.length;
  const v = Array.from({ length: n }, () => r());
  const vv = v.reduce((s, x) => s + x * x, 0);
  const Q = identity(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) Q.data[i * n + j] -= (2 * v[i] * v[j]) / vv;
  const QD = mat(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) QD.data[i * n + j] = at(Q, i, j) * d[j];
  const S = naiveMul(QD, Q, false, true);
  // exact symmetry so the input is unambiguous
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) S.data[j * n + i] = S.data[i * n + j];
  return S;
}

function expectCode(fn: () => unknown, code: LinalgErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof LinalgError, `expected LinalgError, got ${String(err)}`);
    assert.equal(err.code, code, `wrong code (message: ${err.message})`);
    assert.ok(err.message.length > 0);
    return true;
  });
}

function copyMat(A: Mat): Mat {
  return { rows: A.rows, cols: A.cols, data: A.data.slice() };
}

// ---------- gemm ----------

describe('gemm', () => {
  const r = rng(1);
  for (const [transA, transB] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    it(`matches a naive triple loop (transA=${transA}, transB=${transB})`, () => {
      for (const [m, n, k] of [
        [13, 7, 29],
        [1, 1, 1],
        [130, 71, 90],
      ]) {
        const A = transA ? randMat(k, m, r) : randMat(m, k, r);
        const B = transB ? randMat(n, k, r) : randMat(k, n, r);
        const A0 = copyMat(A);
        const C = gemm(A, B, { transA, transB });
        assert.equal(C.rows, m);
        assert.equal(C.cols, n);
        assertClose(C.data, naiveMul(A, B, transA, transB).data, 1e-13 * k, `gemm ${m}x${n}x${k}`);
        assert.deepEqual(A.data, A0.data, 'input modified');
      }
    });
  }

  it('applies alpha and accumulates into out with beta', () => {
    const A = randMat(9, 11, r);
    const B = randMat(11, 6, r);
    const out = randMat(9, 6, r);
    const C0 = out.data.slice();
    const ref = naiveMul(A, B);
    const got = gemm(A, B, { alpha: 2.5, beta: -0.75, out });
    assert.equal(got, out, 'returns the out matrix');
    const expected = ref.data.map((v, i) => 2.5 * v - 0.75 * C0[i]);
    assertClose(out.data, expected, 1e-12, 'alpha/beta');
  });

  it('overwrites out when beta is 0, even if out holds NaN', () => {
    const A = randMat(4, 3, r);
    const B = randMat(3, 5, r);
    const out = mat(4, 5, new Float64Array(20).fill(Number.NaN));
    gemm(A, B, { out });
    assertClose(out.data, naiveMul(A, B).data, 1e-14, 'beta=0');
  });

  it('handles empty inner and outer dimensions', () => {
    const C = gemm(mat(3, 0), mat(0, 4));
    assert.equal(C.rows, 3);
    assert.equal(C.cols, 4);
    assert.deepEqual([...C.data], new Array(12).fill(0));
    const out = randMat(3, 4, r);
    const before = out.data.slice();
    gemm(mat(3, 0), mat(0, 4), { out, beta: 2 });
    assertClose(
      out.data,
      before.map((v) => 2 * v),
      0,
      'K=0 with beta',
    );
    assert.equal(gemm(mat(0, 5), randMat(5, 2, r)).data.length, 0);
  });

  it('rejects mismatched shapes, aliasing and misuse', () => {
    const A = randMat(4, 3, r);
    expectCode(() => gemm(A, randMat(4, 2, r)), 'SIZE_MISMATCH');
    expectCode(() => gemm(A, randMat(2, 4, r), { transB: true }), 'SIZE_MISMATCH');
    expectCode(() => gemm(A, randMat(3, 2, r), { out: mat(4, 3) }), 'SIZE_MISMATCH');
    expectCode(() => gemm(A, randMat(3, 2, r), { beta: 1 }), 'BAD_ARGUMENT');
    const S = randMat(3, 3, r);
    expectCode(() => gemm(S, randMat(3, 3, r), { out: S }), 'BAD_ARGUMENT');
    expectCode(() => gemm(A, randMat(3, 2, r), { alpha: Number.NaN }), 'NON_FINITE');
    const withInf = randMat(3, 3, r);
    withInf.data[4] = Number.POSITIVE_INFINITY;
    expectCode(() => gemm(randMat(3, 3, r), randMat(3, 3, r), { out: withInf, beta: 1 }), 'NON_FINITE');
  });

  it('refuses results too large to allocate instead of aborting', () => {
    const n = 1_000_000;
    expectCode(() => gemm(mat(n, 1), mat(1, n)), 'BAD_ARGUMENT');
    expectCode(() => syrk(mat(1, n)), 'BAD_ARGUMENT');
  });
});

// ---------- syrk ----------

describe('syrk', () => {
  const r = rng(2);

  it('matches a naive XᵀX and is exactly symmetric', () => {
    for (const [n, d] of [
      [37, 23],
      [5, 40],
      [200, 65],
    ]) {
      const X = randMat(n, d, r);
      const K = syrk(X);
      assert.equal(K.rows, d);
      assert.equal(K.cols, d);
      assertClose(K.data, naiveMul(X, X, true, false).data, 1e-13 * n, `syrk ${n}x${d}`);
      for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) assert.equal(at(K, i, j), at(K, j, i));
    }
  });

  it('applies alpha', () => {
    const X = randMat(10, 4, r);
    assertClose(
      syrk(X, { alpha: -3 }).data,
      naiveMul(X, X, true, false).data.map((v) => -3 * v),
      1e-12,
      'alpha',
    );
  });

  it('streams row chunks with beta = 1', () => {
    const n = 103;
    const d = 17;
    const X = randMat(n, d, r);
    const out = mat(d, d);
    for (let start = 0; start < n; start += 25) {
      const rows = Math.min(25, n - start);
      syrk(mat(rows, d, X.data.subarray(start * d, (start + rows) * d)), { out, beta: start === 0 ? 0 : 1 });
    }
    assertClose(out.data, naiveMul(X, X, true, false).data, 1e-12, 'streamed');
    for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) assert.equal(at(out, i, j), at(out, j, i));
  });

  it('returns beta·out for zero rows and rejects bad shapes', () => {
    const out = syrk(randMat(6, 3, r));
    const before = out.data.slice();
    syrk(mat(0, 3), { out, beta: 0.5 });
    assertClose(
      out.data,
      before.map((v) => 0.5 * v),
      0,
      'zero rows',
    );
    expectCode(() => syrk(randMat(4, 3, r), { out: mat(3, 4) }), 'SIZE_MISMATCH');
    expectCode(() => syrk(randMat(4, 3, r), { beta: 1 }), 'BAD_ARGUMENT');
    const X = randMat(3, 3, r);
    expectCode(() => syrk(X, { out: X }), 'BAD_ARGUMENT');
  });
});

// ---------- syevr ----------

function checkEigenpairs(S: Mat, values: Float64Array, V: Mat, what: string): void {
  const n = S.rows;
  const m = values.length;
  assert.equal(V.rows, n);
  assert.equal(V.cols, m);
  const scale = Math.max(1, maxAbs(S.data)) * n;
  for (let j = 0; j < m; j++) {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let p = 0; p < n; p++) s += at(S, i, p) * at(V, p, j);
      const res = Math.abs(s - values[j] * at(V, i, j));
      assert.ok(res < 1e-12 * scale, `${what}: residual ${res} for pair ${j}`);
    }
  }
  const VtV = naiveMul(V, V, true, false);
  assertClose(VtV.data, identity(m).data, 1e-12 * n, `${what}: orthonormality`);
  for (let j = 1; j < m; j++) assert.ok(values[j] >= values[j - 1], `${what}: not ascending at ${j}`);
}

describe('syevr', () => {
  const r = rng(3);

  it('returns orthonormal eigenpairs of random symmetric matrices, agreeing with Jacobi', () => {
    for (const n of [1, 2, 7, 30]) {
      const S = randSym(n, r);
      const S0 = S.data.slice();
      const { values, vectors } = syevr(S);
      assert.ok(vectors);
      assert.deepEqual(S.data, S0, 'input modified');
      checkEigenpairs(S, values, vectors, `n=${n}`);
      assertClose(values, jacobiEigenvalues(S), 1e-11 * n, `n=${n} vs Jacobi`);
    }
  });

  it('recovers a known spectrum built from a Householder reflection', () => {
    const d = [7, -3, 0.5, 11, 2, -1, 2.000001, 4];
    const S = knownSpectrum(d, r);
    const { values, vectors } = syevr(S);
    assertClose(
      values,
      [...d].sort((a, b) => a - b),
      1e-12 * 11,
      'known spectrum',
    );
    assert.ok(vectors);
    checkEigenpairs(S, values, vectors, 'known spectrum');
  });

  it('matches the 2×2 closed form', () => {
    const [a, b, c] = [3.5, -1.25, 0.75];
    const mid = (a + c) / 2;
    const rad = Math.hypot((a - c) / 2, b);
    const { values } = syevr(mat(2, 2, [a, b, b, c]));
    assertClose(values, [mid - rad, mid + rad], 1e-14, '2x2');
  });

  it('index ranges agree with the full decomposition', () => {
    const n = 25;
    const S = randSym(n, r);
    const full = syevr(S);
    assert.ok(full.vectors);
    for (const [lo, hi] of [
      [0, 0],
      [n - 1, n - 1],
      [3, 9],
      [0, n - 1],
    ]) {
      const part = syevr(S, { range: { lo, hi } });
      assert.ok(part.vectors);
      assert.equal(part.values.length, hi - lo + 1);
      assertClose(part.values, full.values.subarray(lo, hi + 1), 1e-12 * n, `range ${lo}..${hi} values`);
      checkEigenpairs(S, part.values, part.vectors, `range ${lo}..${hi}`);
      for (let j = 0; j <= hi - lo; j++) {
        let dot = 0;
        for (let i = 0; i < n; i++) dot += at(part.vectors, i, j) * at(full.vectors, i, lo + j);
        assert.ok(Math.abs(Math.abs(dot) - 1) < 1e-9, `range ${lo}..${hi}: vector ${j} differs (dot ${dot})`);
      }
      const valuesOnly = syevr(S, { range: { lo, hi }, vectors: false });
      assert.equal(valuesOnly.vectors, undefined);
      assertClose(valuesOnly.values, part.values, 1e-12 * n, 'values only');
    }
  });

  it('handles repeated eigenvalues and trivial sizes', () => {
    const I = identity(6);
    const { values, vectors } = syevr(I);
    assertClose(values, new Array(6).fill(1), 1e-15, 'identity');
    assert.ok(vectors);
    checkEigenpairs(I, values, vectors, 'identity');
    const empty = syevr(mat(0, 0));
    assert.equal(empty.values.length, 0);
    assert.equal(syevr(mat(1, 1, [-4])).values[0], -4);
  });

  it('rejects bad input', () => {
    const S = randSym(5, r);
    expectCode(() => syevr(randMat(3, 4, r)), 'SIZE_MISMATCH');
    expectCode(() => syevr(S, { range: { lo: 0, hi: 5 } }), 'BAD_ARGUMENT');
    expectCode(() => syevr(S, { range: { lo: 3, hi: 2 } }), 'BAD_ARGUMENT');
    expectCode(() => syevr(S, { range: { lo: -1, hi: 2 } }), 'BAD_ARGUMENT');
    expectCode(() => syevr(S, { range: { lo: 0.5, hi: 2 } }), 'BAD_ARGUMENT');
    const asym = copyMat(S);
    asym.data[1] += 1;
    expectCode(() => syevr(asym), 'BAD_ARGUMENT');
    const nan = copyMat(S);
    nan.data[7] = Number.NaN;
    expectCode(() => syevr(nan), 'NON_FINITE');
  });
});

// ---------- potrf / potrs / gesv ----------

describe('syevrMany', () => {
  it('gives what syevr gives for each matrix, with and without vectors, and rejects a bad one', () => {
    const r = rng(31);
    const sym = (n: number) => {
      const A = randMat(n, n, r);
      const S = naiveMul(A, A, true);
      return S;
    };
    const list = [sym(40), sym(1), sym(25), sym(0), sym(33)];
    for (const vectors of [true, false]) {
      const many = syevrMany(list, { vectors });
      assert.equal(many.length, list.length);
      list.forEach((S, i) => {
        const one = syevr(S, { vectors });
        assert.deepEqual(many[i].values, one.values, `values of matrix ${i}`);
        if (vectors) assert.deepEqual(many[i].vectors, one.vectors, `vectors of matrix ${i}`);
        else assert.equal(many[i].vectors, undefined);
      });
    }
    assert.deepEqual(syevrMany([]), []);
    const asym = sym(5);
    asym.data[1] += 1;
    expectCode(() => syevrMany([sym(4), asym]), 'BAD_ARGUMENT');
    const nan = sym(4);
    nan.data[0] = Number.NaN;
    expectCode(() => syevrMany([nan]), 'NON_FINITE');
    expectCode(() => syevrMany([{ rows: 2, cols: 3, data: new Float64Array(6) }]), 'SIZE_MISMATCH');
  });
});

describe('potrf and potrs', () => {
  const r = rng(4);

  it('factors S = L·Lᵀ with L lower triangular', () => {
    for (const n of [1, 4, 33]) {
      const S = randSpd(n, r);
      const S0 = S.data.slice();
      const L = potrf(S);
      assert.deepEqual(S.data, S0, 'input modified');
      for (let i = 0; i < n; i++) {
        assert.ok(at(L, i, i) > 0);
        for (let j = i + 1; j < n; j++) assert.equal(at(L, i, j), 0);
      }
      assertClose(naiveMul(L, L, false, true).data, S.data, 1e-13 * maxAbs(S.data) * n, `L·Lᵀ n=${n}`);
    }
  });

  it('solves (L·Lᵀ)·X = B', () => {
    const n = 20;
    const S = randSpd(n, r);
    const B = randMat(n, 3, r);
    const X = potrs(potrf(S), B);
    assertClose(naiveMul(S, X).data, B.data, 1e-12 * n, 'potrs residual');
    const v = potrs(potrf(S), mat(n, 1, randMat(n, 1, r).data));
    assert.equal(v.cols, 1);
  });

  it('reports non positive definite matrices', () => {
    expectCode(() => potrf(mat(2, 2, [1, 2, 2, 1])), 'NOT_POSITIVE_DEFINITE');
    expectCode(() => potrf(mat(3, 3, [-1, 0, 0, 0, -2, 0, 0, 0, -3])), 'NOT_POSITIVE_DEFINITE');
    expectCode(() => potrf(mat(2, 2)), 'NOT_POSITIVE_DEFINITE');
  });

  it('rejects bad input', () => {
    const S = randSpd(4, r);
    expectCode(() => potrf(randMat(3, 4, r)), 'SIZE_MISMATCH');
    expectCode(() => potrs(S, randMat(4, 2, r)), 'BAD_ARGUMENT');
    expectCode(() => potrs(potrf(S), randMat(3, 2, r)), 'SIZE_MISMATCH');
    const L = potrf(S);
    L.data[0] = 0;
    expectCode(() => potrs(L, randMat(4, 1, r)), 'BAD_ARGUMENT');
  });
});

describe('gesv', () => {
  const r = rng(5);

  it('solves A·X = B', () => {
    for (const [n, k] of [
      [1, 1],
      [25, 3],
      [60, 1],
    ]) {
      const A = randMat(n, n, r);
      for (let i = 0; i < n; i++) A.data[i * n + i] += 2;
      const B = randMat(n, k, r);
      const A0 = A.data.slice();
      const B0 = B.data.slice();
      const X = gesv(A, B);
      assert.deepEqual(A.data, A0);
      assert.deepEqual(B.data, B0);
      assertClose(naiveMul(A, X).data, B.data, 1e-12 * n, `gesv ${n}x${k}`);
    }
  });

  it('reports singular matrices', () => {
    expectCode(() => gesv(mat(2, 2, [1, 2, 2, 4]), mat(2, 1, [1, 1])), 'SINGULAR');
    expectCode(() => gesv(mat(3, 3), mat(3, 2)), 'SINGULAR');
    expectCode(() => gesv(randMat(3, 4, r), mat(3, 1)), 'SIZE_MISMATCH');
    expectCode(() => gesv(randMat(3, 3, r), mat(4, 1)), 'SIZE_MISMATCH');
  });
});

// ---------- matvec ----------

describe('matvec', () => {
  const r = rng(6);

  it('computes A·x and Aᵀ·x', () => {
    const A = randMat(31, 17, r);
    const x = randMat(17, 1, r);
    const y = randMat(31, 1, r);
    assertClose(matvec(A, x.data), naiveMul(A, x).data, 1e-13 * 17, 'A·x');
    assertClose(matvec(A, y.data, true), naiveMul(A, y, true).data, 1e-13 * 31, 'Aᵀ·x');
    assert.equal(matvec(mat(0, 3), new Float64Array(3)).length, 0);
  });

  it('rejects bad vectors', () => {
    const A = randMat(3, 2, r);
    expectCode(() => matvec(A, new Float64Array(3)), 'SIZE_MISMATCH');
    expectCode(() => matvec(A, new Float64Array(2), true), 'SIZE_MISMATCH');
    expectCode(() => matvec(A, new Float64Array([1, Number.NaN])), 'NON_FINITE');
    expectCode(() => matvec(A, new Float32Array(2) as unknown as Float64Array), 'BAD_ARGUMENT');
  });
});

describe('eigenpairsAt', () => {
  const r = rng(21);

  /** Checks pair j against Jacobi's eigenvalue at `index`, by its value and its residual ‖Sv − λv‖. */
  function assertPair(S: Mat, got: { values: Float64Array; vectors: Mat }, j: number, index: number, what: string): void {
    const n = S.rows;
    const expected = jacobiEigenvalues(S)[index];
    const scale = Math.max(...jacobiEigenvalues(S).map(Math.abs));
    assert.ok(Math.abs(got.values[j] - expected) <= 1e-12 * n * scale, `${what}: λ ${got.values[j]} vs ${expected}`);
    const k = got.vectors.cols;
    let norm = 0;
    let residual = 0;
    for (let i = 0; i < n; i++) {
      let sv = 0;
      for (let c = 0; c < n; c++) sv += at(S, i, c) * got.vectors.data[c * k + j];
      residual += (sv - got.values[j] * got.vectors.data[i * k + j]) ** 2;
      norm += got.vectors.data[i * k + j] ** 2;
    }
    assert.ok(Math.abs(norm - 1) < 1e-12, `${what}: unit vector (${norm})`);
    assert.ok(Math.sqrt(residual) <= 1e-11 * n * scale, `${what}: residual ${Math.sqrt(residual)}`);
  }

  it('matches Jacobi at the requested indices, in the order asked', () => {
    for (const n of [1, 2, 9, 40]) {
      const S = randSym(n, r);
      const indices = [...new Set([n - 1, 0, Math.floor(n / 2)])];
      const got = eigenpairsAt(S, indices);
      assert.equal(got.values.length, indices.length);
      assert.equal(got.vectors.rows, n);
      assert.equal(got.vectors.cols, indices.length);
      indices.forEach((index, j) => assertPair(S, got, j, index, `n=${n} index ${index}`));
    }
  });

  it('handles a rank-deficient Gram matrix with a cluster at zero', () => {
    const G = randMat(5, 20, r);
    const S = naiveMul(G, G, true);
    const got = eigenpairsAt(S, [19, 15, 0]);
    assertPair(S, got, 0, 19, 'top');
    assertPair(S, got, 1, 15, 'smallest nonzero');
    assert.ok(Math.abs(got.values[2]) < 1e-12 * got.values[0], `a zero eigenvalue: ${got.values[2]}`);
  });

  it('rejects bad input', () => {
    const S = randSym(4, r);
    expectCode(() => eigenpairsAt(S, [4]), 'BAD_ARGUMENT');
    expectCode(() => eigenpairsAt(S, [1, 1]), 'BAD_ARGUMENT');
    expectCode(() => eigenpairsAt(S, [0.5]), 'BAD_ARGUMENT');
    expectCode(() => eigenpairsAt(randMat(3, 4, r), [0]), 'SIZE_MISMATCH');
    const asym = randMat(4, 4, r);
    expectCode(() => eigenpairsAt(asym, [0]), 'BAD_ARGUMENT');
    S.data[5] = Number.NaN;
    expectCode(() => eigenpairsAt(S, [0]), 'NON_FINITE');
  });
});

describe('congruenceExtremes', () => {
  const r = rng(22);

  // Below 24 rows the Gram matrices are processed one after the other, from 24 on side by side.
  for (const n of [7, 60]) {
    it(`gives θᵀKθ and its extreme pairs for each K (n = ${n})`, () => {
      const theta = randMat(n, n, r);
      const Ks = [randSpd(n, r), naiveMul(randMat(n - 2, n, r), randMat(n - 2, n, r), true)];
      for (const K of Ks)
        for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) K.data[i * n + j] = K.data[j * n + i] = (K.data[i * n + j] + K.data[j * n + i]) / 2;
      const lows = [0, 2];
      const got = congruenceExtremes(theta, Ks, lows);
      assert.equal(got.length, 2);
      got.forEach((g, t) => {
        const S = naiveMul(theta, naiveMul(Ks[t], theta), true);
        const scale = Math.max(...S.data.map(Math.abs));
        assertClose(g.S.data, S.data, 1e-13 * n * scale, `S ${t}`);
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.equal(g.S.data[i * n + j], g.S.data[j * n + i]);
        const alone = eigenpairsAt(g.S, [n - 1, lows[t]]);
        assert.deepEqual(g.values, alone.values, `pairs ${t} as computed alone`);
        assert.deepEqual(g.vectors.data, alone.vectors.data);
      });
    });
  }

  it('gives the top pair twice when the low index is the top', () => {
    const theta = randMat(3, 3, r);
    const [g] = congruenceExtremes(theta, [randSpd(3, r)], [2]);
    assert.equal(g.values[0], g.values[1]);
    assert.deepEqual(Array.from(g.vectors.data.filter((_, i) => i % 2 === 0)), Array.from(g.vectors.data.filter((_, i) => i % 2 === 1)));
  });

  it('rejects bad input', () => {
    const theta = randMat(4, 4, r);
    const K = randSpd(4, r);
    expectCode(() => congruenceExtremes(theta, [K], [0, 1]), 'SIZE_MISMATCH');
    expectCode(() => congruenceExtremes(theta, [randSpd(5, r)], [0]), 'SIZE_MISMATCH');
    expectCode(() => congruenceExtremes(theta, [K], [4]), 'BAD_ARGUMENT');
    expectCode(() => congruenceExtremes(randMat(4, 3, r), [K], [0]), 'SIZE_MISMATCH');
    expectCode(() => congruenceExtremes(theta, [randMat(4, 4, r)], [0]), 'BAD_ARGUMENT');
    expectCode(() => congruenceExtremes(theta, 'K' as never, [0]), 'BAD_ARGUMENT');
  });
});

describe('eigenDescent', () => {
  const lambdas = Float64Array.from([0.01, 0.3, 1, 4]);
  const e0 = Float64Array.from([1, -2, 0.5, 3, 1, 1, -1, 0.25]); // 4 rows × 2 outputs
  const energy = (e: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < 4; i++) for (let k = 0; k < 2; k++) s += lambdas[i] * e[i * 2 + k] ** 2;
    return s;
  };
  const scale = 1 / energy(e0);

  it('fixed steps follow the closed form Σ λ·e²·(1 − λ/L)^2k', () => {
    const r = eigenDescent(lambdas, e0, 2, { rule: 'fixed', scale, target: 0, cap: 300 });
    assert.equal(r.steps, 300);
    assert.equal(r.curve.length, 301);
    for (const k of [0, 1, 7, 150, 300]) {
      let s = 0;
      for (let i = 0; i < 4; i++) for (let c = 0; c < 2; c++) s += lambdas[i] * e0[i * 2 + c] ** 2 * (1 - lambdas[i] / 4) ** (2 * k);
      assert.ok(Math.abs(r.curve[k] - s * scale) <= 1e-13 * (s * scale) + 1e-300, `step ${k}: ${r.curve[k]} vs ${s * scale}`);
    }
  });

  it('exact line search matches a plain loop and stops at the target', () => {
    const e = Float64Array.from(e0);
    const expected = [1];
    for (let k = 1; k <= 200; k++) {
      let gg = 0;
      let gHg = 0;
      for (let i = 0; i < 8; i++) {
        const l = lambdas[i >> 1];
        gg += (l * e[i]) ** 2;
        gHg += l * (l * e[i]) ** 2;
      }
      for (let i = 0; i < 8; i++) e[i] *= 1 - (gg / gHg) * lambdas[i >> 1];
      expected.push(energy(e) * scale);
    }
    const full = eigenDescent(lambdas, e0, 2, { rule: 'exact', scale, target: 0, cap: 200 });
    expected.forEach((v, k) => assert.ok(Math.abs(full.curve[k] - v) <= 1e-12 * v, `step ${k}: ${full.curve[k]} vs ${v}`));
    const target = expected[120];
    const first = expected.findIndex((v) => v <= target);
    const stopped = eigenDescent(lambdas, e0, 2, { rule: 'exact', scale, target, cap: 200 });
    assert.equal(stopped.steps, first);
    assert.ok(stopped.reached);
    assert.equal(stopped.curve.length, first + 1);
    assert.ok(!eigenDescent(lambdas, e0, 2, { rule: 'exact', scale, target: 1e-300, cap: 5 }).reached);
  });

  // The kernels flush subnormals to zero while they run (a converging run passes through that range); the flag must
  // not leak into the caller's thread, and the curve must still follow the closed form wherever it is normal.
  it('runs through the subnormal range and leaves the caller’s arithmetic untouched', () => {
    const l = Float64Array.from([0.5, 1]);
    const r = eigenDescent(l, Float64Array.from([1, 1]), 1, { rule: 'fixed', scale: 1 / 1.5, target: 0, cap: 600 });
    for (const k of [1, 100, 400, 500]) {
      const expected = (0.5 * 0.25 ** k) / 1.5; // (1 − 0.5/1)^2k for λ = 0.5; λ = 1 is solved in one step
      assert.ok(Math.abs(r.curve[k] - expected) <= 1e-12 * expected, `step ${k}: ${r.curve[k]} vs ${expected}`);
    }
    assert.ok(r.curve[600] >= 0 && r.curve[600] < 1e-300);
    const one = { rows: 1, cols: 1, data: Float64Array.of(1) };
    adamQuadratic(one, one, Float64Array.of(0.1), { c: 0, fStar: -0.5, gap: 0.5, target: 0, cap: 2000 });
    const smallestNormal = 2.2250738585072014e-308;
    assert.ok(smallestNormal / 4 > 0, 'subnormal results are flushed on the calling thread');
    assert.equal(Number.MIN_VALUE * 3, 1.5e-323);
  });

  it('rejects bad input', () => {
    const ok = { rule: 'fixed' as const, scale, target: 0, cap: 3 };
    expectCode(() => eigenDescent(lambdas, e0.subarray(1), 2, ok), 'SIZE_MISMATCH');
    expectCode(() => eigenDescent(Float64Array.from([1, 0.5]), new Float64Array(2), 1, ok), 'BAD_ARGUMENT');
    expectCode(() => eigenDescent(Float64Array.from([0, 1]), new Float64Array(2), 1, ok), 'BAD_ARGUMENT');
    expectCode(() => eigenDescent(lambdas, e0, 2, { ...ok, rule: 'newton' as never }), 'BAD_ARGUMENT');
    expectCode(() => eigenDescent(lambdas, e0, 2, { ...ok, cap: 1.5 }), 'BAD_ARGUMENT');
    expectCode(() => eigenDescent(lambdas, e0, 2, { ...ok, cap: 1e8 }), 'BAD_ARGUMENT');
    expectCode(() => eigenDescent(lambdas, e0, 2, { ...ok, scale: -1 }), 'BAD_ARGUMENT');
    expectCode(() => eigenDescent(lambdas, e0, 0, ok), 'BAD_ARGUMENT');
    const bad = Float64Array.from(e0);
    bad[3] = Number.POSITIVE_INFINITY;
    expectCode(() => eigenDescent(lambdas, bad, 2, ok), 'NON_FINITE');
  });
});

describe('adamQuadratic', () => {
  const r = rng(12);
  const D = 37;
  const X = randMat(60, D, r);
  const H = naiveMul(X, X, true);
  for (let i = 0; i < H.data.length; i++) H.data[i] /= 60;
  const B = randMat(D, 2, r);
  // f(W) = ½tr(WᵀHW) − tr(BᵀW) + c with f(0) = c and the minimum f* = c − ½tr(BᵀH⁻¹B).
  const Wstar = gesv(H, B);
  let half = 0;
  for (let i = 0; i < B.data.length; i++) half += (B.data[i] * Wstar.data[i]) / 2;
  const quad = { c: 1, fStar: 1 - half, gap: half };
  const rates = Float64Array.from([1e-3, 1e-2, 1e-1]);

  // Several learning rates run on separate threads; each one's arithmetic must be exactly that of a run on its own.
  it('runs each learning rate as it would run alone, and stops at the earliest hit', () => {
    const cap = 3000;
    const alone = [...rates].map((lr) => adamQuadratic(H, B, Float64Array.of(lr), { ...quad, target: 0, cap }).curves);
    const together = adamQuadratic(H, B, rates, { ...quad, target: 0, cap });
    assert.equal(together.steps, cap);
    assert.equal(together.winner, -1);
    alone.forEach((curve, g) => assert.deepEqual(together.curves.subarray(g * (cap + 1), (g + 1) * (cap + 1)), curve, `learning rate ${rates[g]}`));
    const target = Math.max(...alone.map((c) => c[cap]));
    const hits = alone.map((c) => c.findIndex((v, k) => k > 0 && v <= target));
    const first = Math.min(...hits.filter((k) => k > 0));
    const stopped = adamQuadratic(H, B, rates, { ...quad, target, cap });
    assert.equal(stopped.steps, first);
    assert.equal(stopped.winner, hits.indexOf(first));
    assert.equal(stopped.curves.length, 3 * (first + 1));
    alone.forEach((curve, g) => assert.deepEqual(stopped.curves.subarray(g * (first + 1), (g + 1) * (first + 1)), curve.subarray(0, first + 1)));
  });

  // H is read as its packed upper triangle, each row padded to a multiple of 8: every width around that multiple,
  // against a plain loop of textbook Adam.
  it('matches a plain Adam loop at every width around the padding', () => {
    const plainAdam = (Hm: Mat, Bm: Mat, lr: number, steps: number) => {
      const [n, C] = [Hm.rows, Bm.cols];
      const W = new Float64Array(n * C);
      const m1 = new Float64Array(n * C);
      const m2 = new Float64Array(n * C);
      const curve = [1];
      const f = () => {
        let s = 0;
        for (let i = 0; i < n; i++) {
          for (let c = 0; c < C; c++) {
            let hw = 0;
            for (let j = 0; j < n; j++) hw += Hm.data[i * n + j] * W[j * C + c];
            s += 0.5 * W[i * C + c] * hw - Bm.data[i * C + c] * W[i * C + c];
          }
        }
        return s;
      };
      const fStar = -1;
      for (let k = 1; k <= steps; k++) {
        const grad = new Float64Array(n * C);
        for (let i = 0; i < n; i++) {
          for (let c = 0; c < C; c++) {
            let hw = 0;
            for (let j = 0; j < n; j++) hw += Hm.data[i * n + j] * W[j * C + c];
            grad[i * C + c] = hw - Bm.data[i * C + c];
          }
        }
        for (let q = 0; q < n * C; q++) {
          m1[q] = 0.9 * m1[q] + 0.1 * grad[q];
          m2[q] = 0.999 * m2[q] + 0.001 * grad[q] ** 2;
          W[q] -= (lr * (m1[q] / (1 - 0.9 ** k))) / (Math.sqrt(m2[q] / (1 - 0.999 ** k)) + 1e-8);
        }
        curve.push(Math.max(0, f() - fStar));
      }
      return curve;
    };
    for (const n of [1, 2, 7, 8, 9, 15, 16, 17, 24]) {
      for (const C of [1, 3]) {
        const X = randMat(2 * n + 3, n, r);
        const Hn = naiveMul(X, X, true);
        const Bn = randMat(n, C, r);
        const lrs = Float64Array.from([1e-2, 5e-2]);
        const got = adamQuadratic(Hn, Bn, lrs, { c: 0, fStar: -1, gap: 1, target: 0, cap: 40 });
        lrs.forEach((lr, g) => {
          const expected = plainAdam(Hn, Bn, lr, 40);
          for (let k = 0; k <= 40; k++) {
            const v = got.curves[g * 41 + k];
            assert.ok(Math.abs(v - expected[k]) <= 1e-10 * Math.max(1, Math.abs(expected[k])), `D ${n}, C ${C}, lr ${lr}, step ${k}: ${v} vs ${expected[k]}`);
          }
        });
      }
    }
  });

  it('can be watched while it runs and stopped early, keeping the curves up to there', () => {
    const rate = Float64Array.of(1e-2);
    const running = startAdamQuadratic(H, B, rate, { ...quad, target: 0, cap: 2_000_000 });
    const seen = running.waitFor(500);
    assert.ok(seen.scored >= 500, `scored ${seen.scored}`);
    assert.equal(seen.done, false);
    running.cancel();
    const stopped = running.join();
    assert.ok(stopped.steps >= 500 && stopped.steps < 2_000_000, `stopped at ${stopped.steps}`);
    assert.equal(stopped.winner, -1);
    assert.equal(stopped.curves.length, stopped.steps + 1);
    const alone = adamQuadratic(H, B, rate, { ...quad, target: 0, cap: stopped.steps }).curves;
    assert.deepEqual(stopped.curves, alone);
    const after = running.waitFor(10 ** 9);
    assert.deepEqual(after, { scored: stopped.steps, done: true });
  });

  it('rejects bad input', () => {
    const ok = { ...quad, target: 0, cap: 5 };
    expectCode(() => adamQuadratic(H, randMat(D + 1, 2, r), rates, ok), 'SIZE_MISMATCH');
    expectCode(() => adamQuadratic(H, B, new Float64Array(0), ok), 'BAD_ARGUMENT');
    expectCode(() => adamQuadratic(H, B, Float64Array.of(Number.NaN), ok), 'NON_FINITE');
    expectCode(() => adamQuadratic(H, B, rates, { ...ok, cap: -1 }), 'BAD_ARGUMENT');
    expectCode(() => adamQuadratic(H, B, rates, { ...ok, gap: 0 }), 'BAD_ARGUMENT');
  });
});

// ---------- validation shared by all routines ----------

describe('input validation', () => {
  const r = rng(7);
  const square = (n: number) => randSpd(n, r);
  const routines: Array<[string, (M: Mat) => unknown]> = [
    ['gemm A', (M) => gemm(M, square(3))],
    ['gemm B', (M) => gemm(square(3), M)],
    ['syrk', (M) => syrk(M)],
    ['syevr', (M) => syevr(M)],
    ['potrf', (M) => potrf(M)],
    ['potrs B', (M) => potrs(potrf(square(3)), M)],
    ['gesv A', (M) => gesv(M, square(3))],
    ['gesv B', (M) => gesv(square(3), M)],
    ['matvec', (M) => matvec(M, new Float64Array(3))],
  ];

  for (const [name, run] of routines) {
    it(`${name}: NaN / ±Infinity / wrong length / bad shapes`, () => {
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        const M = square(3);
        M.data[5] = bad;
        M.data[7] = bad;
        expectCode(() => run(M), 'NON_FINITE');
      }
      expectCode(() => run({ rows: 3, cols: 3, data: new Float64Array(8) }), 'SIZE_MISMATCH');
      expectCode(() => run({ rows: 2 ** 31 - 1, cols: 2 ** 31 - 1, data: new Float64Array(9) }), 'SIZE_MISMATCH');
      expectCode(() => run({ rows: 3.5, cols: 3, data: new Float64Array(9) }), 'BAD_ARGUMENT');
      expectCode(() => run({ rows: -3, cols: -3, data: new Float64Array(9) }), 'BAD_ARGUMENT');
      expectCode(() => run({ rows: 3, cols: 3, data: new Float32Array(9) } as unknown as Mat), 'BAD_ARGUMENT');
      expectCode(() => run({ rows: 3, cols: 3, data: Array(9).fill(1) } as unknown as Mat), 'BAD_ARGUMENT');
      expectCode(() => run(null as unknown as Mat), 'BAD_ARGUMENT');
    });
  }

  it('reports where the non-finite value is', () => {
    const M = square(4);
    M.data[2 * 4 + 1] = Number.NaN;
    assert.throws(() => syevr(M), /NaN at \(2, 1\)/);
  });

  it('keeps the process alive under a barrage of bad calls', () => {
    const indexUrl = new URL('../../models/linalg/index.js', import.meta.url).href;
    const script = `
      const L = await import(${JSON.stringify(indexUrl)});
      const junk = [undefined, null, 0, 'x', {}, [], { rows: 1e12, cols: 1, data: new Float64Array(1) },
        { rows: 2, cols: 2, data: new Float64Array(3) }, { rows: NaN, cols: 2, data: new Float64Array(0) },
        { get rows() { throw new Error('getter'); }, cols: 1, data: new Float64Array(1) },
        { rows: 2, cols: 2, data: new Float64Array([1, NaN, 3, Infinity]) }, L.mat(0, 0), L.mat(1, 1, [0])];
      const fns = ['gemm', 'syrk', 'syevr', 'potrf', 'potrs', 'gesv', 'matvec'];
      let thrown = 0, calls = 0;
      for (const f of fns) for (const a of junk) for (const b of [...junk, new Float64Array(2)]) {
        calls++;
        try { L[f](a, b, { range: { lo: 0, hi: 99 } }); } catch { thrown++; }
        try { L[f](a, b, { transA: 1, alpha: Infinity, out: a }); } catch { thrown++; }
      }
      for (const n of [0, -1, 1.5, NaN, 1e9, '2']) { try { L.setThreads(n); } catch { thrown++; } }
      console.log(JSON.stringify({ calls, thrown }));
    `;
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      cwd: fileURLToPath(new URL('../../..', import.meta.url)),
      timeout: 60_000,
    });
    assert.equal(res.signal, null, `child died with ${res.signal}: ${res.stderr}`);
    assert.equal(res.status, 0, res.stderr);
    const out = JSON.parse(res.stdout.trim().split('\n').pop() ?? '') as { calls: number; thrown: number };
    assert.ok(out.calls > 500);
    assert.ok(out.thrown > out.calls, 'most junk calls must throw');
    assert.doesNotMatch(res.stderr, /illegal value|xerbla|parameter number/i);
  });
});

// ---------- helpers and OpenBLAS information ----------

describe('helpers', () => {
  it('mat, identity and transpose', () => {
    const A = mat(2, 3, [1, 2, 3, 4, 5, 6]);
    assert.ok(A.data instanceof Float64Array);
    const f = new Float64Array(4);
    assert.equal(mat(2, 2, f).data, f, 'Float64Array is used without copying');
    expectCode(() => mat(2, 2, [1, 2, 3]), 'SIZE_MISMATCH');
    expectCode(() => mat(-1, 2), 'BAD_ARGUMENT');
    expectCode(() => mat(1.5, 2), 'BAD_ARGUMENT');
    assert.deepEqual([...identity(3).data], [1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const T = transpose(A);
    assert.deepEqual([T.rows, T.cols, [...T.data]], [3, 2, [1, 4, 2, 5, 3, 6]]);
    const big = randMat(70, 45, rng(8));
    assert.deepEqual(transpose(big), naiveTranspose(big));
    expectCode(() => transpose({ rows: 2, cols: 2, data: new Float64Array(3) }), 'SIZE_MISMATCH');
  });
});

describe('OpenBLAS', () => {
  it('reports its core and configuration', () => {
    const core = openblasCore();
    assert.match(core, /^\w+$/);
    assert.match(openblasConfig(), /OpenBLAS/);
    const sel = coreSelection();
    assert.equal(sel.core, core);
    if (sel.requested !== null) assert.equal(core.toLowerCase(), sel.requested.toLowerCase());
  });

  it('sets the thread count', () => {
    const before = getThreads();
    try {
      setThreads(1);
      assert.equal(getThreads(), 1);
      const A = randMat(50, 50, rng(9));
      assertClose(gemm(A, A).data, naiveMul(A, A).data, 1e-12, 'single-threaded gemm');
    } finally {
      setThreads(before);
    }
    assert.equal(getThreads(), before);
    expectCode(() => setThreads(0), 'BAD_ARGUMENT');
  });
});
