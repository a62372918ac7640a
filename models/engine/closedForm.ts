import { gemm, syevr } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { congruence, mat, symmetrize } from './dense.js';
import { gaussian } from './random.js';
import { conditioning, conditioningFromSpectrum, defaultRtol, matrixCondition } from './spectrum.js';

export interface ClosedFormOptions {
  kappaBudget: number;
  /** Fixed trade-off; when absent α is the largest one that keeps the benign ratio ≤ 1 and κ(θ) within budget. */
  alpha?: number;
  /** Ridge candidates ε (relative to λ_max(K_P)) for K_P^{-1/2}. */
  ridges: number[];
  rtol?: number;
  /** Seed of the rotation applied after the generalized eigenbasis; null keeps θ in that basis. */
  rotationSeed?: number | null;
}

/** Bisection steps for the largest admissible α (resolution: the bracket / 2^12). */
const ALPHA_SEARCH_STEPS = 12;

/** Bisection steps for the largest α that passes the attack check. */
const ATTACK_SEARCH_STEPS = 6;

export const CLOSED_FORM_DEFAULTS: ClosedFormOptions = { kappaBudget: 1e4, ridges: [1e-2, 1e-3, 1e-4] };

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

/** M = K_P^{-1/2} K_H K_P^{-1/2} (ridged), and its eigenbasis: the generalized eigenbasis of (K_H, K_P). */
export function generalizedBasis(KP: Mat, KH: Mat, ridge: number, rtol = defaultRtol(KP.rows)): Basis {
  const D = KP.rows;
  const eig = syevr(KP);
  const lmax = eig.values[D - 1];
  const V = eig.vectors!;
  const scaledV = mat(D, D);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) {
      const p = Math.max(eig.values[j], 0) + ridge * lmax;
      scaledV.data[i * D + j] = V.data[i * D + j] / Math.sqrt(p);
    }
  }
  const R = symmetrize(gemm(scaledV, V, { transB: true }));
  const M = congruence(KH, R);
  const me = syevr(M);
  const c = conditioningFromSpectrum(me.values, rtol);
  if (c.kappa === null || c.lambdaMinPositive === null) throw new Error('the harmful Gram matrix is zero');
  const lambdas = me.values.map((v) => Math.max(v, c.lambdaMinPositive!));
  return { R, Q: me.vectors!, lambdas, kappaM: c.kappa };
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
  const rand = gaussian(seed);
  const G = mat(D, D);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j <= i; j++) {
      const v = rand();
      G.data[i * D + j] = v;
      G.data[j * D + i] = v;
    }
  }
  return syevr(G).vectors!;
}

/**
 * θ = K_P^{-1/2}·Q·diag(λ^{α/2}) gives κ(H_P) = κ(M)^α and κ(H_H) = κ(M)^{1+α} (for SPD K_P). Over a few ridges,
 * α is pushed as far as the benign ratio (≤ 1) and the κ(θ) budget allow, and the ridge with the largest harmful
 * ratio wins.
 */
