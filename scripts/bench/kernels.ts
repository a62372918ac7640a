import { GRADIENT_DEFAULTS, gradientImmunize } from '../../models/engine/index.js';
import { gaussian } from '../../models/engine/index.js';
import { gemm, gesv, potrf, potrs, syevr, syrk, type Mat } from '../../models/linalg/index.js';
import { heading, ms, num, sci, seconds, table } from './format.js';
import { jsCholesky, jsCholeskySolve, jsGaussSolve, jsGemm, jsSyrk } from './naive.js';
import { jsEigenpairAt, jsSymmetricEigen } from './naiveEigen.js';
import { median, timeReps, type Timed } from './timing.js';

export const KERNEL_SIZES = [256, 512, 768];
export const DATA_ROWS = 6000;
export const GRADIENT_STEPS = 10;
/** A plain-JS eigensolve predicted to run longer than this is cut short (or skipped) instead. */
export const JS_EIGEN_LIMIT_SECONDS = 20;
/** Relative agreement required between a plain-JS result and the native one. */
export const CHECK_TOLERANCE = 1e-8;

export interface Check {
  /** max |js − native| over the result (eigenvalues for the eigen kernels). */
  maxAbsDiff: number;
  /** maxAbsDiff / max |native|. */
  relDiff: number;
  /** Eigen kernels: max |js − native| over the unit eigenvectors after matching signs. */
  vectorMaxAbsDiff: number | null;
  ok: boolean;
}

export interface KernelRow {
  kernel: string;
  shape: string;
  jsAlgorithm: string;
  native: { medianSeconds: number; reps: number; seconds: number[] };
  js: { medianSeconds: number; reps: number; seconds: number[]; truncated: boolean } | null;
  flops: number | null;
  nativeGflops: number | null;
  jsGflops: number | null;
  /** JS time / native time; a lower bound when js.truncated. */
  ratio: number | null;
  check: Check | null;
  note: string | null;
}

export interface GradientRow {
  dim: number;
  stepCap: number;
  stepsTaken: number;
  accepted: number;
  stopReason: string;
  /** Call start to the first step's observer event: κ of both Gram matrices plus the first step's eigenpairs. */
  firstStepSeconds: number;
  /** Intervals between consecutive steps' observer events (one full step each). */
  stepSeconds: number[];
  perStepMedian: number | null;
  totalSeconds: number;
  /** 6 gemm + 4 one-pair syevr per step, from this size's kernel medians. */
  kernelFloorSeconds: number | null;
}

export interface SizeResult {
  dim: number;
  rows: number;
  nativeReps: number;
  jsReps: number;
  gradient: GradientRow;
  kernels: KernelRow[];
}

export interface KernelResult {
  sizes: SizeResult[];
  tolerance: number;
  allChecksOk: boolean;
}

function randomMat(rows: number, cols: number, seed: number, colScale?: (j: number) => number): Mat {
  const next = gaussian(seed);
  const data = new Float64Array(rows * cols);
  const scale = Float64Array.from({ length: cols }, (_, j) => (colScale ? colScale(j) : 1));
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) data[i * cols + j] = next() * scale[j];
  }
  return { rows, cols, data };
}

function compare(js: Float64Array, native: Float64Array): Omit<Check, 'vectorMaxAbsDiff' | 'ok'> {
  let maxAbsDiff = 0;
  let scale = 0;
  for (let i = 0; i < native.length; i++) {
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs(js[i] - native[i]));
    scale = Math.max(scale, Math.abs(native[i]));
  }
  return { maxAbsDiff, relDiff: scale > 0 ? maxAbsDiff / scale : maxAbsDiff };
}

function matrixCheck(js: Mat, native: Mat): Check {
  const c = compare(js.data, native.data);
  return { ...c, vectorMaxAbsDiff: null, ok: c.relDiff <= CHECK_TOLERANCE };
}

/** Largest difference between matching columns, each JS column's sign flipped to agree with the native one. */
function vectorDiff(js: Mat, jsCol: (j: number) => number, native: Mat, cols: number): number {
  const n = native.rows;
  let worst = 0;
  for (let c = 0; c < cols; c++) {
    const jc = jsCol(c);
    let dot = 0;
    for (let r = 0; r < n; r++) dot += js.data[r * js.cols + jc] * native.data[r * native.cols + c];
    const sign = dot < 0 ? -1 : 1;
    for (let r = 0; r < n; r++) worst = Math.max(worst, Math.abs(sign * js.data[r * js.cols + jc] - native.data[r * native.cols + c]));
  }
  return worst;
}

