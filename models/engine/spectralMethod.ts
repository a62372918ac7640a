import { gemm, syevr, syevrMany } from '../linalg/index.js';
import type { EigenResult, Mat } from '../linalg/types.js';
import { mat, symmetrize } from './dense.js';
import { complementBasis, complementTheta } from './benignComplement.js';
import { rotationSource } from './closedForm.js';
import { matrixCondition } from './spectrum.js';
import type { SufficientStats } from './stats.js';

/**
 * θ = W·Q·diag(g)·U, aimed at what the verdict checks rather than at κ alone.
 *
 * - W whitens the benign second moments (centred or not, with a ridge ε·λ_max): every benign direction becomes
 *   equally easy, which leaves the benign attackers room to spare.
 * - Q, m: the eigenvectors and values of W·A_H·W, the harmful second moments in the whitened space. In these
 *   coordinates the harmful Hessian is diag(m) and the benign one is close to I, so each direction's share of
 *   each task's starting gap (its "energy") can be read off the sufficient statistics.
 * - g² is 1, except on the directions that carry much of the harmful task's energy and little of the benign
 *   task's: there it is δ, as small as the κ(θ) budget allows. An attacker on the harmful data must then converge
 *   along directions whose curvature is δ·m_j against a step set by the largest m, while the benign task, with less
 *   than its attackers' target in those directions, never needs them.
 * - U, a seeded random rotation, keeps the benign side white and spreads the suppressed directions over every
 *   column, so that a diagonal rescaling (z-scoring, Adam's preconditioner) cannot undo them.
 *
 * Without harmful labels the energies are unknown; the harmful variance share m_j stands in for them.
 */
export interface SpectralCandidate {
  theta: Mat;
  /** 'complement': everything outside the benign signal is suppressed (benignComplement.ts); 'energy': the directions chosen by their energy shares. */
  family: 'complement' | 'energy';
  centred: boolean;
  ridge: number;
  /** The benign energy share the suppressed directions may hold. */
  benignShare: number;
  /** The harmful energy share they do hold (the energy family only). */
  harmfulShare: number | null;
  suppressed: number;
  delta: number;
  thetaCondition: number;
}

export interface SpectralOptions {
  kappaBudget: number;
  seed: number;
  /** Whether the harmful targets are real labels; without them the variance share ranks the directions. */
  harmfulLabelled: boolean;
  ridge?: number;
}

/**
 * Whitening ridges ε (relative to λ_max): near-complete whitening first, then a partial one that leaves the benign
 * spectrum's tail alone (learned features, whose benign κ is moderate, need the latter).
 */
export const SPECTRAL_RIDGES = [1e-4, 1e-1];

/** At most this many candidates get the screen (each costs a few eigendecompositions and attack runs). */
export const MAX_SCREENED = 16;

/** Up to this width every candidate is screened, from the largest RIR down (see spectralImmunize). */
export const EXHAUSTIVE_MAX_DIM = 128;

/** The milder suppression tried after the boldest one. */
export const MILD_DELTA = 1e-2;

/** The complement family: whitening ridges, harmful axes kept at full scale, and suppressions δ, in the order tried. */
export const COMPLEMENT_RIDGES = [1e-4, 1e-3];
export const COMPLEMENT_KEPT = [4, 1, 0];
export const COMPLEMENT_DELTAS = [1e-3, 3e-4, 1e-4];

/** Benign energy shares tried, from the boldest; the caller's check picks the first that passes. */
export const BENIGN_SHARES = [1e-2, 1e-3, 1e-4, 1e-5];

export interface Geometry {
  centred: boolean;
  ridge: number;
  W: Mat;
  Q: Mat;
  m: Float64Array;
  /** Each direction's share of the benign and harmful starting gaps. */
  benignEnergy: Float64Array;
  harmfulEnergy: Float64Array;
  kappaW: number;
}

