import { gemm, gesv, openblasCore, syevr, syevrMany } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { congruence } from './dense.js';
import {
  FIRST_ORDER_ATTACKERS,
  isAdam,
  isStandardized,
  RawSide,
  simulateAttack,
  startAttack,
  startAttackSuite,
  type AttackerName,
  type AttackOutcome,
  type ImmunizedProblems,
  type StartedAttack,
} from './attacks.js';
import { EXHAUSTIVE_MAX_DIM, spectralImmunize } from './spectralMethod.js';
import { closedFormImmunize, CLOSED_FORM_DEFAULTS, rirBound } from './closedForm.js';
import { defaultStepCap, GRADIENT_DEFAULTS, gradientImmunize, type StepRecord } from './gradientMethod.js';
import { paperImmunize } from './paperMethod.js';
import { probeProblem, probeProblems, type Eigen } from './probe.js';
import { checkAbort, type StepObserver } from './progress.js';
import { fitProbe, fitProbes, predict, score, type LinearHead } from './quality.js';
import { sanitize, type Warning } from './report.js';
import { attackRows, conditioningReport, curvesOf, runAttackSuites, verdictFields, type Spectra } from './scoring.js';
import { conditioningFromSpectrum, conditioningWithRank, defaultRtol, matrixCondition } from './spectrum.js';
import { statsOf, transformStats, type SufficientStats } from './stats.js';
import { encodeTargets, gaussianTargets, inferTask, type Task } from './targets.js';
import { kappaCeilingNote, VERDICT_THRESHOLDS, type KappaCriterion, type Verdict } from './verdict.js';

export type Method = 'spectral' | 'closed-form' | 'gradient' | 'paper';

export interface LabelledData {
  X: Mat;
  y?: Float64Array;
}

export interface EngineInput {
  benign: LabelledData;
  harmful: LabelledData;
  benignTest?: LabelledData;
}

export interface EngineOptions {
  method: Method;
  task?: Task;
  steps?: number;
  kappaBudget: number;
  seed: number;
  rtol?: number;
  lambdaBenign?: number;
  lambdaHarmful?: number;
  alpha?: number;
  init?: 'identity' | 'random';
  optimizer?: 'gd' | 'adam';
}

export const ENGINE_DEFAULTS: EngineOptions = { method: 'spectral', kappaBudget: 1e4, seed: 0 };

export interface EngineResult {
  theta: Mat;
  /** θ⁻¹ω and the bias: on X·θ it gives the benign predictions of the original head ω. */
  head: LinearHead | null;
  metrics: Metrics;
  curves: Curves;
}

export interface Metrics {
  method: Method | 'evaluate';
  task: Task | null;
  dim: number;
  rows: { benign: number; harmful: number; benignTest: number | null };
  rir: number | null;
  benignRatio: number | null;
  harmfulRatio: number | null;
  rirBound: number | null;
  thetaCondition: number | null;
  kappaBudget: number;
  kappa: { benign: { before: number | null; after: number | null }; harmful: { before: number | null; after: number | null } };
  paperConvention: { rir: number | null; benignRatio: number | null; harmfulRatio: number | null; kappa: Metrics['kappa'] };
  benignQuality: { metric: 'mse' | 'accuracy' | null; before: number | null; after: number | null; test?: number | null; headMaxDeviation: number | null };
  attacks: Array<Omit<AttackOutcome, 'curveRaw' | 'curveImmunized'>>;
  verdict: Verdict;
  verdictReasons: string[];
  /** 'untestable' when κ(K_H) is so close to float64's ceiling that no θ could double it; the attackers decide then. */
  kappaCriterion: KappaCriterion;
  verdictNotes: string[];
  optimizer: { steps: number; stopReason: string; details: Record<string, number> };
  timings: { engineSeconds: number; solveSeconds: number; metricsSeconds: number; attackSeconds: number };
  warnings: Warning[];
  openblasCore: string;
}

export interface Curves {
  spectra: { benign: { before: number[]; after: number[] }; harmful: { before: number[]; after: number[] } };
  kappaSteps: Array<{ step: number; benign: number; harmful: number; seconds: number }>;
  attacks: Array<{ attacker: string; data: string; raw: Array<[number, number]>; immunized: Array<[number, number]> }>;
}

