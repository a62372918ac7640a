/**
 * The `native` tfjs backend: tfjs-backend-cpu's backend and kernels under a new name, with the heavy kernels
 * (Conv2D and both its gradients, BatchMatMul) replaced by float32 ones over OpenBLAS sgemm in our addon, and kernels
 * of its own: a convolution in ONNX's NCHW/OIHW layouts with its padding inside (Conv2DNCHW, with its gradients) and
 * the fused ones of fusedOps.ts. tfjs still does the autodiff; anything these kernels don't cover (another dtype,
 * batch dimensions that broadcast other than by a batch of 1) falls through to the cpu kernel. Every kernel call is counted and timed, so a benchmark can
 * split a step between the native kernels and the rest of tfjs.
 */
import type * as TF from '@tensorflow/tfjs';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  batchMatMul,
  conv2d,
  conv2dBackpropFilter,
  conv2dBackpropInput,
  conv2dNchw,
  conv2dNchwBackpropFilter,
  conv2dNchwBackpropInput,
  patchMatrixSize,
  stridedCopy,
  binary,
  unary,
  outputFloats,
  reduce,
  softmaxRows,
  type BinaryOp,
  type UnaryOp,
  type ConvGeometry,
} from '../linalg/tfKernels.js';
import { FUSED_KERNELS } from './fusedOps.js';

type Tf = typeof TF;
type KernelConfig = TF.KernelConfig;
type KernelFunc = TF.KernelFunc;
type TensorInfo = TF.TensorInfo;

export const NATIVE_BACKEND = 'native';

/** Kernels over sgemm: the heavy arithmetic. */
export const GEMM_KERNELS = [
  'Conv2D',
  'Conv2DBackpropInput',
  'Conv2DBackpropFilter',
  'Conv2DNCHW',
  'Conv2DNCHWBackpropInput',
  'Conv2DNCHWBackpropFilter',
  'BatchMatMul',
] as const;
/**
 * Kernels that move data: tfjs-backend-cpu's generic index loops made them the largest part of a ResNet tail's
 * step (an NCHW conv is a Transpose each side, and its padding a PadV2 whose gradient is a Slice).
 */
export const COPY_KERNELS = ['Transpose', 'Slice', 'SplitV', 'Concat', 'PadV2', 'Sum'] as const;
/** Element-wise arithmetic, where tfjs-backend-cpu's broadcasting path (a conv's bias over NCHW) is slow. */
export const ELEMENTWISE_KERNELS = ['Add', 'Sub', 'Multiply', 'RealDiv', 'Exp', 'Erf', 'Neg', 'Square', 'Relu', 'Step', 'Softmax', 'Mean'] as const;
/** Kernels with a native implementation. */
export const NATIVE_KERNELS = [...GEMM_KERNELS, ...COPY_KERNELS, ...ELEMENTWISE_KERNELS] as const;

export interface KernelTally {
  calls: number;
  seconds: number;
  /** Calls that the native kernel passed on to the cpu one. */
  fallbacks: number;
  /** Multiply-add work of the native calls (2 FLOPs each), for rates. */
  flops: number;
}

const tallies = new Map<string, KernelTally>();

/** Calls and seconds per kernel on the native backend since the last reset. */
export function kernelProfile(): Map<string, KernelTally> {
  return new Map([...tallies].map(([k, v]) => [k, { ...v }]));
}

export function resetKernelProfile(): void {
  tallies.clear();
}

function tally(name: string): KernelTally {
  let t = tallies.get(name);
  if (!t) tallies.set(name, (t = { calls: 0, seconds: 0, fallbacks: 0, flops: 0 }));
  return t;
}

function timed(name: string, fn: KernelFunc): KernelFunc {
  return (args) => {
    const start = performance.now();
    try {
      return fn(args);
    } finally {
      const t = tally(name);
      t.calls++;
      t.seconds += (performance.now() - start) / 1000;
    }
  };
}

