import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mat, type Mat } from '../../../models/linalg/index.js';
import {
  ADAM_CAP_FACTOR,
  adamRuns,
  adamLearningRates,
  bestRun,
  attackStatus,
  slowdownText,
  gd,
  gdExact,
  newton,
  simulateAttack,
  TARGET_FLOOR,
  RAW_BUDGET_STEPS,
} from '../../../models/engine/attacks.js';
import { probeProblem, relativeSuboptimality, type ProbeProblem } from '../../../models/engine/probe.js';
import { statsOf } from '../../../models/engine/stats.js';
import { add, assertRel, eye, gram, jacobi, maxRelDiff, mul, normals, randn, solve, tr } from '../../helpers/reference.js';

/** A least-squares problem f(W) = ‖XW − Y‖²/(2N), everything computed from X and Y directly. */
class RefProblem {
  readonly N: number;
  readonly D: number;
  readonly C: number;
  readonly H: Mat;
  readonly fStar: number;
  readonly f0: number;
  readonly L: number;

  /** `keep`: the columns that span the column space (for f*, solved on those columns only). */
  constructor(
    readonly X: Mat,
    readonly Y: Mat,
    keep?: number[],
  ) {
    this.N = X.rows;
    this.D = X.cols;
    this.C = Y.cols;
    this.H = gram(X);
    for (let i = 0; i < this.H.data.length; i++) this.H.data[i] /= this.N;
    const cols = keep ?? Array.from({ length: this.D }, (_, j) => j);
    const Xk = mat(this.N, cols.length);
    for (let i = 0; i < this.N; i++) cols.forEach((j, c) => (Xk.data[i * cols.length + c] = X.data[i * this.D + j]));
    const Wk = solve(gram(Xk), mul(tr(Xk), Y));
    const W = mat(this.D, this.C);
    cols.forEach((j, c) => {
      for (let k = 0; k < this.C; k++) W.data[j * this.C + k] = Wk.data[c * this.C + k];
    });
    this.fStar = this.f(W);
    this.f0 = this.f(mat(this.D, this.C));
    this.L = jacobi(this.H).values[this.D - 1];
  }

  f(W: Mat): number {
    const R = mul(this.X, W);
    let s = 0;
    for (let i = 0; i < R.data.length; i++) s += (R.data[i] - this.Y.data[i]) ** 2;
    return s / (2 * this.N);
  }

  grad(W: Mat): Mat {
    const R = mul(this.X, W);
    for (let i = 0; i < R.data.length; i++) R.data[i] -= this.Y.data[i];
    const G = mul(tr(this.X), R);
    for (let i = 0; i < G.data.length; i++) G.data[i] /= this.N;
    return G;
  }

  /** H·W − XᵀY/N, summed from the last column of H to the first: the same gradient, rounded differently. */
  hessianGradient(W: Mat): Mat {
    const B = mul(tr(this.X), this.Y);
    const G = mat(this.D, this.C);
    for (let i = 0; i < this.D; i++) {
      for (let k = 0; k < this.C; k++) {
        let s = 0;
        for (let j = this.D - 1; j >= 0; j--) s += this.H.data[i * this.D + j] * W.data[j * this.C + k];
        G.data[i * this.C + k] = s - B.data[i * this.C + k] / this.N;
      }
    }
    return G;
  }

  sub(W: Mat): number {
    return (this.f(W) - this.fStar) / (this.f0 - this.fStar);
  }

  gdCurve(steps: number, stop?: (s: number) => boolean): number[] {
    const W = mat(this.D, this.C);
    const curve = [1];
    for (let k = 1; k <= steps; k++) {
      const G = this.grad(W);
      for (let i = 0; i < W.data.length; i++) W.data[i] -= G.data[i] / this.L;
      curve.push(this.sub(W));
      if (stop && stop(curve[k])) break;
    }
    return curve;
  }

