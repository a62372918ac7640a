/**
 * Dense float64 linear algebra (row-major) over the system OpenBLAS + LAPACKE.
 * All routines are synchronous, never modify their inputs (except an explicit `out`), and throw
 * LinalgError for invalid input.
 */
import { createRequire } from 'node:module';
import { packageRoot, selectCoretype, type CoretypeSource } from './coretype.js';
import { LinalgError, toLinalgError } from './errors.js';
import type { EigenResult, GemmOptions, Mat, SyevrOptions } from './types.js';

export * from './types.js';
export { LinalgError, isLinalgErrorCode } from './errors.js';

export interface SyrkOptions {
  /** When given, out = alpha·XᵀX + beta·out is written into it (and returned). Only its lower triangle is read. */
  out?: Mat;
  alpha?: number;
  beta?: number;
}

export interface CoreSelection {
  /** OPENBLAS_CORETYPE in effect when OpenBLAS was loaded, or null for OpenBLAS's own detection. */
  requested: string | null;
  source: CoretypeSource;
  /** openblas_get_corename(). */
  core: string;
}

interface NativeAddon {
  gemm(A: Mat, B: Mat, transA: boolean, transB: boolean, alpha: number, beta: number, out: Mat | null): Mat;
  syrk(X: Mat, alpha: number, beta: number, out: Mat | null): Mat;
  syevr(S: Mat, vectors: boolean, lo: number | null, hi: number | null): EigenResult;
  syevrMany(Ss: Mat[], vectors: boolean): EigenResult[];
  potrf(S: Mat): Mat;
  potrs(L: Mat, B: Mat): Mat;
  gesv(A: Mat, B: Mat): Mat;
  matvec(A: Mat, x: Float64Array, trans: boolean): Float64Array;
  adamQuadraticStart(H: Mat, B: Mat, learningRates: Float64Array, c: number, fStar: number, gap: number, target: number, cap: number): unknown;
  adamQuadraticJoin(job: unknown): AdamQuadraticResult;
  adamQuadraticWait(job: unknown, step: number): { scored: number; done: boolean };
  adamQuadraticCancel(job: unknown): void;
  eigenDescent(
    lambdas: Float64Array,
    e0: Float64Array,
    outputs: number,
    scale: number,
    rule: DescentRule,
    target: number,
    cap: number,
  ): { steps: number; reached: boolean; curve: Float64Array };
  eigenpairsAt(S: Mat, indices: Float64Array): { values: Float64Array; vectors: Mat };
  congruenceExtremes(theta: Mat, Ks: Mat[], lowIndices: Float64Array): CongruenceExtremes[];
  corename(): string;
  config(): string;
  setThreads(n: number): void;
  getThreads(): number;
}

// OPENBLAS_CORETYPE is read once when libopenblas is loaded, i.e. by the require below.
const selection = selectCoretype();
const require = createRequire(import.meta.url);
const bindings = require('bindings') as typeof import('bindings');
const native = bindings({ bindings: 'immunize_linalg', module_root: packageRoot() }) as NativeAddon;

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toLinalgError(err);
  }
}

function bad(message: string): never {
  throw new LinalgError('BAD_ARGUMENT', message);
}

function isDim(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < 2 ** 31;
}

/** alpha·op(A)·op(B), or alpha·op(A)·op(B) + beta·out written into opts.out. */
export function gemm(A: Mat, B: Mat, opts: GemmOptions = {}): Mat {
  return call(() => native.gemm(A, B, !!opts.transA, !!opts.transB, opts.alpha ?? 1, opts.beta ?? 0, opts.out ?? null));
}

/** Full symmetric D×D alpha·XᵀX for X of shape N×D, or alpha·XᵀX + beta·out written into opts.out. */
export function syrk(X: Mat, opts: SyrkOptions = {}): Mat {
  return call(() => native.syrk(X, opts.alpha ?? 1, opts.beta ?? 0, opts.out ?? null));
}

