/**
 * The scoring step every mode shares: κ before and after with the ratios (robust and in the paper's convention),
 * the attack simulations on both sides, the verdict, and the curves for the report. Linear-head jobs, evaluate and
 * last-block jobs all end here.
 */
import type { AttackOutcome, AttackSuite } from './attacks.js';
import type { StepObserver } from './progress.js';
import { subsample } from './report.js';
import { conditioningFromSpectrum, conditioningWithRank, kappaPaperFromSpectrum } from './spectrum.js';
import { decideVerdict, type KappaCriterion, type Precision, type Verdict } from './verdict.js';

type Side = 'benign' | 'harmful';

export interface Spectra {
  benign: { before: Float64Array; after: Float64Array };
  harmful: { before: Float64Array; after: Float64Array };
}

type KappaPair = { before: number | null; after: number | null };

export interface ConditioningReport {
  kappa: { benign: KappaPair; harmful: KappaPair };
  benignRatio: number;
  harmfulRatio: number;
  rir: number;
  paperConvention: { rir: number; benignRatio: number; harmfulRatio: number; kappa: { benign: KappaPair; harmful: KappaPair } };
  /** rank(K) on each side before θ: κ after counts that many eigenvalues when `rankAware`. */
  rank: Record<Side, number>;
}

const ratio = (a: number | null, b: number | null) => (a === null || b === null ? NaN : a / b);

/**
 * κ before and after on both sides. With `rankAware`, κ after θ counts rank(K) eigenvalues: θ cannot add rank, and
 * rounding noise in K's null space must not pass for signal.
 */
export function conditioningReport(spectra: Spectra, rtol: number, rankAware = true): ConditioningReport {
  const side = (s: Spectra[Side]) => {
    const before = conditioningFromSpectrum(s.before, rtol);
    const after = rankAware ? conditioningWithRank(s.after, rtol, before.rank) : conditioningFromSpectrum(s.after, rtol);
    const paper = { before: kappaPaperFromSpectrum(s.before), after: kappaPaperFromSpectrum(s.after) };
    return { kappa: { before: before.kappa, after: after.kappa }, paper, rank: before.rank };
  };
  const benign = side(spectra.benign);
  const harmful = side(spectra.harmful);
  const benignRatio = ratio(benign.kappa.after, benign.kappa.before);
  const harmfulRatio = ratio(harmful.kappa.after, harmful.kappa.before);
  const paperBenign = ratio(benign.paper.after, benign.paper.before);
  const paperHarmful = ratio(harmful.paper.after, harmful.paper.before);
  return {
    kappa: { benign: benign.kappa, harmful: harmful.kappa },
    benignRatio,
    harmfulRatio,
    rir: harmfulRatio / benignRatio,
    paperConvention: {
      rir: paperHarmful / paperBenign,
      benignRatio: paperBenign,
      harmfulRatio: paperHarmful,
      kappa: { benign: benign.paper, harmful: harmful.paper },
    },
    rank: { benign: benign.rank, harmful: harmful.rank },
  };
}

/**
 * Runs both sides' attack suites. Their Adam runs (the longest simulations by far) start at once on threads of their
 * own, harmful first, and `meanwhile` runs here while they go. Outcomes are listed benign first.
 */
export function runAttackSuites(
  start: Record<Side, () => AttackSuite>,
  observe?: StepObserver,
  signal?: AbortSignal,
  meanwhile: () => void = () => {},
): { outcomes: AttackOutcome[]; seconds: number } {
  const started = performance.now();
  const suites: Array<[Side, AttackSuite]> = [];
  const outcomes: AttackOutcome[] = [];
  try {
    for (const side of ['harmful', 'benign'] as const) suites.push([side, start[side]()]);
    meanwhile();
    for (const side of ['benign', 'harmful'] as const) outcomes.push(...suites.find(([s]) => s === side)![1].finish(observe, signal));
  } finally {
    // Never leave a simulation running behind a thrown error (a cancelled job, say).
    for (const [, suite] of suites) suite.abandon();
  }
  return { outcomes, seconds: (performance.now() - started) / 1000 };
}

export interface VerdictFields {
  verdict: Verdict;
  verdictReasons: string[];
  kappaCriterion: KappaCriterion;
  verdictNotes: string[];
}

/** The verdict as metrics.json carries it. `rirBound` only when it is a proven bound (a full-rank K_P). */
export function verdictFields(
  c: ConditioningReport,
  rtol: number,
  rirBound: number | null,
  outcomes: AttackOutcome[],
  precision: Precision = 'float64',
): VerdictFields {
  const v = decideVerdict({
    benignRatio: c.benignRatio,
    harmfulRatio: c.harmfulRatio,
    harmfulKappaBefore: c.kappa.harmful.before,
    rtol,
    precision,
    rirBound,
    attacks: outcomes,
  });
  return { verdict: v.verdict, verdictReasons: v.reasons, kappaCriterion: v.kappaCriterion, verdictNotes: v.kappaNote ? [v.kappaNote] : [] };
}

/** metrics.json's rows: each outcome without its curves. */
export function attackRows(outcomes: AttackOutcome[]): Array<Omit<AttackOutcome, 'curveRaw' | 'curveImmunized'>> {
  return outcomes.map(({ curveRaw: _r, curveImmunized: _i, ...rest }) => rest);
}

/** curves.json: both spectra before and after, κ per step, and every attack's curves (subsampled). */
export function curvesOf(
  spectra: Spectra,
  kappaSteps: Array<{ step: number; benign: number; harmful: number; seconds: number }>,
  outcomes: AttackOutcome[],
): {
  spectra: { benign: { before: number[]; after: number[] }; harmful: { before: number[]; after: number[] } };
  kappaSteps: Array<{ step: number; benign: number; harmful: number; seconds: number }>;
  attacks: Array<{ attacker: string; data: string; raw: Array<[number, number]>; immunized: Array<[number, number]> }>;
} {
  return {
    spectra: {
      benign: { before: [...spectra.benign.before], after: [...spectra.benign.after] },
      harmful: { before: [...spectra.harmful.before], after: [...spectra.harmful.after] },
    },
    kappaSteps,
    attacks: outcomes.map((o) => ({ attacker: o.attacker, data: o.data, raw: subsample(o.curveRaw), immunized: subsample(o.curveImmunized) })),
  };
}
