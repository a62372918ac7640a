/**
 * The deep objective, trained with SGD on the tail's variables:
 *   λ_H·R_ill(F_Hᵀ F_H) + λ_P·R_well(F_Pᵀ F_P) + label-smoothed cross-entropy of the original head on benign data.
 * As in the linear engine, each term's gradient is scaled to unit norm before they are summed, so the defaults need
 * no per-dataset tuning of the λ's (which then only weigh the unit directions); the step moves the parameters by
 * `learningRate` (0.2%) times their norm. The spectral feature gradients are projected onto the null space of the
 * head's weights, so that to first order they leave the logits alone.
 *
 * A step is kept only when, on fixed evaluation rows (κ over fixed subsets of 100: the harmful side's geometric mean,
 * the benign side's largest), it raises
 * log κ_H − 2·log κ_P without lifting κ_P above its
 * starting value, without lowering the head's benign accuracy and without raising its cross-entropy by more than
 * 1%; otherwise it is undone and the rate halves (and it grows by half again after a kept step, up to the start)
 * (the linear engine's rule, with the task check added since a trained block, unlike an invertible θ, can lose it).
 */
import type * as TF from '@tensorflow/tfjs';
import { checkAbort, type StepObserver } from '../engine/index.js';
import { uniform } from '../engine/index.js';
import { accuracy, sampleKappa, sampleRows } from './evaluate.js';
import { spectralLoss, type SpectralTiming } from './spectral.js';
import type { TailModel } from './tail.js';
import type { Mat } from '../linalg/types.js';
import type { CutRows } from './cutStore.js';

export interface TrainSet {
  cut: CutRows;
  rows: number;
  /** One row's cut shape, e.g. [C, H, W]. */
  cutShape: number[];
  /** Class indices into the head's outputs, for the task term; absent without labels. */
  labels?: Int32Array;
}

export interface TrainOptions {
  steps: number;
  batchSize: number;
  learningRate: number;
  lambdaHarmful: number;
  lambdaBenign: number;
  lambdaTask: number;
  labelSmoothing: number;
  seed: number;
  /** Rows per side the acceptance rule looks at. */
  evalRows: number;
  /** Stop halving below this rate. */
  minLearningRate: number;
  /** Add the ∓log κ directions to R_ill and R_well (see spectralLoss). */
  logKappa: boolean;
  /** Project the spectral feature gradients onto the head's null space (see headNullProjector). */
  headProjector?: Mat | null;
}

export const TRAIN_DEFAULTS: TrainOptions = {
  steps: 20,
  batchSize: 64,
  learningRate: 0.002,
  lambdaHarmful: 1,
  lambdaBenign: 1,
  lambdaTask: 1,
  labelSmoothing: 0.1,
  seed: 0,
  evalRows: 256,
  minLearningRate: 1e-5,
  logKappa: true,
};

export interface StepTimes {
  /** tfjs forward and backward passes and the update. */
  tfjs: number;
  /** The engine's float64 spectral part (S, eigenpairs, G, 2FG). */
  spectral: number;
  /** Batch gathering, tensors in and out of tfjs. */
  data: number;
}

export interface TrainReport {
  steps: number;
  history: Array<{
    step: number;
    kappaBenign: number | null;
    kappaHarmful: number | null;
    rIll: number;
    rWell: number;
    task: number | null;
    accepted: boolean;
    learningRate: number;
    seconds: number;
  }>;
  accepted: number;
  finalLearningRate: number;
  /** On the evaluation rows: κ's and accuracy at the start and at the end. */
  start: Evaluation;
  end: Evaluation;
  seconds: StepTimes & { total: number };
}

function pick(set: TrainSet, rows: number[]): Float32Array {
  return set.cut.read(rows);
}

function draw(n: number, k: number, next: () => number): number[] {
  if (k >= n) return Array.from({ length: n }, (_, i) => i);
  const chosen = new Set<number>();
  while (chosen.size < k) chosen.add(Math.floor(next() * n));
  return [...chosen];
}

type Grads = Record<string, TF.Tensor>;

export interface Evaluation {
  kappaHarmful: number | null;
  kappaBenign: number | null;
  accuracy: number | null;
  /** Mean cross-entropy of the head against the labels (no smoothing). */
  taskLoss: number | null;
}

function crossEntropy(logits: Float32Array, classes: number, labels: number[]): number {
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[i * classes + c]);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[i * classes + c] - max);
    total += Math.log(sum) + max - logits[i * classes + labels[i]];
  }
  return total / labels.length;
}

