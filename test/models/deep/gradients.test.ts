/**
 * Gradients of the tail operators torch.onnx.export writes for torchvision's vit_b_16 and resnet18, through the same
 * ONNX → tfjs translation the tail uses, against central finite differences of that translation's forward.
 *
 * tfjs's cpu backend computes in float32 only, so the differences are taken in float32 and the loss is summed in
 * float64 (L = Σ wᵢ·yᵢ over the op's output with fixed random weights w). Its rounding error is then that of the
 * yᵢ alone: about 6e-8·|yᵢ| each, a few 1e-7 over these small outputs, which divided by 2ε = 2e-2 gives a few 1e-5
 * of noise. The truncation error of a central difference is ε²/6·|f'''| ≈ 2e-5 for the smooth ops here (LayerNorm,
 * Erf, Softmax on O(1) inputs). The tolerance, 1e-3 of the largest gradient entry, is 20× above both and far below
 * what a wrong or missing gradient term makes (O(1) of the gradient). Linear ops (slices, gathers, reshapes) have
 * no truncation error at all, so they are checked with ε = 1 and a tolerance of 1e-4.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs';
import type { NodeProto } from '../../../models/backbones/onnxProto.js';
import { OPS, type OpContext } from '../../../models/deep/ops.js';
import { axisRange } from '../../../models/deep/slice.js';
import { attr } from '../../../scripts/fixtures/onnxBuilder.js';
import { cpuBackend } from '../../helpers/deep.js';
import { normals } from '../../helpers/reference.js';

type Tf = Awaited<ReturnType<typeof cpuBackend>>['tf'];

function contextOf(tf: Tf, ints: Record<string, number[]>, scalars: string[] = []): OpContext {
  return { tf, ints: (n) => ints[n] ?? null, isScalar: (n) => scalars.includes(n) };
}

function randomArray(n: number, seed: number): Float32Array {
  const next = normals(seed);
  return Float32Array.from({ length: n }, () => next());
}

/**
 * The autodiff gradient of L(x) = Σ w·f(x) and its central differences, entry by entry, and the largest
 * difference between them relative to the largest gradient entry.
 */
function compareGradient(tf: Tf, f: (x: TF.Tensor) => TF.Tensor, shape: number[], eps: number, seed: number): { err: number; scale: number } {
  const size = shape.reduce((a, b) => a * b, 1);
  const x0 = randomArray(size, seed);
  const outSize = tf.tidy(() => f(tf.tensor(x0, shape)).size);
  const w = Float64Array.from(randomArray(outSize, seed + 1));
  const analytic = tf.tidy(() => {
    const wt = tf.tensor(
      Float32Array.from(w),
      tf.tidy(() => f(tf.tensor(x0, shape)).shape),
    );
    return tf
      .grad((x: TF.Tensor) => tf.sum(tf.mul(f(x), wt)))(tf.tensor(x0, shape))
      .dataSync()
      .slice();
  });
  const loss = (x: Float32Array) =>
    tf.tidy(() => {
      const y = f(tf.tensor(x, shape)).dataSync();
      let s = 0;
      for (let i = 0; i < y.length; i++) s += w[i] * y[i];
      return s;
    });
  let err = 0;
  let scale = 0;
  for (let i = 0; i < size; i++) {
    const plus = x0.slice();
    const minus = x0.slice();
    plus[i] += eps;
    minus[i] -= eps;
    // The step actually taken in float32, not the nominal one.
    const h = plus[i] - minus[i];
    const numeric = (loss(plus) - loss(minus)) / h;
    err = Math.max(err, Math.abs(numeric - analytic[i]));
    scale = Math.max(scale, Math.abs(analytic[i]));
  }
  return { err: err / scale, scale };
}

const node = (opType: string, input: string[], attribute: NodeProto['attribute'] = []): NodeProto => ({
  name: opType.toLowerCase(),
  opType,
  input,
  output: ['y'],
  attribute,
});

