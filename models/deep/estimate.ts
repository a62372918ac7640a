/**
 * The step-time estimate made before a deep-mode job starts: the tail's multiply-add work per image (Conv, MatMul
 * and Gemm, from the tensor shapes of one onnxruntime run) against a kernel rate measured on the chosen backend.
 */
import type * as TF from '@tensorflow/tfjs';
import { attribute, int, type NodeProto } from '../backbones/onnxProto.js';
import type { TfBackend } from './backend.js';
import type { TailPlan } from './split.js';

/** Forward and backward (data and weight gradients) cost about three forwards. */
const TRAIN_FACTOR = 3;

export interface StepEstimate {
  /** Forward FLOPs of the tail for one image. */
  flopsPerImage: number;
  /** FLOPs of one training step (three passes forward and backward over a batch, plus the evaluation rows). */
  flopsPerStep: number;
  /** Measured forward+backward rate of the backend on a kernel like the tail's, FLOP/s. */
  rate: number;
  kernel: string;
  stepSeconds: number;
}

function count(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Forward FLOPs of one image given each tail tensor's shape (batch 1). */
export function tailFlops(plan: TailPlan, shapes: Map<string, readonly number[]>): number {
  let flops = 0;
  const shapeOf = (name: string | undefined) => (name ? (shapes.get(name) ?? dimsOfConstant(plan, name)) : undefined);
  for (const node of plan.nodes) {
    const out = shapeOf(node.output?.[0]);
    if (!out) continue;
    if (node.opType === 'Conv') {
      const w = shapeOf(node.input?.[1]);
      if (w) flops += 2 * count(out) * count(w.slice(1));
    } else if (node.opType === 'MatMul' || node.opType === 'Gemm') {
      const a = shapeOf(node.input?.[0]);
      if (a) flops += 2 * count(out) * (node.opType === 'Gemm' && transA(node) ? a[0] : a[a.length - 1]);
    } else {
      flops += count(out);
    }
  }
  return flops;
}

function transA(node: NodeProto): boolean {
  const a = attribute(node, 'transA');
  return a !== undefined && int(a.i) !== 0;
}

function dimsOfConstant(plan: TailPlan, name: string): number[] | undefined {
  const t = plan.constants.get(name);
  return t ? (t.dims ?? []).map(int) : undefined;
}

/**
 * Probe sizes: a compiled backend runs small kernels far below its rate on a tail's, so it gets a kernel about the
 * size of a ResNet/ViT last block's per image; the JS and wasm backends run at about the same rate at any size, and a
 * small probe keeps their start quick.
 */
const PROBES = {
  small: { batch: 4, spatial: 8, channels: 64, matrix: 256 },
  large: { batch: 16, spatial: 7, channels: 256, matrix: 768 },
};

/**
 * Times a forward+backward of a kernel like the tail's main one (conv or matmul) on the backend that will run the
 * job (selectBackend made it tfjs's current one), after a warm-up run.
 */
export function measureRate(backend: TfBackend, conv: boolean): { rate: number; kernel: string } {
  const tf = backend.tf;
  const p = backend.native ? PROBES.large : PROBES.small;
  const run = (): number => {
    const start = performance.now();
    tf.tidy(() => {
      if (conv) {
        const x = tf.randomNormal([p.batch, p.spatial, p.spatial, p.channels]) as TF.Tensor4D;
        const w = tf.randomNormal([3, 3, p.channels, p.channels]) as TF.Tensor4D;
        const g = tf.grads((a: TF.Tensor, b: TF.Tensor) => tf.sum(tf.conv2d(a as TF.Tensor4D, b as TF.Tensor4D, 1, 'same')))([x, w]);
        g.forEach((t) => t.dataSync());
      } else {
        const a = tf.randomNormal([p.matrix, p.matrix]) as TF.Tensor2D;
        const b = tf.randomNormal([p.matrix, p.matrix]) as TF.Tensor2D;
        const g = tf.grads((x: TF.Tensor, y: TF.Tensor) => tf.sum(tf.matMul(x as TF.Tensor2D, y as TF.Tensor2D)))([a, b]);
        g.forEach((t) => t.dataSync());
      }
    });
    return (performance.now() - start) / 1000;
  };
  const flops = TRAIN_FACTOR * (conv ? 2 * p.batch * p.spatial * p.spatial * p.channels * p.channels * 9 : 2 * p.matrix ** 3);
  run();
  const seconds = Math.min(run(), run());
  const kernel = conv
    ? `conv2d 3×3, ${p.channels}→${p.channels}, ${p.batch}×${p.spatial}×${p.spatial}, forward+backward on ${backend.name}`
    : `matmul ${p.matrix}³, forward+backward on ${backend.name}`;
  return { rate: flops / seconds, kernel };
}

export function estimateStep(flopsPerImage: number, batchSize: number, evalRows: number, measured: { rate: number; kernel: string }): StepEstimate {
  // Three passes (harmful spectral, benign spectral, benign task) forward and backward, then forwards for the check.
  const flopsPerStep = flopsPerImage * (3 * TRAIN_FACTOR * batchSize + 2 * evalRows);
  return { flopsPerImage, flopsPerStep, rate: measured.rate, kernel: measured.kernel, stepSeconds: flopsPerStep / measured.rate };
}

export function describeSeconds(s: number): string {
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
