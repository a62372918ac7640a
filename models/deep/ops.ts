/**
 * ONNX operators as tfjs computations, in ONNX's own layouts (NCHW activations, OIHW conv weights), so that a
 * trained variable maps back onto its initializer unchanged. Exactly the operators the ResNet and ViT tails use.
 */
import type * as TF from '@tensorflow/tfjs';
import { attribute, floatValues, int, intAttribute, type NodeProto } from '../backbones/onnxProto.js';
import { SHAPE_OPS } from './shapeOps.js';
import { axisRange, sliceByRanges } from './slice.js';
import type { Tf } from './backend.js';
import { DeepError } from './errors.js';
import { fusedLayerNorm, fusedRelu, fusedSoftmax, hasFusedKernels, nchwConv2d } from './fusedOps.js';

type Tensor = TF.Tensor;

export interface OpContext {
  tf: Tf;
  /** Integer values of a constant input (shapes, axes, indices), or null when it is computed. */
  ints(name: string): number[] | null;
  /** Whether the constant input has dims [] (a scalar index drops its axis in Gather). */
  isScalar(name: string): boolean;
}

/** One output, or several (Split). */
type OpFn = (ctx: OpContext, node: NodeProto, x: Array<Tensor | undefined>) => Tensor | Tensor[];

function ints(node: NodeProto, name: string): number[] | null {
  const a = attribute(node, name);
  return a?.ints && a.ints.length > 0 ? a.ints.map(int) : null;
}

function float(node: NodeProto, name: string, fallback: number): number {
  const a = attribute(node, name);
  return a && typeof a.f === 'number' && Object.prototype.hasOwnProperty.call(a, 'f') ? (a.f as number) : fallback;
}

