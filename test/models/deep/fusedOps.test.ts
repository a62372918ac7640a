/**
 * The fused LayerNorm, GELU, ReLU and softmax kernels of the native backend: values and gradients against tfjs-backend-cpu
 * running the ONNX operators as plain tfjs ops (batch 1 and 64, normalised over one or two trailing axes), their
 * gradients against central finite differences, the GELU pattern as torch writes it (and what is left unfused), a
 * whole ViT tail on both backends, and bad arguments raising BAD_ARGUMENT.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { on, relErr } from '../../helpers/tfCompare.js';
import type { NodeProto } from '../../../models/backbones/onnxProto.js';
import { OnnxGraph } from '../../../models/backbones/graph.js';
import { findGeluChains, fusedGelu, fusedLayerNorm, fusedSoftmax, hasFusedKernels } from '../../../models/deep/fusedOps.js';
import { kernelProfile, NATIVE_BACKEND, registerNativeBackend, resetKernelProfile } from '../../../models/deep/nativeBackend.js';
import { OPS, type OpContext } from '../../../models/deep/ops.js';
import { planTail } from '../../../models/deep/split.js';
import { TailModel } from '../../../models/deep/tail.js';
import { isLinalgErrorCode } from '../../../models/linalg/index.js';
import { gelu, geluGrad, layerNorm, layerNormGrad, reluGrad, softmaxGrad } from '../../../models/linalg/tfKernels.js';
import { attr } from '../../../scripts/fixtures/onnxBuilder.js';
import { vitFixture } from '../../../scripts/fixtures/onnxVit.js';
import { normals } from '../../helpers/reference.js';

type Tf = typeof tf;

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const next = normals(seed);
  return Float32Array.from({ length: n }, () => scale * next());
}

const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

const context = (t: Tf): OpContext => ({ tf: t, ints: () => null, isScalar: () => false });

/** The value of f and the gradients of Σ r·f with respect to each input, for a fixed random r. */
function valueAndGrads(backend: string, f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: Array<{ data: Float32Array; shape: number[] }>): Float32Array[] {
  return on(backend, () =>
    tf.tidy(() => {
      const xs = inputs.map((x) => tf.tensor(x.data, x.shape));
      const y = f(...xs);
      const r = tf.tensor(randomArray(y.size, 99), y.shape);
      const grads = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(f(...a), r)))(xs);
      return [y, ...grads].map((t) => t.dataSync() as Float32Array);
    }),
  );
}

/** Central differences of Σ r·f(x) in float32 against the analytic gradient, relative to its largest entry. */
function finiteDifferenceError(f: (x: tf.Tensor) => tf.Tensor, shape: number[], seed: number): number {
  return on(NATIVE_BACKEND, () => {
    const x0 = randomArray(sizeOf(shape), seed);
    const outShape = tf.tidy(() => f(tf.tensor(x0, shape)).shape);
    const r = randomArray(sizeOf(outShape), seed + 1);
    const analytic = tf.tidy(() =>
      tf
        .grad((x: tf.Tensor) => tf.sum(tf.mul(f(x), tf.tensor(r, outShape))))(tf.tensor(x0, shape))
        .dataSync(),
    );
    const loss = (x: Float32Array) =>
      tf.tidy(() => {
        const y = f(tf.tensor(x, shape)).dataSync();
        let s = 0;
        for (let i = 0; i < y.length; i++) s += r[i] * y[i];
        return s;
      });
    let err = 0;
    let scale = 0;
    for (let i = 0; i < x0.length; i++) {
      const plus = x0.slice();
      const minus = x0.slice();
      plus[i] += 1e-2;
      minus[i] -= 1e-2;
      const numeric = (loss(plus) - loss(minus)) / (plus[i] - minus[i]);
      err = Math.max(err, Math.abs(numeric - analytic[i]));
      scale = Math.max(scale, Math.abs(analytic[i]));
    }
    return err / scale;
  });
}

const calls = (name: string) => kernelProfile().get(name)?.calls ?? 0;