interface Prepared {
  task: Task | null;
  benignStats: SufficientStats;
  harmfulStats: SufficientStats;
  benignY: Mat | null;
  classes: number[] | null;
  warnings: Warning[];
}

function prepare(input: EngineInput, opts: EngineOptions): Prepared {
  const warnings: Warning[] = [];
  const { benign, harmful } = input;
  const task = benign.y ? (opts.task ?? inferTask(benign.y)) : null;
  if (!benign.y && opts.task) warnings.push({ field: 'task', reason: 'no benign labels, so there is no task term and no benign quality' });
  const enc = benign.y && task ? encodeTargets(benign.y, task) : null;
  const benignY = enc ? enc.Y : gaussianTargets(benign.X.rows, opts.seed);
  const harmfulTask = harmful.y ? (task && task !== 'regression' ? task : inferTask(harmful.y)) : null;
  const harmfulY = harmful.y && harmfulTask ? encodeTargets(harmful.y, harmfulTask).Y : gaussianTargets(harmful.X.rows, opts.seed + 1);
  if (!benign.y) warnings.push({ field: 'attacks', reason: 'benign data has no labels: attacks use seeded Gaussian targets' });
  if (!harmful.y) warnings.push({ field: 'attacks', reason: 'harmful data has no labels: attacks use seeded Gaussian targets' });
  return {
    task,
    benignStats: statsOf(benign.X, benignY),
    harmfulStats: statsOf(harmful.X, harmfulY),
    benignY: enc ? enc.Y : null,
    classes: enc ? enc.classes : null,
    warnings,
  };
}

export function immunize(input: EngineInput, opts: EngineOptions, observe?: StepObserver, signal?: AbortSignal): EngineResult {
  const start = performance.now();
  const prep = prepare(input, opts);
  const ctx: SolveContext = { input, opts, prep, rtol: opts.rtol ?? defaultRtol(prep.benignStats.K.rows), observe, signal };
  observe?.({ phase: 'optimize', step: 0, of: opts.steps ?? 0 });
  const solver = { spectral: solveSpectral, 'closed-form': solveClosedForm, paper: solvePaper, gradient: solveGradient }[opts.method] ?? solveGradient;
  const s = solver(ctx);
  const solveSeconds = (performance.now() - start) / 1000;
  const screened = s.screened?.theta === s.theta ? s.screened : undefined;
  try {
    return finish(
      input,
      opts,
      prep,
      { theta: s.theta, history: s.history ?? [], optimizer: s.optimizer, start, solveSeconds, rawSides: s.rawSides, screened, known: s.known },
      observe,
      signal,
    );
  } catch (err) {
    // Runs the screen started for the final metrics must not outlive the job.
    for (const run of screened?.harmfulAdam?.values() ?? []) {
      run.cancel();
      run.finish();
    }
    throw err;
  }
}

interface SolveContext {
  input: EngineInput;
  opts: EngineOptions;
  prep: Prepared;
  rtol: number;
  observe?: StepObserver;
  signal?: AbortSignal;
}

/** What a method hands to the scoring step: θ, how it was found, and whatever it computed that the metrics reuse. */
interface Solution {
  theta: Mat;
  optimizer: Metrics['optimizer'];
  history?: StepRecord[];
  rawSides?: Record<'benign' | 'harmful', RawSide>;
  screened?: Screened;
  known?: Known;
}

