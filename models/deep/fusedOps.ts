/**
 * Fused forms of a transformer block's element-wise chains: layer normalisation, exact GELU and softmax's gradient,
 * each one native kernel forward and one backward (tf.customGrad), where tfjs's own ops make a dozen passes over
 * the activations and keep as many intermediates on the tape. Only a backend that registers these kernels (our
 * native one) uses them; elsewhere the tail keeps the plain tfjs ops.
 */
import type * as TF from '@tensorflow/tfjs';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { NodeProto } from '../backbones/onnxProto.js';
import { gelu, geluGrad, layerNorm, layerNormGrad, reluGrad, softmaxGrad } from '../linalg/tfKernels.js';
type Tf = typeof TF;

type Tensor = TF.Tensor;
type TensorInfo = TF.TensorInfo;
type KernelFunc = TF.KernelFunc;

function values(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId)?.values;
  if (t.dtype !== 'float32' || !(v instanceof Float32Array)) throw new Error(`fused kernels take float32 tensors, got ${t.dtype}`);
  return v;
}

const lastDim = (t: TensorInfo) => t.shape[t.shape.length - 1] ?? 1;

/** Kernels for a tfjs-backend-cpu-based backend; the kernel name says what each computes. */
export const FUSED_KERNELS: Record<string, KernelFunc> = {
  // x (rows × cols, cols = gamma's size), gamma, beta → y, mean, rstd (1/√(var + eps)).
  FusedLayerNorm: ({ inputs, backend, attrs = {} }) => {
    const cpu = backend as MathBackendCPU;
    const { x, gamma, beta } = inputs as { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo };
    const cols = values(cpu, gamma).length;
    const { y, mean, rstd } = layerNorm(values(cpu, x), values(cpu, gamma), values(cpu, beta), cols, attrs.eps as number);
    const rows = mean.length;
    return [cpu.makeTensorInfo(x.shape, 'float32', y), cpu.makeTensorInfo([rows], 'float32', mean), cpu.makeTensorInfo([rows], 'float32', rstd)];
  },
  FusedLayerNormGrad: ({ inputs, backend }) => {
    const cpu = backend as MathBackendCPU;
    const { dy, x, gamma, mean, rstd } = inputs as Record<'dy' | 'x' | 'gamma' | 'mean' | 'rstd', TensorInfo>;
    const g = values(cpu, gamma);
    const { dx, dgamma, dbeta } = layerNormGrad(values(cpu, dy), values(cpu, x), g, values(cpu, mean), values(cpu, rstd), g.length);
    return [cpu.makeTensorInfo(x.shape, 'float32', dx), cpu.makeTensorInfo(gamma.shape, 'float32', dgamma), cpu.makeTensorInfo(gamma.shape, 'float32', dbeta)];
  },
  FusedGelu: ({ inputs, backend }) => {
    const cpu = backend as MathBackendCPU;
    const { x } = inputs as { x: TensorInfo };
    return cpu.makeTensorInfo(x.shape, 'float32', gelu(values(cpu, x)));
  },
  FusedGeluGrad: ({ inputs, backend }) => {
    const cpu = backend as MathBackendCPU;
    const { dy, x } = inputs as { dy: TensorInfo; x: TensorInfo };
    return cpu.makeTensorInfo(x.shape, 'float32', geluGrad(values(cpu, dy), values(cpu, x)));
  },
  // ReLU's, from its output y.
  FusedReluGrad: ({ inputs, backend }) => {
    const cpu = backend as MathBackendCPU;
    const { dy, y } = inputs as { dy: TensorInfo; y: TensorInfo };
    return cpu.makeTensorInfo(y.shape, 'float32', reluGrad(values(cpu, dy), values(cpu, y)));
  },
  // Softmax over the last axis, from its output y.
  FusedSoftmaxGrad: ({ inputs, backend }) => {
    const cpu = backend as MathBackendCPU;
    const { dy, y } = inputs as { dy: TensorInfo; y: TensorInfo };
    return cpu.makeTensorInfo(y.shape, 'float32', softmaxGrad(values(cpu, dy), values(cpu, y), lastDim(y)));
  },
};

