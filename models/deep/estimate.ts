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

/** Times a small forward+backward of the tail's main kernel (conv or matmul) after a warm-up run. */
export function measureRate(backend: TfBackend, conv: boolean): { rate: number; kernel: string } {
  const tf = backend.tf;
  const run = (): number => {
    const start = performance.now();
    tf.tidy(() => {
      if (conv) {
        const x = tf.randomNormal([4, 8, 8, 64]) as TF.Tensor4D;
        const w = tf.randomNormal([3, 3, 64, 64]) as TF.Tensor4D;
        const g = tf.grads((a: TF.Tensor, b: TF.Tensor) => tf.sum(tf.conv2d(a as TF.Tensor4D, b as TF.Tensor4D, 1, 'same')))([x, w]);
        g.forEach((t) => t.dataSync());
      } else {
        const a = tf.randomNormal([256, 256]) as TF.Tensor2D;
        const b = tf.randomNormal([256, 256]) as TF.Tensor2D;
        const g = tf.grads((p: TF.Tensor, q: TF.Tensor) => tf.sum(tf.matMul(p as TF.Tensor2D, q as TF.Tensor2D)))([a, b]);
        g.forEach((t) => t.dataSync());
      }
    });
    return (performance.now() - start) / 1000;
  };
  const flops = TRAIN_FACTOR * (conv ? 2 * 4 * 8 * 8 * 64 * 64 * 9 : 2 * 256 * 256 * 256);
  run();
  const seconds = Math.min(run(), run());
  return { rate: flops / seconds, kernel: conv ? 'conv2d 3×3, 64→64, 4×8×8, forward+backward' : 'matmul 256³, forward+backward' };
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