function solveSpectral({ input, opts, prep, rtol }: SolveContext): Solution {
  const [eigP0, eigH0] = syevrMany([prep.benignStats.K, prep.harmfulStats.K]) as Eigen[];
  const known: Known = { eigP0, eigH0, thetaCondition: undefined };
  const rawSides = RawSide.both({ stats: prep.benignStats, eigen: eigP0 }, { stats: prep.harmfulStats, eigen: eigH0 });
  rawSides.benign.startAdam();
  rawSides.harmful.startAdam();
  const passedScreen = new Map<Mat, Screened>();
  const screen = screenAgainstVerdict(prep, rtol, rawSides, known, (s) => passedScreen.set(s.theta, s));
  let r: ReturnType<typeof spectralImmunize>;
  try {
    r = spectralImmunize(prep.benignStats, prep.harmfulStats, { kappaBudget: opts.kappaBudget, seed: opts.seed, harmfulLabelled: !!input.harmful.y }, screen);
  } catch (err) {
    rawSides.benign.abandon();
    rawSides.harmful.abandon();
    throw err;
  }
  known.thetaCondition = r.thetaCondition;
  const details = {
    centred: r.centred ? 1 : 0,
    ridge: r.ridge,
    complement: r.family === 'complement' ? 1 : 0,
    benignShare: r.benignShare,
    ...(r.harmfulShare === null ? {} : { harmfulShare: r.harmfulShare }),
    suppressed: r.suppressed,
    delta: r.delta,
  };
  const optimizer = { steps: r.tried, stopReason: r.passed ? 'passed-screen' : 'best-of-grid', details };
  return { theta: r.theta, optimizer, rawSides, screened: passedScreen.get(r.theta), known };
}

function solveClosedForm({ opts, prep, rtol }: SolveContext): Solution {
  const rawStd = {
    benign: probeProblem(prep.benignStats, null, true),
    harmful: probeProblem(prep.harmfulStats, null, true),
  };
  // Benign users who z-score their features must not be slowed at all; the harmful side must reach the verdict's bar.
  const passesStandardizedAttack = (candidate: Mat) => {
    const run = (data: 'benign' | 'harmful', stopAt: number) =>
      simulateAttack(
        'gd-exact-standardized',
        data,
        rawStd[data],
        probeProblem(data === 'benign' ? prep.benignStats : prep.harmfulStats, candidate, true),
        stopAt,
      );
    const benign = run('benign', 1.01);
    const harmful = run('harmful', VERDICT_THRESHOLDS.harmfulSlowdown);
    return !benign.capped && benign.stepsImmunized <= benign.stepsRaw && harmful.stepsImmunized >= VERDICT_THRESHOLDS.harmfulSlowdown * harmful.stepsRaw;
  };
  const cf = closedFormImmunize(
    prep.benignStats.K,
    prep.harmfulStats.K,
    { ...CLOSED_FORM_DEFAULTS, kappaBudget: opts.kappaBudget, alpha: opts.alpha, rtol, rotationSeed: opts.seed },
    passesStandardizedAttack,
  );
  return { theta: cf.theta, optimizer: { steps: 0, stopReason: 'closed-form', details: { alpha: cf.alpha, ridge: cf.ridge, kappaM: cf.kappaM } } };
}

function solvePaper({ input, opts, prep, observe, signal }: SolveContext): Solution {
  const r = paperImmunize(
    input.benign.X,
    input.harmful.X,
    prep.benignStats.K,
    prep.harmfulStats.K,
    { steps: opts.steps, seed: opts.seed, kappaBudget: opts.kappaBudget, lambdaBenign: opts.lambdaBenign, lambdaHarmful: opts.lambdaHarmful },
    observe,
    signal,
  );
  return { theta: r.theta, history: r.steps, optimizer: { steps: r.stepsTaken, stopReason: r.stopReason, details: {} } };
}

function solveGradient({ opts, prep, rtol, observe, signal }: SolveContext): Solution {
  const KP = prep.benignStats.K;
  const r = gradientImmunize(
    KP,
    prep.harmfulStats.K,
    {
      ...GRADIENT_DEFAULTS,
      steps: opts.steps ?? defaultStepCap(KP.rows),
      kappaBudget: opts.kappaBudget,
      seed: opts.seed,
      init: opts.init ?? 'identity',
      optimizer: opts.optimizer ?? 'gd',
      lambdaBenign: opts.lambdaBenign,
      lambdaHarmful: opts.lambdaHarmful,
      rtol,
    },
    { n: prep.benignStats.n, colSum: prep.benignStats.colSum },
    observe,
    signal,
  );
  return { theta: r.theta, history: r.steps, optimizer: { steps: r.stepsTaken, stopReason: r.stopReason, details: {} } };
}