/** Whether the current backend runs the fused kernels. */
export function hasFusedKernels(tf: Tf): boolean {
  return tf.getKernel('FusedGelu', tf.getBackend()) !== undefined;
}

const run = (tf: Tf, name: string, inputs: Record<string, Tensor>, attrs: Record<string, number> = {}) =>
  tf.engine().runKernel(name, inputs as unknown as TF.NamedTensorMap, attrs as unknown as TF.NamedAttrMap);

/**
 * Layer normalisation over x's trailing dimensions that gamma and beta cover (their size is those dimensions'
 * product), as one kernel each way. Null when the shapes don't fit that form or a tensor isn't float32.
 */
export function fusedLayerNorm(tf: Tf, x: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor | null {
  if (x.rank === 0 || gamma.size !== beta.size || x.size === 0 || x.size % gamma.size !== 0) return null;
  if ([x, gamma, beta].some((t) => t.dtype !== 'float32')) return null;
  // gamma must cover whole trailing dimensions.
  let trailing = 1;
  for (let d = x.rank - 1; d >= 0 && trailing < gamma.size; d--) trailing *= x.shape[d] as number;
  if (trailing !== gamma.size) return null;
  const f = tf.customGrad((...args: unknown[]) => {
    const [xt, g, b, save] = args as [Tensor, Tensor, Tensor, TF.GradSaveFunc];
    const [y, mean, rstd] = run(tf, 'FusedLayerNorm', { x: xt, gamma: tf.reshape(g, [-1]), beta: tf.reshape(b, [-1]) }, { eps }) as Tensor[];
    save([xt, g, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
        const [sx, sg, smean, srstd] = saved;
        const [dx, dgamma, dbeta] = run(tf, 'FusedLayerNormGrad', { dy: dy as Tensor, x: sx, gamma: sg, mean: smean, rstd: srstd }) as Tensor[];
        return [dx, tf.reshape(dgamma, g.shape), tf.reshape(dbeta, b.shape)];
      },
    };
  });
  return (f as unknown as (a: Tensor, b: Tensor, c: Tensor) => Tensor)(x, gamma, beta);
}

/** Exact GELU, x·Φ(x), as one kernel each way. */
export function fusedGelu(tf: Tf, x: Tensor): Tensor {
  return withOneKernelGradient(tf, x, (xt) => run(tf, 'FusedGelu', { x: xt }) as Tensor, 'x', 'FusedGeluGrad');
}

/** Softmax over the last axis, its gradient as one kernel from the saved output. */
export function fusedSoftmax(tf: Tf, x: Tensor): Tensor {
  return withOneKernelGradient(tf, x, (xt) => tf.softmax(xt), 'y', 'FusedSoftmaxGrad');
}

/** ReLU whose gradient is one pass over its saved output (tfjs's is a Step and a Multiply). */
export function fusedRelu(tf: Tf, x: Tensor): Tensor {
  return withOneKernelGradient(tf, x, (xt) => tf.relu(xt), 'y', 'FusedReluGrad');
}

/** A one-input op whose gradient is one native kernel of dy and a saved tensor: the input (`x`) or the output (`y`). */
function withOneKernelGradient(tf: Tf, x: Tensor, forward: (xt: Tensor) => Tensor, saves: 'x' | 'y', gradKernel: string): Tensor {
  const f = tf.customGrad((...args: unknown[]) => {
    const [xt, save] = args as [Tensor, TF.GradSaveFunc];
    const y = forward(xt);
    save([saves === 'x' ? xt : y]);
    return {
      value: y,
      gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => [run(tf, gradKernel, { dy: dy as Tensor, [saves]: saved[0] }) as Tensor],
    };
  });
  return (f as unknown as (a: Tensor) => Tensor)(x);
}

/**
 * An ONNX Conv (group 1) as one native kernel in its own layouts, x N×C×H×W and filter O×I×kh×kw, with ONNX's pads
 * [top, left, bottom, right] read as zeros inside it and the bias (Cout) added as it writes: no transposes either side,
 * no padded copy.
 */
export function nchwConv2d(tf: Tf, x: Tensor, filter: Tensor, bias: Tensor | undefined, strides: number[], pads: number[], dilations: number[]): Tensor {
  const inputs: Record<string, Tensor> = bias ? { x, filter, bias } : { x, filter };
  return run(tf, 'Conv2DNCHW', inputs, { strides, pads, dilations } as unknown as Record<string, number>) as Tensor;
}

/** A GELU written out as ONNX nodes: the node indices it spans, its input and the tensor it produces. */
export interface GeluChain {
  nodes: number[];
  input: string;
  output: string;
}

const near = (v: number | null, want: number, tol: number) => v !== null && Math.abs(v - want) <= tol;

/**
 * The exact GELU as torch.onnx.export writes it, 0.5·x·(1 + erf(x/√2)): Div by √2 (or Mul by 1/√2), Erf, Add 1,
 * and two Muls by x and 0.5 in either order (or x·0.5 first). `scalar` gives a constant input's value (null when it
 * is computed or not a single number); an intermediate that anything outside the chain reads (or that is a graph
 * result in `keep`) rules the chain out.
 */
export function findGeluChains(nodes: readonly NodeProto[], scalar: (name: string) => number | null, keep: ReadonlySet<string>): GeluChain[] {
  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) producer.set(o, i);
    for (const name of n.input ?? []) if (name) consumers.set(name, [...(consumers.get(name) ?? []), i]);
  });
  const out = (i: number) => nodes[i].output?.[0] ?? '';
  const ins = (i: number) => nodes[i].input ?? [];
  const only = (name: string): number | null => {
    const c = consumers.get(name) ?? [];
    return c.length === 1 && !keep.has(name) ? c[0] : null;
  };
  /** For a binary node with `known` as one input, the other input's name. */
  const other = (i: number, known: string): string | null => {
    const [a, b] = ins(i);
    if (ins(i).length !== 2) return null;
    return a === known ? b : b === known ? a : null;
  };
  const chains: GeluChain[] = [];
  nodes.forEach((erf, e) => {
    if (erf.opType !== 'Erf') return;
    const d = producer.get(ins(e)[0] ?? '');
    if (d === undefined || only(out(d)) !== e) return;
    const div = nodes[d];
    let x: string | null = null;
    if (div.opType === 'Div' && near(scalar(ins(d)[1]), Math.SQRT2, 1e-4)) x = ins(d)[0];
    else if (div.opType === 'Mul') {
      const [a, b] = ins(d);
      if (near(scalar(b), Math.SQRT1_2, 1e-5)) x = a;
      else if (near(scalar(a), Math.SQRT1_2, 1e-5)) x = b;
    }
    if (!x) return;
    const a = only(out(e));
    if (a === null || nodes[a].opType !== 'Add' || !near(scalar(other(a, out(e)) ?? ''), 1, 1e-6)) return;
    const m1 = only(out(a));
    if (m1 === null || nodes[m1].opType !== 'Mul') return;
    const m1Other = other(m1, out(a));
    if (m1Other === null) return;
    const m2 = only(out(m1));
    const m2Other = m2 !== null && nodes[m2].opType === 'Mul' ? other(m2, out(m1)) : null;
    const half = (name: string | null) => name !== null && near(scalar(name), 0.5, 1e-7);
    if (m2 !== null && ((m1Other === x && half(m2Other)) || (half(m1Other) && m2Other === x))) {
      chains.push({ nodes: [d, e, a, m1, m2], input: x, output: out(m2) });
      return;
    }
    // (x·0.5)·(1 + erf(x/√2)).
    const h = producer.get(m1Other);
    if (h !== undefined && nodes[h].opType === 'Mul' && only(out(h)) === m1 && other(h, x) !== null && half(other(h, x))) {
      chains.push({ nodes: [d, e, a, h, m1], input: x, output: out(m1) });
    }
  });
  return chains;
}
