/**
 * A last-block job: images → trunk (onnxruntime, once) → tail trained in tfjs with the float64 spectral terms →
 * immunized.onnx (the original graph with the tail's trained initializers) checked against the tfjs tail → the
 * paper's deep-mode metrics over random draws, the head's benign accuracy and the attack simulation.
 */
import { readFile } from 'node:fs/promises';
import { startAttackSuite } from '../engine/index.js';
import type { Curves, Metrics } from '../engine/index.js';
import { uniform } from '../engine/index.js';
import { checkAbort, type StepObserver } from '../engine/index.js';
import { sanitize, type Warning } from '../engine/index.js';
import { attackRows, conditioningReport, curvesOf, runAttackSuites, verdictFields, type Spectra } from '../engine/index.js';
import { statsOf } from '../engine/index.js';
import { encodeTargets, gaussianTargets, inferTask } from '../engine/index.js';
import { fsError } from '../io/index.js';
import { openblasCore, syevr, syrk } from '../linalg/index.js';
import { keepFreedMemory } from '../linalg/tfKernels.js';
import type { Mat } from '../linalg/types.js';
import { OnnxGraph } from '../backbones/graph.js';
import { openImages, type ImageSource, type InputGeometry, type PreprocessSpec } from '../backbones/images.js';
import { readLabelFile } from '../backbones/labels.js';
import { createSession, loadOrt, type RuntimeOptions } from '../backbones/runtime.js';
import { BackboneError } from '../backbones/errors.js';
import { FAST_BACKEND_ADVICE, selectBackend, type TfBackend } from './backend.js';
import { DeepError } from './errors.js';
import { describeSeconds, estimateStep, measureRate, tailFlops, type StepEstimate } from './estimate.js';
import { accuracy, drawRatios, float32Rtol, sampleRows, type DrawSummary } from './evaluate.js';
import { planTail, type TailPlan } from './split.js';
import { TailModel } from './tail.js';
import { headNullProjector } from './spectral.js';
import { tailOutputs, trainTail, TRAIN_DEFAULTS, type Evaluation, type TrainReport, type TrainSet } from './train.js';
import { Trunk, tailShapes, withInitializers, type Activations } from './trunk.js';
import { cutSubset, type CutRows } from './cutStore.js';

export interface ImageSetRef {
  images: string;
  labels?: string;
  limit?: number;
}

export interface DeepInput {
  backbone: string;
  benign: ImageSetRef;
  harmful: ImageSetRef;
  benignTest?: ImageSetRef;
  preprocess?: PreprocessSpec;
}

export interface DeepOptions {
  cutTensor?: string;
  featureTensor?: string;
  steps?: number;
  seed?: number;
  batchSize?: number;
  learningRate?: number;
  lambdaBenign?: number;
  lambdaHarmful?: number;
  /** Run even when the estimate exceeds the time budget. */
  allowSlowBackend?: boolean;
  /** Seconds the whole training may take by the estimate (default 1800). */
  timeBudgetSeconds?: number;
  kappaBudget?: number;
  /** Cut activations above this many bytes go to a temporary file (default 2 GiB). */
  activationMemoryBytes?: number;
  /** Restrict the backend search (tests). */
  backends?: Array<TfBackend['name']>;
  draws?: number;
  sampleSize?: number;
  runtime?: RuntimeOptions;
}

export const DEEP_DEFAULTS = { steps: 20, timeBudgetSeconds: 1800, draws: 20, sampleSize: 100 };

/** Relative float32 agreement the exported checkpoint must reach against the tfjs tail. */
export const TAIL_FEATURE_TOLERANCE = 1e-4;
const CHECK_ROWS = 16;
const HOLD_OUT_EVERY = 5;

export interface DeepMetricsExtra {
  mode: 'last-block';
  deep: {
    draws: number;
    sampleSize: number;
    /** The eigenvalue threshold κ counts above, relative to λ_max ((D·2⁻²³)²: float32 features). */
    rtol: number;
    rir: { mean: number; std: number };
    harmfulRatio: { mean: number; std: number };
    benignRatio: { mean: number; std: number };
    benignAccuracy: { before: number | null; after: number | null; rows: number; heldOut: 'benignTest' | 'a random fifth of the benign images' | null };
    distributions: { rir: number[]; harmfulRatio: number[]; benignRatio: number[] };
    fullData: { harmfulRatio: number; benignRatio: number };
    cut: { tensor: string; source: 'auto' | 'spec'; shape: number[]; tail: string; ops: string[]; trainable: string[]; parameters: number };
    features: { tensor: string; dim: number };
    /** Where the cut activations were kept between the trunk and training. */
    activations: 'memory' | 'disk';
    training: {
      steps: number;
      accepted: number;
      batchSize: number;
      learningRate: number;
      finalLearningRate: number;
      evaluation: { start: Evaluation; end: Evaluation };
    };
    estimate: StepEstimate & { steps: number; totalSeconds: number; budgetSeconds: number };
    stepSeconds: { mean: number; tfjs: number; spectral: number; data: number };
  };
  checkpoint: { maxTailFeatureDiff: number; relTailFeatureDiff: number; rows: number; passed: boolean; seconds: number };
  tfjsBackend: string;
  tfjsBackendNote: string;
  executionProvider: 'cpu' | 'cuda';
}