/**
 * A quick version of the verdict for a candidate θ: the κ ratios, then every first-order attacker with its run
 * stopped as soon as the answer is known (benign past 1.25×, harmful past 2×). The score counts the checks passed.
 */
function fullEigen(S: Mat): Eigen {
  const e = syevr(S);
  return { values: e.values, vectors: e.vectors! };
}

/** What the optimizer already computed and the metrics need: the raw K's eigendecompositions and κ(θ). */
interface Known {
  eigP0: Eigen;
  eigH0: Eigen;
  thetaCondition: number | undefined;
}

/** What the screen computed for a candidate that passed it; the final metrics reuse it for the chosen θ. */
interface Screened {
  theta: Mat;
  stats: Record<'benign' | 'harmful', SufficientStats>;
  eigen: Record<'benign' | 'harmful', Eigen>;
  immunized: Record<'benign' | 'harmful', ImmunizedProblems>;
  /** The harmful Adam runs the screen started at their full caps; the final metrics take them over. */
  harmfulAdam?: Map<AttackerName, StartedAttack>;
}

function screenAgainstVerdict(
  prep: Prepared,
  rtol: number,
  rawSides: Record<'benign' | 'harmful', RawSide>,
  known: Known,
  keep: (s: Screened) => void,
): (theta: Mat, mustBeat: number) => { passed: boolean; score: number; rir: number; kappaOk: boolean } {
  const t = VERDICT_THRESHOLDS;
  const before = {
    benign: conditioningFromSpectrum(known.eigP0.values, rtol),
    harmful: conditioningFromSpectrum(known.eigH0.values, rtol),
  };
  const kappaUntestable = kappaCeilingNote(before.harmful.kappa, rtol) !== undefined;
  // A candidate is often checked twice (its κ's first, the attackers later): each side's transformed statistics, their
  // eigenvalues and, once the attackers need them, their eigenvectors are kept for the second time.
  type Side = { stats: SufficientStats; values: Float64Array; eigen?: Eigen };
  const sides = new WeakMap<Mat, Record<'benign' | 'harmful', Side>>();
  const sidesOf = (theta: Mat) => {
    let both = sides.get(theta);
    if (!both) {
      const stats = [transformStats(prep.benignStats, theta), transformStats(prep.harmfulStats, theta)];
      // Above EXHAUSTIVE_MAX_DIM the first candidate usually goes on to the attackers, which need the vectors too.
      const vectors = stats[0].dim > EXHAUSTIVE_MAX_DIM;
      const [b, h] = syevrMany(
        stats.map((st) => st.K),
        { vectors },
      ).map((e, i): Side => ({ stats: stats[i], values: e.values, eigen: vectors ? { values: e.values, vectors: e.vectors! } : undefined }));
      both = { benign: b, harmful: h };
      sides.set(theta, both);
    }
    return both;
  };
  const eigenOf = (side: Side): Eigen => {
    if (!side.eigen) {
      const e = syevr(side.stats.K);
      side.eigen = { values: e.values, vectors: e.vectors! };
    }
    return side.eigen;
  };
  return (theta, mustBeat) => {
    // The κ checks are cheap and always scored; the attackers follow, and the first one that fails ends the screen.
    // The score counts the checks passed, so that the best of a failed search is the one closest to passing.
    let score = 0;
    let kappaOk = true;
    const after = sidesOf(theta);
    const kAfter = (data: 'benign' | 'harmful') => conditioningWithRank(after[data].values, rtol, before[data].rank).kappa;
    const benignRatio = (kAfter('benign') ?? Infinity) / before.benign.kappa!;
    const harmfulRatio = (kAfter('harmful') ?? 0) / before.harmful.kappa!;
    const rir = harmfulRatio / benignRatio;
    if (benignRatio <= t.benignRatio) score++;
    else kappaOk = false;
    if (!kappaUntestable) {
      if (harmfulRatio >= t.harmfulRatio) score++;
      else kappaOk = false;
    }
    // A candidate that cannot beat the best one passed so far is not worth its attack runs.
    if (!(rir > mustBeat)) return { passed: false, score, rir, kappaOk };
    // Filled side by side below; complete only once both sides ran every attacker.
    const screened: Screened = {
      theta,
      stats: { benign: after.benign.stats, harmful: after.harmful.stats },
      eigen: { benign: eigenOf(after.benign), harmful: eigenOf(after.harmful) },
      immunized: {} as Screened['immunized'],
    };
    const [bp, bz, hp, hz] = probeProblems(
      (['benign', 'harmful'] as const).flatMap((data) => [
        { stats: screened.stats[data], theta: null, standardize: false, eigenOfK: screened.eigen[data] },
        { stats: screened.stats[data], theta: null, standardize: true },
      ]),
    );
    screened.immunized = { benign: { plain: bp, zScored: bz }, harmful: { plain: hp, zScored: hz } };
    // The harmful Adam runs start at their full caps: the check needs only their first 2× the raw steps, and a
    // candidate that passes keeps them going as its final runs.
    const keptAdam = new Map<AttackerName, StartedAttack>();
    let passed = false;
    try {
      for (const data of ['benign', 'harmful'] as const) {
        const imm = screened.immunized[data];
        const stopAt = data === 'benign' ? t.benignSlowdown * 1.01 : Infinity;
        const start = (attacker: AttackerName) =>
          startAttack(attacker, data, rawSides[data].baseline(attacker), isStandardized(attacker) ? imm.zScored : imm.plain, stopAt);
        // The Adam runs, the longest, go on threads of their own while the others run here.
        const adamRuns = new Map<AttackerName, StartedAttack>(FIRST_ORDER_ATTACKERS.filter(isAdam).map((a) => [a, start(a)]));
        if (data === 'harmful') for (const [a, run] of adamRuns) keptAdam.set(a, run);
        try {
          for (const attacker of FIRST_ORDER_ATTACKERS) {
            const run = adamRuns.get(attacker) ?? start(attacker);
            const stepsRaw = rawSides[data].baseline(attacker).stepsRaw;
            const ok =
              data === 'benign'
                ? ((o) => !o.capped && o.stepsImmunized <= t.benignSlowdown * o.stepsRaw)(run.finish())
                : !run.reachedWithin(Math.ceil(t.harmfulSlowdown * stepsRaw) - 1);
            if (!ok) return { passed: false, score, rir, kappaOk };
            score++;
          }
        } finally {
          if (data === 'benign') for (const run of adamRuns.values()) run.finish();
        }
      }
      passed = kappaOk;
    } finally {
      if (!passed) {
        for (const run of keptAdam.values()) {
          run.cancel();
          run.finish();
        }
      }
    }
    if (!passed) return { passed: false, score, rir, kappaOk };
    screened.harmfulAdam = keptAdam;
    keep(screened);
    return { passed: true, score, rir, kappaOk };
  };
}