  exactCurve(steps: number): number[] {
    const W = mat(this.D, this.C);
    const curve = [1];
    for (let k = 1; k <= steps; k++) {
      const G = this.grad(W);
      const XG = mul(this.X, G);
      let gg = 0;
      let gHg = 0;
      for (const v of G.data) gg += v * v;
      for (const v of XG.data) gHg += v * v;
      gHg /= this.N;
      const t = gg / gHg;
      for (let i = 0; i < W.data.length; i++) W.data[i] -= t * G.data[i];
      curve.push(this.sub(W));
    }
    return curve;
  }

  /** `gradient`: how ∇f is computed; the default goes through X, `hessianGradient` through H in another order. */
  adamCurve(lr: number, steps: number, gradient: (W: Mat) => Mat = (W) => this.grad(W)): number[] {
    const W = mat(this.D, this.C);
    const m = new Float64Array(W.data.length);
    const v = new Float64Array(W.data.length);
    const curve = [1];
    for (let t = 1; t <= steps; t++) {
      const G = gradient(W);
      for (let i = 0; i < W.data.length; i++) {
        m[i] = 0.9 * m[i] + 0.1 * G.data[i];
        v[i] = 0.999 * v[i] + 0.001 * G.data[i] ** 2;
        const mh = m[i] / (1 - 0.9 ** t);
        const vh = v[i] / (1 - 0.999 ** t);
        W.data[i] -= (lr * mh) / (Math.sqrt(vh) + 1e-8);
      }
      curve.push(this.sub(W));
    }
    return curve;
  }
}

function assertCurves(actual: ArrayLike<number>, expected: number[], what: string, rel = 1e-6, abs = 1e-10) {
  assert.equal(actual.length, expected.length, `${what}: curve length`);
  for (let k = 0; k < expected.length; k++) {
    const d = Math.abs(actual[k] - expected[k]);
    assert.ok(d <= rel * Math.abs(expected[k]) + abs, `${what}: step ${k}: ${actual[k]} vs ${expected[k]}`);
  }
}

/** N×D features with column scales spread over two decades, targets linear plus noise. */
function regression(seed: number, N: number, D: number, C = 1): { X: Mat; Y: Mat } {
  const next = normals(seed);
  const X = randn(N, D, next);
  for (let i = 0; i < N; i++) for (let j = 0; j < D; j++) X.data[i * D + j] *= Math.pow(10, (2 * j) / (D - 1)) / 10;
  const Wt = randn(D, C, next);
  const Y = mul(X, Wt);
  for (let i = 0; i < Y.data.length; i++) Y.data[i] += 0.3 * next() + 0.5;
  return { X, Y };
}

function engineProblem(X: Mat, Y: Mat, theta: Mat | null = null, standardize = false): ProbeProblem {
  return probeProblem(statsOf(X, Y), theta, standardize);
}

describe('probe: the least-squares problem from the sufficient statistics', () => {
  it('f* and the starting gap equal an independent normal-equation solve', () => {
    const { X, Y } = regression(1, 40, 5);
    const ref = new RefProblem(X, Y);
    const p = engineProblem(X, Y);
    assertRel(p.fStar, ref.fStar, 1e-9, 'f*');
    assertRel(p.gap, ref.f0 - ref.fStar, 1e-9, 'gap');
    assert.equal(p.lambdas.length, 5);
    assertRel(p.lambdas[4], ref.L, 1e-12, 'λ_max(H)');
  });

  it('relativeSuboptimality(W) equals (f(W) − f*)/(f(0) − f*) for an arbitrary W', () => {
    const { X, Y } = regression(2, 30, 4, 2);
    const ref = new RefProblem(X, Y);
    const p = engineProblem(X, Y);
    const W = randn(4, 2, normals(3), 0.2);
    assertRel(relativeSuboptimality(p, W), ref.sub(W), 1e-9, 'relative suboptimality');
  });

  it('rank-deficient X (a duplicated column): f* over the column space', () => {
    const { X, Y } = regression(4, 40, 5);
    for (let i = 0; i < 40; i++) X.data[i * 5 + 4] = X.data[i * 5 + 1];
    const ref = new RefProblem(X, Y, [0, 1, 2, 3]);
    const p = engineProblem(X, Y);
    assert.equal(p.lambdas.length, 4, 'numerical rank');
    assertRel(p.fStar, ref.fStar, 1e-9, 'f*');
  });
});