function floats(backend: MathBackendCPU, t: TensorInfo): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const values = backend.data.get(t.dataId)?.values;
  return values instanceof Float32Array ? values : null;
}

function geometry(tf: Tf, xShape: number[], filterShape: number[], attrs: Record<string, unknown>, dilations: number | [number, number]): ConvGeometry | null {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') return null;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as [number, number],
    dilations,
    attrs.pad as 'same' | 'valid',
    attrs.dimRoundingMode as 'floor' | undefined,
  );
  return {
    batch: info.batchSize,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    outChannels: info.outChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    dilationHeight: info.dilationHeight,
    dilationWidth: info.dilationWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

const convFlops = (g: ConvGeometry) => 2 * g.batch * g.outHeight * g.outWidth * g.outChannels * g.filterHeight * g.filterWidth * g.inChannels;

type Native = (tf: Tf, args: Parameters<KernelFunc>[0]) => TensorInfo | TensorInfo[] | null;

const conv2dKernel: Native = (tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { x, filter } = inputs as { x: TensorInfo; filter: TensorInfo };
  const g = geometry(tf, x.shape, filter.shape, attrs, attrs.dilations as [number, number]);
  const xv = floats(cpu, x);
  const fv = floats(cpu, filter);
  if (!g || !xv || !fv) return null;
  tally('Conv2D').flops += convFlops(g);
  return cpu.makeTensorInfo([g.batch, g.outHeight, g.outWidth, g.outChannels], 'float32', conv2d(xv, fv, g));
};

const conv2dBackpropInputKernel: Native = (tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const g = geometry(tf, attrs.inputShape as number[], filter.shape, attrs, 1);
  const dyv = floats(cpu, dy);
  const fv = floats(cpu, filter);
  if (!g || !dyv || !fv) return null;
  tally('Conv2DBackpropInput').flops += convFlops(g);
  return cpu.makeTensorInfo([g.batch, g.inHeight, g.inWidth, g.inChannels], 'float32', conv2dBackpropInput(dyv, fv, g));
};

const conv2dBackpropFilterKernel: Native = (tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const filterShape = attrs.filterShape as number[];
  const g = geometry(tf, x.shape, filterShape, attrs, 1);
  const xv = floats(cpu, x);
  const dyv = floats(cpu, dy);
  if (!g || !xv || !dyv) return null;
  tally('Conv2DBackpropFilter').flops += convFlops(g);
  return cpu.makeTensorInfo(filterShape, 'float32', conv2dBackpropFilter(xv, dyv, g));
};

/**
 * A convolution in ONNX's layouts (x N×C×H×W, filter O×I×kh×kw) with ONNX's explicit pads [top, left, bottom,
 * right]: the padding is read as zeros inside the kernel, and neither side is transposed.
 */
function nchwGeometry(xShape: number[], filterShape: number[], attrs: Record<string, unknown>): ConvGeometry {
  const [batch, inChannels, inHeight, inWidth] = xShape;
  const [outChannels, filterChannels, filterHeight, filterWidth] = filterShape;
  const [strideHeight, strideWidth] = attrs.strides as number[];
  const [padTop, padLeft, padBottom, padRight] = attrs.pads as number[];
  const [dilationHeight, dilationWidth] = attrs.dilations as number[];
  if (xShape.length !== 4 || filterShape.length !== 4 || filterChannels !== inChannels)
    throw new Error(`Conv2DNCHW: input [${xShape}] and filter [${filterShape}] do not make a 2-D convolution`);
  const outHeight = Math.floor((inHeight + padTop + padBottom - dilationHeight * (filterHeight - 1) - 1) / strideHeight) + 1;
  const outWidth = Math.floor((inWidth + padLeft + padRight - dilationWidth * (filterWidth - 1) - 1) / strideWidth) + 1;
  if (!(outHeight >= 1 && outWidth >= 1)) throw new Error(`Conv2DNCHW: input [${xShape}] is smaller than the filter [${filterShape}] reaches`);
  return {
    batch,
    inHeight,
    inWidth,
    inChannels,
    filterHeight,
    filterWidth,
    outChannels,
    outHeight,
    outWidth,
    strideHeight,
    strideWidth,
    dilationHeight,
    dilationWidth,
    padTop,
    padLeft,
  };
}

/**
 * The patch matrices a recorded forward wrote, by its input's data id and the geometry: the filter gradient reads
 * the same patches, and writing them again (memory-bound, 9× the input) costs a sixth of the convolution. Up to 64
 * MiB each; an entry goes with its input's data id.
 */
const PATCH_CACHE_FLOATS = 1 << 24;
const patchCache = new WeakMap<object, Map<string, Float32Array>>();
const geometryKey = (g: ConvGeometry) => Object.values(g).join(',');

function recording(tf: Tf): boolean {
  return ((tf.engine() as unknown as { state?: { gradientDepth?: number } }).state?.gradientDepth ?? 0) > 0;
}

const conv2dNchwKernel: Native = (tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { x, filter, bias } = inputs as { x: TensorInfo; filter: TensorInfo; bias?: TensorInfo };
  const xv = floats(cpu, x);
  const fv = floats(cpu, filter);
  const bv = bias ? floats(cpu, bias) : undefined;
  if (!xv || !fv || bv === null) return null;
  const g = nchwGeometry(x.shape, filter.shape, attrs);
  tally('Conv2DNCHW').flops += convFlops(g);
  let cols: Float32Array | undefined;
  if (recording(tf) && patchMatrixSize(g) <= PATCH_CACHE_FLOATS) {
    cols = outputFloats(patchMatrixSize(g));
    const byGeometry = patchCache.get(x.dataId) ?? new Map<string, Float32Array>();
    byGeometry.set(geometryKey(g), cols);
    patchCache.set(x.dataId, byGeometry);
  }
  return cpu.makeTensorInfo([g.batch, g.outChannels, g.outHeight, g.outWidth], 'float32', conv2dNchw(xv, fv, g, bv, cols));
};

const conv2dNchwBackpropInputKernel: Native = (_tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const dyv = floats(cpu, dy);
  const fv = floats(cpu, filter);
  if (!dyv || !fv) return null;
  const inputShape = attrs.inputShape as number[];
  const g = nchwGeometry(inputShape, filter.shape, attrs);
  tally('Conv2DNCHWBackpropInput').flops += convFlops(g);
  return cpu.makeTensorInfo(inputShape, 'float32', conv2dNchwBackpropInput(dyv, fv, g));
};

const conv2dNchwBackpropFilterKernel: Native = (_tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const xv = floats(cpu, x);
  const dyv = floats(cpu, dy);
  if (!xv || !dyv) return null;
  const filterShape = attrs.filterShape as number[];
  const g = nchwGeometry(x.shape, filterShape, attrs);
  tally('Conv2DNCHWBackpropFilter').flops += convFlops(g);
  const cols = patchCache.get(x.dataId)?.get(geometryKey(g));
  return cpu.makeTensorInfo(filterShape, 'float32', conv2dNchwBackpropFilter(xv, dyv, g, cols));
};

const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

const batchMatMulKernel: Native = (tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
  const av = floats(cpu, a);
  const bv = floats(cpu, b);
  if (!av || !bv || a.shape.length < 2 || b.shape.length < 2) return null;
  const transposeA = !!attrs.transposeA;
  const transposeB = !!attrs.transposeB;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = size(outerA);
  const batchB = size(outerB);
  // Only equal batch shapes, or one side with a single matrix, map onto consecutive products.
  const sameOuter = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
  if (!sameOuter && batchA !== 1 && batchB !== 1) return null;
  const [ra, ca] = a.shape.slice(-2);
  const [rb, cb] = b.shape.slice(-2);
  const m = transposeA ? ca : ra;
  const k = transposeA ? ra : ca;
  const n = transposeB ? rb : cb;
  if ((transposeB ? cb : rb) !== k)
    throw new Error(`matMul: inner dimensions of shapes [${a.shape}] and [${b.shape}] differ (transposeA=${transposeA}, transposeB=${transposeB})`);
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  tally('BatchMatMul').flops += 2 * Math.max(batchA, batchB) * m * k * n;
  const values = batchMatMul(av, bv, { batchA, batchB, m, k, n, transposeA, transposeB });
  return cpu.makeTensorInfo([...outer, m, n], 'float32', values);
};

function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = acc;
    acc *= shape[d];
  }
  return strides;
}