/** Scores a θ made elsewhere with the same metrics, attacks and verdict. */
export function evaluateTheta(input: EngineInput, theta: Mat, opts: EngineOptions, observe?: StepObserver, signal?: AbortSignal): EngineResult {
  const D = input.benign.X.cols;
  if (theta.rows !== D || theta.cols !== D) throw new RangeError(`theta must be ${D}×${D} for these features, got ${theta.rows}×${theta.cols}`);
  const start = performance.now();
  const prep = prepare(input, opts);
  return finish(
    input,
    { ...opts },
    prep,
    { theta, history: [], optimizer: { steps: 0, stopReason: 'evaluate', details: {} }, start, solveSeconds: 0, methodLabel: 'evaluate' },
    observe,
    signal,
  );
}

/** Everything the scoring step needs besides the data: how θ was made, and what the optimizer already computed. */
interface Solved {
  theta: Mat;
  history: StepRecord[];
  optimizer: Metrics['optimizer'];
  /** performance.now() when the engine started, and the seconds the solve took. */
  start: number;
  solveSeconds: number;
  methodLabel?: 'evaluate';
  rawSides?: Record<'benign' | 'harmful', RawSide>;
  screened?: Screened;
  known?: Known;
}

/** θ → every metric: the κ report, RIR*, κ(θ), benign quality, the attacks, the verdict and the curves. */
function finish(input: EngineInput, opts: EngineOptions, prep: Prepared, solved: Solved, observe?: StepObserver, signal?: AbortSignal): EngineResult {
  checkAbort(signal);
  observe?.({ phase: 'evaluate' });
  const { theta, screened, known } = solved;
  const metricsStart = performance.now();
  const KP = prep.benignStats.K;
  const KH = prep.harmfulStats.K;
  const D = KP.rows;
  const rtol = opts.rtol ?? defaultRtol(D);
  const warnings = [...prep.warnings];
  const reasons: Record<string, string> = {};

  // Full eigendecompositions, computed once: the κ's, RIR* and the raw and immunized probing problems share them.
  const statsAfter = screened?.stats ?? { benign: transformStats(prep.benignStats, theta), harmful: transformStats(prep.harmfulStats, theta) };
  const eigen = {
    benign: { raw: known?.eigP0 ?? fullEigen(KP), immunized: screened?.eigen.benign ?? fullEigen(congruence(KP, theta)) },
    harmful: { raw: known?.eigH0 ?? fullEigen(KH), immunized: screened?.eigen.harmful ?? fullEigen(congruence(KH, theta)) },
  };
  const spectra: Spectra = {
    benign: { before: eigen.benign.raw.values, after: eigen.benign.immunized.values },
    harmful: { before: eigen.harmful.raw.values, after: eigen.harmful.immunized.values },
  };
  const c = conditioningReport(spectra, rtol);
  const statsOfSide = { benign: prep.benignStats, harmful: prep.harmfulStats };
  let thetaCondition: number | null = null;
  let bound: number | null = null;
  let quality: Metrics['benignQuality'] | undefined;
  const attacks = runAttackSuites(
    {
      benign: () => startAttackSuite('benign', statsOfSide.benign, statsAfter.benign, eigen.benign, solved.rawSides?.benign, screened?.immunized.benign),
      harmful: () =>
        startAttackSuite(
          'harmful',
          statsOfSide.harmful,
          statsAfter.harmful,
          eigen.harmful,
          solved.rawSides?.harmful,
          screened?.immunized.harmful,
          screened?.harmfulAdam,
        ),
    },
    observe,
    signal,
    () => {
      thetaCondition = known?.thetaCondition ?? matrixCondition(theta);
      if (thetaCondition === null) reasons.thetaCondition = 'θ is singular';
      bound = rirBound(KP, KH, rtol, opts.kappaBudget, { benign: eigen.benign.raw, harmful: spectra.harmful.before });
      if (bound !== null && c.rank.benign < D) {
        warnings.push({
          field: 'rirBound',
          reason: `K_P has rank ${c.rank.benign} of ${D}: RIR* is formed with the ridge 1/budget² and is a reference value, not a bound (RIR can exceed it), so it cannot rule immunization out`,
        });
      }
      quality = benignQuality(input, prep, theta, statsAfter.benign, warnings);
    },
  );
  // RIR ≤ RIR* is proven for a full-rank K_P only (K_H may be rank-deficient); only then may RIR* ≤ 1 say infeasible.
  const verdict = verdictFields(c, rtol, c.rank.benign === D ? bound : null, attacks.outcomes);
  const raw: Metrics = {
    method: solved.methodLabel ?? opts.method,
    task: prep.task,
    dim: D,
    rows: { benign: input.benign.X.rows, harmful: input.harmful.X.rows, benignTest: input.benignTest ? input.benignTest.X.rows : null },
    rir: c.rir,
    benignRatio: c.benignRatio,
    harmfulRatio: c.harmfulRatio,
    rirBound: bound ?? NaN,
    thetaCondition: thetaCondition ?? Infinity,
    kappaBudget: opts.kappaBudget,
    kappa: c.kappa,
    paperConvention: c.paperConvention,
    benignQuality: quality!,
    attacks: attackRows(attacks.outcomes),
    ...verdict,
    optimizer: solved.optimizer,
    timings: {
      engineSeconds: (performance.now() - solved.start) / 1000,
      solveSeconds: solved.solveSeconds,
      metricsSeconds: (performance.now() - metricsStart) / 1000,
      attackSeconds: attacks.seconds,
    },
    warnings: [],
    openblasCore: openblasCore(),
  };
  const metrics = sanitize(raw, warnings, reasons);
  metrics.warnings = warnings;
  const kappaSteps = solved.history.map((h) => ({ step: h.step, benign: h.kappaBenign, harmful: h.kappaHarmful, seconds: h.seconds }));
  const curves: Curves = sanitize(curvesOf(spectra, kappaSteps, attacks.outcomes), []);
  observe?.({ phase: 'done' });
  return { theta, head: compensatedHead(prep, theta), metrics, curves };
}

