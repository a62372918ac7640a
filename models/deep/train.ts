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

export function trainTail(tail: TailModel, harmful: TrainSet, benign: TrainSet, opts: TrainOptions, observe?: StepObserver, signal?: AbortSignal): TrainReport {
  const tf = tail.tf;
  const next = uniform(opts.seed + 7919);
  const vars = [...tail.variables.values()];
  const timing: SpectralTiming = { seconds: 0, last: null };
  const ill = spectralLoss(tf, 'ill', timing, { withLogKappa: opts.logKappa, projector: opts.headProjector });
  const ill2 = { seconds: 0, last: null } as SpectralTiming;
  const well = spectralLoss(tf, 'well', ill2, { withLogKappa: opts.logKappa, projector: opts.headProjector });
  const times: StepTimes = { tfjs: 0, spectral: 0, data: 0 };
  const history: TrainReport['history'] = [];
  const start = performance.now();
  const evalH = draw(harmful.rows, opts.evalRows, uniform(opts.seed + 31)).sort((a, b) => a - b);
  const evalB = draw(benign.rows, opts.evalRows, uniform(opts.seed + 37)).sort((a, b) => a - b);
  const pickSubsets = (n: number, seed: number) => {
    const next = uniform(seed);
    return Array.from({ length: EVAL_SUBSETS }, () => sampleRows(n, Math.min(EVAL_SUBSET_ROWS, n), next));
  };
  const subsets = { h: pickSubsets(evalH.length, opts.seed + 41), b: pickSubsets(evalB.length, opts.seed + 43) };
  const startEval = evaluate(tail, harmful, benign, evalH, evalB, subsets);
  let best = startEval;
  let lr = opts.learningRate;
  let accepted = 0;
  observe?.({ phase: 'optimize', step: 0, of: opts.steps });
  for (let step = 1; step <= opts.steps; step++) {
    checkAbort(signal);
    const t0 = performance.now();
    const hRows = draw(harmful.rows, opts.batchSize, next);
    const bRows = draw(benign.rows, opts.batchSize, next);
    const xH = tf.tensor(pick(harmful, hRows), [hRows.length, ...harmful.cutShape]);
    const xP = tf.tensor(pick(benign, bRows), [bRows.length, ...benign.cutShape]);
    const labels = benign.labels ? Int32Array.from(bRows, (r) => benign.labels![r]) : null;
    const t1 = performance.now();
    const spectralBefore = timing.seconds + ill2.seconds;

    const gIll = tf.variableGrads(() => ill(tail.forward(xH, { headToo: false }).features), vars);
    const gWell = tf.variableGrads(() => well(tail.forward(xP, { headToo: false }).features), vars);
    let gTask: { value: TF.Scalar; grads: Grads } | null = null;
    if (labels && opts.lambdaTask > 0) {
      gTask = tf.variableGrads(() => {
        const { logits } = tail.forward(xP);
        const onehot = tf.oneHot(tf.tensor1d(labels, 'int32'), logits.shape[1]);
        return tf.losses.softmaxCrossEntropy(onehot, logits, undefined, opts.labelSmoothing) as TF.Scalar;
      }, vars);
    }
    const terms: Array<[Grads, number]> = [
      [gIll.grads, opts.lambdaHarmful],
      [gWell.grads, opts.lambdaBenign],
    ];
    if (gTask) terms.push([gTask.grads, opts.lambdaTask]);
    const norms = terms.map(([g]) => globalNorm(tf, g));
    const paramNorm = Math.sqrt(vars.reduce((a, v) => a + tf.tidy(() => tf.sum(tf.square(v)).dataSync()[0]), 0));
    const direction: Grads = {};
    tf.tidy(() => {
      for (const v of vars) {
        let d: TF.Tensor = tf.zerosLike(v);
        terms.forEach(([g, lambda], i) => {
          if (norms[i] > 0 && g[v.name]) d = tf.add(d, tf.mul(g[v.name], lambda / norms[i]));
        });
        direction[v.name] = tf.keep(d);
      }
    });
    const dNorm = globalNorm(tf, direction);
    let kept = false;
    if (dNorm > 0 && lr >= opts.minLearningRate) {
      const scale = (lr * paramNorm) / dNorm;
      const saved = vars.map((v) => tf.clone(v));
      tf.tidy(() => {
        for (const v of vars) v.assign(tf.sub(v, tf.mul(direction[v.name], scale)));
      });
      const e = evaluate(tail, harmful, benign, evalH, evalB, subsets);
      if (acceptable(e, startEval, best)) {
        best = e;
        kept = true;
        accepted++;
        lr = Math.min(opts.learningRate, lr * 1.5);
      } else {
        vars.forEach((v, i) => v.assign(saved[i]));
        lr /= 2;
      }
      for (const t of saved) t.dispose();
    }
    const taskValue = gTask ? gTask.value.dataSync()[0] : null;
    for (const t of [gIll.value, gWell.value, gTask?.value]) t?.dispose();
    for (const g of [gIll.grads, gWell.grads, gTask?.grads, direction]) if (g) for (const t of Object.values(g)) t.dispose();
    const t2 = performance.now();
    xH.dispose();
    xP.dispose();
    const spectral = timing.seconds + ill2.seconds - spectralBefore;
    times.data += (t1 - t0) / 1000;
    times.spectral += spectral;
    times.tfjs += (t2 - t1) / 1000 - spectral;
    const record = {
      step,
      kappaHarmful: timing.last?.kappa ?? null,
      kappaBenign: ill2.last?.kappa ?? null,
      rIll: timing.last?.value ?? NaN,
      rWell: ill2.last?.value ?? NaN,
      task: taskValue,
      accepted: kept,
      learningRate: lr,
      seconds: (performance.now() - start) / 1000,
    };
    history.push(record);
    observe?.({ phase: 'optimize', step, of: opts.steps, kappaBenign: record.kappaBenign ?? undefined, kappaHarmful: record.kappaHarmful ?? undefined });
  }
  return {
    steps: opts.steps,
    history,
    accepted,
    finalLearningRate: lr,
    start: startEval,
    end: best,
    seconds: { ...times, total: (performance.now() - start) / 1000 },
  };
}
