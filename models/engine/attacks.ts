import { eigenDescent, startAdamQuadratic, type DescentRule } from '../linalg/index.js';
import { probeProblems, type Eigen, type ProbeProblem } from './probe.js';
import { checkAbort, type StepObserver } from './progress.js';
import type { SufficientStats } from './stats.js';
import { HARMFUL_SLOWDOWN_THRESHOLD } from './thresholds.js';

export const ATTACKERS = ['gd', 'gd-exact', 'gd-exact-standardized', 'adam', 'adam-standardized', 'newton'] as const;
export type AttackerName = (typeof ATTACKERS)[number];

/** Every attacker the verdict counts. Newton ignores κ, so it is reported as the limit, never counted. */
export const FIRST_ORDER_ATTACKERS: readonly AttackerName[] = ['gd', 'gd-exact', 'gd-exact-standardized', 'adam', 'adam-standardized'];

export function isAdam(attacker: AttackerName): boolean {
  return attacker === 'adam' || attacker === 'adam-standardized';
}

/** Attackers that z-score each feature column (and so fit an intercept) before probing. */
export function isStandardized(attacker: AttackerName): boolean {
  return attacker === 'gd-exact-standardized' || attacker === 'adam-standardized';
}

export const RAW_BUDGET_STEPS = 1000;
export const TARGET_FLOOR = 1e-6;
export const STEP_CAP = 100_000;
/**
 * Adam's learning rates, as multiples of the RMS of the problem's own optimum: Adam moves each weight by about lr a
 * step, so a fixed grid would read any θ that merely rescales the optimum as a slowdown (or a speed-up).
 */
export const ADAM_LEARNING_RATE_MULTIPLES = [1e-3, 1e-2, 1e-1];
/** Adam runs in the original coordinates (it is not rotation invariant), so it is the costly one: its immunized run goes this many times the raw steps, enough to show any slowdown the verdict asks for, and a capped run is a lower bound. */
export const ADAM_CAP_FACTOR = 10;

/** A run that reached its target was measured; one stopped at a cap that already shows the threshold is a lower bound; anything else is unmeasured. */
export type AttackStatus = 'measured' | 'capped' | 'unmeasured';

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

/** The RMS of the optimum's weights (the basis is orthonormal, so its eigen coordinates have the same norm). */
export function optimumRms(p: ProbeProblem): number {
  let s = 0;
  for (const v of p.optimum) s += v * v;
  return Math.sqrt(s / Math.max(1, p.dim * p.outputs));
}

export function adamLearningRates(p: ProbeProblem): Float64Array {
  const rms = optimumRms(p);
  return Float64Array.from(ADAM_LEARNING_RATE_MULTIPLES, (m) => m * (rms > 0 ? rms : 1));
}

/** adamRuns on a thread of its own; `join()` waits for the result. */
function startAdamRuns(
  p: ProbeProblem,
  target: number,
  cap: number,
): { join(): AttackRun & { learningRate: number }; waitFor(step: number): { scored: number; done: boolean }; cancel(): void } {
  const rates = adamLearningRates(p);
  const G = rates.length;
  const pending = startAdamQuadratic(p.H, p.B, rates, { c: p.c, fStar: p.fStar, gap: p.gap, target, cap });
  return {
    waitFor: (step) => pending.waitFor(step),
    cancel: () => pending.cancel(),
    join: () => {
      const r = pending.join();
      const len = r.steps + 1;
      const curveOf = (g: number) => r.curves.subarray(g * len, (g + 1) * len);
      if (r.winner >= 0) return { steps: r.steps, reached: true, curve: curveOf(r.winner), learningRate: rates[r.winner] };
      const best = bestRun(Array.from({ length: G }, (_, g) => curveOf(g)));
      return { steps: cap, reached: target <= 0, curve: curveOf(best), learningRate: rates[best] };
    },
  };
}

/**
 * The run that gets lowest (down to TARGET_FLOOR, below which all count as equal), the earliest: the one whose curve
 * sets the raw target. Judged by the last value alone, two runs that both reach rounding level would tie, and the
 * slower one could win.
 */
