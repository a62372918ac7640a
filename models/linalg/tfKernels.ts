/**
 * Float32 kernels for the native tfjs backend, in the addon: 2-D convolution over OpenBLAS sgemm (NHWC/HWIO, and
 * ONNX's NCHW/OIHW with the padding inside) with its input and filter gradients, batched matrix products, strided
 * copies, reductions, element-wise arithmetic, and fused layer norm, GELU, softmax and ReLU gradients. Outputs come
 * uninitialised from node's Buffer allocation (keepFreedMemory lets malloc reuse freed ones). Shapes are checked here
 * and again in C++; a bad one throws LinalgError('BAD_ARGUMENT').
 */
import { createRequire } from 'node:module';
import { packageRoot } from './coretype.js';
import { LinalgError, toLinalgError } from './errors.js';
// Loads the addon with OPENBLAS_CORETYPE chosen; the require below then returns that same module.
import './index.js';

/** A 2-D convolution's sizes: input N×H×W×Cin, filter kh×kw×Cin×Cout, output N×outHeight×outWidth×Cout. */
export interface ConvGeometry {
  batch: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  filterHeight: number;
  filterWidth: number;
  outChannels: number;
  outHeight: number;
  outWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  /** Zero rows above and columns left of the input; the bottom and right padding follows from the output size. */
  padTop: number;
  padLeft: number;
}

/** a (batchA×m×k, or batchA×k×m when transposeA) times b (batchB×k×n, or batchB×n×k); a batch of 1 broadcasts. */
export interface MatMulDims {
  batchA: number;
  batchB: number;
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
}

interface TfAddon {
  tfConv2d(x: Float32Array, filter: Float32Array, geometry: Int32Array): Float32Array;
  tfConv2dBackpropInput(dy: Float32Array, filter: Float32Array, geometry: Int32Array): Float32Array;
  tfConv2dBackpropFilter(x: Float32Array, dy: Float32Array, geometry: Int32Array): Float32Array;
  tfConv2dNchw(x: Float32Array, filter: Float32Array, geometry: Int32Array, bias?: Float32Array, cols?: Float32Array): Float32Array;
  tfConv2dNchwBackpropInput(dy: Float32Array, filter: Float32Array, geometry: Int32Array): Float32Array;
  tfConv2dNchwBackpropFilter(x: Float32Array, dy: Float32Array, geometry: Int32Array, cols?: Float32Array): Float32Array;
  tfBatchMatMul(a: Float32Array, b: Float32Array, dims: Int32Array): Float32Array;
  tfStridedCopy(src: Float32Array, dst: Float32Array, layout: Int32Array): void;
  tfBinary(a: Float32Array, b: Float32Array, layout: Int32Array, op: number): Float32Array;
  tfUnary(x: Float32Array, op: number, alpha: number): Float32Array;
  tfReduce(x: Float32Array, layout: Int32Array, mean: boolean): Float32Array;
  tfLayerNorm(x: Float32Array, gamma: Float32Array, beta: Float32Array, cols: number, eps: number): [Float32Array, Float32Array, Float32Array];
  tfLayerNormGrad(
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    cols: number,
  ): [Float32Array, Float32Array, Float32Array];
  tfGelu(x: Float32Array): Float32Array;
  tfGeluGrad(dy: Float32Array, x: Float32Array): Float32Array;
  tfSoftmaxGrad(dy: Float32Array, y: Float32Array, cols: number): Float32Array;
  tfReluGrad(dy: Float32Array, y: Float32Array): Float32Array;
  tfSoftmax(x: Float32Array, cols: number): Float32Array;
  tfAlloc(n: number): Float32Array;
  tfKeepFreedMemory(on: boolean): void;
}

const require = createRequire(import.meta.url);
const bindings = require('bindings') as typeof import('bindings');
const addon = bindings({ bindings: 'immunize_linalg', module_root: packageRoot() }) as TfAddon;