function axisOf(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function need(x: Tensor | undefined, node: NodeProto, i: number): Tensor {
  if (!x) throw new DeepError('TAIL_SHAPE', `${node.opType} "${node.name ?? ''}": input ${i} is missing`);
  return x;
}

function constantInts(ctx: OpContext, node: NodeProto, i: number): number[] {
  const name = node.input?.[i] ?? '';
  const v = ctx.ints(name);
  if (!v)
    throw new DeepError('UNSUPPORTED_OPERATOR', `${node.opType} "${node.name ?? ''}": input "${name}" must be a constant integer tensor in last-block mode`);
  return v;
}

/** Reshapes a per-channel vector (C) to broadcast over NC… */
function perChannel(tf: Tf, v: Tensor, rank: number): Tensor {
  return tf.reshape(v, [1, v.size, ...new Array(Math.max(0, rank - 2)).fill(1)]);
}

const conv: OpFn = (ctx, node, [x0, w0, b]) => {
  const { tf } = ctx;
  const x = need(x0, node, 0);
  const w = need(w0, node, 1);
  if (x.rank !== 4) throw new DeepError('UNSUPPORTED_OPERATOR', `Conv "${node.name ?? ''}": only 2-D convolutions are supported, got a rank-${x.rank} input`);
  if (intAttribute(node, 'group', 1) !== 1)
    throw new DeepError('UNSUPPORTED_OPERATOR', `Conv "${node.name ?? ''}" with group ≠ 1 (grouped or depthwise) is not supported in last-block mode`);
  const autoPad = attribute(node, 'auto_pad')?.s;
  if (autoPad && autoPad.length > 0 && new TextDecoder().decode(autoPad) !== 'NOTSET') {
    throw new DeepError('UNSUPPORTED_OPERATOR', `Conv "${node.name ?? ''}": auto_pad is not supported in last-block mode; export with explicit pads`);
  }
  const strides = ints(node, 'strides') ?? [1, 1];
  const dilations = ints(node, 'dilations') ?? [1, 1];
  const pads = ints(node, 'pads') ?? [0, 0, 0, 0];
  if (x.dtype === 'float32' && w.dtype === 'float32' && (!b || (b.dtype === 'float32' && b.size === w.shape[0])) && hasFusedKernels(tf)) {
    return nchwConv2d(tf, x, w, b ? tf.reshape(b, [-1]) : undefined, strides, pads, dilations);
  }
  let nhwc = tf.transpose(x, [0, 2, 3, 1]) as TF.Tensor4D;
  if (pads.some((p) => p !== 0))
    nhwc = tf.pad(nhwc, [
      [0, 0],
      [pads[0], pads[2]],
      [pads[1], pads[3]],
      [0, 0],
    ]);
  const filter = tf.transpose(w, [2, 3, 1, 0]) as TF.Tensor4D;
  let y: Tensor = tf.conv2d(nhwc, filter, [strides[0], strides[1]], 'valid', 'NHWC', [dilations[0], dilations[1]]);
  if (b) y = tf.add(y, b);
  return tf.transpose(y, [0, 3, 1, 2]);
};

const batchNorm: OpFn = (ctx, node, [x0, scale, bias, mean, variance]) => {
  const { tf } = ctx;
  const x = need(x0, node, 0);
  const eps = float(node, 'epsilon', 1e-5);
  const r = x.rank;
  const inv = tf.div(perChannel(tf, need(scale, node, 1), r), tf.sqrt(tf.add(perChannel(tf, need(variance, node, 4), r), eps)));
  return tf.add(tf.mul(tf.sub(x, perChannel(tf, need(mean, node, 3), r)), inv), perChannel(tf, need(bias, node, 2), r));
};

const layerNorm: OpFn = (ctx, node, [x0, scale, bias]) => {
  const { tf } = ctx;
  const x = need(x0, node, 0);
  const axis = axisOf(intAttribute(node, 'axis', -1), x.rank);
  const axes = Array.from({ length: x.rank - axis }, (_, i) => axis + i);
  const eps = float(node, 'epsilon', 1e-5);
  const normSize = axes.reduce((a, d) => a * (x.shape[d] as number), 1);
  if (scale && bias && scale.size === normSize && bias.size === normSize && hasFusedKernels(tf)) {
    const fused = fusedLayerNorm(tf, x, scale, bias, eps);
    if (fused) return fused;
  }
  const mean = tf.mean(x, axes, true);
  const centred = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centred), axes, true);
  let y = tf.div(centred, tf.sqrt(tf.add(variance, eps)));
  if (scale) y = tf.mul(y, scale);
  if (bias) y = tf.add(y, bias);
  return y;
};

const matMul: OpFn = (ctx, node, [a0, b0]) => {
  const { tf } = ctx;
  const a = need(a0, node, 0);
  const b = need(b0, node, 1);
  if (b.rank === 2 && a.rank > 2) {
    const lead = a.shape.slice(0, -1);
    const y = tf.matMul(tf.reshape(a, [-1, a.shape[a.rank - 1] as number]) as TF.Tensor2D, b as TF.Tensor2D);
    return tf.reshape(y, [...lead, b.shape[1] as number]);
  }
  return tf.matMul(a as TF.Tensor3D, b as TF.Tensor3D);
};

const gemm: OpFn = (ctx, node, [a0, b0, c]) => {
  const { tf } = ctx;
  let y: Tensor = tf.matMul(
    need(a0, node, 0) as TF.Tensor2D,
    need(b0, node, 1) as TF.Tensor2D,
    intAttribute(node, 'transA', 0) !== 0,
    intAttribute(node, 'transB', 0) !== 0,
  );
  const alpha = float(node, 'alpha', 1);
  const beta = float(node, 'beta', 1);
  if (alpha !== 1) y = tf.mul(y, alpha);
  if (c) y = tf.add(y, beta === 1 ? c : tf.mul(c, beta));
  return y;
};

const reshape: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  const shape = constantInts(ctx, node, 1).map((d, i) => (d === 0 && intAttribute(node, 'allowzero', 0) === 0 ? (x.shape[i] as number) : d));
  return ctx.tf.reshape(x, shape);
};

const flatten: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  const axis = axisOf(intAttribute(node, 'axis', 1), x.rank);
  const outer = x.shape.slice(0, axis).reduce((a, b) => a * b, 1);
  return ctx.tf.reshape(x, [outer, -1]);
};