function eigenCheck(jsValues: Float64Array, jsVectors: Mat, nativeValues: Float64Array, nativeVectors: Mat): Check {
  const c = compare(jsValues, nativeValues);
  const v = vectorDiff(jsVectors, (j) => j, nativeVectors, nativeValues.length);
  return { ...c, vectorMaxAbsDiff: v, ok: c.relDiff <= CHECK_TOLERANCE && v <= CHECK_TOLERANCE };
}

function gflops(flops: number | null, t: Timed<unknown> | null): number | null {
  return flops !== null && t !== null ? flops / t.median / 1e9 : null;
}

function row(
  kernel: string,
  shape: string,
  jsAlgorithm: string,
  native: Timed<unknown>,
  js: Timed<unknown> | null,
  extra: { flops?: number; truncated?: boolean; check?: Check | null; note?: string | null } = {},
): KernelRow {
  const flops = extra.flops ?? null;
  return {
    kernel,
    shape,
    jsAlgorithm,
    native: { medianSeconds: native.median, reps: native.seconds.length, seconds: native.seconds },
    js: js ? { medianSeconds: js.median, reps: js.seconds.length, seconds: js.seconds, truncated: !!extra.truncated } : null,
    flops,
    nativeGflops: gflops(flops, native),
    jsGflops: gflops(flops, js),
    ratio: js ? js.median / native.median : null,
    check: extra.check ?? null,
    note: extra.note ?? null,
  };
}

function runGradient(KP: Mat, KH: Mat): GradientRow {
  const stamps: number[] = [];
  const t0 = performance.now();
  const r = gradientImmunize(KP, KH, { ...GRADIENT_DEFAULTS, steps: GRADIENT_STEPS }, undefined, (ev) => {
    if (ev.phase === 'optimize' && ev.step !== undefined && ev.step > 0) stamps.push(performance.now());
  });
  const t1 = performance.now();
  const stepSeconds = stamps.slice(1).map((t, i) => (t - stamps[i]) / 1000);
  return {
    dim: KP.rows,
    stepCap: GRADIENT_STEPS,
    stepsTaken: r.stepsTaken,
    accepted: r.steps.filter((s) => s.accepted).length,
    stopReason: r.stopReason,
    firstStepSeconds: stamps.length ? (stamps[0] - t0) / 1000 : NaN,
    stepSeconds,
    perStepMedian: stepSeconds.length ? median(stepSeconds) : null,
    totalSeconds: (t1 - t0) / 1000,
    kernelFloorSeconds: null,
  };
}

interface EigenHistory {
  full: { dim: number; seconds: number } | null;
  lowest: { dim: number; seconds: number } | null;
}

function extrapolate(prev: { dim: number; seconds: number } | null, dim: number): number | null {
  return prev ? prev.seconds * (dim / prev.dim) ** 3 : null;
}