function bad(message: string): never {
  throw new LinalgError('BAD_ARGUMENT', message);
}

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toLinalgError(err);
  }
}

function checkCount(name: string, n: number, least: number): void {
  if (!Number.isInteger(n) || n < least || n >= 2 ** 31) bad(`${name} must be an integer in [${least}, 2^31), got ${n}`);
}

function checkLength(name: string, a: Float32Array, expected: number): void {
  if (!(a instanceof Float32Array)) bad(`${name} must be a Float32Array`);
  if (a.length !== expected) bad(`${name} has ${a.length} elements, its shape needs ${expected}`);
}

const GEOMETRY_KEYS = [
  'batch',
  'inHeight',
  'inWidth',
  'inChannels',
  'filterHeight',
  'filterWidth',
  'outChannels',
  'outHeight',
  'outWidth',
  'strideHeight',
  'strideWidth',
  'dilationHeight',
  'dilationWidth',
  'padTop',
  'padLeft',
] as const;

function packGeometry(g: ConvGeometry): Int32Array {
  for (const key of GEOMETRY_KEYS) checkCount(`conv ${key}`, g[key], key === 'padTop' || key === 'padLeft' ? 0 : 1);
  return Int32Array.from(GEOMETRY_KEYS, (key) => g[key]);
}

const inputSize = (g: ConvGeometry) => g.batch * g.inHeight * g.inWidth * g.inChannels;
const filterSize = (g: ConvGeometry) => g.filterHeight * g.filterWidth * g.inChannels * g.outChannels;
const outputSize = (g: ConvGeometry) => g.batch * g.outHeight * g.outWidth * g.outChannels;

/** y = conv(x, filter): x N×H×W×Cin, filter kh×kw×Cin×Cout, y N×outHeight×outWidth×Cout. */
export function conv2d(x: Float32Array, filter: Float32Array, g: ConvGeometry): Float32Array {
  const geometry = packGeometry(g);
  checkLength('conv2d x', x, inputSize(g));
  checkLength('conv2d filter', filter, filterSize(g));
  return call(() => addon.tfConv2d(x, filter, geometry));
}

/** ∂L/∂x of y = conv(x, filter) given dy = ∂L/∂y. */
export function conv2dBackpropInput(dy: Float32Array, filter: Float32Array, g: ConvGeometry): Float32Array {
  const geometry = packGeometry(g);
  checkLength('conv2dBackpropInput dy', dy, outputSize(g));
  checkLength('conv2dBackpropInput filter', filter, filterSize(g));
  return call(() => addon.tfConv2dBackpropInput(dy, filter, geometry));
}

/** ∂L/∂filter of y = conv(x, filter) given dy = ∂L/∂y. */
export function conv2dBackpropFilter(x: Float32Array, dy: Float32Array, g: ConvGeometry): Float32Array {
  const geometry = packGeometry(g);
  checkLength('conv2dBackpropFilter x', x, inputSize(g));
  checkLength('conv2dBackpropFilter dy', dy, outputSize(g));
  return call(() => addon.tfConv2dBackpropFilter(x, dy, geometry));
}

/**
 * y = conv(x, filter) + bias in ONNX's layouts: x N×Cin×H×W, filter Cout×Cin×kh×kw, bias Cout (optional), y
 * N×Cout×outHeight×outWidth. The padding is read as zeros inside the kernel (padTop and padLeft; the bottom and right
 * follow from the output size).
 */
export function conv2dNchw(x: Float32Array, filter: Float32Array, g: ConvGeometry, bias?: Float32Array, cols?: Float32Array): Float32Array {
  const geometry = packGeometry(g);
  checkLength('conv2dNchw x', x, inputSize(g));
  checkLength('conv2dNchw filter', filter, filterSize(g));
  if (bias !== undefined) checkLength('conv2dNchw bias', bias, g.outChannels);
  if (cols !== undefined) checkLength('conv2dNchw cols', cols, patchMatrixSize(g));
  return call(() => addon.tfConv2dNchw(x, filter, geometry, bias, cols));
}