export type DeepMetrics = Metrics & DeepMetricsExtra;

export interface DeepResult {
  metrics: DeepMetrics;
  curves: Curves;
  onnx: Uint8Array;
}

interface LoadedSet {
  source: ImageSource;
  labels?: Float64Array;
}

function geometryOf(graph: OnnxGraph): InputGeometry {
  const s = graph.input().shape;
  const fixed = (d: number | string | null | undefined) => (typeof d === 'number' && d > 0 ? d : null);
  return { channels: fixed(s?.[1]), height: fixed(s?.[2]), width: fixed(s?.[3]) };
}

async function openSet(ref: ImageSetRef, geometry: InputGeometry, preprocess?: PreprocessSpec): Promise<LoadedSet> {
  const source = await openImages(ref.images, geometry, { preprocess, limit: ref.limit });
  let labels = source.labels;
  if (ref.labels) {
    const y = await readLabelFile(ref.labels);
    if (y.length < source.count)
      throw new BackboneError('LABELS', `${ref.labels}: ${y.length} labels for ${source.count} images in ${ref.images}; expected one label per image`);
    labels = y.slice(0, source.count);
  }
  return { source, labels };
}

function classIndices(labels: Float64Array, classes: number, what: string): Int32Array {
  return Int32Array.from(labels, (v, i) => {
    if (!Number.isInteger(v) || v < 0 || v >= classes) {
      throw new DeepError(
        'LABELS',
        `${what}: label ${v} at row ${i} is not a class index of the model's head (0…${classes - 1}); last-block mode trains through the original head, so labels must be its class indices`,
      );
    }
    return v;
  });
}

/** Some rows of the activations: a view on the cut, copies of the (small) features and logits. */
type ActivationRows = Omit<Activations, 'cut'> & { cut: CutRows };

function subset(a: ActivationRows, rows: number[]): ActivationRows {
  const features = new Float32Array(rows.length * a.dim);
  const logits = new Float32Array(rows.length * a.classes);
  rows.forEach((r, i) => {
    features.set(a.features.subarray(r * a.dim, (r + 1) * a.dim), i * a.dim);
    logits.set(a.logits.subarray(r * a.classes, (r + 1) * a.classes), i * a.classes);
  });
  return { ...a, rows: rows.length, cut: cutSubset(a.cut, rows), features, logits };
}

type HeldOut = { acts: ActivationRows; labels: Int32Array; from: DeepMetricsExtra['deep']['benignAccuracy']['heldOut'] };

/**
 * The benign labels as class indices, and the rows that train the tail against those held out for the accuracy
 * check: the benign test set when it has labels, otherwise a seeded random fifth of the benign images.
 */
function splitBenign(
  input: DeepInput,
  sets: Record<'benign' | 'harmful' | 'benignTest', LoadedSet | undefined>,
  acts: Partial<Record<'benign' | 'harmful' | 'benignTest', Activations>>,
  seed: number,
): { benignLabels?: Int32Array; benignTrain: ActivationRows; trainLabels?: Int32Array; heldOut: HeldOut | null } {
  const benignAll = acts.benign!;
  const classes = benignAll.classes;
  const benignLabels = sets.benign!.labels ? classIndices(sets.benign!.labels, classes, input.benign.labels ?? input.benign.images) : undefined;
  let trainRows = Array.from({ length: benignAll.rows }, (_, i) => i);
  let heldOut: HeldOut | null = null;
  if (acts.benignTest && sets.benignTest?.labels && input.benignTest) {
    heldOut = {
      acts: acts.benignTest,
      labels: classIndices(sets.benignTest.labels, classes, input.benignTest.labels ?? input.benignTest.images),
      from: 'benignTest',
    };
  } else if (benignLabels && benignAll.rows >= 2 * HOLD_OUT_EVERY) {
    // A seeded random fifth: a regular stride could line up with the order of the classes in the file.
    const held = sampleRows(benignAll.rows, Math.floor(benignAll.rows / HOLD_OUT_EVERY), uniform(seed + 17));
    const isHeld = new Set(held);
    trainRows = trainRows.filter((r) => !isHeld.has(r));
    heldOut = { acts: subset(benignAll, held), labels: Int32Array.from(held, (r) => benignLabels[r]), from: 'a random fifth of the benign images' };
  }
  const trainLabels = benignLabels ? Int32Array.from(trainRows, (r) => benignLabels[r]) : undefined;
  return { benignLabels, benignTrain: subset(benignAll, trainRows), trainLabels, heldOut };
}