export function bestRun(curves: Array<ArrayLike<number>>): number {
  const levelAndStep = curves.map((c) => {
    const baseline = baselineOf({ steps: c.length - 1, reached: true, curve: c });
    return { level: baseline.target, step: baseline.stepsRaw };
  });
  let best = 0;
  for (let g = 1; g < curves.length; g++) {
    const a = levelAndStep[g];
    const b = levelAndStep[best];
    if (a.level < b.level || (a.level === b.level && a.step < b.step)) best = g;
  }
  return best;
}

export const adam: Attacker = (p, target, cap) => adamRuns(p, target, cap);

export interface AttackOutcome {
  attacker: AttackerName;
  data: 'benign' | 'harmful';
  target: number;
  stepsRaw: number;
  stepsImmunized: number;
  capped: boolean;
  /** stepsImmunized / stepsRaw: exact when measured, a lower bound when capped, null when unmeasured. */
  slowdown: number | null;
  status: AttackStatus;
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
  raw: ProbeProblem | RawBaseline,
  immunized: ProbeProblem,
  /** Stop counting once the immunized side is this many times slower (a yes/no check needs no more). */
  stopAtSlowdown = Infinity,
): AttackOutcome {
  return startAttack(attacker, data, raw, immunized, stopAtSlowdown).finish();
}

/**
 * simulateAttack in two halves: the raw side now, and for Adam, whose immunized run is the longest by far, that run
 * on a thread of its own until `finish()`.
 */
export interface RawBaseline {
  /** What the attacker reaches on the raw features within RAW_BUDGET_STEPS (floored at TARGET_FLOOR). */
  target: number;
  stepsRaw: number;
  curve: ArrayLike<number>;
}

/** The raw side of an attack: it depends on the raw features only, so a caller scoring many θ's can keep it. */
export function rawBaseline(attacker: AttackerName, raw: ProbeProblem): RawBaseline {
  return baselineOf(attackerFn(attacker)(raw, 0, RAW_BUDGET_STEPS));
}

function baselineOf(budget: AttackRun): RawBaseline {
  let reachedInBudget = Infinity;
  for (let k = 1; k < budget.curve.length; k++) reachedInBudget = Math.min(reachedInBudget, budget.curve[k]);
  const target = Math.max(reachedInBudget, TARGET_FLOOR);
  let hit = -1;
  for (let k = 1; k < budget.curve.length && hit < 0; k++) if (budget.curve[k] <= target) hit = k;
  return { target, stepsRaw: hit > 0 ? hit : RAW_BUDGET_STEPS, curve: budget.curve };
}

/** An attack under way: Adam's immunized run goes on a thread of its own; the others are done when started. */
export interface StartedAttack {
  finish(): AttackOutcome;
  /**
   * Whether the immunized run reaches its target within `steps` steps, waiting only until it has run that far: a check
   * that needs an early part of a long run answers while the rest goes on.
   */
  reachedWithin(steps: number): boolean;
  /** Stops a run still going; its outcome is not to be used. */
  cancel(): void;
}