/** n·(second moment) of the features, centred on their mean or not, divided by n. */
function secondMoment(s: SufficientStats, centred: boolean): Mat {
  const D = s.dim;
  const S = mat(D, D);
  const mu = s.colSum.map((v) => v / s.n);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) S.data[i * D + j] = s.K.data[i * D + j] / s.n - (centred ? mu[i] * mu[j] : 0);
  }
  return symmetrize(S);
}

/** Xᵀy / n (centred: (X − μ)ᵀ(y − ȳ) / n), D×C. */
function crossMoment(s: SufficientStats, centred: boolean): Mat {
  const D = s.dim;
  const C = s.XtY!.cols;
  const out = mat(D, C);
  for (let i = 0; i < D; i++) {
    for (let c = 0; c < C; c++) {
      const corr = centred ? (s.colSum[i] * s.ySum![c]) / s.n : 0;
      out.data[i * C + c] = (s.XtY!.data[i * C + c] - corr) / s.n;
    }
  }
  return out;
}

/** Σ_c b_jc² / h_j per direction, normalised to sum to 1. */
function energyShares(b: Mat, curvature: (j: number) => number): Float64Array {
  const D = b.rows;
  const C = b.cols;
  const e = new Float64Array(D);
  let total = 0;
  for (let j = 0; j < D; j++) {
    const h = curvature(j);
    if (!(h > 0)) continue;
    let s = 0;
    for (let c = 0; c < C; c++) s += b.data[j * C + c] ** 2;
    e[j] = s / h;
    total += e[j];
  }
  if (total > 0) for (let j = 0; j < D; j++) e[j] /= total;
  return e;
}

export function spectralGeometry(
  benign: SufficientStats,
  harmful: SufficientStats,
  centred: boolean,
  ridge: number,
  harmfulLabelled: boolean,
  /** The eigendecomposition of the benign second moment (centred as asked), when the caller has it. */
  benignMoment: EigenResult = syevr(secondMoment(benign, centred)),
): Geometry {
  const D = benign.dim;
  const eig = benignMoment;
  const lmax = eig.values[D - 1];
  const V = eig.vectors!;
  const scaled = mat(D, D);
  let pMin = Infinity;
  let pMax = 0;
  for (let j = 0; j < D; j++) {
    const p = Math.max(eig.values[j], 0) + ridge * lmax;
    pMin = Math.min(pMin, p);
    pMax = Math.max(pMax, p);
    for (let i = 0; i < D; i++) scaled.data[i * D + j] = V.data[i * D + j] / Math.sqrt(p);
  }
  const W = symmetrize(gemm(scaled, V, { transB: true }));
  const AH = secondMoment(harmful, centred);
  const inner = syevr(symmetrize(gemm(gemm(W, AH), W)));
  const Q = inner.vectors!;
  const m = inner.values.map((v) => Math.max(v, 0));
  const project = (s: SufficientStats) => gemm(Q, gemm(W, crossMoment(s, centred)), { transA: true });
  const benignEnergy = energyShares(project(benign), () => 1);
  let harmfulEnergy: Float64Array;
  if (harmfulLabelled) {
    harmfulEnergy = energyShares(project(harmful), (j) => m[j]);
  } else {
    const total = m.reduce((a, b) => a + b, 0);
    harmfulEnergy = m.map((v) => (total > 0 ? v / total : 0));
  }
  return { centred, ridge, W, Q, m, benignEnergy, harmfulEnergy, kappaW: Math.sqrt(pMax / pMin) };
}

/**
 * The directions to suppress: by the ratio of harmful to benign energy share, most lopsided first, while the benign
 * share they hold stays within `benignShare`.
 */
export function suppressedSet(g: Geometry, benignShare: number): { indices: number[]; harmfulShare: number } {
  const D = g.m.length;
  const order = Array.from({ length: D }, (_, j) => j).filter((j) => g.m[j] > 0 && g.harmfulEnergy[j] > 0);
  const ratio = (j: number) => g.harmfulEnergy[j] / Math.max(g.benignEnergy[j], 1e-300);
  order.sort((a, b) => ratio(b) - ratio(a));
  const indices: number[] = [];
  let benign = 0;
  let harmful = 0;
  for (const j of order) {
    if (benign + g.benignEnergy[j] > benignShare) continue;
    // Suppressing the direction the harmful step size comes from would only lower that step's bound.
    if (ratio(j) <= 1) break;
    benign += g.benignEnergy[j];
    harmful += g.harmfulEnergy[j];
    indices.push(j);
  }
  return { indices, harmfulShare: harmful };
}