describe('tail operator gradients against central finite differences', () => {
  it('Slice with step 1 (the chunk of the fused q/k/v projection): a plain slice, no StridedSlice', async () => {
    const { tf } = await cpuBackend();
    // torch writes the chunk's third as Slice(x, starts=[2·E/3], ends=[E], axes=[-1]) with the ends computed.
    const ctx = contextOf(tf, { starts: [4], ends: [6], axes: [-1] });
    const f = (x: TF.Tensor) => OPS.Slice(ctx, node('Slice', ['x', 'starts', 'ends', 'axes']), [x]) as TF.Tensor;
    assert.deepEqual(
      tf.tidy(() => f(tf.zeros([2, 3, 6])).shape),
      [2, 3, 2],
    );
    const { err } = compareGradient(tf, f, [2, 3, 6], 1, 3);
    assert.ok(err < 1e-4, `relative gradient error ${err}`);
  });

  it('Slice with INT64_MAX ends, negative starts, steps 2 and −1 on two axes', async () => {
    const { tf } = await cpuBackend();
    const ctx = contextOf(tf, { starts: [-5, 1], ends: [9.223372036854776e18, -9.223372036854776e18], axes: [2, 1], steps: [2, -1] });
    const f = (x: TF.Tensor) => OPS.Slice(ctx, node('Slice', ['x', 'starts', 'ends', 'axes', 'steps']), [x]) as TF.Tensor;
    const x = tf.tensor(
      Array.from({ length: 2 * 3 * 6 }, (_, i) => i),
      [2, 3, 6],
    );
    // Independent check of the forward: numpy's x[:, 1::-1, -5::2].
    const expected: number[] = [];
    for (let n = 0; n < 2; n++) for (const r of [1, 0]) for (const c of [1, 3, 5]) expected.push(n * 18 + r * 6 + c);
    assert.deepEqual(Array.from(f(x).dataSync()), expected);
    const { err } = compareGradient(tf, f, [2, 3, 6], 1, 4);
    assert.ok(err < 1e-4, `relative gradient error ${err}`);
  });

  it('ONNX clamping of slice ranges', () => {
    assert.deepEqual(axisRange(0, 6, -5, 1e19, 2), { axis: 0, start: 1, step: 2, count: 3 });
    assert.deepEqual(axisRange(0, 6, 10, -1e19, -2), { axis: 0, start: 5, step: -2, count: 3 });
    assert.deepEqual(axisRange(0, 6, 4, 2, 1), { axis: 0, start: 4, step: 1, count: 0 });
    assert.deepEqual(axisRange(0, 6, 0, 6, 4), { axis: 0, start: 0, step: 4, count: 2 });
  });

  it('Gather of the class token (a scalar index on axis 1)', async () => {
    const { tf } = await cpuBackend();
    const ctx = contextOf(tf, { index: [0] }, ['index']);
    const f = (x: TF.Tensor) => OPS.Gather(ctx, node('Gather', ['x', 'index'], [attr.int('axis', 1)]), [x]) as TF.Tensor;
    assert.deepEqual(
      tf.tidy(() => f(tf.zeros([2, 5, 4])).shape),
      [2, 4],
    );
    const { err } = compareGradient(tf, f, [2, 5, 4], 1, 5);
    assert.ok(err < 1e-4, `relative gradient error ${err}`);
  });

  it('Reshape and Transpose of the attention heads', async () => {
    const { tf } = await cpuBackend();
    const ctx = contextOf(tf, { shape: [3, 4, 2] });
    const f = (x: TF.Tensor) => {
      const r = OPS.Reshape(ctx, node('Reshape', ['x', 'shape']), [x]) as TF.Tensor;
      return OPS.Transpose(ctx, node('Transpose', ['r'], [attr.ints('perm', [1, 2, 0])]), [r]) as TF.Tensor;
    };
    const { err } = compareGradient(tf, f, [3, 2, 4], 1, 6);
    assert.ok(err < 1e-4, `relative gradient error ${err}`);
  });

  it('LayerNormalization (axis −1, ε = 1e-6 as torch 1.13 writes it), with respect to its input and its scale', async () => {
    const { tf } = await cpuBackend();
    const ctx = contextOf(tf, {});
    const ln = node('LayerNormalization', ['x', 'scale', 'bias'], [attr.int('axis', -1), attr.float('epsilon', 1e-6)]);
    const scale = tf.tensor(randomArray(6, 7));
    const bias = tf.tensor(randomArray(6, 8));
    const onInput = compareGradient(tf, (x) => OPS.LayerNormalization(ctx, ln, [x, scale, bias]) as TF.Tensor, [3, 6], 1e-2, 9);
    assert.ok(onInput.err < 1e-3, `relative gradient error ${onInput.err} (input)`);
    const x = tf.tensor(randomArray(18, 10), [3, 6]);
    const onScale = compareGradient(tf, (s) => OPS.LayerNormalization(ctx, ln, [x, s, bias]) as TF.Tensor, [6], 1e-2, 11);
    assert.ok(onScale.err < 1e-3, `relative gradient error ${onScale.err} (scale)`);
  });

  it('GELU in the Erf form torch writes: x · (erf(x / √2) + 1) · 0.5', async () => {
    const { tf } = await cpuBackend();
    const ctx = contextOf(tf, {});
    const sqrt2 = tf.scalar(Math.SQRT2);
    const gelu = (x: TF.Tensor) => {
      const erf = OPS.Erf(ctx, node('Erf', ['d']), [OPS.Div(ctx, node('Div', ['x', 's']), [x, sqrt2]) as TF.Tensor]) as TF.Tensor;
      const inner = OPS.Add(ctx, node('Add', ['e', 'one']), [erf, tf.scalar(1)]) as TF.Tensor;
      return OPS.Mul(ctx, node('Mul', ['m', 'half']), [OPS.Mul(ctx, node('Mul', ['x', 'a']), [x, inner]) as TF.Tensor, tf.scalar(0.5)]) as TF.Tensor;
    };
    // Against the closed form: GELU'(x) = Φ(x) + x·φ(x) at a few points, then finite differences everywhere.
    const points = [-2, -0.5, 0, 0.7, 1.5];
    const grad = tf
      .grad((x: TF.Tensor) => tf.sum(gelu(x)))(tf.tensor(points))
      .dataSync();
    const phi = (v: number) => Math.exp((-v * v) / 2) / Math.sqrt(2 * Math.PI);
    const Phi = [0.022750131948179, 0.308537538725987, 0.5, 0.758036347776927, 0.933192798731142];
    points.forEach((v, i) => assert.ok(Math.abs(grad[i] - (Phi[i] + v * phi(v))) < 1e-5, `GELU'(${v}) = ${grad[i]}`));
    const { err } = compareGradient(tf, gelu, [4, 5], 1e-2, 12);
    assert.ok(err < 1e-3, `relative gradient error ${err}`);
  });

  it('Softmax over the last axis', async () => {
    const { tf } = await cpuBackend();
    const ctx = contextOf(tf, {});
    const f = (x: TF.Tensor) => OPS.Softmax(ctx, node('Softmax', ['x'], [attr.int('axis', -1)]), [x]) as TF.Tensor;
    const { err } = compareGradient(tf, f, [2, 3, 5], 1e-2, 13);
    assert.ok(err < 1e-3, `relative gradient error ${err}`);
  });
});