export function startAttack(
  attacker: AttackerName,
  data: 'benign' | 'harmful',
  raw: ProbeProblem | RawBaseline,
  immunized: ProbeProblem,
  stopAtSlowdown = Infinity,
): StartedAttack {
  const run = attackerFn(attacker);
  const { target, stepsRaw, curve: rawCurve } = 'stepsRaw' in raw ? raw : rawBaseline(attacker, raw);
  const fullCap = isAdam(attacker) ? ADAM_CAP_FACTOR * stepsRaw : STEP_CAP;
  const cap = Math.min(fullCap, Math.ceil(stopAtSlowdown * stepsRaw));
  const outcome = (immRun: AttackRun): AttackOutcome => {
    const status = attackStatus(data, immRun.reached, immRun.steps / stepsRaw);
    return {
      attacker,
      data,
      target,
      stepsRaw,
      stepsImmunized: immRun.steps,
      capped: !immRun.reached,
      slowdown: status === 'unmeasured' ? null : immRun.steps / stepsRaw,
      status,
      cap,
      curveRaw: rawCurve,
      curveImmunized: immRun.curve,
    };
  };
  const reachedBy = (o: AttackOutcome, steps: number) => !o.capped && o.stepsImmunized <= steps;
  if (!isAdam(attacker)) {
    const done = outcome(run(immunized, target, cap));
    return { finish: () => done, reachedWithin: (steps) => reachedBy(done, steps), cancel: () => {} };
  }
  const pending = startAdamRuns(immunized, target, cap);
  let done: AttackOutcome | null = null;
  const finish = () => (done ??= outcome(pending.join()));
  return {
    finish,
    // A run that reaches its target ends there, so one still going after `steps` has not reached it by then.
    reachedWithin: (steps) => (pending.waitFor(steps).done ? reachedBy(finish(), steps) : false),
    cancel: () => pending.cancel(),
  };
}

/**
 * A capped harmful run still shows the verdict's threshold when its cap lies beyond it (a lower bound); a capped
 * benign run can only say "slower than the cap", which is no measurement of the benign slowdown.
 */
export function attackStatus(data: 'benign' | 'harmful', reached: boolean, stepsRatio: number): AttackStatus {
  if (reached) return 'measured';
  return data === 'harmful' && stepsRatio > HARMFUL_SLOWDOWN_THRESHOLD ? 'capped' : 'unmeasured';
}

function attackerFn(name: AttackerName): Attacker {
  switch (name) {
    case 'gd':
      return gd;
    case 'gd-exact':
    case 'gd-exact-standardized':
      return gdExact;
    case 'adam':
    case 'adam-standardized':
      return adam;
    case 'newton':
      return newton;
  }
}

export interface AttackSuite {
  /** Runs the remaining attackers here, joins the Adam runs, and returns every outcome in ATTACKERS order. */
  finish(observe?: StepObserver, signal?: AbortSignal): AttackOutcome[];
  /** Waits for any Adam run still going, so that no simulation outlives a thrown error. */
  abandon(): void;
}

/**
 * Every attacker on one side (benign or harmful), raw features against immunized ones. The Adam runs (raw and
 * z-scored), the longest by far, start at once on threads of their own; the rest run at `finish`.
 */
export function startAttackSuite(
  data: 'benign' | 'harmful',
  rawStats: SufficientStats,
  immunizedStats: SufficientStats,
  /** The eigendecompositions of the two K's when the caller has them (they spare two of the four here). */
  eigen?: { raw: Eigen; immunized: Eigen },
  /** The raw side when the caller already built it (a search that scored several θ's). */
  rawSide?: RawSide,
  /** The immunized probing problems when the caller already built them. */
  immunizedProblems?: ImmunizedProblems,
  /** Adam runs on these problems that the caller started already, at their full caps. */
  adamStarted?: Map<AttackerName, StartedAttack>,
): AttackSuite {
  const raw = rawSide ?? new RawSide(rawStats, eigen?.raw);
  const immunized = immunizedProblems ?? (([plain, zScored]) => ({ plain, zScored }))(plainAndZScored(immunizedStats, eigen?.immunized));
  const pair = (attacker: AttackerName) => {
    const kind = isStandardized(attacker) ? 'zScored' : 'plain';
    return { raw: raw.baseline(attacker), immunized: immunized[kind] };
  };
  const adamRunsStarted = new Map<AttackerName, { finish(): AttackOutcome }>();
  for (const attacker of ['adam', 'adam-standardized'] as const) {
    const p = pair(attacker);
    adamRunsStarted.set(attacker, adamStarted?.get(attacker) ?? startAttack(attacker, data, p.raw, p.immunized));
  }
  return {
    finish: (observe, signal) =>
      ATTACKERS.map((attacker) => {
        checkAbort(signal);
        observe?.({ phase: 'attacks', message: `${attacker} on ${data}` });
        const started = adamRunsStarted.get(attacker);
        if (started) return started.finish();
        const p = pair(attacker);
        return simulateAttack(attacker, data, p.raw, p.immunized);
      }),
    abandon: () => {
      for (const run of adamRunsStarted.values()) run.finish();
    },
  };
}

