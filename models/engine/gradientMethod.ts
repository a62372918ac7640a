import { congruenceExtremes, gemm, identity, potrf, potrs } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { axpy, congruence, copyMat, frobenius, mat, symmetrize } from './dense.js';
import { preconditionedGradient, rIll, rWell, thetaGradient } from './regularizers.js';
import { conditioning, matrixCondition, pairsOf, type ExtremePairs } from './spectrum.js';
import { checkAbort, type StepObserver } from './progress.js';
import { gaussian } from './random.js';

export interface GradientOptions {
  /** Step cap; the loop stops earlier once it has converged. */
  steps: number;
  kappaBudget: number;
  seed: number;
  init: 'identity' | 'random';
  optimizer: 'gd' | 'adam';
  /** Initial relative step (fraction of ‖θ‖_F per step). */
  learningRate: number;
  /** Fixed weights; when absent each term's gradient is scaled to unit norm every step, so nothing needs tuning. */
  lambdaBenign?: number;
  lambdaHarmful?: number;
  /** 'exact' uses K⁻¹ on the range (2θG); a number r uses (K + r·λ_max·I)⁻¹; 'none' takes the raw gradient. */
  precondition: 'exact' | 'none' | number;
  rtol: number;
}

export const GRADIENT_DEFAULTS: GradientOptions = {
  steps: 150,
  kappaBudget: 1e4,
  seed: 0,
  init: 'identity',
  optimizer: 'gd',
  learningRate: 0.03,
  precondition: 'exact',
  rtol: NaN,
};

/**
 * The default step cap: 150 steps up to D ≈ 300, then shrinking as 1/D³ (the cost of a step) so that a default run
 * stays within seconds at any width; a larger --steps goes further.
 */
export function defaultStepCap(D: number): number {
  const budget = 150 * 300 ** 3;
  return Math.max(5, Math.min(150, Math.floor(budget / D ** 3)));
}

export interface StepRecord {
  step: number;
  kappaBenign: number;
  kappaHarmful: number;
  rWell: number;
  rIll: number;
  accepted: boolean;
  /** Seconds since the optimizer started, when this step's θ was scored. */
  seconds: number;
}

export interface GradientResult {
  theta: Mat;
  steps: StepRecord[];
  stepsTaken: number;
  stopReason: 'converged' | 'step-cap' | 'kappa-budget' | 'step-underflow';
}

const CONVERGENCE_WINDOW = 25;
const BENIGN_WEIGHT = 2;
const CONVERGENCE_GAIN = 1e-3;
const BUDGET_CHECK_EVERY = 10;
const MIN_RELATIVE_STEP = 1e-4;

/**
 * Algorithm 1 with K⁻¹ preconditioning: descend λ_P·R_well(θᵀK_Pθ) + λ_H·R_ill(θᵀK_Hθ).
 * Each step needs only the extreme eigenpairs of the two Hessians. A step is kept when it raises
 * log κ(H_H) − log κ(H_P) without lifting κ(H_P) above κ(K_P); otherwise it is undone and the step size halves.
 * The task term is not differentiated: for an invertible θ the best head on Xθ attains the same loss as on X
 * (its gradient in θ vanishes at the optimal head), and the κ(θ) budget keeps θ invertible.
 */
export function gradientImmunize(
  KP: Mat,
  KH: Mat,
  opts: GradientOptions,
  benignCentring?: { n: number; colSum: Float64Array },
  observe?: StepObserver,
  signal?: AbortSignal,
): GradientResult {
  const D = KP.rows;
  const rtol = Number.isFinite(opts.rtol) ? opts.rtol : D * 2.220446049250313e-16;
  const baseP = conditioning(KP, rtol);
  const baseH = conditioning(KH, rtol);
  if (baseP.kappa === null || baseH.kappa === null) throw new Error('a Gram matrix is zero; there is nothing to immunize');
  const precondP = makePreconditioner(KP, opts.precondition);
  const precondH = makePreconditioner(KH, opts.precondition);

  const started = performance.now();
  let theta = initialTheta(D, opts);
  let lr = opts.learningRate;
  let best: { theta: Mat; score: number; direction: Mat } | null = null;
  let lastBudgetSafe = copyMat(theta);
  const history: StepRecord[] = [];
  const scores: number[] = [];
  const adam = opts.optimizer === 'adam' ? { m: mat(D, D), v: mat(D, D), t: 0 } : null;
  let stopReason: GradientResult['stopReason'] = 'step-cap';
  let step = 0;

  while (step < opts.steps) {
    checkAbort(signal);
    step++;
    const [HP, pairsP, HH, pairsH] = hessiansAndExtremes(KP, KH, theta, baseP.rank, baseH.rank);
    const kP = pairsP.lambdaMax / pairsP.lambdaMin;
    const kH = pairsH.lambdaMax / pairsH.lambdaMin;
    const score = Math.log(kH) - BENIGN_WEIGHT * Math.log(kP);
    const feasible = kP <= baseP.kappa * (1 + 1e-9);
    const improved = best === null || (feasible && score > best.score);
    const wellTerm = rWell(HP, pairsP);
    const illTerm = rIll(HH, pairsH);
    history.push({
      step,
      kappaBenign: kP,
      kappaHarmful: kH,
      rWell: wellTerm.value,
      rIll: illTerm.value,
      accepted: improved,
      seconds: (performance.now() - started) / 1000,
    });
    observe?.({ phase: 'optimize', step, of: opts.steps, kappaBenign: kP, kappaHarmful: kH });

    let direction: Mat;
    if (improved) {
      direction = combine(precondP(theta, wellTerm.gradS), precondH(theta, illTerm.gradS), opts);
      best = { theta: copyMat(theta), score: feasible ? score : -Infinity, direction };
      scores.push(best.score);
      if (adam === null) lr *= 1.05;
      if (step % BUDGET_CHECK_EVERY === 0) {
        const kt = matrixCondition(theta);
        if (kt === null || kt > opts.kappaBudget) {
          theta = lastBudgetSafe;
          stopReason = 'kappa-budget';
          break;
        }
        lastBudgetSafe = copyMat(theta);
      }
      const n = scores.length;
      if (n > CONVERGENCE_WINDOW && scores[n - 1] - scores[n - 1 - CONVERGENCE_WINDOW] < CONVERGENCE_GAIN) {
        stopReason = 'converged';
        break;
      }
    } else {
      // Back to the best θ; its descent direction is unchanged, only the step shrinks.
      theta = copyMat(best!.theta);
      direction = best!.direction;
      lr *= 0.5;
      if (lr < MIN_RELATIVE_STEP) {
        stopReason = 'step-underflow';
        break;
      }
    }

    if (adam) {
      adamUpdate(theta, direction, adam, (lr * frobenius(theta)) / Math.sqrt(D));
    } else {
      const norm = frobenius(direction);
      if (norm > 0) axpy(theta, direction, (-lr * frobenius(theta)) / norm);
    }
  }

  const finalTheta = stopReason === 'kappa-budget' ? theta : best ? best.theta : theta;
  const kt = matrixCondition(finalTheta);
  const safe = kt !== null && kt <= opts.kappaBudget ? finalTheta : lastBudgetSafe;
  return { theta: safe, steps: history, stepsTaken: step, stopReason };
}

