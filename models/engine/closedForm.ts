import { gemm, syevr } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { congruence, mat, symmetrize } from './dense.js';
import { gaussian } from './random.js';
import { conditioning, conditioningFromSpectrum, conditioningWithRank, defaultRtol, matrixCondition } from './spectrum.js';

export interface ClosedFormOptions {
  kappaBudget: number;
  /** Fixed trade-off; when absent α is the largest one that keeps the benign ratio ≤ 1 and κ(θ) within budget. */
  alpha?: number;
  /** Ridge candidates ε (relative to λ_max(K_P)) for K_P^{-1/2}; by default the decades from 1e-2 to 1/budget². */
  ridges?: number[];
  rtol?: number;
  /** Seed of the rotation applied after the generalized eigenbasis; null keeps θ in that basis. */
  rotationSeed?: number | null;
}

/** Bisection steps for the largest admissible α (resolution: the bracket / 2^12). */
const ALPHA_SEARCH_STEPS = 12;

/** Bisection steps for the largest α that passes the attack check. */
const ATTACK_SEARCH_STEPS = 6;

export const CLOSED_FORM_DEFAULTS: ClosedFormOptions = { kappaBudget: 1e4 };

/**
 * A smaller ridge stretches the directions K_P barely uses further (a larger κ(M), hence RIR), at the price of
 * κ(θ); below 1/budget² K_P^{-1/2} alone would exceed the budget.
 */
export function defaultRidges(kappaBudget: number): number[] {
  const out: number[] = [];
  const floor = 1 / (kappaBudget * kappaBudget);
  for (let e = -2; Math.pow(10, e) >= floor * (1 - 1e-9); e--) out.push(Math.pow(10, e));
  return out.length > 0 ? out : [floor];
}

export interface ClosedFormResult {
  theta: Mat;
  alpha: number;
  ridge: number;
  kappaM: number;
  thetaCondition: number;
  benignRatio: number;
  harmfulRatio: number;
}

interface Basis {
  /** (K_P + ε·λ_max·I)^{-1/2} */
  R: Mat;
  Q: Mat;
  lambdas: Float64Array;
  kappaM: number;
}

/**
 * M = K_P^{-1/2} K_H K_P^{-1/2} (ridged), and its eigenbasis: the generalized eigenbasis of (K_H, K_P). With
 * `harmfulRank`, κ(M) counts that many eigenvalues (M has the rank of K_H), so that rounding noise in K_H's null
 * space, amplified by a small ridge, is not read as signal.
 */
export function generalizedBasis(
  KP: Mat,
  KH: Mat,
  ridge: number,
  rtol = defaultRtol(KP.rows),
  harmfulRank?: number,
  eigenOfKP?: { values: Float64Array; vectors: Mat },
): Basis {
  const R = ridgedInverseRoot(eigenOfKP ?? syevr(KP), ridge);
  const me = syevr(congruence(KH, R));
  const c = harmfulRank === undefined ? conditioningFromSpectrum(me.values, rtol) : conditioningWithRank(me.values, rtol, harmfulRank);
  if (c.kappa === null || c.lambdaMinPositive === null) throw new Error('the harmful Gram matrix is zero');
  const lambdas = me.values.map((v) => Math.max(v, c.lambdaMinPositive!));
  return { R, Q: me.vectors!, lambdas, kappaM: c.kappa };
}

/** (K_P + ε·λ_max·I)^{-1/2} from K_P's eigendecomposition. */
function ridgedInverseRoot(eig: { values: Float64Array; vectors?: Mat }, ridge: number): Mat {
  const D = eig.values.length;
  const lmax = eig.values[D - 1];
  const V = eig.vectors!;
  const scaledV = mat(D, D);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) {
      const p = Math.max(eig.values[j], 0) + ridge * lmax;
      scaledV.data[i * D + j] = V.data[i * D + j] / Math.sqrt(p);
    }
  }
  return symmetrize(gemm(scaledV, V, { transB: true }));
}

export function thetaFor(b: Basis, alpha: number, rotation?: Mat): Mat {
  const D = b.Q.rows;
  const QS = mat(D, D);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) QS.data[i * D + j] = b.Q.data[i * D + j] * Math.pow(b.lambdas[j], alpha / 2);
  }
  const theta = gemm(b.R, QS);
  return rotation ? gemm(theta, rotation) : theta;
}

/**
 * A seeded random orthogonal D×D matrix (the eigenvectors of a symmetric Gaussian matrix). θ·U has the same κ's as
 * θ, but its feature columns no longer line up with the generalized eigenbasis: without it, H_H is diagonal and an
 * attacker who z-scores each column whitens it exactly.
 */
export function randomRotation(D: number, seed: number): Mat {
  return syevr(rotationSource(D, seed)).vectors!;
}