/** Eigen-decomposition of a symmetric matrix (ascending eigenvalues); S is not modified. */
export function syevr(S: Mat, opts: SyevrOptions = {}): EigenResult {
  const range = opts.range;
  if (range !== undefined && (range === null || typeof range !== 'object')) bad('syevr: range must be {lo, hi}');
  return call(() => native.syevr(S, opts.vectors ?? true, range?.lo ?? null, range?.hi ?? null));
}

/** syevr of each matrix (the whole spectrum), two at a time on two cores: a pair costs about as much as one. */
export function syevrMany(Ss: Mat[], opts: { vectors?: boolean } = {}): EigenResult[] {
  return call(() => native.syevrMany(Ss, opts.vectors ?? true));
}

/**
 * The eigenpairs of a symmetric S at the given positions of its ascending spectrum (0 = smallest), in the order
 * asked: values[j] and column j of the D×k `vectors`. One tridiagonal reduction serves every index, so two pairs
 * far apart cost about half of two `syevr` range calls.
 */
export function eigenpairsAt(S: Mat, indices: number[]): { values: Float64Array; vectors: Mat } {
  return call(() => native.eigenpairsAt(S, Float64Array.from(indices)));
}

export interface CongruenceExtremes {
  /** θᵀKθ, symmetrized. */
  S: Mat;
  /** [λ_max, λ at the requested low index]. */
  values: Float64Array;
  /** D×2: the eigenvectors for `values`, as columns. */
  vectors: Mat;
}

/**
 * For each K: S = θᵀKθ and its eigenpairs at the top of the spectrum and at lowIndices[i]. The Gram matrices are
 * processed side by side on a multi-core host; the results are the same as one at a time.
 */
export function congruenceExtremes(theta: Mat, Ks: Mat[], lowIndices: number[]): CongruenceExtremes[] {
  return call(() => native.congruenceExtremes(theta, Ks, Float64Array.from(lowIndices)));
}

/** Lower Cholesky factor L of a symmetric positive definite S (S = L·Lᵀ, upper part zero). */
export function potrf(S: Mat): Mat {
  return call(() => native.potrf(S));
}

/** Solves (L·Lᵀ)·X = B given the factor L from potrf. */
export function potrs(L: Mat, B: Mat): Mat {
  return call(() => native.potrs(L, B));
}

/** Solves A·X = B by LU with partial pivoting. */
export function gesv(A: Mat, B: Mat): Mat {
  return call(() => native.gesv(A, B));
}

/** A·x, or Aᵀ·x when trans is true. */
export function matvec(A: Mat, x: Float64Array, trans = false): Float64Array {
  return call(() => native.matvec(A, x, trans));
}

export interface AdamQuadraticOptions {
  /** f(W) = ½tr(WᵀHW) − tr(BᵀW) + c, its minimum fStar and the starting gap f(0) − fStar. */
  c: number;
  fStar: number;
  gap: number;
  /** Stop at the first step where any learning rate reaches this relative suboptimality (0: run to the cap). */
  target: number;
  cap: number;
}

export interface AdamQuadraticResult {
  steps: number;
  winner: number;
  curves: Float64Array;
}

/**
 * Adam from W = 0 on a quadratic, one run per learning rate side by side. Returns the steps run, the index of the
 * learning rate that reached the target first (−1 if none) and each run's relative suboptimality per step
 * (row-major, learningRates.length × (steps + 1)).
 */
export function adamQuadratic(H: Mat, B: Mat, learningRates: Float64Array, o: AdamQuadraticOptions): AdamQuadraticResult {
  return startAdamQuadratic(H, B, learningRates, o).join();
}

/**
 * The same simulation on a thread of its own, so that the caller can do other work meanwhile; `join()` waits for
 * it and returns what adamQuadratic would. Bad input throws here, not at join.
 */