export function spectralTheta(g: Geometry, suppressed: number[], delta: number, rotation: Mat): Mat {
  const D = g.m.length;
  const scale = new Float64Array(D).fill(1);
  for (const j of suppressed) scale[j] = Math.sqrt(delta);
  const QG = mat(D, D);
  for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) QG.data[i * D + j] = g.Q.data[i * D + j] * scale[j];
  return gemm(gemm(g.W, QG), rotation);
}

/**
 * Candidates from the boldest to the most cautious, for each geometry (centred first: the z-scoring attackers
 * centre too). `accept` is the caller's check; the first candidate it accepts is returned, or, when it accepts
 * none, the candidate it scored best.
 */
type Candidate = SpectralCandidate;

/** W·A_H·W from its eigenpairs. */
function harmfulWhitened(g: Geometry): Mat {
  const D = g.m.length;
  const Qm = mat(D, D);
  for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) Qm.data[i * D + j] = g.Q.data[i * D + j] * g.m[j];
  return symmetrize(gemm(Qm, g.Q, { transB: true }));
}

type GeometryOf = (centred: boolean, ridge: number) => Geometry;

function* complementCandidates(benign: SufficientStats, opts: SpectralOptions, rotation: Mat, geometry: GeometryOf): Generator<Candidate> {
  const ridges = opts.ridge !== undefined ? [opts.ridge] : COMPLEMENT_RIDGES;
  for (const centred of [true, false]) {
    for (const ridge of ridges) {
      const g = geometry(centred, ridge);
      const mean = centred ? null : Float64Array.from(benign.colSum, (v) => v / benign.n);
      const c = complementBasis(g.W, crossMoment(benign, centred), mean, harmfulWhitened(g));
      const suppressible = benign.dim - c.signalDims;
      for (const kept of COMPLEMENT_KEPT) {
        if (kept >= suppressible && kept > 0) continue;
        for (const delta of COMPLEMENT_DELTAS) {
          const theta = complementTheta(g.W, c, kept, delta, rotation);
          const kt = matrixCondition(theta);
          if (kt === null || kt > opts.kappaBudget) continue;
          yield { theta, family: 'complement', centred, ridge, benignShare: 0, harmfulShare: null, suppressed: suppressible - kept, delta, thetaCondition: kt };
        }
      }
    }
  }
}

/** Every candidate of the energy family within the κ(θ) budget, geometry by geometry (centred first: the z-scoring attackers centre too). */
function* energyCandidates(opts: SpectralOptions, rotation: Mat, geometry: GeometryOf): Generator<Candidate> {
  const ridges = opts.ridge !== undefined ? [opts.ridge] : SPECTRAL_RIDGES;
  for (const centred of [true, false]) {
    for (const ridge of ridges) {
      const g = geometry(centred, ridge);
      // κ(θ) ≤ κ(W)/√δ: δ as small as the budget allows (with a margin for rounding), then a milder one, which costs
      // the benign side less where the whitening is far from exact (a rank-deficient K_P, few rows).
      const boldest = Math.min(1, (g.kappaW / (0.5 * opts.kappaBudget)) ** 2);
      const seen = new Set<string>();
      for (const delta of new Set([boldest, Math.max(boldest, MILD_DELTA)])) {
        for (const benignShare of BENIGN_SHARES) {
          const set = suppressedSet(g, benignShare);
          const key = `${delta}:${set.indices.length}`;
          if (set.indices.length === 0 || seen.has(key)) continue;
          seen.add(key);
          const theta = spectralTheta(g, set.indices, delta, rotation);
          const kt = matrixCondition(theta);
          if (kt === null || kt > opts.kappaBudget) continue;
          yield {
            theta,
            family: 'energy',
            centred,
            ridge,
            benignShare,
            harmfulShare: set.harmfulShare,
            suppressed: set.indices.length,
            delta,
            thetaCondition: kt,
          };
        }
      }
    }
  }
}