/** The seeded symmetric Gaussian matrix whose eigenvectors make randomRotation(D, seed). */
export function rotationSource(D: number, seed: number): Mat {
  const rand = gaussian(seed);
  const G = mat(D, D);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j <= i; j++) {
      const v = rand();
      G.data[i * D + j] = v;
      G.data[j * D + i] = v;
    }
  }
  return G;
}

/**
 * θ = K_P^{-1/2}·Q·diag(λ^{α/2}) gives κ(H_P) = κ(M)^α and κ(H_H) = κ(M)^{1+α} (for SPD K_P). For each ridge, α is
 * pushed as far as the benign ratio (≤ 1) and the κ(θ) budget allow; the smallest ridge whose θ passes `acceptable`
 * wins (when none passes, the candidate with the largest harmful ratio is returned).
 */
export function closedFormImmunize(KP: Mat, KH: Mat, opts: ClosedFormOptions, acceptable: (theta: Mat) => boolean = () => true): ClosedFormResult {
  const rtol = opts.rtol ?? defaultRtol(KP.rows);
  const before = { benign: conditioning(KP, rtol), harmful: conditioning(KH, rtol) };
  const kP0 = before.benign.kappa;
  const kH0 = before.harmful.kappa;
  if (kP0 === null || kH0 === null) throw new Error('a Gram matrix is zero; there is nothing to immunize');
  let best: ClosedFormResult | null = null;
  let bestPasses = false;
  const rotation = opts.rotationSeed === null ? undefined : randomRotation(KP.rows, opts.rotationSeed ?? 0);
  // A smaller ridge gives a larger κ(M), hence RIR: the first ridge, from the smallest, whose θ passes wins.
  const ridges = [...(opts.ridges ?? defaultRidges(opts.kappaBudget))].sort((a, b) => a - b);
  for (const ridge of ridges) {
    if (bestPasses) break;
    const basis = generalizedBasis(KP, KH, ridge, rtol, before.harmful.rank);
    const evaluate = candidateScorer(KP, KH, basis, rotation, {
      rtol,
      kappaBudget: opts.kappaBudget,
      kP0,
      kH0,
      ranks: { benign: before.benign.rank, harmful: before.harmful.rank },
    });
    const found = alphaFor(basis, evaluate, acceptable, { alpha: opts.alpha, kP0, kappaBudget: opts.kappaBudget });
    if (!found) continue;
    const candidate: ClosedFormResult = {
      theta: found.r.theta,
      alpha: found.alpha,
      ridge,
      kappaM: basis.kappaM,
      thetaCondition: found.r.kt,
      benignRatio: found.r.benignRatio,
      harmfulRatio: found.r.harmfulRatio,
    };
    // Among candidates that fail, a larger RIR could come from whitening both sides: the harmful ratio decides.
    if (best === null || (found.passes && !bestPasses) || (!found.passes && !bestPasses && candidate.harmfulRatio > best.harmfulRatio)) {
      best = candidate;
      bestPasses = found.passes;
    }
  }
  if (best === null) throw new Error(`no ridge keeps κ(θ) within the budget ${opts.kappaBudget}`);
  return best;
}

interface Scored {
  theta: Mat;
  kt: number;
  benignRatio: number;
  harmfulRatio: number;
  /** Within the κ(θ) budget and not lifting the benign κ. */
  ok: boolean;
}

/**
 * θ at a given α, with its κ(θ) and κ ratios. As in the reported metrics, κ after θ counts rank(K) eigenvalues: θ
 * cannot add rank, and rounding noise in K's null space, amplified by a small ridge, would otherwise pass for signal
 * and hide the ridges that work best.
 */
function candidateScorer(
  KP: Mat,
  KH: Mat,
  basis: ReturnType<typeof generalizedBasis>,
  rotation: Mat | undefined,
  c: { rtol: number; kappaBudget: number; kP0: number; kH0: number; ranks: { benign: number; harmful: number } },
): (alpha: number) => Scored {
  const kappaAfter = (K: Mat, theta: Mat, rank: number) => conditioningWithRank(syevr(congruence(K, theta), { vectors: false }).values, c.rtol, rank).kappa;
  const score = (alpha: number): Scored => {
    const theta = thetaFor(basis, alpha, rotation);
    if (!theta.data.every(Number.isFinite)) return { theta, kt: Infinity, benignRatio: Infinity, harmfulRatio: 0, ok: false };
    const kt = matrixCondition(theta);
    const kp = kappaAfter(KP, theta, c.ranks.benign);
    const kh = kappaAfter(KH, theta, c.ranks.harmful);
    const ok = kt !== null && kp !== null && kh !== null && kt <= c.kappaBudget && kp <= c.kP0;
    return { theta, kt: kt ?? Infinity, benignRatio: (kp ?? Infinity) / c.kP0, harmfulRatio: (kh ?? 0) / c.kH0, ok };
  };
  return (alpha) => {
    try {
      return score(alpha);
    } catch {
      return { theta: thetaFor(basis, 0), kt: Infinity, benignRatio: Infinity, harmfulRatio: 0, ok: false };
    }
  };
}