export function startAdamQuadratic(H: Mat, B: Mat, learningRates: Float64Array, o: AdamQuadraticOptions): RunningAdam {
  const job = call(() => native.adamQuadraticStart(H, B, learningRates, o.c, o.fStar, o.gap, o.target, o.cap));
  let result: AdamQuadraticResult | null = null;
  return {
    join: () => (result ??= call(() => native.adamQuadraticJoin(job))),
    waitFor: (step) => call(() => native.adamQuadraticWait(job, step)),
    cancel: () => call(() => native.adamQuadraticCancel(job)),
  };
}

export interface RunningAdam {
  join(): AdamQuadraticResult;
  /** Blocks until the run has scored `step` (or ended); `scored` is the last step in its curves so far. */
  waitFor(step: number): { scored: number; done: boolean };
  /** Stops the run after its current step; join() then returns the curves up to there. */
  cancel(): void;
}

/** Step 1/λ_max ("fixed") or the exact line-search step on the quadratic ("exact"). */
export type DescentRule = 'fixed' | 'exact';

export interface EigenDescentOptions {
  rule: DescentRule;
  /** Turns Σ λ_i·e_i² into the reported suboptimality, usually 1 / (2·gap). */
  scale: number;
  /** Stop once the suboptimality reaches this (0: run exactly `cap` steps). */
  target: number;
  cap: number;
}

/**
 * Gradient descent on a quadratic written in its eigenbasis: `lambdas` (positive, ascending, r of them) and the
 * starting error e0 (r × outputs, row-major). Returns the steps run, whether the target was reached, and the
 * suboptimality after each step (index 0 is the start, 1.0).
 */
export function eigenDescent(
  lambdas: Float64Array,
  e0: Float64Array,
  outputs: number,
  o: EigenDescentOptions,
): { steps: number; reached: boolean; curve: Float64Array } {
  return call(() => native.eigenDescent(lambdas, e0, outputs, o.scale, o.rule, o.target, o.cap));
}

export function openblasCore(): string {
  return native.corename();
}

export function openblasConfig(): string {
  return native.config();
}

/** Sets the number of OpenBLAS threads (process-wide). */
export function setThreads(n: number): void {
  call(() => native.setThreads(n));
}

export function getThreads(): number {
  return native.getThreads();
}

export function coreSelection(): CoreSelection {
  return { requested: selection.requested, source: selection.source, core: native.corename() };
}

/** A rows×cols matrix; `data` is used as is when it is a Float64Array, copied otherwise, zero-filled when absent. */
export function mat(rows: number, cols: number, data?: Float64Array | ArrayLike<number>): Mat {
  if (!isDim(rows) || !isDim(cols)) bad(`mat: rows and cols must be non-negative integers, got ${rows}, ${cols}`);
  const n = rows * cols;
  if (data === undefined) return { rows, cols, data: new Float64Array(n) };
  if (data.length !== n) {
    throw new LinalgError('SIZE_MISMATCH', `mat: ${rows}x${cols} needs ${n} elements, got ${data.length}`);
  }
  return { rows, cols, data: data instanceof Float64Array ? data : Float64Array.from(data) };
}

export function identity(n: number): Mat {
  const I = mat(n, n);
  for (let i = 0; i < n; i++) I.data[i * n + i] = 1;
  return I;
}

export function transpose(A: Mat): Mat {
  if (!A || !isDim(A.rows) || !isDim(A.cols) || !(A.data instanceof Float64Array)) {
    bad('transpose: A must be a matrix {rows, cols, data: Float64Array}');
  }
  const { rows, cols, data } = A;
  if (data.length !== rows * cols) {
    throw new LinalgError('SIZE_MISMATCH', `transpose: A is ${rows}x${cols} but data has ${data.length} elements`);
  }
  const T = mat(cols, rows);
  const out = T.data;
  const tile = 32;
  for (let ib = 0; ib < rows; ib += tile) {
    const iend = Math.min(rows, ib + tile);
    for (let jb = 0; jb < cols; jb += tile) {
      const jend = Math.min(cols, jb + tile);
      for (let i = ib; i < iend; i++) {
        for (let j = jb; j < jend; j++) out[j * rows + i] = data[i * cols + j];
      }
    }
  }
  return T;
}