/** Features (and logits) of many rows, in chunks, without gradients. */
export function tailOutputs(
  tail: TailModel,
  set: TrainSet,
  rows: number[],
  chunk = 256,
): { features: Float32Array; logits: Float32Array; dim: number; classes: number } {
  const tf = tail.tf;
  const parts: Array<{ f: Float32Array; l: Float32Array; dim: number; classes: number }> = [];
  for (let at = 0; at < rows.length; at += chunk) {
    const part = rows.slice(at, at + chunk);
    parts.push(
      tf.tidy(() => {
        const out = tail.forward(tf.tensor(pick(set, part), [part.length, ...set.cutShape]));
        return {
          f: out.features.dataSync() as Float32Array,
          l: out.logits.dataSync() as Float32Array,
          dim: out.features.shape[1],
          classes: out.logits.shape[1],
        };
      }),
    );
  }
  const dim = parts[0].dim;
  const classes = parts[0].classes;
  const features = new Float32Array(rows.length * dim);
  const logits = new Float32Array(rows.length * classes);
  let r = 0;
  for (const p of parts) {
    features.set(p.f, r * dim);
    logits.set(p.l, r * classes);
    r += p.f.length / dim;
  }
  return { features, logits, dim, classes };
}

/** Random subsets the acceptance rule averages log κ over: one sample's κ hangs on its smallest direction. */
const EVAL_SUBSETS = 10;
const EVAL_SUBSET_ROWS = 100;

/**
 * κ over fixed random subsets of the rows: the geometric mean (harmful side) or the largest (benign side, so that no
 * subset's κ may grow); null when one is undefined.
 */
function subsetKappa(f: Float32Array, rows: number, dim: number, subsets: number[][], how: 'mean' | 'max'): number | null {
  let sum = 0;
  let max = 0;
  for (const s of subsets) {
    const k = sampleKappa({ data: f, rows, dim }, s);
    if (k === null) return null;
    sum += Math.log(k);
    max = Math.max(max, k);
  }
  return how === 'max' ? max : Math.exp(sum / subsets.length);
}

function evaluate(
  tail: TailModel,
  harmful: TrainSet,
  benign: TrainSet,
  hRows: number[],
  bRows: number[],
  subsets: { h: number[][]; b: number[][] },
): Evaluation {
  const h = tailOutputs(tail, harmful, hRows);
  const b = tailOutputs(tail, benign, bRows);
  return {
    kappaHarmful: subsetKappa(h.features, hRows.length, h.dim, subsets.h, 'mean'),
    kappaBenign: subsetKappa(b.features, bRows.length, b.dim, subsets.b, 'max'),
    accuracy: benign.labels
      ? accuracy(
          b.logits,
          b.classes,
          bRows.map((r) => benign.labels![r]),
        )
      : null,
    taskLoss: benign.labels
      ? crossEntropy(
          b.logits,
          b.classes,
          bRows.map((r) => benign.labels![r]),
        )
      : null,
  };
}

function score(e: Evaluation): number {
  if (e.kappaHarmful === null || e.kappaBenign === null) return -Infinity;
  return Math.log(e.kappaHarmful) - 2 * Math.log(e.kappaBenign);
}

/** The benign accuracy a kept step may cost on the evaluation rows (none). */
const ACCURACY_SLACK = 0;
/**
 * How much the head's cross-entropy on the evaluation rows may grow over the run (1%): accuracy on a few hundred
 * rows alone lets steps erode margins that held-out rows then lose.
 */
const TASK_LOSS_SLACK = 1.01;

function acceptable(e: Evaluation, start: Evaluation, best: Evaluation): boolean {
  if (!(score(e) > score(best))) return false;
  if (e.kappaBenign === null || start.kappaBenign === null || e.kappaBenign > start.kappaBenign) return false;
  if (start.taskLoss !== null && (e.taskLoss === null || e.taskLoss > start.taskLoss * TASK_LOSS_SLACK)) return false;
  return start.accuracy === null || (e.accuracy !== null && e.accuracy >= start.accuracy - ACCURACY_SLACK);
}

function globalNorm(tf: typeof import('@tensorflow/tfjs'), g: Grads): number {
  let s = 0;
  for (const t of Object.values(g)) s += tf.tidy(() => tf.sum(tf.square(t)).dataSync()[0]);
  return Math.sqrt(s);
}

/** The two spectral terms, each with the timing its float64 part reports (seconds, and the last κ and value). */
function spectralTerms(tf: TailModel['tf'], opts: TrainOptions) {
  const illTiming: SpectralTiming = { seconds: 0, last: null };
  const ill = spectralLoss(tf, 'ill', illTiming, { withLogKappa: opts.logKappa, projector: opts.headProjector });
  const wellTiming = { seconds: 0, last: null } as SpectralTiming;
  const well = spectralLoss(tf, 'well', wellTiming, { withLogKappa: opts.logKappa, projector: opts.headProjector });
  return { ill, well, illTiming, wellTiming, seconds: () => illTiming.seconds + wellTiming.seconds };
}