/** x's values permuted to outShape = perm(x.shape); null for an empty or scalar tensor (the cpu kernel handles those). */
function permuted(values: Float32Array, shape: number[], perm: number[]): Float32Array | null {
  if (shape.length === 0 || values.length === 0) return null;
  const inStrides = rowMajorStrides(shape);
  const outShape = perm.map((p) => shape[p]);
  const out = outputFloats(values.length);
  stridedCopy(values, out, { shape: outShape, srcStrides: perm.map((p) => inStrides[p]), dstStrides: rowMajorStrides(outShape), srcBase: 0, dstBase: 0 });
  return out;
}

const transposeKernel: Native = (_tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { x } = inputs as { x: TensorInfo };
  const xv = floats(cpu, x);
  const perm = attrs.perm as number[];
  const out = xv && permuted(xv, x.shape, perm);
  return out
    ? cpu.makeTensorInfo(
        perm.map((p) => x.shape[p]),
        'float32',
        out,
      )
    : null;
};

const sliceKernel: Native = (tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { x } = inputs as { x: TensorInfo };
  const xv = floats(cpu, x);
  if (!xv || x.shape.length === 0) return null;
  const [begin, sizes] = tf.slice_util.parseSliceParams(x as TF.Tensor, attrs.begin as number[], attrs.size as number[]);
  tf.slice_util.assertParamsValid(x as TF.Tensor, begin, sizes);
  if (size(sizes) === 0) return null;
  const strides = rowMajorStrides(x.shape);
  const out = outputFloats(size(sizes));
  const srcBase = begin.reduce((a, b, d) => a + b * strides[d], 0);
  stridedCopy(xv, out, { shape: sizes, srcStrides: strides, dstStrides: rowMajorStrides(sizes), srcBase, dstBase: 0 });
  return cpu.makeTensorInfo(sizes, 'float32', out);
};

