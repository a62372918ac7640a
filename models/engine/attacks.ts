import { gemm } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { mat } from './dense.js';
import type { ProbeProblem } from './probe.js';

export const ATTACKERS = ['gd', 'gd-exact', 'gd-exact-standardized', 'adam', 'newton'] as const;
export type AttackerName = (typeof ATTACKERS)[number];

export const RAW_BUDGET_STEPS = 1000;
export const TARGET_FLOOR = 1e-6;
export const STEP_CAP = 100_000;
export const ADAM_LEARNING_RATES = [1e-3, 1e-2, 1e-1];
/** Adam runs in the original coordinates (it is not rotation invariant), so its cap is bounded by a flop budget. */
export const ADAM_FLOP_BUDGET = 2e9;

export interface AttackRun {
  /** Steps to reach the target, or the cap. */
  steps: number;
  reached: boolean;
  /** Relative suboptimality after each step (index 0 is the start, 1.0). */
  curve: number[];
}

/** Runs until the suboptimality reaches `target` or `cap` steps pass. target = 0 means: run exactly `cap` steps. */
export type Attacker = (p: ProbeProblem, target: number, cap: number) => AttackRun;

function initialError(p: ProbeProblem): Float64Array {
  return p.optimum.map((v) => -v);
}

function eigenSuboptimality(p: ProbeProblem, e: Float64Array): number {
  const C = p.outputs;
  let s = 0;
  for (let i = 0; i < p.lambdas.length; i++) for (let k = 0; k < C; k++) s += p.lambdas[i] * e[i * C + k] ** 2;
  return s / 2 / p.gap;
}

function iterate(p: ProbeProblem, target: number, cap: number, step: (e: Float64Array) => void): AttackRun {
  const e = initialError(p);
  const curve = [1];
  for (let k = 1; k <= cap; k++) {
    step(e);
    const sub = eigenSuboptimality(p, e);
    curve.push(sub);
    if (target > 0 && sub <= target) return { steps: k, reached: true, curve };
  }
  return { steps: cap, reached: target <= 0, curve };
}

/** Gradient descent with the classic step 1/L, in the eigenbasis: each error coordinate decays by (1 − λ_i/L). */
export const gd: Attacker = (p, target, cap) => {
  const L = p.lambdas[p.lambdas.length - 1];
  const C = p.outputs;
  return iterate(p, target, cap, (e) => {
    for (let i = 0; i < p.lambdas.length; i++) {
      const f = 1 - p.lambdas[i] / L;
      for (let k = 0; k < C; k++) e[i * C + k] *= f;
    }
  });
};

/** Gradient descent with exact line search on the quadratic (the paper's Fig. 1 attacker). */
export const gdExact: Attacker = (p, target, cap) => {
  const C = p.outputs;
  const lam = p.lambdas;
  return iterate(p, target, cap, (e) => {
    let gg = 0;
    let gHg = 0;
    for (let i = 0; i < lam.length; i++) {
      for (let k = 0; k < C; k++) {
        const g = lam[i] * e[i * C + k];
        gg += g * g;
        gHg += lam[i] * g * g;
      }
    }
    if (!(gHg > 0)) return;
    const t = gg / gHg;
    for (let i = 0; i < lam.length; i++) {
      const f = 1 - t * lam[i];
      for (let k = 0; k < C; k++) e[i * C + k] *= f;
    }
  });
};

/** Newton / whitened GD: one step with H⁺ solves the quadratic whatever its conditioning. */
export const newton: Attacker = (p, target, cap) => {
  const C = p.outputs;
  return iterate(p, target, cap, (e) => {
    for (let i = 0; i < p.lambdas.length; i++) {
      const step = (1 / p.lambdas[i]) * p.lambdas[i];
      for (let k = 0; k < C; k++) e[i * C + k] -= step * e[i * C + k];
    }
  });
};

/**
 * Adam in the original coordinates, all learning rates of the grid side by side (one gemm per step).
 * Returns the run of the learning rate that did best.
 */