type SpectralTerms = ReturnType<typeof spectralTerms>;

/** The fixed rows (and subsets of them) the acceptance rule evaluates every step on. */
interface EvaluationRows {
  h: number[];
  b: number[];
  subsets: { h: number[][]; b: number[][] };
}

function evaluationRows(harmful: TrainSet, benign: TrainSet, opts: TrainOptions): EvaluationRows {
  const h = draw(harmful.rows, opts.evalRows, uniform(opts.seed + 31)).sort((a, b) => a - b);
  const b = draw(benign.rows, opts.evalRows, uniform(opts.seed + 37)).sort((a, b) => a - b);
  const pickSubsets = (n: number, seed: number) => {
    const next = uniform(seed);
    return Array.from({ length: EVAL_SUBSETS }, () => sampleRows(n, Math.min(EVAL_SUBSET_ROWS, n), next));
  };
  return { h, b, subsets: { h: pickSubsets(h.length, opts.seed + 41), b: pickSubsets(b.length, opts.seed + 43) } };
}

interface Batch {
  xH: TF.Tensor;
  xP: TF.Tensor;
  labels: Int32Array | null;
}

function drawBatch(tf: TailModel['tf'], harmful: TrainSet, benign: TrainSet, batchSize: number, next: () => number): Batch {
  const hRows = draw(harmful.rows, batchSize, next);
  const bRows = draw(benign.rows, batchSize, next);
  const xH = tf.tensor(pick(harmful, hRows), [hRows.length, ...harmful.cutShape]);
  const xP = tf.tensor(pick(benign, bRows), [bRows.length, ...benign.cutShape]);
  const labels = benign.labels ? Int32Array.from(bRows, (r) => benign.labels![r]) : null;
  return { xH, xP, labels };
}

interface TermGradients {
  gIll: { value: TF.Scalar; grads: Grads };
  gWell: { value: TF.Scalar; grads: Grads };
  gTask: { value: TF.Scalar; grads: Grads } | null;
}

function termGradients(tail: TailModel, vars: TF.Variable[], spectral: SpectralTerms, batch: Batch, opts: TrainOptions): TermGradients {
  const tf = tail.tf;
  const { xH, xP, labels } = batch;
  const gIll = tf.variableGrads(() => spectral.ill(tail.forward(xH, { headToo: false }).features), vars);
  const gWell = tf.variableGrads(() => spectral.well(tail.forward(xP, { headToo: false }).features), vars);
  let gTask: { value: TF.Scalar; grads: Grads } | null = null;
  if (labels && opts.lambdaTask > 0) {
    gTask = tf.variableGrads(() => {
      const { logits } = tail.forward(xP);
      const onehot = tf.oneHot(tf.tensor1d(labels, 'int32'), logits.shape[1]);
      return tf.losses.softmaxCrossEntropy(onehot, logits, undefined, opts.labelSmoothing) as TF.Scalar;
    }, vars);
  }
  return { gIll, gWell, gTask };
}

/** The λ-weighted sum of the terms' unit-norm gradients, and the parameters' norm the step is scaled by. */
function descentDirection(tf: TailModel['tf'], vars: TF.Variable[], g: TermGradients, opts: TrainOptions) {
  const terms: Array<[Grads, number]> = [
    [g.gIll.grads, opts.lambdaHarmful],
    [g.gWell.grads, opts.lambdaBenign],
  ];
  if (g.gTask) terms.push([g.gTask.grads, opts.lambdaTask]);
  const norms = terms.map(([grads]) => globalNorm(tf, grads));
  const paramNorm = Math.sqrt(vars.reduce((a, v) => a + tf.tidy(() => tf.sum(tf.square(v)).dataSync()[0]), 0));
  const direction: Grads = {};
  tf.tidy(() => {
    for (const v of vars) {
      let d: TF.Tensor = tf.zerosLike(v);
      terms.forEach(([grads, lambda], i) => {
        if (norms[i] > 0 && grads[v.name]) d = tf.add(d, tf.mul(grads[v.name], lambda / norms[i]));
      });
      direction[v.name] = tf.keep(d);
    }
  });
  return { direction, paramNorm };
}

/** Where the run stands: the best evaluation so far, the current rate and the steps kept. */
interface Progress {
  best: Evaluation;
  lr: number;
  accepted: number;
}