/** The pieces of x along one axis, each a native strided copy. */
const splitKernel: Native = (tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { x } = inputs as { x: TensorInfo };
  const xv = floats(cpu, x);
  if (!xv || xv.length === 0 || x.shape.length === 0) return null;
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x, attrs.numOrSizeSplits as number[] | number, axis);
  if (sizes.some((n) => n === 0)) return null;
  const strides = rowMajorStrides(x.shape);
  let begin = 0;
  return sizes.map((n) => {
    const shape = x.shape.map((d, i) => (i === axis ? n : d));
    const out = outputFloats(size(shape));
    stridedCopy(xv, out, { shape, srcStrides: strides, dstStrides: rowMajorStrides(shape), srcBase: begin * strides[axis], dstBase: 0 });
    begin += n;
    return cpu.makeTensorInfo(shape, 'float32', out);
  });
};

/** The inputs placed side by side along one axis, each a native strided copy into its part of the output. */
const concatKernel: Native = (tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const parts = (inputs as unknown as TensorInfo[]).filter((t) => t.shape.reduce((a, b) => a * b, 1) > 0);
  const values = parts.map((t) => floats(cpu, t));
  if (parts.length === 0 || parts[0].shape.length === 0 || values.some((v) => !v)) return null;
  const axis = tf.util.parseAxisParam(attrs.axis as number, parts[0].shape)[0];
  tf.backend_util.assertParamsConsistent(
    parts.map((t) => t.shape),
    axis,
  );
  const outShape = tf.backend_util.computeOutShape(
    parts.map((t) => t.shape),
    axis,
  );
  const out = outputFloats(size(outShape));
  const outStrides = rowMajorStrides(outShape);
  let begin = 0;
  parts.forEach((t, k) => {
    stridedCopy(values[k]!, out, {
      shape: t.shape,
      srcStrides: rowMajorStrides(t.shape),
      dstStrides: outStrides,
      srcBase: 0,
      dstBase: begin * outStrides[axis],
    });
    begin += t.shape[axis];
  });
  return cpu.makeTensorInfo(outShape, 'float32', out);
};