const transpose: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  const perm = ints(node, 'perm') ?? Array.from({ length: x.rank }, (_, i) => x.rank - 1 - i);
  return ctx.tf.transpose(x, perm);
};

/**
 * Gather with constant indices as slices: tf.gather's gradient needs UnsortedSegmentSum, which the wasm backend
 * lacks, while a slice's gradient is a pad, which every backend has.
 */
const gather: OpFn = (ctx, node, [x0]) => {
  const { tf } = ctx;
  const x = need(x0, node, 0);
  const axis = axisOf(intAttribute(node, 'axis', 0), x.rank);
  const name = node.input?.[1] ?? '';
  const idx = constantInts(ctx, node, 1).map((i) => (i < 0 ? i + (x.shape[axis] as number) : i));
  const pieces = idx.map((i) => {
    const begin = new Array(x.rank).fill(0);
    const size = new Array(x.rank).fill(-1);
    begin[axis] = i;
    size[axis] = 1;
    return tf.slice(x, begin, size);
  });
  const picked = pieces.length === 1 ? pieces[0] : tf.concat(pieces, axis);
  return ctx.isScalar(name) ? tf.squeeze(picked, [axis]) : picked;
};

const slice: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  const starts = constantInts(ctx, node, 1);
  const ends = constantInts(ctx, node, 2);
  const axes = node.input?.[3] ? constantInts(ctx, node, 3) : starts.map((_, i) => i);
  const steps = node.input?.[4] ? constantInts(ctx, node, 4) : starts.map(() => 1);
  const ranges = axes.map((a0, i) => {
    const a = axisOf(a0, x.rank);
    if (steps[i] === 0) throw new DeepError('TAIL_SHAPE', `Slice "${node.name ?? ''}": step 0 on axis ${a0}`);
    return axisRange(a, x.shape[a] as number, starts[i], ends[i], steps[i]);
  });
  return sliceByRanges(ctx.tf, x, ranges);
};

const reduceMean: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  const axes = ints(node, 'axes') ?? (node.input?.[1] ? constantInts(ctx, node, 1) : Array.from({ length: x.rank }, (_, i) => i));
  return ctx.tf.mean(
    x,
    axes.map((a) => axisOf(a, x.rank)),
    intAttribute(node, 'keepdims', 1) !== 0,
  );
};

const concat: OpFn = (ctx, node, xs) => {
  const parts = xs.map((t, i) => need(t, node, i));
  return ctx.tf.concat(parts, axisOf(intAttribute(node, 'axis', 0), parts[0].rank));
};

const squeeze: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  const axes = ints(node, 'axes') ?? (node.input?.[1] ? constantInts(ctx, node, 1) : undefined);
  return ctx.tf.squeeze(
    x,
    axes?.map((a) => axisOf(a, x.rank)),
  );
};

const unsqueeze: OpFn = (ctx, node, [x0]) => {
  let x = need(x0, node, 0);
  const axes = ints(node, 'axes') ?? constantInts(ctx, node, 1);
  const rank = x.rank + axes.length;
  for (const a of axes.map((v) => axisOf(v, rank)).sort((p, q) => p - q)) x = ctx.tf.expandDims(x, a);
  return x;
};

const FLOAT_TYPES = new Set([1, 10, 11, 16]); // float, float16, double, bfloat16: all float32 here

/** Cast of a float tensor (Casts of shape values are done on the integers, in shapeOps). */
const cast: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  return FLOAT_TYPES.has(intAttribute(node, 'to', 1)) ? (x.dtype === 'float32' ? x : ctx.tf.cast(x, 'float32')) : ctx.tf.cast(x, 'int32');
};

