/**
 * The paper's deep-mode protocol: κ ratios over n random draws of k samples (the same rows before and after), their
 * mean and standard deviation, and the accuracy of the original head.
 */
import { syevr, syrk } from '../linalg/index.js';
import { conditioningFromSpectrum } from '../engine/index.js';
import { uniform } from '../engine/index.js';

export interface FeatureRows {
  data: ArrayLike<number>;
  rows: number;
  dim: number;
}

export interface DrawResult {
  benignRatio: number;
  harmfulRatio: number;
  rir: number;
}

export interface MeanStd {
  mean: number;
  std: number;
}

export interface DrawSummary {
  draws: number;
  sampleSize: number;
  rir: MeanStd;
  harmfulRatio: MeanStd;
  benignRatio: MeanStd;
  perDraw: DrawResult[];
}

function rowsOf(f: FeatureRows, rows: number[]): Float64Array {
  const out = new Float64Array(rows.length * f.dim);
  rows.forEach((r, i) => {
    for (let j = 0; j < f.dim; j++) out[i * f.dim + j] = f.data[r * f.dim + j];
  });
  return out;
}

/**
 * numpy's matrix_rank rule at the features' own precision. They come out of a float32 network, so a singular value
 * of F below D·ε₃₂·σ_max is rounding noise; for the eigenvalues of S = FᵀF (λ = σ²) the threshold is
 * (D·ε₃₂)²·λ_max. The engine's float64 rule (D·ε₆₄·λ_max) would count noise directions of float32 features, and
 * κ's read from them change at random between draws.
 */
export const FLOAT32_EPS = 2 ** -23;

export function float32Rtol(dim: number): number {
  return (dim * FLOAT32_EPS) ** 2;
}

/** Robust κ of XᵀX for the given rows (null when X is zero). */
export function sampleKappa(f: FeatureRows, rows: number[]): number | null {
  const S = syrk({ rows: rows.length, cols: f.dim, data: rowsOf(f, rows) });
  return conditioningFromSpectrum(syevr(S, { vectors: false }).values, float32Rtol(f.dim)).kappa;
}

export function meanStd(values: number[]): MeanStd {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  return { mean, std: Math.sqrt(variance) };
}

/** k distinct rows out of n (all of them when k ≥ n), seeded. */
export function sampleRows(n: number, k: number, next: () => number): number[] {
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < Math.min(k, n); i++) {
    const j = i + Math.floor(next() * (n - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, Math.min(k, n)).sort((a, b) => a - b);
}

export function drawRatios(
  before: { benign: FeatureRows; harmful: FeatureRows },
  after: { benign: FeatureRows; harmful: FeatureRows },
  opts: { draws: number; sampleSize: number; seed: number },
): DrawSummary {
  const next = uniform(opts.seed + 104729);
  const perDraw: DrawResult[] = [];
  const kB = Math.min(opts.sampleSize, before.benign.rows);
  const kH = Math.min(opts.sampleSize, before.harmful.rows);
  for (let d = 0; d < opts.draws; d++) {
    const b = sampleRows(before.benign.rows, kB, next);
    const h = sampleRows(before.harmful.rows, kH, next);
    const ratio = (a: number | null, z: number | null) => (a === null || z === null ? NaN : a / z);
    const benignRatio = ratio(sampleKappa(after.benign, b), sampleKappa(before.benign, b));
    const harmfulRatio = ratio(sampleKappa(after.harmful, h), sampleKappa(before.harmful, h));
    perDraw.push({ benignRatio, harmfulRatio, rir: harmfulRatio / benignRatio });
  }
  return {
    draws: opts.draws,
    sampleSize: Math.min(kB, kH),
    rir: meanStd(perDraw.map((p) => p.rir)),
    harmfulRatio: meanStd(perDraw.map((p) => p.harmfulRatio)),
    benignRatio: meanStd(perDraw.map((p) => p.benignRatio)),
    perDraw,
  };
}

/** Share of rows whose argmax logit is the label. */
export function accuracy(logits: ArrayLike<number>, classes: number, labels: ArrayLike<number>): number {
  let hits = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    if (best === labels[i]) hits++;
  }
  return hits / labels.length;
}