/** Reads the backbone, plans the tail (the block to train) and picks the tfjs backend. */
async function openBackbone(input: DeepInput, opts: DeepOptions, observe: StepObserver | undefined, log: (message: string) => void) {
  observe?.({ phase: 'load', message: 'loading the backbone' });
  let bytes: Buffer;
  try {
    bytes = await readFile(input.backbone);
  } catch (err) {
    throw fsError(err, input.backbone, 'an .onnx backbone');
  }
  const graph = OnnxGraph.parse(bytes, input.backbone);
  const plan = planTail(graph, { cutTensor: opts.cutTensor, featureTensor: opts.featureTensor });
  log(`last block: ${plan.description}`);
  const backend = await selectBackend({ kernels: kernelsFor(plan.ops), only: opts.backends, log });
  return { graph, plan, backend, hasConv: plan.ops.includes('Conv') };
}

/** The trunk (onnxruntime) once per image of each set, its activations at the cut kept in memory or on disk. */
async function runTrunk(
  trunk: Trunk,
  sets: Record<'benign' | 'harmful' | 'benignTest', LoadedSet | undefined>,
  opts: DeepOptions,
  observe?: StepObserver,
  signal?: AbortSignal,
): Promise<Partial<Record<'benign' | 'harmful' | 'benignTest', Activations>>> {
  const acts: Partial<Record<'benign' | 'harmful' | 'benignTest', Activations>> = {};
  const totalImages = Object.values(sets).reduce((a, s) => a + (s ? s.source.count : 0), 0);
  let done = 0;
  try {
    for (const role of ['benign', 'harmful', 'benignTest'] as const) {
      const set = sets[role];
      if (!set) continue;
      checkAbort(signal);
      const before = done;
      acts[role] = await trunk.run(set.source, {
        signal,
        memoryBytes: opts.activationMemoryBytes,
        progress: (n) => observe?.({ phase: 'statistics', step: before + n, of: totalImages, message: `trunk ${role}` }),
      });
      done += set.source.count;
    }
  } catch (err) {
    for (const a of Object.values(acts)) a?.cut.close();
    throw err;
  }
  return acts;
}

/**
 * The training time, estimated from one image's tail FLOPs and a measured kernel rate; a job over its budget is
 * refused before the trunk runs, unless allowSlowBackend says to go on.
 */
async function estimateOrRefuse(
  input: DeepInput,
  opts: DeepOptions,
  job: {
    graph: OnnxGraph;
    plan: TailPlan;
    backend: Awaited<ReturnType<typeof selectBackend>>;
    hasConv: boolean;
    sets: { benign: LoadedSet; harmful: LoadedSet };
    steps: number;
    batchSize: number;
    log: (message: string) => void;
  },
): Promise<{ estimate: StepEstimate; total: number; budget: number }> {
  const { graph, plan, backend, sets, steps, batchSize } = job;
  const src = sets.benign.source;
  const imageShape = [1, src.channels, src.height, src.width];
  const one = await src.read(0, 1, new Float32Array(src.channels * src.height * src.width));
  const shapes = await tailShapes(graph, plan, one, imageShape, { ...opts.runtime, executionProvider: 'cpu' });
  // Batches and evaluation rows are capped by the smaller image set.
  const fewest = Math.min(sets.benign.source.count, sets.harmful.source.count);
  const estimate = estimateStep(
    tailFlops(plan, shapes),
    Math.min(batchSize, fewest),
    Math.min(TRAIN_DEFAULTS.evalRows, fewest),
    measureRate(backend, job.hasConv),
  );
  const budget = opts.timeBudgetSeconds ?? DEEP_DEFAULTS.timeBudgetSeconds;
  const total = estimate.stepSeconds * steps;
  const estimateText =
    `estimated ${describeSeconds(estimate.stepSeconds)} per step × ${steps} steps = ${describeSeconds(total)} on the ${backend.name} backend ` +
    `(${(estimate.flopsPerStep / 1e9).toFixed(1)} GFLOP per step at a measured ${(estimate.rate / 1e9).toFixed(2)} GFLOP/s, ${estimate.kernel})`;
  job.log(estimateText);
  if (total > budget && !opts.allowSlowBackend) {
    throw new DeepError(
      'SLOW_BACKEND',
      `${input.backbone}: this last-block job is too slow for the ${backend.name} backend: ${estimateText}, over the ${describeSeconds(budget)} budget. ` +
        (backend.native ? 'Use a faster GPU, fewer steps or a later cut tensor' : FAST_BACKEND_ADVICE) +
        '; or run it anyway with allowSlowBackend (--allow-slow-backend).',
    );
  }
  return { estimate, total, budget };
}