export function closedFormImmunize(
  KP: Mat,
  KH: Mat,
  opts: ClosedFormOptions,
  acceptable: (theta: Mat) => boolean = () => true,
): ClosedFormResult {
  const rtol = opts.rtol ?? defaultRtol(KP.rows);
  const kP0 = conditioning(KP, rtol).kappa;
  const kH0 = conditioning(KH, rtol).kappa;
  if (kP0 === null || kH0 === null) throw new Error('a Gram matrix is zero; there is nothing to immunize');
  let best: ClosedFormResult | null = null;
  let bestPasses = false;
  const rotation = opts.rotationSeed === null ? undefined : randomRotation(KP.rows, opts.rotationSeed ?? 0);
  for (const ridge of opts.ridges) {
    const basis = generalizedBasis(KP, KH, ridge, rtol);
    const evaluate = (alpha: number) => {
      try {
        return evaluateAt(alpha);
      } catch {
        return { theta: thetaFor(basis, 0), kt: Infinity, benignRatio: Infinity, harmfulRatio: 0, ok: false };
      }
    };
    const evaluateAt = (alpha: number) => {
      const theta = thetaFor(basis, alpha, rotation);
      if (!theta.data.every(Number.isFinite)) return { theta, kt: Infinity, benignRatio: Infinity, harmfulRatio: 0, ok: false };
      const kt = matrixCondition(theta);
      const kp = conditioning(congruence(KP, theta), rtol).kappa;
      const kh = conditioning(congruence(KH, theta), rtol).kappa;
      const ok = kt !== null && kp !== null && kh !== null && kt <= opts.kappaBudget && kp <= kP0;
      return { theta, kt: kt ?? Infinity, benignRatio: (kp ?? Infinity) / kP0, harmfulRatio: (kh ?? 0) / kH0, ok };
    };
    let chosen: { alpha: number; r: ReturnType<typeof evaluate> } | null = null;
    if (opts.alpha !== undefined) {
      chosen = { alpha: opts.alpha, r: evaluate(opts.alpha) };
    } else {
      let lo = 0;
      let r0 = evaluate(0);
      if (!r0.ok) continue;
      // Past this α the diagonal alone would exceed the κ(θ) budget.
      const logM = Math.log(basis.kappaM);
      let hi = logM > 1e-9 ? Math.min(Math.max((2 * Math.log(kP0)) / logM, 1), (2 * Math.log(opts.kappaBudget)) / logM) : 0;
      const rHi = evaluate(hi);
      if (rHi.ok) {
        lo = hi;
        r0 = rHi;
      } else {
        for (let i = 0; i < ALPHA_SEARCH_STEPS; i++) {
          const mid = (lo + hi) / 2;
          const r = evaluate(mid);
          if (r.ok) {
            lo = mid;
            r0 = r;
          } else hi = mid;
        }
      }
      chosen = { alpha: lo, r: r0 };
    }
    const consider = (alpha: number, r: ReturnType<typeof evaluate>, passes: boolean) => {
      const candidate: ClosedFormResult = {
        theta: r.theta,
        alpha,
        ridge,
        kappaM: basis.kappaM,
        thetaCondition: r.kt,
        benignRatio: r.benignRatio,
        harmfulRatio: r.harmfulRatio,
      };
      if (best === null || (passes && (!bestPasses || candidate.harmfulRatio > best.harmfulRatio))) {
        best = candidate;
        bestPasses = passes;
      }
    };
    if (opts.alpha !== undefined || !chosen.r.ok) {
      consider(chosen.alpha, chosen.r, chosen.r.ok && acceptable(chosen.r.theta));
      continue;
    }
    if (acceptable(chosen.r.theta)) {
      consider(chosen.alpha, chosen.r, true);
      continue;
    }
    // The largest admissible α fails the attack check: search below it for the largest α that passes.
    let lo = 0;
    let hi = chosen.alpha;
    let found: { alpha: number; r: ReturnType<typeof evaluate> } | null = null;
    const r0 = evaluate(0);
    if (r0.ok && acceptable(r0.theta)) {
      found = { alpha: 0, r: r0 };
      for (let i = 0; i < ATTACK_SEARCH_STEPS; i++) {
        const mid = (lo + hi) / 2;
        const r = evaluate(mid);
        if (r.ok && acceptable(r.theta)) {
          lo = mid;
          found = { alpha: mid, r };
        } else hi = mid;
      }
    }
    if (found) consider(found.alpha, found.r, true);
    else consider(chosen.alpha, chosen.r, false);
  }
  if (best === null) throw new Error(`no ridge keeps κ(θ) within the budget ${opts.kappaBudget}`);
  return best;
}

/**
 * RIR* = κ(M)·κ(K_P)/κ(K_H), with M = K_P^{-1/2} K_H K_P^{-1/2} taken on the numerical range of K_P when K_P is
 * rank-deficient: directions the benign data never uses are left out, because stretching them raises κ(H_H) without
 * slowing an attacker who z-scores the features.
 */
export function rirBound(KP: Mat, KH: Mat, rtol = defaultRtol(KP.rows)): number | null {
  const D = KP.rows;
  const kH0 = conditioning(KH, rtol).kappa;
  const eig = syevr(KP);
  const cP = conditioningFromSpectrum(eig.values, rtol);
  if (cP.kappa === null || kH0 === null) return null;
  const r = cP.rank;
  const first = D - r;
  const W = mat(D, r);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < r; j++) W.data[i * r + j] = eig.vectors!.data[i * D + first + j] / Math.sqrt(eig.values[first + j]);
  }
  const kM = conditioning(congruence(KH, W), rtol).kappa;
  return kM === null ? null : (kM * cP.kappa) / kH0;
}