describe('attacks: curves against the attackers run in the original coordinates', () => {
  it('gd (step 1/L) reproduces plain gradient descent', () => {
    const { X, Y } = regression(5, 40, 5);
    const ref = new RefProblem(X, Y);
    const run = gd(engineProblem(X, Y), 0, 60);
    assert.equal(run.steps, 60);
    assertCurves(run.curve, ref.gdCurve(60), 'gd');
  });

  it('gd with a target stops at the first step at or below it', () => {
    const { X, Y } = regression(6, 40, 5);
    const ref = new RefProblem(X, Y).gdCurve(400);
    const target = 1e-3;
    const want = ref.findIndex((s, k) => k > 0 && s <= target);
    assert.ok(want > 1, 'the target must be reached, after more than one step');
    const run = gd(engineProblem(X, Y), target, 400);
    assert.ok(run.reached);
    assert.ok(Math.abs(run.steps - want) <= 1, `steps ${run.steps} vs ${want}`);
  });

  it('gd on a rank-deficient problem (duplicated column)', () => {
    const { X, Y } = regression(7, 40, 5);
    for (let i = 0; i < 40; i++) X.data[i * 5 + 3] = X.data[i * 5 + 0];
    const ref = new RefProblem(X, Y, [0, 1, 2, 4]);
    assertCurves(gd(engineProblem(X, Y), 0, 60).curve, ref.gdCurve(60), 'gd rank-deficient');
  });

  it('gd-exact reproduces exact line search (two outputs)', () => {
    const { X, Y } = regression(8, 50, 6, 2);
    const ref = new RefProblem(X, Y);
    assertCurves(gdExact(engineProblem(X, Y), 0, 40).curve, ref.exactCurve(40), 'gd-exact');
  });

  it('newton reaches any target in one step', () => {
    const { X, Y } = regression(9, 40, 5);
    const run = newton(engineProblem(X, Y), 1e-10, 50);
    assert.equal(run.steps, 1);
    assert.ok(run.reached);
    assert.ok(run.curve[1] <= 1e-12, `after one Newton step: ${run.curve[1]}`);
  });

  it('adam returns the best learning rate of its grid, matching textbook Adam', () => {
    const { X, Y } = regression(10, 40, 4);
    const ref = new RefProblem(X, Y);
    const steps = 150;
    const rates = Array.from(adamLearningRates(engineProblem(X, Y)));
    const refCurves = rates.map((lr) => ref.adamCurve(lr, steps));
    let best = 0;
    for (let g = 1; g < refCurves.length; g++) if (refCurves[g][steps] < refCurves[best][steps]) best = g;
    const run = adamRuns(engineProblem(X, Y), 0, steps);
    assert.equal(run.learningRate, rates[best]);
    assertCurves(run.curve, refCurves[best], 'adam', 1e-6, 1e-9);
  });

  // A long run and an early stop: the first step at which any learning rate reaches the target, the winner (the
  // first learning rate of the grid at that step) and the curves. Near the optimum Adam's normalized steps amplify
  // rounding, so curves are compared while they stay above 1e-7.
  it('adam over thousands of steps matches textbook Adam, early stop included', () => {
    const { X, Y } = regression(31, 80, 60);
    const ref = new RefProblem(X, Y);
    const steps = 6000;
    const rates = Array.from(adamLearningRates(engineProblem(X, Y)));
    const curves = rates.map((lr) => ref.adamCurve(lr, steps));
    const settled = (c: number[]) => {
      const k = c.findIndex((v) => v < 1e-7);
      return k < 0 ? c.length : k;
    };
    const full = adamRuns(engineProblem(X, Y), 0, steps);
    assert.equal(full.curve.length, steps + 1);
    const g = rates.indexOf(full.learningRate);
    const n = settled(curves[g]);
    assert.ok(n > 500, `compared over ${n} steps`);
    // Late in the run Adam's normalized steps amplify rounding: the same textbook Adam with the gradient summed in
    // another order leaves the curve by more than 1e-6 after about 1,400 steps, and by percents soon after. The
    // curves are compared step by step up to that horizon, and by the steps they need to reach each level beyond.
    const other = ref.adamCurve(full.learningRate, n, (W) => ref.hessianGradient(W));
    const horizon = other.findIndex((v, k) => Math.abs(v - curves[g][k]) > 1e-6 * curves[g][k]);
    const comparable = horizon < 0 ? n : horizon;
    // The fastest learning rate (the one the raw side picks) leaves the shared path soonest: near 700 steps here.
    assert.ok(comparable > 500, `the references agree for ${comparable} steps`);
    assertCurves(Array.from(full.curve).slice(0, comparable), curves[g].slice(0, comparable), `adam lr ${full.learningRate}, to the cap`, 1e-6, 1e-9);
    const stepsTo = (c: ArrayLike<number>, level: number) => Array.from(c).findIndex((v) => v <= level);
    for (const level of [1e-4, 1e-5, 1e-6]) {
      const expected = stepsTo(curves[g], level);
      assert.ok(expected > 0, `the reference reaches ${level}`);
      const got = stepsTo(full.curve, level);
      assert.ok(Math.abs(got - expected) <= 0.01 * expected, `steps to ${level}: ${got} vs ${expected}`);
    }
    // A target first met mid-run by one learning rate, well above the rounding regime.
    const target = 1e-2;
    let first = -1;
    let winner = -1;
    for (let k = 1; k <= steps && first < 0; k++) {
      const w = curves.findIndex((c) => c[k] <= target);
      if (w >= 0) [first, winner] = [k, w];
    }
    assert.ok(first > 10, `the target should take a while: step ${first}`);
    const stopped = adamRuns(engineProblem(X, Y), target, steps);
    assert.equal(stopped.steps, first);
    assert.ok(stopped.reached);
    assert.equal(stopped.learningRate, rates[winner]);
    assertCurves(stopped.curve, curves[winner].slice(0, first + 1), 'adam, stopped', 1e-6, 1e-9);
  });

  // The native loop has a column kernel and a BLAS path (D ≥ 192 with 9+ columns: outputs × 3 learning rates).
  for (const [N, D, C] of [
    [60, 7, 3],
    [260, 200, 2],
    [260, 200, 3],
  ] as const) {
    it(`adam matches textbook Adam at D = ${D} with ${C} outputs`, () => {
      const { X, Y } = regression(20 + D, N, D, C);
      const ref = new RefProblem(X, Y);
      const steps = 40;
      const run = adamRuns(engineProblem(X, Y), 0, steps);
      assertCurves(run.curve, ref.adamCurve(run.learningRate, steps), `adam lr ${run.learningRate}`, 1e-6, 1e-9);
    });
  }
});

