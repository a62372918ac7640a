import { eigenDescent, startAdamQuadratic, type DescentRule } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import type { ProbeProblem } from './probe.js';

export const ATTACKERS = ['gd', 'gd-exact', 'gd-exact-standardized', 'adam', 'newton'] as const;
export type AttackerName = (typeof ATTACKERS)[number];

export const RAW_BUDGET_STEPS = 1000;
export const TARGET_FLOOR = 1e-6;
export const STEP_CAP = 100_000;
export const ADAM_LEARNING_RATES = [1e-3, 1e-2, 1e-1];
/** Adam runs in the original coordinates (it is not rotation invariant), so its cap is bounded by a flop budget. */
export const ADAM_FLOP_BUDGET = 1e10;

export interface AttackRun {
  /** Steps to reach the target, or the cap. */
  steps: number;
  reached: boolean;
  /** Relative suboptimality after each step (index 0 is the start, 1.0). */
  curve: ArrayLike<number>;
}

/** Runs until the suboptimality reaches `target` or `cap` steps pass. target = 0 means: run exactly `cap` steps. */
export type Attacker = (p: ProbeProblem, target: number, cap: number) => AttackRun;

function initialError(p: ProbeProblem): Float64Array {
  return p.optimum.map((v) => -v);
}

/** Runs `step` (which updates the eigen-coordinate error and returns Σ λ_i·e_i²) until the target or the cap. */
function iterate(p: ProbeProblem, target: number, cap: number, step: (e: Float64Array) => number): AttackRun {
  const e = initialError(p);
  const curve = new Float64Array(cap + 1);
  curve[0] = 1;
  const scale = 1 / (2 * p.gap);
  for (let k = 1; k <= cap; k++) {
    const sub = step(e) * scale;
    curve[k] = sub;
    if (target > 0 && sub <= target) return { steps: k, reached: true, curve: curve.subarray(0, k + 1) };
  }
  return { steps: cap, reached: target <= 0, curve };
}

function descend(p: ProbeProblem, target: number, cap: number, rule: DescentRule): AttackRun {
  if (p.lambdas.length === 0) return iterate(p, target, cap, () => 0);
  return eigenDescent(p.lambdas, initialError(p), p.outputs, { rule, scale: 1 / (2 * p.gap), target, cap });
}

/** Gradient descent with the classic step 1/L, in the eigenbasis: each error coordinate decays by (1 − λ_i/L). */
export const gd: Attacker = (p, target, cap) => descend(p, target, cap, 'fixed');

/** Gradient descent with exact line search on the quadratic (the paper's Fig. 1 attacker). */
export const gdExact: Attacker = (p, target, cap) => descend(p, target, cap, 'exact');

/** Newton / whitened GD: one step with H⁺ solves the quadratic whatever its conditioning. */
export const newton: Attacker = (p, target, cap) => {
  const C = p.outputs;
  return iterate(p, target, cap, (e) => {
    let s = 0;
    for (let i = 0; i < p.lambdas.length; i++) {
      const step = (1 / p.lambdas[i]) * p.lambdas[i];
      for (let k = 0; k < C; k++) {
        const v = (e[i * C + k] -= step * e[i * C + k]);
        s += p.lambdas[i] * v * v;
      }
    }
    return s;
  });
};

/** Adam in the original coordinates, all learning rates of the grid side by side; the best run is returned. */
export function adamRuns(p: ProbeProblem, target: number, cap: number): AttackRun & { learningRate: number } {
  return startAdamRuns(p, target, cap).join();
}

/** adamRuns on threads of its own; `join()` waits for the result. */
function startAdamRuns(p: ProbeProblem, target: number, cap: number): { join(): AttackRun & { learningRate: number } } {
  const G = ADAM_LEARNING_RATES.length;
  const pending = startAdamQuadratic(p.H, p.B, Float64Array.from(ADAM_LEARNING_RATES), { c: p.c, fStar: p.fStar, gap: p.gap, target, cap });
  return {
    join: () => {
      const r = pending.join();
      const len = r.steps + 1;
      const curveOf = (g: number) => r.curves.subarray(g * len, (g + 1) * len);
      if (r.winner >= 0) return { steps: r.steps, reached: true, curve: curveOf(r.winner), learningRate: ADAM_LEARNING_RATES[r.winner] };
      let best = 0;
      for (let g = 1; g < G; g++) if (r.curves[g * len + r.steps] < r.curves[best * len + r.steps]) best = g;
      return { steps: cap, reached: target <= 0, curve: curveOf(best), learningRate: ADAM_LEARNING_RATES[best] };
    },
  };
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
  curveRaw: ArrayLike<number>;
  curveImmunized: ArrayLike<number>;
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
  /** Stop counting once the immunized side is this many times slower (a yes/no check needs no more). */
  stopAtSlowdown = Infinity,
): AttackOutcome {
  return startAttack(attacker, data, raw, immunized, stopAtSlowdown).finish();
}

/**
 * simulateAttack in two halves: the raw side now, and for Adam, whose immunized run is the longest by far, that run
 * on threads of its own until `finish()`.
 */
export function startAttack(
  attacker: AttackerName,
  data: 'benign' | 'harmful',
  raw: ProbeProblem,
  immunized: ProbeProblem,
  stopAtSlowdown = Infinity,
): { finish(): AttackOutcome } {
  const run = attackerFn(attacker);
  const budget = run(raw, 0, RAW_BUDGET_STEPS);
  let reachedInBudget = Infinity;
  for (let k = 1; k < budget.curve.length; k++) reachedInBudget = Math.min(reachedInBudget, budget.curve[k]);
  const target = Math.max(reachedInBudget, TARGET_FLOOR);
  let hit = -1;
  for (let k = 1; k < budget.curve.length && hit < 0; k++) if (budget.curve[k] <= target) hit = k;
  const stepsRaw = hit > 0 ? hit : RAW_BUDGET_STEPS;
  const fullCap = attacker === 'adam' ? adamCap(immunized) : STEP_CAP;
  const cap = Math.min(fullCap, Math.ceil(stopAtSlowdown * stepsRaw));
  const outcome = (immRun: AttackRun): AttackOutcome => ({
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
  });
  if (attacker !== 'adam') {
    const done = outcome(run(immunized, target, cap));
    return { finish: () => done };
  }
  const pending = startAdamRuns(immunized, target, cap);
  let done: AttackOutcome | null = null;
  return { finish: () => (done ??= outcome(pending.join())) };
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