/**
 * The best benign probe before and after θ, and how closely the compensated head θ⁻¹ω reproduces the original
 * predictions. Predictions on X·θ are taken as X·(θ·w): the same numbers without forming X·θ, which at thousands of
 * rows costs more than everything else here.
 */
function benignQuality(input: EngineInput, prep: Prepared, theta: Mat, statsAfter: SufficientStats, warnings: Warning[]): Metrics['benignQuality'] {
  if (!prep.task || !prep.benignY) {
    warnings.push({ field: 'benignQuality', reason: 'no benign labels, so there is no benign task to score' });
    return { metric: null, before: null, after: null, headMaxDeviation: null };
  }
  const task = prep.task;
  let before: LinearHead;
  let after: LinearHead;
  if (benignProbes.has(prep)) [before, after] = [benignProbes.get(prep)!, fitProbe(statsAfter)];
  else {
    [before, after] = fitProbes([prep.benignStats, statsAfter]);
    benignProbes.set(prep, before);
  }
  const throughTheta = (head: LinearHead): LinearHead => ({ weights: gemm(theta, head.weights), bias: head.bias });
  const p0 = predict(input.benign.X, before);
  const out: Metrics['benignQuality'] = {
    metric: task === 'regression' ? 'mse' : 'accuracy',
    before: score(task, p0, prep.benignY),
    after: score(task, predict(input.benign.X, throughTheta(after)), prep.benignY),
    headMaxDeviation: null,
  };
  const head = compensatedHead(prep, theta);
  if (head) {
    const p1 = predict(input.benign.X, throughTheta(head));
    let dev = 0;
    for (let i = 0; i < p0.data.length; i++) dev = Math.max(dev, Math.abs(p0.data[i] - p1.data[i]));
    out.headMaxDeviation = dev;
  }
  if (input.benignTest) {
    if (!input.benignTest.y) {
      warnings.push({ field: 'benignQuality.test', reason: 'the benign test data has no labels' });
    } else {
      const Yt = encodeTargets(input.benignTest.y, task, prep.classes ?? undefined).Y;
      out.test = score(task, predict(input.benignTest.X, throughTheta(after)), Yt);
    }
  }
  return out;
}

const benignProbes = new WeakMap<Prepared, LinearHead>();

/** The best benign probe on the raw features, fitted once per job. */
function benignProbe(prep: Prepared): LinearHead | null {
  if (!prep.task || !prep.benignY) return null;
  let head = benignProbes.get(prep);
  if (!head) {
    head = fitProbe(prep.benignStats);
    benignProbes.set(prep, head);
  }
  return head;
}

const compensatedHeads = new WeakMap<Prepared, { theta: Mat; head: LinearHead | null }>();

/** θ⁻¹ω: on X·θ it gives the original probe's predictions. Solved once per job and θ. */
function compensatedHead(prep: Prepared, theta: Mat): LinearHead | null {
  const known = compensatedHeads.get(prep);
  if (known?.theta === theta) return known.head;
  const probe = benignProbe(prep);
  let head: LinearHead | null = null;
  if (probe) {
    try {
      head = { weights: gesv(theta, probe.weights), bias: probe.bias };
    } catch {
      head = null;
    }
  }
  compensatedHeads.set(prep, { theta, head });
  return head;
}