interface StepContext {
  tail: TailModel;
  vars: TF.Variable[];
  harmful: TrainSet;
  benign: TrainSet;
  evalRows: EvaluationRows;
  startEval: Evaluation;
  opts: TrainOptions;
}

/** Moves the parameters along the direction and keeps the move only if the acceptance rule allows it; true when kept. */
function tryStep(c: StepContext, progress: Progress, direction: Grads, paramNorm: number): boolean {
  const { tail, vars, opts } = c;
  const tf = tail.tf;
  const dNorm = globalNorm(tf, direction);
  if (!(dNorm > 0 && progress.lr >= opts.minLearningRate)) return false;
  let kept = false;
  const scale = (progress.lr * paramNorm) / dNorm;
  const saved = vars.map((v) => tf.clone(v));
  tf.tidy(() => {
    for (const v of vars) v.assign(tf.sub(v, tf.mul(direction[v.name], scale)));
  });
  const e = evaluate(tail, c.harmful, c.benign, c.evalRows.h, c.evalRows.b, c.evalRows.subsets);
  if (acceptable(e, c.startEval, progress.best)) {
    progress.best = e;
    kept = true;
    progress.accepted++;
    progress.lr = Math.min(opts.learningRate, progress.lr * 1.5);
  } else {
    vars.forEach((v, i) => v.assign(saved[i]));
    progress.lr /= 2;
  }
  for (const t of saved) t.dispose();
  return kept;
}

/** The task term's value, read before the step's gradients and direction are freed. */
function releaseStep(g: TermGradients, direction: Grads): number | null {
  const taskValue = g.gTask ? g.gTask.value.dataSync()[0] : null;
  for (const t of [g.gIll.value, g.gWell.value, g.gTask?.value]) t?.dispose();
  for (const grads of [g.gIll.grads, g.gWell.grads, g.gTask?.grads, direction]) if (grads) for (const t of Object.values(grads)) t.dispose();
  return taskValue;
}

export function trainTail(tail: TailModel, harmful: TrainSet, benign: TrainSet, opts: TrainOptions, observe?: StepObserver, signal?: AbortSignal): TrainReport {
  const tf = tail.tf;
  const next = uniform(opts.seed + 7919);
  const vars = [...tail.variables.values()];
  const spectral = spectralTerms(tf, opts);
  const times: StepTimes = { tfjs: 0, spectral: 0, data: 0 };
  const history: TrainReport['history'] = [];
  const start = performance.now();
  const evalRows = evaluationRows(harmful, benign, opts);
  const startEval = evaluate(tail, harmful, benign, evalRows.h, evalRows.b, evalRows.subsets);
  const progress: Progress = { best: startEval, lr: opts.learningRate, accepted: 0 };
  const context: StepContext = { tail, vars, harmful, benign, evalRows, startEval, opts };
  observe?.({ phase: 'optimize', step: 0, of: opts.steps });
  for (let step = 1; step <= opts.steps; step++) {
    checkAbort(signal);
    const t0 = performance.now();
    const batch = drawBatch(tf, harmful, benign, opts.batchSize, next);
    const t1 = performance.now();
    const spectralBefore = spectral.seconds();

    const grads = termGradients(tail, vars, spectral, batch, opts);
    const { direction, paramNorm } = descentDirection(tf, vars, grads, opts);
    const kept = tryStep(context, progress, direction, paramNorm);
    const taskValue = releaseStep(grads, direction);
    const t2 = performance.now();
    batch.xH.dispose();
    batch.xP.dispose();
    const spectralSeconds = spectral.seconds() - spectralBefore;
    times.data += (t1 - t0) / 1000;
    times.spectral += spectralSeconds;
    times.tfjs += (t2 - t1) / 1000 - spectralSeconds;
    const record = {
      step,
      kappaHarmful: spectral.illTiming.last?.kappa ?? null,
      kappaBenign: spectral.wellTiming.last?.kappa ?? null,
      rIll: spectral.illTiming.last?.value ?? NaN,
      rWell: spectral.wellTiming.last?.value ?? NaN,
      task: taskValue,
      accepted: kept,
      learningRate: progress.lr,
      seconds: (performance.now() - start) / 1000,
    };
    history.push(record);
    observe?.({ phase: 'optimize', step, of: opts.steps, kappaBenign: record.kappaBenign ?? undefined, kappaHarmful: record.kappaHarmful ?? undefined });
  }
  return {
    steps: opts.steps,
    history,
    accepted: progress.accepted,
    finalLearningRate: progress.lr,
    start: startEval,
    end: progress.best,
    seconds: { ...times, total: (performance.now() - start) / 1000 },
  };
}