export function adamRuns(p: ProbeProblem, target: number, cap: number): AttackRun & { learningRate: number } {
  const D = p.dim;
  const C = p.outputs;
  const G = ADAM_LEARNING_RATES.length;
  const cols = C * G;
  const W = mat(D, cols);
  const m = new Float64Array(D * cols);
  const v = new Float64Array(D * cols);
  const HW = mat(D, cols);
  const beta1 = 0.9;
  const beta2 = 0.999;
  const eps = 1e-8;
  const curves: number[][] = ADAM_LEARNING_RATES.map(() => [1]);
  const best = new Float64Array(G).fill(1);
  let b1t = 1;
  let b2t = 1;
  for (let k = 1; k <= cap; k++) {
    gemm(p.H, W, { out: HW, beta: 0 });
    b1t *= beta1;
    b2t *= beta2;
    for (let i = 0; i < D; i++) {
      for (let g = 0; g < G; g++) {
        const lr = ADAM_LEARNING_RATES[g];
        for (let c = 0; c < C; c++) {
          const idx = i * cols + g * C + c;
          const grad = HW.data[idx] - p.B.data[i * C + c];
          m[idx] = beta1 * m[idx] + (1 - beta1) * grad;
          v[idx] = beta2 * v[idx] + (1 - beta2) * grad * grad;
          W.data[idx] -= (lr * (m[idx] / (1 - b1t))) / (Math.sqrt(v[idx] / (1 - b2t)) + eps);
        }
      }
    }
    gemm(p.H, W, { out: HW, beta: 0 });
    for (let g = 0; g < G; g++) {
      let quad = 0;
      let lin = 0;
      for (let i = 0; i < D; i++) {
        for (let c = 0; c < C; c++) {
          const idx = i * cols + g * C + c;
          quad += W.data[idx] * HW.data[idx];
          lin += p.B.data[i * C + c] * W.data[idx];
        }
      }
      const sub = Math.max(0, (quad / 2 - lin + p.c - p.fStar) / p.gap);
      curves[g].push(sub);
      best[g] = Math.min(best[g], sub);
      if (target > 0 && sub <= target) return { steps: k, reached: true, curve: curves[g], learningRate: ADAM_LEARNING_RATES[g] };
    }
  }
  let g = 0;
  for (let j = 1; j < G; j++) if (curves[j][cap] < curves[g][cap]) g = j;
  return { steps: cap, reached: target <= 0, curve: curves[g], learningRate: ADAM_LEARNING_RATES[g] };
}

export const adam: Attacker = (p, target, cap) => adamRuns(p, target, cap);

export function adamCap(p: ProbeProblem): number {
  const perStep = 4 * p.dim * p.dim * p.outputs * ADAM_LEARNING_RATES.length;
  return Math.max(RAW_BUDGET_STEPS, Math.min(STEP_CAP, Math.floor(ADAM_FLOP_BUDGET / perStep)));
}

export interface AttackOutcome {
  attacker: AttackerName;
  data: 'benign' | 'harmful';
  target: number;
  stepsRaw: number;
  stepsImmunized: number;
  capped: boolean;
  slowdown: number;
  cap: number;
  curveRaw: number[];
  curveImmunized: number[];
}

/**
 * The target is what the attacker reaches on the raw features in 1,000 steps (floored at 1e-6): a fixed ε would
 * leave every count at the cap on badly conditioned data.
 */
export function simulateAttack(
  attacker: AttackerName,
  data: 'benign' | 'harmful',
  raw: ProbeProblem,
  immunized: ProbeProblem,
): AttackOutcome {
  const run = attackerFn(attacker);
  const budget = run(raw, 0, RAW_BUDGET_STEPS);
  const reachedInBudget = Math.min(...budget.curve.slice(1));
  const target = Math.max(reachedInBudget, TARGET_FLOOR);
  const hit = budget.curve.findIndex((sub, k) => k > 0 && sub <= target);
  const stepsRaw = hit > 0 ? hit : RAW_BUDGET_STEPS;
  const cap = attacker === 'adam' ? adamCap(immunized) : STEP_CAP;
  const immRun = run(immunized, target, cap);
  return {
    attacker,
    data,
    target,
    stepsRaw,
    stepsImmunized: immRun.steps,
    capped: !immRun.reached,
    slowdown: immRun.steps / stepsRaw,
    cap,
    curveRaw: budget.curve,
    curveImmunized: immRun.curve,
  };
}

function attackerFn(name: AttackerName): Attacker {
  switch (name) {
    case 'gd':
      return gd;
    case 'gd-exact':
    case 'gd-exact-standardized':
      return gdExact;
    case 'adam':
      return adam;
    case 'newton':
      return newton;
  }
}
