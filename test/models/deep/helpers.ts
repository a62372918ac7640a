/** Shared by the deep-mode tests: the small fixtures and an onnxruntime run with the cut exposed. */
import { OnnxGraph } from '../../../models/backbones/graph.js';
import { selectBackend, type TfBackend } from '../../../models/deep/backend.js';
import { planTail, type TailPlan } from '../../../models/deep/split.js';
import { Trunk } from '../../../models/deep/trunk.js';
import { randomImages, SIZE } from '../backbones/helpers.js';

export { randomImages, SIZE, smallResnet, smallVit } from '../backbones/helpers.js';

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