/** Floats in the patch matrix of a whole batch: (Cin·kh·kw) × (N·outHeight·outWidth). */
export const patchMatrixSize = (g: ConvGeometry) => g.inChannels * g.filterHeight * g.filterWidth * g.batch * g.outHeight * g.outWidth;

/** ∂L/∂x of conv2dNchw given dy = ∂L/∂y. */
export function conv2dNchwBackpropInput(dy: Float32Array, filter: Float32Array, g: ConvGeometry): Float32Array {
  const geometry = packGeometry(g);
  checkLength('conv2dNchwBackpropInput dy', dy, outputSize(g));
  checkLength('conv2dNchwBackpropInput filter', filter, filterSize(g));
  return call(() => addon.tfConv2dNchwBackpropInput(dy, filter, geometry));
}

/**
 * ∂L/∂filter of conv2dNchw given dy = ∂L/∂y; from `cols`, the patch matrix conv2dNchw wrote for the same x and
 * geometry, when it is given (x is then not read).
 */
export function conv2dNchwBackpropFilter(x: Float32Array, dy: Float32Array, g: ConvGeometry, cols?: Float32Array): Float32Array {
  const geometry = packGeometry(g);
  checkLength('conv2dNchwBackpropFilter x', x, inputSize(g));
  checkLength('conv2dNchwBackpropFilter dy', dy, outputSize(g));
  if (cols !== undefined) checkLength('conv2dNchwBackpropFilter cols', cols, patchMatrixSize(g));
  return call(() => addon.tfConv2dNchwBackpropFilter(x, dy, geometry, cols));
}

/** max(batchA, batchB) products op(a)·op(b), each m×n, one after another. */
export function batchMatMul(a: Float32Array, b: Float32Array, d: MatMulDims): Float32Array {
  for (const key of ['batchA', 'batchB', 'm', 'k', 'n'] as const) checkCount(`batchMatMul ${key}`, d[key], 1);
  if (d.batchA !== d.batchB && d.batchA !== 1 && d.batchB !== 1) bad(`batchMatMul: batch sizes ${d.batchA} and ${d.batchB} do not broadcast`);
  checkLength('batchMatMul a', a, d.batchA * d.m * d.k);
  checkLength('batchMatMul b', b, d.batchB * d.k * d.n);
  const dims = Int32Array.from([d.batchA, d.batchB, d.m, d.k, d.n, d.transposeA ? 1 : 0, d.transposeB ? 1 : 0]);
  return call(() => addon.tfBatchMatMul(a, b, dims));
}

/** Where a strided copy reads and writes: element i (a multi-index over `shape`) goes from src[srcBase + i·srcStrides] to dst[dstBase + i·dstStrides]. */
export interface CopyLayout {
  shape: readonly number[];
  srcStrides: readonly number[];
  dstStrides: readonly number[];
  srcBase: number;
  dstBase: number;
}

/** Copies a strided view of src into dst (transpose, slice and pad are all this copy); the rest of dst is untouched. */
export function stridedCopy(src: Float32Array, dst: Float32Array, l: CopyLayout): void {
  const rank = l.shape.length;
  if (rank < 1 || rank > 8 || l.srcStrides.length !== rank || l.dstStrides.length !== rank)
    bad(`stridedCopy: a rank of 1 to 8 with a stride for each dimension, got rank ${rank}`);
  if (!(src instanceof Float32Array) || !(dst instanceof Float32Array)) bad('stridedCopy: src and dst must be Float32Arrays');
  l.shape.forEach((n) => checkCount('stridedCopy size', n, 1));
  [...l.srcStrides, ...l.dstStrides, l.srcBase, l.dstBase].forEach((n) => checkCount('stridedCopy stride or offset', n, 0));
  const layout = Int32Array.from([rank, ...l.shape, ...l.srcStrides, ...l.dstStrides, l.srcBase, l.dstBase]);
  call(() => addon.tfStridedCopy(src, dst, layout));
}

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';
const BINARY_OPS: readonly BinaryOp[] = ['add', 'sub', 'mul', 'div'];