/**
 * Screens the candidates with the caller's check. At most D ≤ EXHAUSTIVE_MAX_DIM a screen costs milliseconds: every
 * candidate's RIR is read first (the check stops after the κ checks when asked to beat Infinity), and each family is
 * screened from the largest RIR down, the energy family first (it keeps the benign geometry closest to the original),
 * so that the first that passes is the passing candidate with the largest RIR of the first family that has one.
 * Above it the complement family comes first (on learned features and pixels it is the one that passes), those that
 * fail a κ check only after the rest, MAX_SCREENED at most, and the first that passes wins. When none passes, the one that passed the most checks is returned.
 */
export function spectralImmunize(
  benign: SufficientStats,
  harmful: SufficientStats,
  opts: SpectralOptions,
  /** The caller's check; it may stop after the κ checks (not passed) once it knows the RIR is at most `mustBeat`. */
  accept: (theta: Mat, mustBeat: number) => { passed: boolean; score: number; rir: number; kappaOk: boolean },
): SpectralCandidate & { passed: boolean; tried: number } {
  const D = benign.dim;
  // The rotation and the centred benign second moment (every family starts from it) are decomposed side by side.
  const [rotationEigen, centredMoment] = syevrMany([rotationSource(D, opts.seed), secondMoment(benign, true)]);
  const rotation = rotationEigen.vectors!;
  const moments = new Map<boolean, EigenResult>([[true, centredMoment]]);
  // Both families share a geometry per (centring, ridge): two eigendecompositions each, the first shared by the ridges.
  const made = new Map<string, Geometry>();
  const geometry: GeometryOf = (centred, ridge) => {
    const key = `${centred}:${ridge}`;
    if (!moments.has(centred)) moments.set(centred, syevr(secondMoment(benign, centred)));
    if (!made.has(key)) made.set(key, spectralGeometry(benign, harmful, centred, ridge, opts.harmfulLabelled, moments.get(centred)));
    return made.get(key)!;
  };
  const families = [() => complementCandidates(benign, opts, rotation, geometry), () => energyCandidates(opts, rotation, geometry)];
  const pool = D <= EXHAUSTIVE_MAX_DIM ? chain([families[1], families[0]].map((f) => () => byRir(f(), accept))) : kappaFirst(chain(families), accept);
  let best: (Candidate & { score: number }) | null = null;
  let tried = 0;
  for (const candidate of pool) {
    if (tried >= MAX_SCREENED && D > EXHAUSTIVE_MAX_DIM) break;
    tried++;
    const verdict = accept(candidate.theta, -Infinity);
    if (verdict.passed) return { ...candidate, passed: true, tried };
    if (best === null || verdict.score > best.score) best = { ...candidate, score: verdict.score };
  }
  if (best === null) throw new Error(`no candidate keeps κ(θ) within the budget ${opts.kappaBudget}`);
  const { score: _s, ...chosen } = best;
  return { ...chosen, passed: false, tried };
}

function* chain<T>(makers: Array<() => Iterable<T>>): Generator<T> {
  for (const make of makers) yield* make();
}

type Check = (theta: Mat, mustBeat: number) => { rir: number; kappaOk: boolean };

function byRir(made: Iterable<Candidate>, accept: Check): Candidate[] {
  const all = [...made].map((c) => ({ c, rir: accept(c.theta, Infinity).rir }));
  return all.sort((a, b) => b.rir - a.rir).map((x) => x.c);
}

/** The candidates that pass the κ checks as they come, then the others in their order. */
function* kappaFirst(made: Iterable<Candidate>, accept: Check): Generator<Candidate> {
  const failedKappa: Candidate[] = [];
  for (const c of made) {
    if (accept(c.theta, Infinity).kappaOk) yield c;
    else failedKappa.push(c);
  }
  yield* failedKappa;
}