describe('fused native kernels', () => {
  before(() => {
    registerNativeBackend(tf);
    tf.setBackend('cpu');
    (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
  });

  it('only the native backend has them', () => {
    assert.equal(
      on('cpu', () => hasFusedKernels(tf)),
      false,
    );
    assert.equal(
      on(NATIVE_BACKEND, () => hasFusedKernels(tf)),
      true,
    );
  });

  const lnCases: Array<{ shape: number[]; axis: number }> = [
    { shape: [1, 7, 33], axis: -1 },
    { shape: [64, 9, 48], axis: -1 },
    { shape: [64, 100], axis: -1 },
    { shape: [1, 197, 64], axis: 2 },
    { shape: [64, 6, 5, 4], axis: -2 },
    { shape: [3, 1, 1], axis: -1 },
  ];
  for (const { shape, axis } of lnCases) {
    it(`LayerNormalization over [${shape}] from axis ${axis}: value and gradients for x, scale and bias match tfjs-backend-cpu`, () => {
      const first = axis < 0 ? axis + shape.length : axis;
      const norm = shape.slice(first);
      const node: NodeProto = {
        name: 'ln',
        opType: 'LayerNormalization',
        input: ['x', 's', 'b'],
        output: ['y'],
        attribute: [attr.int('axis', axis), attr.float('epsilon', 1e-6)],
      };
      const inputs = [
        { data: randomArray(sizeOf(shape), 1, 3), shape },
        { data: randomArray(sizeOf(norm), 2), shape: norm },
        { data: randomArray(sizeOf(norm), 3), shape: norm },
      ];
      // An offset mean, as real activations have.
      inputs[0].data.forEach((v, i) => (inputs[0].data[i] = v + 5));
      const f = (x: tf.Tensor, s: tf.Tensor, b: tf.Tensor) => OPS.LayerNormalization(context(tf), node, [x, s, b]) as tf.Tensor;
      const want = valueAndGrads('cpu', f, inputs);
      resetKernelProfile();
      const got = valueAndGrads(NATIVE_BACKEND, f, inputs);
      assert.ok(calls('FusedLayerNorm') >= 1 && calls('FusedLayerNormGrad') >= 1, 'the fused kernels ran');
      ['y', 'dx', 'dscale', 'dbias'].forEach((name, i) => {
        const e = relErr(got[i], want[i]);
        assert.ok(e < 2e-5, `${name} differs by ${e.toExponential(2)}`);
      });
    });
  }

  for (const shape of [
    [1, 5, 37],
    [64, 7, 19],
  ]) {
    it(`GELU, ReLU and softmax over [${shape}]: value and gradient match the ops torch's export spells out, on tfjs-backend-cpu`, () => {
      const x = { data: randomArray(sizeOf(shape), 4, 2), shape };
      const plainGelu = (t: tf.Tensor) => tf.mul(tf.mul(t, tf.add(tf.erf(tf.div(t, Math.SQRT2)), 1)), 0.5);
      const want = valueAndGrads('cpu', plainGelu, [x]);
      resetKernelProfile();
      const got = valueAndGrads(NATIVE_BACKEND, (t) => fusedGelu(tf, t), [x]);
      assert.ok(calls('FusedGelu') >= 1 && calls('FusedGeluGrad') >= 1);
      ['y', 'dx'].forEach((name, i) => assert.ok(relErr(got[i], want[i]) < 2e-6, `gelu ${name} differs by ${relErr(got[i], want[i]).toExponential(2)}`));

      // Exact zeros too, where tfjs's step gives 0.
      const xr = { data: x.data.map((v, i) => (i % 7 === 0 ? 0 : v)), shape };
      const relu = (t: tf.Tensor) => OPS.Relu(context(tf), { opType: 'Relu', input: ['x'], output: ['y'] }, [t]) as tf.Tensor;
      const wantR = valueAndGrads('cpu', relu, [xr]);
      resetKernelProfile();
      const gotR = valueAndGrads(NATIVE_BACKEND, relu, [xr]);
      assert.ok(calls('FusedReluGrad') >= 1 && calls('Step') === 0);
      ['y', 'dx'].forEach((name, i) => assert.equal(relErr(gotR[i], wantR[i]), 0, `relu ${name}`));

      const wantS = valueAndGrads('cpu', (t) => tf.softmax(t), [x]);
      resetKernelProfile();
      const gotS = valueAndGrads(NATIVE_BACKEND, (t) => fusedSoftmax(tf, t), [x]);
      assert.ok(calls('FusedSoftmaxGrad') >= 1);
      ['y', 'dx'].forEach((name, i) => assert.ok(relErr(gotS[i], wantS[i]) < 2e-6, `softmax ${name} differs by ${relErr(gotS[i], wantS[i]).toExponential(2)}`));
    });
  }

  it('GELU and its derivative are within 3e-7·max(1, |x|) of a double-precision x·Φ(x) over [−8, 8]', () => {
    // erf by its Taylor series in double up to |z| = 4 (its cancellation costs at most e^16·1e-16 ≈ 1e-9), and
    // beyond by erfc's asymptotic series e^(−z²)/(z√π)·(1 − 1/(2z²) + 3/(4z⁴)), off by under 1e-11 there.
    const erf = (z: number): number => {
      const a = Math.abs(z);
      if (a > 4) return Math.sign(z) * (1 - (Math.exp(-a * a) / (a * Math.sqrt(Math.PI))) * (1 - 1 / (2 * a * a) + 3 / (4 * a ** 4)));
      let term = z;
      let sum = z;
      for (let n = 1; n < 200; n++) {
        term *= (-z * z) / n;
        sum += term / (2 * n + 1);
      }
      return (2 / Math.sqrt(Math.PI)) * sum;
    };
    const xs = Float32Array.from({ length: 1601 }, (_, i) => -8 + i / 100);
    const y = gelu(xs);
    const dy = geluGrad(new Float32Array(xs.length).fill(1), xs);
    xs.forEach((x, i) => {
      const phi = 0.5 * (1 + erf(x / Math.SQRT2));
      const density = Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
      const tol = 3e-7 * Math.max(1, Math.abs(x));
      assert.ok(Math.abs(y[i] - x * phi) <= tol, `gelu(${x}) = ${y[i]}, want ${x * phi}`);
      assert.ok(Math.abs(dy[i] - (phi + x * density)) <= tol, `gelu'(${x}) = ${dy[i]}, want ${phi + x * density}`);
    });
  });

  it('gradients agree with central finite differences', () => {
    const shape = [3, 4, 6];
    const gamma = randomArray(6, 7);
    const beta = randomArray(6, 8);
    const ln = (x: tf.Tensor) => fusedLayerNorm(tf, x, tf.tensor(gamma), tf.tensor(beta), 1e-5)!;
    for (const [name, f] of [
      ['layer norm', ln],
      ['gelu', (x: tf.Tensor) => fusedGelu(tf, x)],
      ['softmax', (x: tf.Tensor) => fusedSoftmax(tf, x)],
    ] as const) {
      const e = finiteDifferenceError(f, shape, 11);
      assert.ok(e < 1e-3, `${name}: ${e.toExponential(2)}`);
    }
  });

  it('finds the GELU as torch exports it, in each order of its products, and leaves a chain whose parts are read elsewhere', () => {
    const consts: Record<string, number> = { sqrt2: Math.SQRT2, invSqrt2: Math.SQRT1_2, one: 1, half: 0.5 };
    const scalar = (name: string) => consts[name] ?? null;
    const n = (opType: string, input: string[], output: string): NodeProto => ({ opType, input, output: [output] });
    const head = [n('Div', ['x', 'sqrt2'], 'd'), n('Erf', ['d'], 'e'), n('Add', ['e', 'one'], 'a')];
    const torchOrder = [...head, n('Mul', ['x', 'a'], 'm'), n('Mul', ['m', 'half'], 'y')];
    assert.deepEqual(findGeluChains(torchOrder, scalar, new Set()), [{ nodes: [0, 1, 2, 3, 4], input: 'x', output: 'y' }]);
    const halfFirst = [...head, n('Mul', ['half', 'a'], 'm'), n('Mul', ['x', 'm'], 'y')];
    assert.equal(findGeluChains(halfFirst, scalar, new Set())[0]?.output, 'y');
    const xHalf = [
      n('Mul', ['invSqrt2', 'x'], 'd'),
      n('Erf', ['d'], 'e'),
      n('Add', ['one', 'e'], 'a'),
      n('Mul', ['x', 'half'], 'h'),
      n('Mul', ['h', 'a'], 'y'),
    ];
    assert.deepEqual(findGeluChains(xHalf, scalar, new Set()), [{ nodes: [0, 1, 2, 3, 4], input: 'x', output: 'y' }]);
    // The erf read by another node, a graph result inside the chain, or a different constant: not a GELU to fuse.
    assert.equal(findGeluChains([...torchOrder, n('Relu', ['e'], 'z')], scalar, new Set()).length, 0);
    assert.equal(findGeluChains(torchOrder, scalar, new Set(['m'])).length, 0);
    assert.equal(findGeluChains(torchOrder, (name) => (name === 'half' ? 0.25 : scalar(name)), new Set()).length, 0);
  });

  for (const batch of [1, 64]) {
    it(`a ViT tail (fused LayerNorm, GELU and softmax, q/k/v by one split) matches tfjs-backend-cpu's plain ops, logits and every parameter's gradient, batch ${batch}`, () => {
      const bytes = vitFixture({ imageSize: 32, patch: 8, hidden: 48, layers: 2, heads: 4, mlp: 96, classes: 10 }).model.bytes;
      const plan = planTail(OnnxGraph.parse(bytes, 'vit.onnx'));
      const cut = randomArray(batch * 17 * 48, 21);
      const run = (backend: string) =>
        on(backend, () => {
          const tail = new TailModel(tf, plan);
          try {
            return tf.tidy(() => {
              const x = tf.tensor(cut, [batch, 17, 48]);
              const vars = [...tail.variables.values()];
              const { value, grads } = tf.variableGrads(() => {
                const { logits } = tail.forward(x);
                return tf.sum(tf.mul(logits, tf.tensor(randomArray(logits.size, 22), logits.shape))) as tf.Scalar;
              }, vars);
              return [value, ...vars.map((v) => grads[v.name])].map((t) => t.dataSync() as Float32Array);
            });
          } finally {
            tail.dispose();
          }
        });
      const want = run('cpu');
      resetKernelProfile();
      const got = run(NATIVE_BACKEND);
      for (const k of ['FusedLayerNorm', 'FusedLayerNormGrad', 'FusedGelu', 'FusedGeluGrad', 'FusedSoftmaxGrad', 'SplitV', 'Concat'])
        assert.ok(calls(k) >= 1, `${k} ran`);
      // q, k and v come from one split of the projection, not three slices (the class token is the one slice left).
      assert.equal(calls('Slice'), 1);
      got.forEach((g, i) => {
        const e = relErr(g, want[i]);
        assert.ok(e < 1e-4, `${i === 0 ? 'loss' : `gradient ${i}`} differs by ${e.toExponential(2)}`);
      });
    });
  }

  it('bad arguments throw BAD_ARGUMENT', () => {
    const badArgument = (fn: () => unknown) => assert.throws(fn, (e: Error & { code?: string }) => isLinalgErrorCode(e.code) && e.code === 'BAD_ARGUMENT');
    const x = new Float32Array(12);
    const g = new Float32Array(4);
    assert.equal(layerNorm(x, g, g, 4, 1e-5).mean.length, 3);
    badArgument(() => layerNorm(x, new Float32Array(3), g, 4, 1e-5));
    badArgument(() => layerNorm(x, g, g, 5, 1e-5));
    badArgument(() => layerNorm(new Float32Array(0), g, g, 4, 1e-5));
    badArgument(() => layerNorm(x, g, g, 4, -1));
    badArgument(() => layerNormGrad(x, x, g, new Float32Array(2), new Float32Array(3), 4));
    badArgument(() => layerNormGrad(new Float32Array(11), x, g, new Float32Array(3), new Float32Array(3), 4));
    badArgument(() => gelu(new Float64Array(3) as unknown as Float32Array));
    badArgument(() => geluGrad(new Float32Array(3), new Float32Array(4)));
    badArgument(() => softmaxGrad(x, x, 5));
    badArgument(() => reluGrad(new Float32Array(3), x));
    assert.ok(Number.isNaN(reluGrad(Float32Array.of(1, 1), Float32Array.of(Number.NaN, 2))[0]));
    badArgument(() => softmaxGrad(new Float32Array(4), x, 4));
    // Shapes the fused layer norm does not cover leave it to the plain ops.
    on(NATIVE_BACKEND, () => {
      tf.tidy(() => {
        assert.equal(fusedLayerNorm(tf, tf.zeros([2, 6]), tf.ones([4]), tf.zeros([4]), 1e-5), null);
        assert.equal(fusedLayerNorm(tf, tf.zeros([2, 6]), tf.ones([6]), tf.zeros([3]), 1e-5), null);
      });
    });
  });
});