/**
 * Runs immunized.onnx (the graph with the trained initializers) on the first benign images in onnxruntime and
 * compares its features with the tfjs tail's.
 */
async function checkExportedTail(
  opts: DeepOptions,
  job: { graph: OnnxGraph; plan: TailPlan; tail: TailModel; benign: ActivationRows; checkImages: Float32Array; source: ImageSource },
): Promise<{ onnx: Uint8Array; checkpoint: DeepMetricsExtra['checkpoint'] }> {
  const { graph, plan, tail, source: src } = job;
  const checkStart = performance.now();
  const trained = tail.trainedValues();
  const onnx = withInitializers(graph, trained);
  const checkModel = withInitializers(graph, trained, [plan.features]);
  const ort = await loadOrt();
  const rowsChecked = job.checkImages.length / (src.channels * src.height * src.width);
  let exported: Float32Array;
  const session = await createSession(checkModel, { ...opts.runtime, executionProvider: 'cpu' });
  try {
    const out = await session.session.run(
      { [graph.input().name]: new ort.Tensor('float32', job.checkImages, [rowsChecked, src.channels, src.height, src.width]) },
      [plan.features],
    );
    exported = Float32Array.from(out[plan.features].data as Float32Array);
  } finally {
    await session.session.release();
  }
  const all = Array.from({ length: rowsChecked }, (_, i) => i);
  const reference = tailOutputs(tail, { cut: job.benign.cut, rows: job.benign.rows, cutShape: job.benign.cutShape }, all).features;
  let maxDiff = 0;
  let scale = 0;
  for (let i = 0; i < reference.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(reference[i] - exported[i]));
    scale = Math.max(scale, Math.abs(reference[i]));
  }
  const relDiff = scale > 0 ? maxDiff / scale : maxDiff;
  return {
    onnx,
    checkpoint: {
      maxTailFeatureDiff: maxDiff,
      relTailFeatureDiff: relDiff,
      rows: rowsChecked,
      passed: relDiff <= TAIL_FEATURE_TOLERANCE,
      seconds: (performance.now() - checkStart) / 1000,
    },
  };
}

/**
 * The shared scoring step on the full-data features before and after the trained tail: κ (as float32 features allow,
 * no rank rule), linear probing by every attacker on both sides, and the verdict's κ and attacker criteria (on the
 * draws' mean ratios, the paper's protocol).
 */
function scoreTail(
  features: { benign: { before: Mat; after: Mat }; harmful: { before: Mat; after: Mat } },
  targets: { benign: Mat; harmful: Mat },
  ratios: { benign: number; harmful: number },
  observe?: StepObserver,
  signal?: AbortSignal,
) {
  const D = features.benign.before.cols;
  const rtol = float32Rtol(D);
  const spectra: Spectra = {
    benign: { before: spectrumOf(features.benign.before), after: spectrumOf(features.benign.after) },
    harmful: { before: spectrumOf(features.harmful.before), after: spectrumOf(features.harmful.after) },
  };
  const conditioning = conditioningReport(spectra, rtol, false);
  observe?.({ phase: 'attacks' });
  const side = (data: 'benign' | 'harmful') => () =>
    startAttackSuite(data, statsOf(features[data].before, targets[data]), statsOf(features[data].after, targets[data]));
  const attacks = runAttackSuites({ benign: side('benign'), harmful: side('harmful') }, observe, signal);
  const verdict = verdictFields({ ...conditioning, benignRatio: ratios.benign, harmfulRatio: ratios.harmful }, rtol, null, attacks.outcomes, 'float32');
  return { rtol, spectra, conditioning, attacks, verdict };
}

function asMat(data: ArrayLike<number>, rows: number, dim: number): Mat {
  return { rows, cols: dim, data: Float64Array.from(data) };
}