/**
 * The α for one ridge: the given one, or the largest admissible (benign ratio ≤ 1, κ(θ) within budget); when that
 * one fails `acceptable`, the largest α below it that passes. Null when even α = 0 is not admissible.
 */
function alphaFor(
  basis: ReturnType<typeof generalizedBasis>,
  evaluate: (alpha: number) => Scored,
  acceptable: (theta: Mat) => boolean,
  o: { alpha?: number; kP0: number; kappaBudget: number },
): { alpha: number; r: Scored; passes: boolean } | null {
  if (o.alpha !== undefined) {
    const r = evaluate(o.alpha);
    return { alpha: o.alpha, r, passes: r.ok && acceptable(r.theta) };
  }
  const admissible = largestAdmissibleAlpha(basis, evaluate, o.kP0, o.kappaBudget);
  if (!admissible) return null;
  if (acceptable(admissible.r.theta)) return { ...admissible, passes: true };
  const passing = largestPassingAlpha(evaluate, acceptable, admissible.alpha);
  return passing ? { ...passing, passes: true } : { ...admissible, passes: false };
}

/** Bisection for the largest α that keeps the benign ratio ≤ 1 and κ(θ) within budget. */
function largestAdmissibleAlpha(
  basis: ReturnType<typeof generalizedBasis>,
  evaluate: (alpha: number) => Scored,
  kP0: number,
  kappaBudget: number,
): { alpha: number; r: Scored } | null {
  let lo = 0;
  let r0 = evaluate(0);
  if (!r0.ok) return null;
  // Past this α the diagonal alone would exceed the κ(θ) budget.
  const logM = Math.log(basis.kappaM);
  let hi = logM > 1e-9 ? Math.min(Math.max((2 * Math.log(kP0)) / logM, 1), (2 * Math.log(kappaBudget)) / logM) : 0;
  const rHi = evaluate(hi);
  if (rHi.ok) return { alpha: hi, r: rHi };
  for (let i = 0; i < ALPHA_SEARCH_STEPS; i++) {
    const mid = (lo + hi) / 2;
    const r = evaluate(mid);
    if (r.ok) {
      lo = mid;
      r0 = r;
    } else hi = mid;
  }
  return { alpha: lo, r: r0 };
}

/** The largest admissible α fails the attack check: search below it for the largest α that passes. */
function largestPassingAlpha(evaluate: (alpha: number) => Scored, acceptable: (theta: Mat) => boolean, below: number): { alpha: number; r: Scored } | null {
  const passes = (r: Scored) => r.ok && acceptable(r.theta);
  const r0 = evaluate(0);
  if (!passes(r0)) return null;
  let found = { alpha: 0, r: r0 };
  let lo = 0;
  let hi = below;
  for (let i = 0; i < ATTACK_SEARCH_STEPS; i++) {
    const mid = (lo + hi) / 2;
    const r = evaluate(mid);
    if (passes(r)) {
      lo = mid;
      found = { alpha: mid, r };
    } else hi = mid;
  }
  return found;
}

/**
 * RIR* = κ(M)·κ(K_P)/κ(K_H), with M = K_P^{-1/2} K_H K_P^{-1/2}. When K_P is rank-deficient, θ can stretch the
 * directions the benign data never uses as far as the κ(θ) budget allows, so M is formed with the ridge
 * ε = 1/budget², the smallest at which K_P^{-1/2} alone stays inside the budget.
 */
export function rirBound(
  KP: Mat,
  KH: Mat,
  rtol = defaultRtol(KP.rows),
  kappaBudget = CLOSED_FORM_DEFAULTS.kappaBudget,
  /** What the caller already has: K_P's eigendecomposition and K_H's spectrum. */
  known?: { benign: { values: Float64Array; vectors: Mat }; harmful: Float64Array },
): number | null {
  const cH = known ? conditioningFromSpectrum(known.harmful, rtol) : conditioning(KH, rtol);
  const cP = known ? conditioningFromSpectrum(known.benign.values, rtol) : conditioning(KP, rtol);
  const kH0 = cH.kappa;
  if (cP.kappa === null || kH0 === null) return null;
  const ridge = cP.rank < KP.rows ? 1 / (kappaBudget * kappaBudget) : 0;
  // κ(M) needs M's eigenvalues only.
  let kM: number | null;
  try {
    const M = congruence(KH, ridgedInverseRoot(known?.benign ?? syevr(KP), ridge));
    kM = conditioningWithRank(syevr(M, { vectors: false }).values, rtol, cH.rank).kappa;
  } catch {
    return null;
  }
  return kM === null ? null : (kM * cP.kappa) / kH0;
}