/**
 * Element-wise a op b over `shape`, reading a[i·aStrides] and b[i·bStrides]: a stride of 0 broadcasts that input
 * along the dimension. The result is row-major over `shape`.
 */
export function binary(
  op: BinaryOp,
  a: Float32Array,
  b: Float32Array,
  shape: readonly number[],
  aStrides: readonly number[],
  bStrides: readonly number[],
): Float32Array {
  const rank = shape.length;
  if (rank < 1 || rank > 8 || aStrides.length !== rank || bStrides.length !== rank)
    bad(`binary: a rank of 1 to 8 with a stride for each dimension, got rank ${rank}`);
  if (!(a instanceof Float32Array) || !(b instanceof Float32Array)) bad('binary: a and b must be Float32Arrays');
  if (!BINARY_OPS.includes(op)) bad(`binary: unknown op ${String(op)}`);
  shape.forEach((n) => checkCount('binary size', n, 1));
  [...aStrides, ...bStrides].forEach((n) => checkCount('binary stride', n, 0));
  const layout = Int32Array.from([rank, ...shape, ...aStrides, ...bStrides]);
  return call(() => addon.tfBinary(a, b, layout, BINARY_OPS.indexOf(op)));
}

/** The sum (or mean) of x (row-major over `shape`) over the dimensions flagged in `reduced`; the rest keep their order. */
export function reduce(x: Float32Array, shape: readonly number[], reduced: readonly boolean[], mean = false): Float32Array {
  const rank = shape.length;
  if (rank < 1 || rank > 8 || reduced.length !== rank) bad(`reduce: a rank of 1 to 8 with a flag for each dimension, got rank ${rank}`);
  if (!(x instanceof Float32Array)) bad('reduce: x must be a Float32Array');
  shape.forEach((n) => checkCount('reduce size', n, 1));
  const layout = Int32Array.from([rank, ...shape, ...reduced.map((r) => (r ? 1 : 0))]);
  return call(() => addon.tfReduce(x, layout, mean));
}

export type UnaryOp = 'exp' | 'erf' | 'neg' | 'square' | 'relu' | 'step';
const UNARY_OPS: readonly UnaryOp[] = ['exp', 'erf', 'neg', 'square', 'relu', 'step'];

/** Element-wise op(x); `step` is x > 0 ? 1 : alpha (NaN kept), `relu` is x < 0 ? 0 : x, as tfjs defines them. */
export function unary(op: UnaryOp, x: Float32Array, alpha = 0): Float32Array {
  if (!(x instanceof Float32Array)) bad('unary: x must be a Float32Array');
  if (!UNARY_OPS.includes(op)) bad(`unary: unknown op ${String(op)}`);
  return call(() => addon.tfUnary(x, UNARY_OPS.indexOf(op), alpha));
}

/** Softmax over each row of `cols` consecutive entries. */
export function softmaxRows(x: Float32Array, cols: number): Float32Array {
  if (!(x instanceof Float32Array)) bad('softmaxRows: x must be a Float32Array');
  checkCount('softmaxRows cols', cols, 1);
  if (x.length % cols !== 0) bad(`softmaxRows: ${cols} columns do not divide ${x.length} entries`);
  return call(() => addon.tfSoftmax(x, cols));
}

/** n floats for a kernel's output, their contents undefined (no zero fill): the kernel must write every one. */
export function outputFloats(n: number): Float32Array {
  checkCount('outputFloats n', n, 0);
  return call(() => addon.tfAlloc(n));
}