describe('attacks: Adam is fair to a rescaled optimum, and capped runs are marked', () => {
  it('the raw side keeps the run that gets lowest the earliest, even when several end at rounding level', () => {
    const slow = [1, 0.5, 1e-3, 1e-7, 0, 0];
    const fast = [1, 1e-3, 1e-8, 0, 0, 0];
    const stuck = [1, 0.9, 0.8, 0.7, 0.6, 0.5];
    assert.equal(bestRun([slow, fast, stuck]), 1);
    assert.equal(bestRun([stuck, slow]), 1);
    // Below TARGET_FLOOR every level counts as reached: the earlier run wins, whatever it reaches later.
    assert.equal(
      bestRun([
        [1, 1e-7, 1e-7, 1e-7],
        [1, 1e-3, 1e-12, 0],
      ]),
      0,
    );
  });

  it('Adam needs the same steps on X and on X·s: its learning rates follow the optimum', () => {
    const { X, Y } = regression(41, 60, 6);
    const s = 37;
    const theta = eye(6, s);
    const raw = engineProblem(X, Y);
    const scaled = engineProblem(X, Y, theta);
    const a = adamLearningRates(raw);
    const b = adamLearningRates(scaled);
    for (let g = 0; g < a.length; g++) assertRel(b[g], a[g] / s, 1e-9, `learning rate ${g}`);
    const out = simulateAttack('adam', 'harmful', raw, scaled);
    assert.equal(out.status, 'measured');
    assert.ok(Math.abs(out.stepsImmunized - out.stepsRaw) <= 1, `steps ${out.stepsRaw} → ${out.stepsImmunized}`);
  });

  it('status: a reached run is measured; a capped harmful run past 2× is a lower bound; anything else is unmeasured', () => {
    assert.equal(attackStatus('harmful', true, 0.5), 'measured');
    assert.equal(attackStatus('benign', true, 3), 'measured');
    assert.equal(attackStatus('harmful', false, 10), 'capped');
    assert.equal(attackStatus('harmful', false, 2), 'unmeasured');
    assert.equal(attackStatus('harmful', false, 1), 'unmeasured');
    assert.equal(attackStatus('benign', false, 10), 'unmeasured');
    assert.equal(slowdownText({ status: 'capped', slowdown: 10 }), '≥ ×10.0');
    assert.equal(slowdownText({ status: 'measured', slowdown: 1.5 }), '×1.50');
    assert.equal(slowdownText({ status: 'measured', slowdown: 0.5 }), '×0.500 (faster)');
    assert.equal(slowdownText({ status: 'unmeasured', slowdown: null }), 'unmeasured');
  });

  it('a harmful Adam run that needs more than 10× the raw steps stops at 10× and is a lower bound', () => {
    const { X, Y } = regression(43, 60, 6);
    const theta = eye(6);
    for (let j = 0; j < 6; j++) theta.data[j * 6 + j] = j === 0 ? 1 : 1e-3;
    const out = simulateAttack('adam', 'harmful', engineProblem(X, Y), engineProblem(X, Y, theta));
    assert.equal(out.cap, ADAM_CAP_FACTOR * out.stepsRaw);
    if (out.capped) {
      assert.equal(out.status, 'capped');
      assert.equal(out.stepsImmunized, out.cap);
    } else {
      assert.equal(out.status, 'measured');
    }
  });
});