function runSize(D: number, quick: boolean, history: EigenHistory, progress: (msg: string) => void): SizeResult {
  const N = DATA_ROWS;
  const nativeReps = quick ? 3 : 7;
  const jsReps = quick || D > 512 ? 1 : 3;
  progress(`kernels D=${D}: generating data`);
  // Benign columns with mildly spread scales, harmful ones decaying, so the two Gram matrices differ.
  const XP = randomMat(N, D, 1000 + D, (j) => 1 + j / D);
  const XH = randomMat(N, D, 2000 + D, (j) => Math.exp((-2.5 * j) / D));
  const A = randomMat(D, D, 3000 + D);
  const B = randomMat(D, D, 4000 + D);
  const KP = syrk(XP, { alpha: 1 / N });
  const KH = syrk(XH, { alpha: 1 / N });

  progress(`kernels D=${D}: gradient method, ${GRADIENT_STEPS} steps`);
  const gradient = runGradient(KP, KH);

  const kernels: KernelRow[] = [];
  const native = <T>(fn: () => T) => timeReps(fn, nativeReps, 1);
  const js = <T>(fn: () => T) => timeReps(fn, jsReps);

  progress(`kernels D=${D}: gemm`);
  {
    const n = native(() => gemm(A, B));
    const j = js(() => jsGemm(A, B));
    kernels.push(row('gemm', `${D}×${D}×${D}`, 'i-k-j triple loop', n, j, { flops: 2 * D ** 3, check: matrixCheck(j.result, n.result) }));
  }
  progress(`kernels D=${D}: syrk`);
  {
    const n = native(() => syrk(XP));
    const j = js(() => jsSyrk(XP));
    // The usual syrk count: one triangle, D(D+1)/2 entries of 2N flops each (both versions compute only that half).
    kernels.push(row('syrk', `XᵀX, X ${N}×${D}`, 'i-k-j lower triangle + mirror', n, j, { flops: N * D * (D + 1), check: matrixCheck(j.result, n.result) }));
  }

  progress(`kernels D=${D}: syevr (all pairs)`);
  {
    const n = native(() => syevr(KP));
    const predicted = extrapolate(history.full, D);
    let j: Timed<ReturnType<typeof jsSymmetricEigen>> | null = null;
    let note: string | null = null;
    let check: Check | null = null;
    let truncated = false;
    if (quick && D >= 768) {
      note = 'plain-JS eigensolver skipped (--quick)';
    } else if (predicted !== null && predicted > JS_EIGEN_LIMIT_SECONDS) {
      j = timeReps(() => jsSymmetricEigen(KP, { maxIterationsPerValue: 1 }), 1);
      truncated = true;
      note =
        `a converged plain-JS run would exceed ${JS_EIGEN_LIMIT_SECONDS} s (D³ extrapolation from D=${history.full!.dim}: ~${num(predicted, 2)} s, not measured); ` +
        `timed with ONE QL iteration per eigenvalue, unconverged, so JS/native is a lower bound and there is nothing to check`;
    } else {
      j = timeReps(() => jsSymmetricEigen(KP), jsReps);
      check = eigenCheck(j.result.values, j.result.vectors, n.result.values, n.result.vectors!);
      history.full = { dim: D, seconds: j.median };
    }
    kernels.push(row('syevr all', `${D}×${D}, values + vectors`, 'Householder tridiagonal + implicit QL', n, j, { truncated, check, note }));
  }

  progress(`kernels D=${D}: syevr (lowest pair)`);
  {
    const n = native(() => syevr(KP, { range: { lo: 0, hi: 0 } }));
    const predicted = extrapolate(history.lowest, D);
    let j: Timed<ReturnType<typeof jsEigenpairAt>> | null = null;
    let note: string | null = null;
    let check: Check | null = null;
    if (quick && D >= 768) {
      note = 'plain-JS eigensolver skipped (--quick)';
    } else if (predicted !== null && predicted > JS_EIGEN_LIMIT_SECONDS) {
      note = `plain-JS run skipped: D³ extrapolation from D=${history.lowest!.dim} gives ~${num(predicted, 2)} s (not measured)`;
    } else {
      j = timeReps(() => jsEigenpairAt(KP, 0), jsReps);
      const jv: Mat = { rows: D, cols: 1, data: j.result.vector };
      check = eigenCheck(Float64Array.of(j.result.value), jv, n.result.values, n.result.vectors!);
      history.lowest = { dim: D, seconds: j.median };
    }
    kernels.push(row('syevr lowest', `${D}×${D}, index 0 only`, 'Householder tridiagonal + bisection + inverse iteration', n, j, { check, note }));
  }

  progress(`kernels D=${D}: potrf`);
  const nPotrf = native(() => potrf(KP));
  {
    const j = js(() => jsCholesky(KP));
    kernels.push(row('potrf', `${D}×${D}`, 'Cholesky, dot-product form', nPotrf, j, { check: matrixCheck(j.result, nPotrf.result) }));
  }
  progress(`kernels D=${D}: potrs`);
  {
    const L = nPotrf.result;
    const n = native(() => potrs(L, B));
    const j = js(() => jsCholeskySolve(L, B));
    kernels.push(row('potrs', `${D}×${D}, ${D} rhs`, 'forward + backward substitution', n, j, { check: matrixCheck(j.result, n.result) }));
  }
  progress(`kernels D=${D}: gesv`);
  {
    const n = native(() => gesv(A, B));
    const j = js(() => jsGaussSolve(A, B));
    kernels.push(row('gesv', `${D}×${D}, ${D} rhs`, 'Gaussian elimination, partial pivoting', n, j, { check: matrixCheck(j.result, n.result) }));
  }

  const t = (name: string) => kernels.find((k) => k.kernel === name)!.native.medianSeconds;
  gradient.kernelFloorSeconds = 6 * t('gemm') + 4 * t('syevr lowest');
  return { dim: D, rows: N, nativeReps, jsReps, gradient, kernels };
}