let keepers = 0;

/**
 * While held, malloc keeps freed memory for reuse instead of returning large blocks to the kernel: a training step
 * frees and reallocates gigabytes of tensors, and a fresh page costs a fault on first touch. The returned function
 * lets go; when the last holder lets go, malloc's defaults return and its free memory goes back to the kernel.
 */
export function keepFreedMemory(): () => void {
  if (keepers++ === 0) call(() => addon.tfKeepFreedMemory(true));
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    if (--keepers === 0) call(() => addon.tfKeepFreedMemory(false));
  };
}

function checkRows(name: string, x: Float32Array, cols: number): number {
  if (!(x instanceof Float32Array)) bad(`${name}: x must be a Float32Array`);
  checkCount(`${name} cols`, cols, 1);
  if (x.length === 0 || x.length % cols !== 0) bad(`${name}: ${cols} columns do not divide ${x.length} entries`);
  return x.length / cols;
}

/**
 * Layer normalisation of each row of `cols` entries (biased variance, as ONNX and torch define it), scaled by gamma
 * and shifted by beta; with each row's mean and 1/√(var + eps) for the gradient.
 */
export function layerNorm(
  x: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  cols: number,
  eps: number,
): { y: Float32Array; mean: Float32Array; rstd: Float32Array } {
  checkRows('layerNorm', x, cols);
  checkLength('layerNorm gamma', gamma, cols);
  checkLength('layerNorm beta', beta, cols);
  if (!(eps >= 0)) bad(`layerNorm: eps must be non-negative, got ${eps}`);
  const [y, mean, rstd] = call(() => addon.tfLayerNorm(x, gamma, beta, cols, eps));
  return { y, mean, rstd };
}

/** The gradients of layerNorm's y with respect to x, gamma and beta, given dy and what layerNorm returned. */
export function layerNormGrad(
  dy: Float32Array,
  x: Float32Array,
  gamma: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  cols: number,
): { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array } {
  const rows = checkRows('layerNormGrad', x, cols);
  checkLength('layerNormGrad dy', dy, x.length);
  checkLength('layerNormGrad gamma', gamma, cols);
  checkLength('layerNormGrad mean', mean, rows);
  checkLength('layerNormGrad rstd', rstd, rows);
  const [dx, dgamma, dbeta] = call(() => addon.tfLayerNormGrad(dy, x, gamma, mean, rstd, cols));
  return { dx, dgamma, dbeta };
}

/** GELU in its exact form, x·Φ(x) = ½x(1 + erf(x/√2)), as torch's nn.GELU() computes it. */
export function gelu(x: Float32Array): Float32Array {
  if (!(x instanceof Float32Array)) bad('gelu: x must be a Float32Array');
  return call(() => addon.tfGelu(x));
}

/** dy·gelu'(x). */
export function geluGrad(dy: Float32Array, x: Float32Array): Float32Array {
  if (!(x instanceof Float32Array)) bad('geluGrad: x must be a Float32Array');
  checkLength('geluGrad dy', dy, x.length);
  return call(() => addon.tfGeluGrad(dy, x));
}

/** The gradient of a softmax over rows of `cols` entries, from its output y and dy: y·(dy − Σ dy·y) per row. */
export function softmaxGrad(dy: Float32Array, y: Float32Array, cols: number): Float32Array {
  checkRows('softmaxGrad', y, cols);
  checkLength('softmaxGrad dy', dy, y.length);
  return call(() => addon.tfSoftmaxGrad(dy, y, cols));
}

/** The gradient of y = relu(x) from y itself: dy where y > 0, else 0. */
export function reluGrad(dy: Float32Array, y: Float32Array): Float32Array {
  if (!(y instanceof Float32Array)) bad('reluGrad: y must be a Float32Array');
  checkLength('reluGrad dy', dy, y.length);
  return call(() => addon.tfReluGrad(dy, y));
}