describe('attacks: simulateAttack against a reference count', () => {
  it('gd: raw target from 1,000 steps, immunized count to that target', () => {
    const { X, Y } = regression(11, 40, 4);
    const theta = eye(4);
    theta.data[0] = 0.3; // shrinks the smallest-scale feature: the problem gets worse conditioned
    const Z = mul(X, theta);
    const raw = new RefProblem(X, Y);
    const imm = new RefProblem(Z, Y);
    const rawCurve = raw.gdCurve(RAW_BUDGET_STEPS);
    const target = Math.max(Math.min(...rawCurve.slice(1)), TARGET_FLOOR);
    const stepsRaw = rawCurve.findIndex((s, k) => k > 0 && s <= target);
    const immCurve = imm.gdCurve(100_000, (s) => s <= target);
    const stepsImm = immCurve.length - 1;
    assert.ok(immCurve[stepsImm] <= target, 'reference run must reach the target');

    const out = simulateAttack('gd', 'harmful', engineProblem(X, Y), engineProblem(X, Y, theta));
    assertRel(out.target, target, 1e-6, 'target');
    assert.ok(Math.abs(out.stepsRaw - stepsRaw) <= 1, `stepsRaw ${out.stepsRaw} vs ${stepsRaw}`);
    assert.ok(Math.abs(out.stepsImmunized - stepsImm) <= 1, `stepsImmunized ${out.stepsImmunized} vs ${stepsImm}`);
    assert.equal(out.capped, false);
    assert.equal(out.status, 'measured');
    assertRel(out.slowdown!, out.stepsImmunized / out.stepsRaw, 1e-15, 'slowdown');
    assert.ok(out.slowdown! > 2, `a worse-conditioned problem should be slower (slowdown ${out.slowdown})`);
  });
});

