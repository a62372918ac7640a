/** Shared by the deep-mode tests: the small fixtures and an onnxruntime run with the cut exposed. */
import { OnnxGraph } from '../../models/backbones/graph.js';
import { attr, GraphBuilder } from '../../scripts/fixtures/onnxBuilder.js';
import { selectBackend, type TfBackend } from '../../models/deep/backend.js';
import { planTail, type TailPlan } from '../../models/deep/split.js';
import { Trunk, withInitializers } from '../../models/deep/trunk.js';
import { fitProbe } from '../../models/engine/quality.js';
import { statsOf } from '../../models/engine/stats.js';
import { normals } from './reference.js';
import { randomImages, SIZE } from './backbones.js';

export { randomImages, SIZE, smallResnet, smallVit } from './backbones.js';

/** A ResNet-like model whose last block holds an operator last-block mode does not train (HardSigmoid). */
export function unsupportedTailModel(): Uint8Array {
  const b = new GraphBuilder(3);
  let x = b.node('Relu', ['input'], '/stem');
  const skip = x;
  x = b.node('HardSigmoid', [x], '/block', [attr.float('alpha', 0.2)]);
  x = b.node('Add', [x, skip], '/block');
  const pooled = b.node('Flatten', [b.node('GlobalAveragePool', [x], '/pool')], '', [attr.int('axis', 1)]);
  b.node('Gemm', [pooled, b.random('fc.weight', [4, 3], 0.1), b.random('fc.bias', [4], 0.1)], '/fc', [attr.int('transB', 1)]);
  b.renameLast('output');
  return b.build({ input: 'input', inputShape: ['n', 3, 8, 8], output: 'output', outputShape: ['n', 4] }).bytes;
}

let cpu: Promise<TfBackend> | null = null;
export function cpuBackend(): Promise<TfBackend> {
  cpu ??= selectBackend({ only: ['cpu'] });
  return cpu;
}

export interface Reference {
  graph: OnnxGraph;
  plan: TailPlan;
  n: number;
  cut: { data: Float32Array; dims: number[] };
  features: { data: Float32Array; dims: number[] };
  logits: { data: Float32Array; dims: number[] };
}

/** onnxruntime's own cut activations, features and logits for n random images. */
export async function reference(bytes: Uint8Array, n: number, seed: number, cutTensor?: string): Promise<Reference> {
  const graph = OnnxGraph.parse(bytes, 'fixture.onnx');
  const plan = planTail(graph, { cutTensor });
  const trunk = await Trunk.open(graph, plan, { executionProvider: 'cpu', threads: 1 });
  try {
    const out = await trunk.runBatch(randomImages(n, seed), [n, 3, SIZE, SIZE]);
    const grab = (t: { data: unknown; dims: readonly number[] }) => ({ data: Float32Array.from(t.data as Float32Array), dims: [...t.dims] });
    return { graph, plan, n, cut: grab(out.cut), features: grab(out.features), logits: grab(out.logits) };
  } finally {
    await trunk.close();
  }
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} and ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Benign images: noise plus one of `classes` fixed patterns (the label); harmful: a few other patterns mixed. */
export function patternImages(
  n: number,
  seed: number,
  opts: { classes?: number; lowRank?: number; amplitude?: number },
): { images: Float32Array; labels: Float64Array } {
  const next = normals(seed);
  const per = 3 * SIZE * SIZE;
  const count = opts.classes ?? opts.lowRank ?? 1;
  const patterns = Array.from({ length: count }, () => Float32Array.from({ length: per }, () => next()));
  const images = new Float32Array(n * per);
  const labels = new Float64Array(n);
  const a = opts.amplitude ?? 1;
  for (let i = 0; i < n; i++) {
    labels[i] = i % count;
    const mix = opts.lowRank ? patterns.map(() => next()) : patterns.map((_, k) => (k === i % count ? a : 0));
    for (let j = 0; j < per; j++) {
      let v = 0.5 * next();
      for (let k = 0; k < count; k++) v += mix[k] * patterns[k][j];
      images[i * per + j] = v;
    }
  }
  return { images, labels };
}

/**
 * The fixture with its head replaced by a least-squares probe fitted on the benign features (a trained head with
 * real margins: a random head's argmax flips at the slightest change of the features).
 */
export async function withFittedHead(bytes: Uint8Array, images: Float32Array, labels: Float64Array, classes: number): Promise<Uint8Array> {
  const graph = OnnxGraph.parse(bytes, 'fixture.onnx');
  const plan = planTail(graph);
  const trunk = await Trunk.open(graph, plan, { executionProvider: 'cpu', threads: 1 });
  let features: Float32Array;
  let dim: number;
  try {
    const n = labels.length;
    const out = await trunk.runBatch(images, [n, 3, SIZE, SIZE]);
    features = Float32Array.from(out.features.data as Float32Array);
    dim = out.features.dims[1];
  } finally {
    await trunk.close();
  }
  const n = labels.length;
  const Y = { rows: n, cols: classes, data: new Float64Array(n * classes) };
  for (let i = 0; i < n; i++) Y.data[i * classes + labels[i]] = 1;
  const head = fitProbe(statsOf({ rows: n, cols: dim, data: Float64Array.from(features) }, Y));
  const weight = new Float32Array(classes * dim);
  for (let d = 0; d < dim; d++) for (let c = 0; c < classes; c++) weight[c * dim + d] = head.weights.data[d * classes + c];
  const gemm = graph.graph.node!.find((node) => node.opType === 'Gemm')!;
  return withInitializers(
    graph,
    new Map([
      [gemm.input![1], { dims: [classes, dim], values: weight }],
      [gemm.input![2], { dims: [classes], values: Float32Array.from(head.bias) }],
    ]),
  );
}