const split: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  const axis = axisOf(intAttribute(node, 'axis', 0), x.rank);
  const outputs = node.output?.length ?? 1;
  const sizes = (node.input?.[1] ? constantInts(ctx, node, 1) : null) ?? ints(node, 'split');
  if (sizes) return ctx.tf.split(x, sizes, axis);
  const n = x.shape[axis] as number;
  const each = Math.ceil(n / outputs);
  return ctx.tf.split(
    x,
    Array.from({ length: outputs }, (_, i) => Math.min(each, n - i * each)),
    axis,
  );
};

const expand: OpFn = (ctx, node, [x0]) => {
  const x = need(x0, node, 0);
  const shape = constantInts(ctx, node, 1);
  const rank = Math.max(x.rank, shape.length);
  const a = [...new Array(rank - x.rank).fill(1), ...x.shape] as number[];
  const b = [...new Array(rank - shape.length).fill(1), ...shape];
  const out = a.map((d, i) => (d === 1 ? b[i] : d));
  return ctx.tf.broadcastTo(ctx.tf.reshape(x, a), out);
};

const constantOfShape: OpFn = (ctx, node) => {
  const value = attribute(node, 'value')?.t;
  const fill = value ? (floatValues(value)?.[0] ?? 0) : 0;
  return ctx.tf.fill(constantInts(ctx, node, 0), fill);
};

const binary =
  (f: (tf: Tf, a: Tensor, b: Tensor) => Tensor): OpFn =>
  (ctx, node, [a, b]) =>
    f(ctx.tf, need(a, node, 0), need(b, node, 1));

const unary =
  (f: (tf: Tf, a: Tensor) => Tensor): OpFn =>
  (ctx, node, [a]) =>
    f(ctx.tf, need(a, node, 0));

export const OPS: Record<string, OpFn> = {
  Conv: conv,
  BatchNormalization: batchNorm,
  LayerNormalization: layerNorm,
  Relu: unary((tf, a) => (a.dtype === 'float32' && hasFusedKernels(tf) ? fusedRelu(tf, a) : tf.relu(a))),
  Add: binary((tf, a, b) => tf.add(a, b)),
  Sub: binary((tf, a, b) => tf.sub(a, b)),
  Mul: binary((tf, a, b) => tf.mul(a, b)),
  Div: binary((tf, a, b) => tf.div(a, b)),
  Pow: binary((tf, a, b) => tf.pow(a, b)),
  Sqrt: unary((tf, a) => tf.sqrt(a)),
  Erf: unary((tf, a) => tf.erf(a)),
  Identity: unary((_tf, a) => a),
  // Exported for inference: dropout is the identity (its mask output, if named, is not used by a tail).
  Dropout: unary((_tf, a) => a),
  Reciprocal: unary((tf, a) => tf.reciprocal(a)),
  Cast: cast,
  Split: split,
  Expand: expand,
  ConstantOfShape: constantOfShape,
  Softmax: (ctx, node, [x0]) => {
    const x = need(x0, node, 0);
    const axis = axisOf(intAttribute(node, 'axis', -1), x.rank);
    if (axis !== x.rank - 1)
      throw new DeepError('UNSUPPORTED_OPERATOR', `Softmax "${node.name ?? ''}" over axis ${axis} (not the last) is not supported in last-block mode`);
    return x.dtype === 'float32' && hasFusedKernels(ctx.tf) ? fusedSoftmax(ctx.tf, x) : ctx.tf.softmax(x);
  },
  GlobalAveragePool: (ctx, node, [x0]) => {
    const x = need(x0, node, 0);
    return ctx.tf.mean(
      x,
      Array.from({ length: x.rank - 2 }, (_, i) => i + 2),
      true,
    );
  },
  Flatten: flatten,
  Gemm: gemm,
  MatMul: matMul,
  Reshape: reshape,
  Transpose: transpose,
  Gather: gather,
  Slice: slice,
  Concat: concat,
  ReduceMean: reduceMean,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
};

/**
 * Constant nodes are handled by the tail itself (their value is an initializer in all but name), Shape and the
 * integer operators of shape subgraphs by shapeOps.
 */
export const SUPPORTED_OPS = new Set([...Object.keys(OPS), ...Object.keys(SHAPE_OPS), 'Constant', 'Shape']);
