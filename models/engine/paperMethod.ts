import { syevr, syrk } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { column, congruence, frobenius, mat } from './dense.js';
import { initialTheta, type GradientResult, type StepRecord } from './gradientMethod.js';
import { checkAbort, type StepObserver } from './progress.js';
import { preconditionedGradient, rIll, rWell } from './regularizers.js';
import { uniform } from './random.js';
import { matrixCondition, PAPER_SHIFT } from './spectrum.js';

export interface PaperOptions {
  steps?: number;
  seed: number;
  kappaBudget: number;
  batchSize?: number;
  learningRate?: number;
  lambdaBenign?: number;
  lambdaHarmful?: number;
}

/**
 * The official training loop, for comparison: mini-batch Hessians, K⁻¹-preconditioned gradients, Adam, and the
 * paper's κ convention (S + 1e-6·I, eigenvalues above 1e-6). Without given λ's the two gradients are balanced by norm.
 */
export function paperImmunize(XP: Mat, XH: Mat, _KP: Mat, _KH: Mat, opts: PaperOptions, observe?: StepObserver, signal?: AbortSignal): GradientResult {
  const D = XP.cols;
  const steps = opts.steps ?? 3000;
  const batch = Math.min(opts.batchSize ?? 64, XP.rows, XH.rows);
  const lr = opts.learningRate ?? 1e-3;
  const theta = initialTheta(D, { init: 'identity', seed: opts.seed });
  const m = mat(D, D);
  const v = mat(D, D);
  const rand = uniformIndex(opts.seed);
  const history: StepRecord[] = [];
  const started = performance.now();
  for (let t = 1; t <= steps; t++) {
    checkAbort(signal);
    const HP = congruence(syrk(sampleRows(XP, batch, rand)), theta);
    const HH = congruence(syrk(sampleRows(XH, batch, rand)), theta);
    const eP = paperExtremes(HP);
    const eH = paperExtremes(HH);
    const well = rWell(HP, eP);
    const ill = rIll(HH, eH);
    history.push({
      step: t,
      kappaBenign: eP.lambdaMax / eP.lambdaMin,
      kappaHarmful: eH.lambdaMax / eH.lambdaMin,
      rWell: well.value,
      rIll: ill.value,
      accepted: true,
      seconds: (performance.now() - started) / 1000,
    });
    if (t % 10 === 0) observe?.({ phase: 'optimize', step: t, of: steps, kappaBenign: eP.lambdaMax / eP.lambdaMin, kappaHarmful: eH.lambdaMax / eH.lambdaMin });
    const gP = preconditionedGradient(theta, well.gradS);
    const gH = preconditionedGradient(theta, ill.gradS);
    const wP = opts.lambdaBenign ?? 1 / (frobenius(gP) || 1);
    const wH = opts.lambdaHarmful ?? 1 / (frobenius(gH) || 1);
    const c1 = 1 - 0.9 ** t;
    const c2 = 1 - 0.999 ** t;
    for (let i = 0; i < theta.data.length; i++) {
      const g = wP * gP.data[i] + wH * gH.data[i];
      m.data[i] = 0.9 * m.data[i] + 0.1 * g;
      v.data[i] = 0.999 * v.data[i] + 0.001 * g * g;
      theta.data[i] -= (lr * (m.data[i] / c1)) / (Math.sqrt(v.data[i] / c2) + 1e-8);
    }
  }
  const kt = matrixCondition(theta);
  return { theta, steps: history, stepsTaken: steps, stopReason: kt !== null && kt <= opts.kappaBudget ? 'step-cap' : 'kappa-budget' };
}

function paperExtremes(S: Mat) {
  const D = S.rows;
  const e = syevr(S);
  let lo = 0;
  while (lo < D - 1 && !(e.values[lo] + PAPER_SHIFT > PAPER_SHIFT)) lo++;
  return {
    lambdaMax: e.values[D - 1] + PAPER_SHIFT,
    uMax: column(e.vectors!, D - 1),
    lambdaMin: e.values[lo] + PAPER_SHIFT,
    uMin: column(e.vectors!, lo),
  };
}

function sampleRows(X: Mat, count: number, rand: (n: number) => number): Mat {
  const out = mat(count, X.cols);
  for (let r = 0; r < count; r++) {
    const i = rand(X.rows);
    out.data.set(X.data.subarray(i * X.cols, (i + 1) * X.cols), r * X.cols);
  }
  return out;
}

function uniformIndex(seed: number): (n: number) => number {
  const next = uniform(seed + 7919);
  return (n) => Math.min(n - 1, Math.floor(next() * n));
}