describe('probe: the standardized problem equals the explicitly z-scored X·θ', () => {
  /** Z = X·θ with columns z-scored by the sample std (ddof 1); zero std → 1. */
  function zscore(Z: Mat): Mat {
    const N = Z.rows;
    const D = Z.cols;
    const out = mat(N, D);
    for (let j = 0; j < D; j++) {
      let mean = 0;
      for (let i = 0; i < N; i++) mean += Z.data[i * D + j];
      mean /= N;
      let ss = 0;
      for (let i = 0; i < N; i++) ss += (Z.data[i * D + j] - mean) ** 2;
      let sd = Math.sqrt(ss / (N - 1));
      if (!(sd > 1e-12 * (Math.abs(mean) + 1))) sd = 1;
      for (let i = 0; i < N; i++) out.data[i * D + j] = (Z.data[i * D + j] - mean) / sd;
    }
    return out;
  }

  function setup(seed: number) {
    const next = normals(seed);
    const { X, Y } = regression(seed, 45, 5);
    // the last feature is constant; θ leaves that column alone, so Xθ has a constant (zero-std) column
    for (let i = 0; i < 45; i++) X.data[i * 5 + 4] = 2.5;
    const theta = add(eye(5), randn(5, 5, next, 0.3));
    for (let i = 0; i < 5; i++) theta.data[i * 5 + 4] = i === 4 ? 1 : 0;
    return { X, Y, theta };
  }

  it('H, B, f* and gd-exact curve with θ', () => {
    const { X, Y, theta } = setup(12);
    const Zs = zscore(mul(X, theta));
    const ref = new RefProblem(Zs, Y, [0, 1, 2, 3]);
    const p = engineProblem(X, Y, theta, true);
    const Bref = mul(tr(Zs), Y);
    for (let i = 0; i < Bref.data.length; i++) Bref.data[i] /= 45;
    assert.ok(maxRelDiff(p.H.data, ref.H.data) <= 1e-10, `H differs by ${maxRelDiff(p.H.data, ref.H.data)}`);
    assert.ok(maxRelDiff(p.B.data, Bref.data) <= 1e-10, `B differs by ${maxRelDiff(p.B.data, Bref.data)}`);
    assert.equal(p.lambdas.length, 4, 'the zeroed constant column leaves rank 4');
    assertRel(p.fStar, ref.fStar, 1e-9, 'f*');
    assertCurves(gdExact(p, 0, 30).curve, ref.exactCurve(30), 'gd-exact standardized');
  });

  it('without θ', () => {
    const { X, Y } = setup(13);
    const Zs = zscore(X);
    const ref = new RefProblem(Zs, Y, [0, 1, 2, 3]);
    const p = engineProblem(X, Y, null, true);
    assert.ok(maxRelDiff(p.H.data, ref.H.data) <= 1e-10, `H differs by ${maxRelDiff(p.H.data, ref.H.data)}`);
    assertRel(p.fStar, ref.fStar, 1e-9, 'f*');
    assertCurves(gd(p, 0, 30).curve, ref.gdCurve(30), 'gd standardized');
  });

  it('standardization undoes a positive diagonal θ (the degenerate-θ blind spot it exists for)', () => {
    const { X, Y } = regression(14, 40, 4);
    const theta = eye(4);
    theta.data[0] = 1e-3;
    theta.data[15] = 50;
    const a = engineProblem(X, Y, null, true);
    const b = engineProblem(X, Y, theta, true);
    assert.ok(maxRelDiff(a.H.data, b.H.data) <= 1e-9);
    assertRel(b.fStar, a.fStar, 1e-9, 'f*');
  });
});