function spectrumOf(X: Mat): Float64Array {
  return syevr(syrk(X), { vectors: false }).values;
}

export async function runDeep(input: DeepInput, opts: DeepOptions = {}, observe?: StepObserver, signal?: AbortSignal): Promise<DeepResult> {
  const started = performance.now();
  const log = (message: string) => observe?.({ phase: 'load', message });
  const { graph, plan, backend, hasConv } = await openBackbone(input, opts, observe, log);

  const geometry = geometryOf(graph);
  const sets: Record<'benign' | 'harmful' | 'benignTest', LoadedSet | undefined> = { benign: undefined, harmful: undefined, benignTest: undefined };
  const trunk = await Trunk.open(graph, plan, { ...opts.runtime, log });
  const acts: Partial<Record<'benign' | 'harmful' | 'benignTest', Activations>> = {};
  const letGoOfMemory = keepFreedMemory();
  try {
    sets.benign = await openSet(input.benign, geometry, input.preprocess);
    sets.harmful = await openSet(input.harmful, geometry, input.preprocess);
    if (input.benignTest) sets.benignTest = await openSet(input.benignTest, geometry, input.preprocess);

    // The estimate comes first, from one image: a job that would take hours is refused before the trunk runs.
    const src = sets.benign.source;
    const steps = opts.steps ?? DEEP_DEFAULTS.steps;
    const batchSize = opts.batchSize ?? TRAIN_DEFAULTS.batchSize;
    const { estimate, total, budget } = await estimateOrRefuse(input, opts, {
      graph,
      plan,
      backend,
      hasConv,
      sets: { benign: sets.benign, harmful: sets.harmful },
      steps,
      batchSize,
      log,
    });

    // The trunk, once per image.
    Object.assign(acts, await runTrunk(trunk, sets, opts, observe, signal));
    const checkImages = await readCheckImages(src);
    const benignAll = acts.benign!;
    const harmful = acts.harmful!;
    if (harmful.dim !== benignAll.dim) throw new DeepError('TAIL_SHAPE', `harmful features are ${harmful.dim} wide, benign ${benignAll.dim}`);

    // Labels and the held-out benign rows for the accuracy check.
    const warnings: Warning[] = [];
    const split = splitBenign(input, sets, acts, opts.seed ?? 0);
    if (!split.benignLabels) warnings.push({ field: 'deep.benignAccuracy', reason: 'no benign labels: no task term in training and no accuracy to report' });

    const tail = new TailModel(backend.tf, plan);
    try {
      return await trainAndReport({
        opts,
        started,
        graph,
        plan,
        backend,
        trunk,
        acts,
        benignAll,
        harmful,
        harmfulLabels: sets.harmful.labels,
        split,
        tail,
        source: src,
        checkImages,
        steps,
        batchSize,
        estimate,
        total,
        budget,
        warnings,
        observe,
        signal,
      });
    } finally {
      tail.dispose();
    }
  } finally {
    letGoOfMemory();
    for (const a of Object.values(acts)) a?.cut.close();
    await trunk.close();
    await Promise.all(Object.values(sets).map((s) => s?.source.close().catch(() => undefined)));
  }
}

/** The first benign images, which immunized.onnx is checked on. */
async function readCheckImages(src: ImageSource): Promise<Float32Array> {
  return src.read(0, Math.min(CHECK_ROWS, src.count), new Float32Array(Math.min(CHECK_ROWS, src.count) * src.channels * src.height * src.width));
}

/** What the phases after the trunk share. */
interface TrainedJob {
  opts: DeepOptions;
  /** performance.now() when the job started, for engineSeconds. */
  started: number;
  graph: OnnxGraph;
  plan: TailPlan;
  backend: Awaited<ReturnType<typeof selectBackend>>;
  trunk: Trunk;
  acts: Partial<Record<'benign' | 'harmful' | 'benignTest', Activations>>;
  benignAll: Activations;
  harmful: Activations;
  harmfulLabels?: Float64Array;
  split: ReturnType<typeof splitBenign>;
  tail: TailModel;
  source: ImageSource;
  checkImages: Float32Array;
  steps: number;
  batchSize: number;
  estimate: StepEstimate;
  total: number;
  budget: number;
  warnings: Warning[];
  observe?: StepObserver;
  signal?: AbortSignal;
}

function trainSet(a: ActivationRows, labels?: Int32Array): TrainSet {
  return { cut: a.cut, rows: a.rows, cutShape: a.cutShape, labels };
}