/** θᵀK_Pθ and θᵀK_Hθ with the extreme eigenpairs of each (the smallest within the data's rank). */
function hessiansAndExtremes(KP: Mat, KH: Mat, theta: Mat, rankP: number, rankH: number): [Mat, ExtremePairs, Mat, ExtremePairs] {
  const D = KP.rows;
  const [p, h] = congruenceExtremes(theta, [KP, KH], [Math.max(0, D - rankP), Math.max(0, D - rankH)]);
  return [p.S, pairsOf(p), h.S, pairsOf(h)];
}

type Preconditioner = (theta: Mat, gradS: Mat) => Mat;

function makePreconditioner(K: Mat, mode: GradientOptions['precondition']): Preconditioner {
  if (mode === 'exact') return preconditionedGradient;
  if (mode === 'none') return (theta, G) => thetaGradient(K, theta, G);
  const D = K.rows;
  let lmax = 0;
  for (let i = 0; i < D; i++) lmax = Math.max(lmax, K.data[i * D + i]);
  const shifted = copyMat(K);
  for (let i = 0; i < D; i++) shifted.data[i * D + i] += mode * lmax;
  const L = potrf(shifted);
  return (theta, G) => potrs(L, thetaGradient(K, theta, G));
}

function combine(gP: Mat, gH: Mat, opts: GradientOptions): Mat {
  const wP = opts.lambdaBenign ?? 1 / (frobenius(gP) || 1);
  const wH = opts.lambdaHarmful ?? 1 / (frobenius(gH) || 1);
  const out = mat(gP.rows, gP.cols);
  const p = gP.data;
  const h = gH.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = wP * p[i] + wH * h[i];
  return out;
}

function adamUpdate(theta: Mat, g: Mat, s: { m: Mat; v: Mat; t: number }, lr: number): void {
  s.t++;
  const b1 = 0.9;
  const b2 = 0.999;
  const c1 = 1 - b1 ** s.t;
  const c2 = 1 - b2 ** s.t;
  for (let i = 0; i < theta.data.length; i++) {
    s.m.data[i] = b1 * s.m.data[i] + (1 - b1) * g.data[i];
    s.v.data[i] = b2 * s.v.data[i] + (1 - b2) * g.data[i] * g.data[i];
    theta.data[i] -= (lr * (s.m.data[i] / c1)) / (Math.sqrt(s.v.data[i] / c2) + 1e-12);
  }
}

export function initialTheta(D: number, opts: Pick<GradientOptions, 'init' | 'seed'>): Mat {
  const theta = identity(D);
  if (opts.init === 'random') {
    const rand = gaussian(opts.seed);
    for (let i = 0; i < theta.data.length; i++) theta.data[i] += (0.1 * rand()) / Math.sqrt(D);
  }
  return theta;
}

/**
 * κ of the benign Hessian after an attacker z-scores each feature column: benign users standardize too, so a θ
 * must not make that problem worse.
 */
export function zscoredKappa(K: Mat, theta: Mat | null, c: { n: number; colSum: Float64Array }, rtol: number): number {
  const H = theta ? congruence(K, theta) : copyMat(K);
  const D = H.rows;
  const s = theta ? gemm({ rows: 1, cols: D, data: c.colSum }, theta).data : c.colSum;
  const mu = s.map((v) => v / c.n);
  const sd = new Float64Array(D);
  for (let j = 0; j < D; j++) {
    const v = H.data[j * D + j] - c.n * mu[j] * mu[j];
    sd[j] = v > 1e-12 * H.data[j * D + j] && v > 0 ? Math.sqrt(v) : 1;
  }
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) H.data[i * D + j] = (H.data[i * D + j] - c.n * mu[i] * mu[j]) / (sd[i] * sd[j]);
  }
  return conditioning(symmetrize(H), rtol).kappa ?? Infinity;
}