/** The plain and the z-scored probing problems of one dataset, their eigendecompositions side by side. */
export function plainAndZScored(stats: SufficientStats, eigen?: Eigen): [ProbeProblem, ProbeProblem] {
  const [plain, zScored] = probeProblems([
    { stats, theta: null, standardize: false, eigenOfK: eigen },
    { stats, theta: null, standardize: true },
  ]);
  return [plain, zScored];
}

export interface ImmunizedProblems {
  plain: ProbeProblem;
  zScored: ProbeProblem;
}

/** The raw features' probing problems (plain and z-scored) and each attacker's raw run, made once and kept. */
export class RawSide {
  readonly plain: ProbeProblem;
  readonly zScored: ProbeProblem;
  private readonly baselines = new Map<AttackerName, RawBaseline>();
  private readonly running = new Map<AttackerName, { join(): AttackRun }>();
  constructor(stats: SufficientStats, eigen?: Eigen, problems?: ImmunizedProblems) {
    const [plain, zScored] = problems ? [problems.plain, problems.zScored] : plainAndZScored(stats, eigen);
    this.plain = plain;
    this.zScored = zScored;
  }
  /** Both sides' raw problems, their eigendecompositions side by side. */
  static both(benign: { stats: SufficientStats; eigen?: Eigen }, harmful: { stats: SufficientStats; eigen?: Eigen }): Record<'benign' | 'harmful', RawSide> {
    const [bp, bz, hp, hz] = probeProblems([
      { stats: benign.stats, theta: null, standardize: false, eigenOfK: benign.eigen },
      { stats: benign.stats, theta: null, standardize: true },
      { stats: harmful.stats, theta: null, standardize: false, eigenOfK: harmful.eigen },
      { stats: harmful.stats, theta: null, standardize: true },
    ]);
    return {
      benign: new RawSide(benign.stats, undefined, { plain: bp, zScored: bz }),
      harmful: new RawSide(harmful.stats, undefined, { plain: hp, zScored: hz }),
    };
  }
  problem(attacker: AttackerName): ProbeProblem {
    return isStandardized(attacker) ? this.zScored : this.plain;
  }
  /** Starts the raw Adam runs, the longest raw ones, on threads of their own: they overlap what the caller does next. */
  startAdam(): this {
    for (const attacker of ['adam', 'adam-standardized'] as const) {
      if (!this.baselines.has(attacker) && !this.running.has(attacker)) {
        this.running.set(attacker, startAdamRuns(this.problem(attacker), 0, RAW_BUDGET_STEPS));
      }
    }
    return this;
  }
  baseline(attacker: AttackerName): RawBaseline {
    let b = this.baselines.get(attacker);
    if (!b) {
      const run = this.running.get(attacker);
      b = run ? baselineOf(run.join()) : rawBaseline(attacker, this.problem(attacker));
      this.running.delete(attacker);
      this.baselines.set(attacker, b);
    }
    return b;
  }
  /** Waits for any run still going, so that none outlives a thrown error. */
  abandon(): void {
    for (const attacker of [...this.running.keys()]) this.baseline(attacker);
  }
}

/**
 * "×3.20" when measured ("×0.500 (faster)" below 1: a speed-up), "≥ ×10.0" when a capped run gives a lower bound,
 * "unmeasured" otherwise; never a bare ×1 from a cap.
 */
export function slowdownText(o: Pick<AttackOutcome, 'slowdown' | 'status'>, digits = 3): string {
  if (o.status === 'unmeasured' || o.slowdown === null || o.slowdown === undefined) return 'unmeasured';
  const v = Number(o.slowdown).toPrecision(digits);
  if (o.status === 'capped') return `≥ ×${v}`;
  return o.slowdown < 1 ? `×${v} (faster)` : `×${v}`;
}