const padKernel: Native = (_tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { x } = inputs as { x: TensorInfo };
  const xv = floats(cpu, x);
  const paddings = attrs.paddings as Array<[number, number]>;
  if (!xv || xv.length === 0 || paddings.length !== x.shape.length) return null;
  const outShape = x.shape.map((n, d) => paddings[d][0] + n + paddings[d][1]);
  const outStrides = rowMajorStrides(outShape);
  const out = outputFloats(size(outShape));
  out.fill((attrs.constantValue as number | undefined) ?? 0);
  const dstBase = paddings.reduce((a, [before], d) => a + before * outStrides[d], 0);
  stridedCopy(xv, out, { shape: x.shape, srcStrides: rowMajorStrides(x.shape), dstStrides: outStrides, srcBase: 0, dstBase });
  return cpu.makeTensorInfo(outShape, 'float32', out);
};

/** A float32 sum (or mean) over any axes, read in place (no transpose first). */
const reduceKernel =
  (mean: boolean): Native =>
  (tf, { inputs, backend, attrs = {} }) => {
    const cpu = backend as MathBackendCPU;
    const { x } = inputs as { x: TensorInfo };
    const xv = floats(cpu, x);
    if (!xv || xv.length === 0 || x.shape.length === 0 || x.shape.length > 8) return null;
    const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
    const outShape = x.shape.filter((_, d) => !axes.includes(d));
    const out = reduce(
      xv,
      x.shape,
      x.shape.map((_, d) => axes.includes(d)),
      mean,
    );
    const finalShape = attrs.keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
    return cpu.makeTensorInfo(finalShape, 'float32', out);
  };

/** Below this many elements the addon call costs more than tfjs's own loop. */
const ELEMENTWISE_MIN = 4096;

function binaryKernel(op: BinaryOp): Native {
  return (tf, { inputs, backend }) => {
    const cpu = backend as MathBackendCPU;
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const av = floats(cpu, a);
    const bv = floats(cpu, b);
    if (!av || !bv) return null;
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    if (outShape.length === 0 || size(outShape) < ELEMENTWISE_MIN) return null;
    const stridesFor = (shape: number[]) => {
      const own = rowMajorStrides(shape);
      const lead = outShape.length - shape.length;
      return outShape.map((n, d) => (d < lead || shape[d - lead] === 1 ? 0 : own[d - lead]));
    };
    return cpu.makeTensorInfo(outShape, 'float32', binary(op, av, bv, outShape, stridesFor(a.shape), stridesFor(b.shape)));
  };
}

function unaryKernel(op: UnaryOp): Native {
  return (_tf, { inputs, backend, attrs = {} }) => {
    const cpu = backend as MathBackendCPU;
    const { x } = inputs as { x: TensorInfo };
    const xv = floats(cpu, x);
    if (!xv || xv.length < ELEMENTWISE_MIN) return null;
    return cpu.makeTensorInfo(x.shape, 'float32', unary(op, xv, (attrs.alpha as number | undefined) ?? 0));
  };
}

const softmaxKernel: Native = (_tf, { inputs, backend, attrs = {} }) => {
  const cpu = backend as MathBackendCPU;
  const { logits } = inputs as { logits: TensorInfo };
  const xv = floats(cpu, logits);
  const rank = logits.shape.length;
  const dim = attrs.dim as number;
  if (!xv || xv.length === 0 || rank === 0 || (dim !== -1 && dim !== rank - 1)) return null;
  return cpu.makeTensorInfo(logits.shape, 'float32', softmaxRows(xv, logits.shape[rank - 1]));
};