function allRows(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Trains the tail, checks the exported checkpoint and scores the trained block: the job's metrics, curves and immunized.onnx. */
async function trainAndReport(job: TrainedJob): Promise<DeepResult> {
  const { opts, graph, plan, tail, harmful, warnings, observe, signal } = job;
  const { benignLabels, benignTrain, trainLabels, heldOut } = job.split;
  const trainH = trainSet(harmful);
  const headProjector = benignLabels ? headNullProjector(headWeights(graph, plan, job.benignAll.dim)) : null;
  const report = trainBlock(
    tail,
    trainH,
    trainSet(benignTrain, trainLabels),
    { opts, steps: job.steps, batchSize: job.batchSize, headProjector },
    observe,
    signal,
  );

  // New features for every row, through the trained tail.
  observe?.({ phase: 'evaluate', message: 'features through the trained block' });
  const after = {
    benign: tailOutputs(tail, trainSet(benignTrain), allRows(benignTrain.rows)).features,
    harmful: tailOutputs(tail, trainH, allRows(harmful.rows)).features,
  };

  const { onnx, checkpoint } = await checkCheckpoint(job);
  const draws = kappaDraws(job, after);
  const acc = heldOutAccuracy(tail, heldOut, job.benignAll.classes);

  // Full-data spectra, and linear probing on the old and the new features.
  const metricsStart = performance.now();
  const scored = scoreFullData(job, after, draws);
  const reasons = verdictReasons(scored.verdict.verdictReasons, acc, checkpoint);
  const raw = deepMetrics(job, { metricsStart, draws, scored, acc, reasons, report, checkpoint });
  const metrics = sanitize(raw, warnings);
  metrics.warnings = warnings;
  const kappaSteps = report.history.map((h) => ({ step: h.step, benign: h.kappaBenign ?? NaN, harmful: h.kappaHarmful ?? NaN, seconds: h.seconds }));
  const curves: Curves = sanitize(curvesOf(scored.spectra, kappaSteps, scored.attacks.outcomes), []);
  observe?.({ phase: 'done' });
  return { metrics, curves, onnx };
}

/** The exported checkpoint, checked on the first benign images against the tfjs tail; a mismatch is a warning. */
async function checkCheckpoint(job: TrainedJob): Promise<{ onnx: Uint8Array; checkpoint: DeepMetricsExtra['checkpoint'] }> {
  checkAbort(job.signal);
  job.observe?.({ phase: 'evaluate', message: 'checking immunized.onnx against the trained block' });
  const { graph, plan, tail, benignAll, checkImages, source } = job;
  const result = await checkExportedTail(job.opts, { graph, plan, tail, benign: benignAll, checkImages, source });
  if (!result.checkpoint.passed) {
    job.warnings.push({
      field: 'checkpoint',
      reason: `immunized.onnx's features differ from the trained block's by ${result.checkpoint.relTailFeatureDiff.toExponential(2)} (relative), beyond float32 rounding`,
    });
  }
  return result;
}

/** The paper's protocol: κ ratios over random draws of k rows, same rows before and after. */
function kappaDraws(job: TrainedJob, after: { benign: Float32Array; harmful: Float32Array }): DrawSummary {
  const { opts, harmful } = job;
  const { benignTrain } = job.split;
  const D = job.benignAll.dim;
  job.observe?.({ phase: 'evaluate', message: 'κ ratios over random draws' });
  return drawRatios(
    { benign: { data: benignTrain.features, rows: benignTrain.rows, dim: D }, harmful: { data: harmful.features, rows: harmful.rows, dim: D } },
    { benign: { data: after.benign, rows: benignTrain.rows, dim: D }, harmful: { data: after.harmful, rows: harmful.rows, dim: D } },
    { draws: opts.draws ?? DEEP_DEFAULTS.draws, sampleSize: opts.sampleSize ?? DEEP_DEFAULTS.sampleSize, seed: opts.seed ?? 0 },
  );
}

type HeldOutAccuracy = { before: number | null; after: number | null };

/** Benign accuracy of the original head on held-out rows, before and after. */
function heldOutAccuracy(tail: TailModel, heldOut: HeldOut | null, classes: number): HeldOutAccuracy {
  if (!heldOut) return { before: null, after: null };
  const before = accuracy(heldOut.acts.logits, classes, heldOut.labels);
  const after = tailOutputs(tail, trainSet(heldOut.acts), allRows(heldOut.acts.rows));
  return { before, after: accuracy(after.logits, classes, heldOut.labels) };
}

/** scoreTail on the full-data features, with the labels' targets (seeded Gaussian ones without labels). */
function scoreFullData(job: TrainedJob, after: { benign: Float32Array; harmful: Float32Array }, draws: DrawSummary) {
  const { opts, harmful, harmfulLabels } = job;
  const { benignTrain, trainLabels } = job.split;
  const D = job.benignAll.dim;
  const task = trainLabels ? inferTask(Float64Array.from(trainLabels)) : null;
  const targetsFor = (labels: Float64Array | undefined, n: number, seed: number) =>
    labels && task ? encodeTargets(labels, inferTask(labels)).Y : gaussianTargets(n, seed);
  const scored = scoreTail(
    {
      benign: { before: asMat(benignTrain.features, benignTrain.rows, D), after: asMat(after.benign, benignTrain.rows, D) },
      harmful: { before: asMat(harmful.features, harmful.rows, D), after: asMat(after.harmful, harmful.rows, D) },
    },
    {
      benign: targetsFor(trainLabels ? Float64Array.from(trainLabels) : undefined, benignTrain.rows, (opts.seed ?? 0) + 1),
      harmful: targetsFor(harmfulLabels, harmful.rows, (opts.seed ?? 0) + 2),
    },
    { benign: draws.benignRatio.mean, harmful: draws.harmfulRatio.mean },
    job.observe,
    job.signal,
  );
  if (!harmfulLabels) job.warnings.push({ field: 'attacks', reason: 'harmful data has no labels: attacks use seeded Gaussian targets' });
  return { task, ...scored };
}

/** The scoring's reasons, plus a fall in held-out accuracy and a checkpoint that does not reproduce the block. */
function verdictReasons(scoring: string[], acc: HeldOutAccuracy, checkpoint: DeepMetricsExtra['checkpoint']): string[] {
  const reasons = [...scoring];
  if (acc.before !== null && acc.after !== null && acc.after < acc.before - 0.01)
    reasons.push(`benign accuracy of the original head fell from ${acc.before.toFixed(3)} to ${acc.after.toFixed(3)}`);
  if (!checkpoint.passed) reasons.push('immunized.onnx does not reproduce the trained block');
  return reasons;
}

/** The tail's training, with the job's options over the defaults. */
function trainBlock(
  tail: TailModel,
  harmful: TrainSet,
  benign: TrainSet,
  o: { opts: DeepOptions; steps: number; batchSize: number; headProjector: ReturnType<typeof headNullProjector> | null },
  observe?: StepObserver,
  signal?: AbortSignal,
): TrainReport {
  const { opts } = o;
  return trainTail(
    tail,
    harmful,
    benign,
    {
      ...TRAIN_DEFAULTS,
      steps: o.steps,
      batchSize: o.batchSize,
      learningRate: opts.learningRate ?? TRAIN_DEFAULTS.learningRate,
      lambdaBenign: opts.lambdaBenign ?? TRAIN_DEFAULTS.lambdaBenign,
      lambdaHarmful: opts.lambdaHarmful ?? TRAIN_DEFAULTS.lambdaHarmful,
      seed: opts.seed ?? 0,
      headProjector: o.headProjector,
    },
    observe,
    signal,
  );
}

/** What the phases after training produced, for metrics.json. */
interface TrainedOutcome {
  /** performance.now() when the full-data scoring began, for metricsSeconds. */
  metricsStart: number;
  draws: DrawSummary;
  scored: ReturnType<typeof scoreFullData>;
  acc: HeldOutAccuracy;
  reasons: string[];
  report: TrainReport;
  checkpoint: DeepMetricsExtra['checkpoint'];
}

/** metrics.json of a last-block job, from the pieces its phases produced. */
function deepMetrics(job: TrainedJob, r: TrainedOutcome): DeepMetrics {
  const { opts, harmful } = job;
  const { benignTrain, heldOut } = job.split;
  const { draws, report, reasons, acc } = r;
  const { task, conditioning, attacks, verdict } = r.scored;
  const finalVerdict = reasons.length === 0 ? 'immunized' : verdict.verdict === 'infeasible' ? 'infeasible' : 'weak';
  const engineSeconds = (performance.now() - job.started) / 1000;
  return {
    method: 'gradient',
    task,
    dim: job.benignAll.dim,
    rows: { benign: benignTrain.rows, harmful: harmful.rows, benignTest: heldOut ? heldOut.acts.rows : null },
    rir: draws.rir.mean,
    benignRatio: draws.benignRatio.mean,
    harmfulRatio: draws.harmfulRatio.mean,
    rirBound: null,
    thetaCondition: null,
    kappaBudget: opts.kappaBudget ?? 1e4,
    kappa: conditioning.kappa,
    paperConvention: conditioning.paperConvention,
    benignQuality: { metric: acc.before === null ? null : 'accuracy', before: acc.before, after: acc.after, headMaxDeviation: null },
    attacks: attackRows(attacks.outcomes),
    verdict: finalVerdict,
    verdictReasons: reasons,
    kappaCriterion: verdict.kappaCriterion,
    verdictNotes: verdict.verdictNotes,
    optimizer: { steps: report.steps, stopReason: 'steps', details: { accepted: report.accepted, finalLearningRate: report.finalLearningRate } },
    timings: { engineSeconds, solveSeconds: report.seconds.total, metricsSeconds: (performance.now() - r.metricsStart) / 1000, attackSeconds: attacks.seconds },
    warnings: [],
    openblasCore: openblasCore(),
    mode: 'last-block',
    deep: lastBlockMetrics(job, r),
    checkpoint: r.checkpoint,
    tfjsBackend: job.backend.name,
    tfjsBackendNote: job.backend.note,
    executionProvider: job.trunk.runtime.provider,
  };
}

/** metrics.json's deep section: the draws, the cut, the training and its estimate and timing. */
function lastBlockMetrics(job: TrainedJob, r: TrainedOutcome): DeepMetricsExtra['deep'] {
  const { opts, plan, benignAll } = job;
  const { heldOut } = job.split;
  const { draws, report, acc } = r;
  const { conditioning } = r.scored;
  const stepMean = report.seconds.total / Math.max(1, report.steps);
  return {
    draws: draws.draws,
    sampleSize: draws.sampleSize,
    rtol: r.scored.rtol,
    rir: draws.rir,
    harmfulRatio: draws.harmfulRatio,
    benignRatio: draws.benignRatio,
    benignAccuracy: { before: acc.before, after: acc.after, rows: heldOut ? heldOut.acts.rows : 0, heldOut: heldOut ? heldOut.from : null },
    distributions: distributionsOf(draws),
    fullData: { harmfulRatio: conditioning.harmfulRatio, benignRatio: conditioning.benignRatio },
    cut: {
      tensor: plan.cut,
      source: plan.cutSource,
      shape: benignAll.cutShape,
      tail: plan.description,
      ops: plan.ops,
      trainable: plan.trainable,
      parameters: job.tail.parameterCount(),
    },
    features: { tensor: plan.features, dim: benignAll.dim },
    activations: Object.values(job.acts).some((a) => a?.cut.where === 'disk') ? 'disk' : 'memory',
    training: {
      steps: report.steps,
      accepted: report.accepted,
      batchSize: job.batchSize,
      learningRate: opts.learningRate ?? TRAIN_DEFAULTS.learningRate,
      finalLearningRate: report.finalLearningRate,
      evaluation: { start: report.start, end: report.end },
    },
    estimate: { ...job.estimate, steps: job.steps, totalSeconds: job.total, budgetSeconds: job.budget },
    stepSeconds: {
      mean: stepMean,
      tfjs: report.seconds.tfjs / report.steps,
      spectral: report.seconds.spectral / report.steps,
      data: report.seconds.data / report.steps,
    },
  };
}

/** Forward and gradient kernels the tail's operators need on a backend. */
function kernelsFor(ops: string[]): string[] {
  const need: Record<string, string[]> = {
    Conv: ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'],
    MatMul: ['BatchMatMul'],
    Gemm: ['BatchMatMul'],
    Erf: ['Erf'],
    Softmax: ['Softmax'],
    Gather: ['Slice', 'PadV2'],
    Slice: ['Slice', 'PadV2', 'Reverse'],
  };
  return [...new Set(ops.flatMap((op) => need[op] ?? []))];
}

/** The classifier's weights as C×D (logits = F·Wᵀ + b), from the head that reads the features. */
function headWeights(graph: OnnxGraph, plan: TailPlan, dim: number): Mat {
  const c = graph.locateFeatures(plan.features).classifiers[0];
  if (!c) return { rows: 0, cols: dim, data: new Float64Array(0) };
  const W: Mat = { rows: c.classes, cols: dim, data: new Float64Array(c.classes * dim) };
  for (let k = 0; k < c.classes; k++) for (let d = 0; d < dim; d++) W.data[k * dim + d] = c.transposed ? c.weight[k * dim + d] : c.weight[d * c.classes + k];
  return W;
}

function distributionsOf(d: DrawSummary): DeepMetricsExtra['deep']['distributions'] {
  return { rir: d.perDraw.map((p) => p.rir), harmfulRatio: d.perDraw.map((p) => p.harmfulRatio), benignRatio: d.perDraw.map((p) => p.benignRatio) };
}