export function runKernels(opts: { quick: boolean; progress: (msg: string) => void }): KernelResult {
  const history: EigenHistory = { full: null, lowest: null };
  const sizes = KERNEL_SIZES.map((D) => runSize(D, opts.quick, history, opts.progress));
  const allChecksOk = sizes.every((s) => s.kernels.every((k) => k.check === null || k.check.ok));
  return { sizes, tolerance: CHECK_TOLERANCE, allChecksOk };
}

function ratioText(k: KernelRow): string {
  if (k.ratio === null) return '—';
  return `${k.js!.truncated ? '≥ ' : ''}${num(k.ratio, 3)}×`;
}

function checkText(k: KernelRow): string {
  if (!k.check) return k.js?.truncated ? 'n/a (truncated)' : '—';
  return k.check.ok ? 'ok' : 'MISMATCH';
}

export function renderKernels(r: KernelResult): string[] {
  const lines: string[] = [
    ...heading(`Synthetic problems (random data, ${DATA_ROWS} rows, seeded)`),
    `Gradient method: gradientImmunize with steps: ${GRADIENT_STEPS} on K = XᵀX/N of a benign and a harmful random data set.`,
    "per step = interval between consecutive steps' progress events (median, min–max); first step includes κ of both Gram",
    'matrices; kernel floor = 6 gemm + 4 one-pair syevr from the kernel table below, one after another. A step does that',
    'work with one tridiagonal reduction per Hessian instead of two, and the two Hessians side by side, so it can beat 1×.',
    '',
    ...table(
      ['D', 'first step', 'per step', 'min–max', 'total', 'steps', 'accepted', 'stop', 'kernel floor', 'step/floor'],
      r.sizes.map(({ gradient: g }) => [
        String(g.dim),
        seconds(g.firstStepSeconds),
        g.perStepMedian === null ? '—' : `${ms(g.perStepMedian)} ms`,
        g.stepSeconds.length ? `${ms(Math.min(...g.stepSeconds))}–${ms(Math.max(...g.stepSeconds))} ms` : '—',
        seconds(g.totalSeconds),
        `${g.stepsTaken}/${g.stepCap}`,
        String(g.accepted),
        g.stopReason,
        g.kernelFloorSeconds === null ? '—' : `${ms(g.kernelFloorSeconds)} ms`,
        g.perStepMedian !== null && g.kernelFloorSeconds ? `${num(g.perStepMedian / g.kernelFloorSeconds, 2)}×` : '—',
      ]),
      ['right', 'right', 'right', 'right', 'right', 'right', 'right', 'left', 'right', 'right'],
    ),
  ];
  for (const s of r.sizes) {
    lines.push(
      '',
      `Kernels at D = ${s.dim}: native median of ${s.nativeReps} (after 1 warm-up), plain JS median of ${s.jsReps}; times in ms; ` +
        `check: relative max |Δ| ≤ ${sci(r.tolerance, 0)} (eigenvectors sign-matched)`,
      ...table(
        ['kernel', 'shape', 'native ms', 'GFLOP/s', 'JS ms', 'JS GFLOP/s', 'JS/native', 'max |Δ|', 'rel |Δ|', 'Δ vectors', 'check', 'plain-JS algorithm'],
        s.kernels.map((k) => [
          k.kernel,
          k.shape,
          ms(k.native.medianSeconds),
          k.nativeGflops === null ? '' : num(k.nativeGflops, 3),
          k.js ? `${k.js.truncated ? '≥ ' : ''}${ms(k.js.medianSeconds)}` : '—',
          k.jsGflops === null ? '' : num(k.jsGflops, 3),
          ratioText(k),
          k.check ? sci(k.check.maxAbsDiff) : '—',
          k.check ? sci(k.check.relDiff) : '—',
          k.check?.vectorMaxAbsDiff != null ? sci(k.check.vectorMaxAbsDiff) : '',
          checkText(k),
          k.jsAlgorithm,
        ]),
        ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left', 'left'],
      ),
    );
    for (const k of s.kernels) if (k.note) lines.push(`  ${k.kernel}: ${k.note}`);
  }
  lines.push(
    '',
    r.allChecksOk ? 'all plain-JS results agree with the native ones' : 'MISMATCH: some plain-JS results disagree with the native ones (see above)',
  );
  return lines;
}