const NATIVE: Record<(typeof NATIVE_KERNELS)[number], Native> = {
  Conv2D: conv2dKernel,
  Conv2DBackpropInput: conv2dBackpropInputKernel,
  Conv2DBackpropFilter: conv2dBackpropFilterKernel,
  Conv2DNCHW: conv2dNchwKernel,
  Conv2DNCHWBackpropInput: conv2dNchwBackpropInputKernel,
  Conv2DNCHWBackpropFilter: conv2dNchwBackpropFilterKernel,
  BatchMatMul: batchMatMulKernel,
  Transpose: transposeKernel,
  Slice: sliceKernel,
  SplitV: splitKernel,
  Concat: concatKernel,
  PadV2: padKernel,
  Sum: reduceKernel(false),
  Mean: reduceKernel(true),
  Exp: unaryKernel('exp'),
  Erf: unaryKernel('erf'),
  Neg: unaryKernel('neg'),
  Square: unaryKernel('square'),
  Relu: unaryKernel('relu'),
  Step: unaryKernel('step'),
  Softmax: softmaxKernel,
  Add: binaryKernel('add'),
  Sub: binaryKernel('sub'),
  Multiply: binaryKernel('mul'),
  RealDiv: binaryKernel('div'),
};

function withFallback(tf: Tf, name: string, native: Native, cpuKernel: KernelFunc | undefined): KernelFunc {
  return (args) => {
    const out = native(tf, args);
    if (out) return out;
    if (!cpuKernel) throw new Error(`${name}: no native kernel for these inputs and no cpu kernel to fall back on`);
    tally(name).fallbacks++;
    return cpuKernel(args);
  };
}

/** Registers the native backend once, at a priority below cpu's, so that it runs only where it is chosen. */
export function registerNativeBackend(tf: Tf): void {
  if (tf.findBackendFactory(NATIVE_BACKEND)) return;
  tf.registerBackend(NATIVE_BACKEND, () => new MathBackendCPU(), 0);
  const cpuKernels = new Map(tf.getKernelsForBackend('cpu').map((k) => [k.kernelName, k]));
  for (const k of cpuKernels.values()) {
    const native = NATIVE[k.kernelName as keyof typeof NATIVE];
    const kernelFunc = native ? withFallback(tf, k.kernelName, native, k.kernelFunc) : k.kernelFunc;
    const config: KernelConfig = { ...k, backendName: NATIVE_BACKEND, kernelFunc: timed(k.kernelName, kernelFunc) };
    tf.registerKernel(config);
  }
  for (const name of NATIVE_KERNELS) {
    if (cpuKernels.has(name)) continue;
    tf.registerKernel({ kernelName: name, backendName: NATIVE_BACKEND, kernelFunc: timed(name, withFallback(tf, name, NATIVE[name], undefined)) });
  }
  tf.registerGradient({
    kernelName: 'Conv2DNCHW',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved;
      const run = (name: string, inputs: TF.NamedTensorMap, extra: TF.NamedAttrMap) =>
        tf.engine().runKernel(name, inputs, { ...attrs, ...extra } as TF.NamedAttrMap) as TF.Tensor;
      return {
        x: () => run('Conv2DNCHWBackpropInput', { dy: dy as TF.Tensor, filter }, { inputShape: x.shape }),
        filter: () => run('Conv2DNCHWBackpropFilter', { x, dy: dy as TF.Tensor }, { filterShape: filter.shape }),
        bias: () => tf.sum(dy as TF.Tensor, [0, 2, 3]),
      };
    },
  });
  for (const [name, kernelFunc] of Object.entries(FUSED_KERNELS))
    tf.registerKernel({ kernelName: name, backendName: NATIVE_BACKEND, kernelFunc: timed(name, kernelFunc) });
}
