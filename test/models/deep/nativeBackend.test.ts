/**
 * The native tfjs backend's sgemm kernels against tfjs-backend-cpu's on random shapes: Conv2D forward (strides,
 * same / valid / explicit padding, dilation) and both its gradients through tfjs's autodiff, and MatMul / BatchMatMul
 * with transposes and a broadcast batch, at batch 1 and 64. Each case also checks, from the kernel counter, that the
 * native kernel ran and did not fall back to the cpu one. Bad shapes raise an Error.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { on, relErr } from '../../helpers/tfCompare.js';
import { kernelProfile, registerNativeBackend, resetKernelProfile, NATIVE_BACKEND } from '../../../models/deep/nativeBackend.js';
import {
  binary,
  conv2d,
  conv2dNchw,
  conv2dNchwBackpropFilter,
  conv2dNchwBackpropInput,
  patchMatrixSize,
  batchMatMul,
  keepFreedMemory,
  outputFloats,
  reduce,
  stridedCopy,
  type ConvGeometry,
} from '../../../models/linalg/tfKernels.js';
import { isLinalgErrorCode } from '../../../models/linalg/index.js';
import { uniform } from '../../../models/engine/random.js';
import type { NodeProto } from '../../../models/backbones/onnxProto.js';
import { OPS } from '../../../models/deep/ops.js';
import { attr } from '../../../scripts/fixtures/onnxBuilder.js';

type Padding = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

function randomArray(n: number, next: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => 2 * next() - 1);
}

function nativeCalls(name: string): { calls: number; fallbacks: number } {
  const t = kernelProfile().get(name);
  return { calls: t?.calls ?? 0, fallbacks: t?.fallbacks ?? 0 };
}

interface ConvCase {
  batch: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
  kh: number;
  kw: number;
  stride: [number, number];
  dilation: [number, number];
  pad: Padding;
}

function randomConvCase(next: () => number, batch: number, withDilation: boolean): ConvCase {
  const pick = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const kh = pick(1, 3);
  const kw = pick(1, 3);
  const dilation: [number, number] = withDilation ? [pick(1, 2), pick(1, 2)] : [1, 1];
  const stride: [number, number] = withDilation ? [1, 1] : [pick(1, 3), pick(1, 3)];
  // Spatial sizes large enough for a valid convolution; small at batch 64 to keep the cpu reference quick.
  const minH = (kh - 1) * dilation[0] + 1;
  const minW = (kw - 1) * dilation[1] + 1;
  const h = pick(minH, minH + (batch > 1 ? 3 : 8));
  const w = pick(minW, minW + (batch > 1 ? 3 : 8));
  const which = pick(0, 2);
  const pad: Padding =
    which === 0
      ? 'same'
      : which === 1
        ? 'valid'
        : [
            [0, 0],
            [pick(0, kh - 1), pick(0, kh - 1)],
            [pick(0, kw - 1), pick(0, kw - 1)],
            [0, 0],
          ];
  return { batch, h, w, cin: pick(1, 9), cout: pick(1, 9), kh, kw, stride, dilation, pad };
}

function describeCase(c: ConvCase): string {
  return `x ${c.batch}×${c.h}×${c.w}×${c.cin}, filter ${c.kh}×${c.kw}→${c.cout}, stride ${c.stride}, dilation ${c.dilation}, pad ${JSON.stringify(c.pad)}`;
}

/** Forward, and (without dilation) both gradients of Σ r·conv(x, w) for a random r, on one backend. */
function convOn(backend: string, c: ConvCase, x: Float32Array, w: Float32Array, seed: number): Float32Array[] {
  return on(backend, () =>
    tf.tidy(() => {
      const xt = tf.tensor4d(x, [c.batch, c.h, c.w, c.cin]);
      const wt = tf.tensor4d(w, [c.kh, c.kw, c.cin, c.cout]);
      const y = tf.conv2d(xt, wt, c.stride, c.pad, 'NHWC', c.dilation);
      const out = [y.dataSync() as Float32Array];
      if (c.dilation[0] === 1 && c.dilation[1] === 1) {
        const r = tf.tensor(randomArray(y.size, uniform(seed)), y.shape);
        const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), r)))([xt, wt]);
        out.push(dx.dataSync() as Float32Array, dw.dataSync() as Float32Array);
      }
      return out;
    }),
  );
}

function checkConv(c: ConvCase, seed: number): void {
  const next = uniform(seed);
  const x = randomArray(c.batch * c.h * c.w * c.cin, next);
  const w = randomArray(c.kh * c.kw * c.cin * c.cout, next);
  const want = convOn('cpu', c, x, w, seed + 1);
  resetKernelProfile();
  const got = convOn(NATIVE_BACKEND, c, x, w, seed + 1);
  ['y', 'dx', 'dw'].slice(0, want.length).forEach((name, i) => {
    const e = relErr(got[i], want[i]);
    assert.ok(e < 2e-6, `${name} differs by ${e.toExponential(2)} for ${describeCase(c)}`);
  });
  const kernels = want.length === 3 ? ['Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter'] : ['Conv2D'];
  for (const k of kernels) {
    const t = nativeCalls(k);
    assert.ok(t.calls >= 1 && t.fallbacks === 0, `${k} ran natively for ${describeCase(c)}: ${JSON.stringify(t)}`);
  }
}

/**
 * An ONNX Conv through the op table on `backend`: its output, and with `gradients` those of Σ y·r (r seeded) with
 * respect to every input.
 */
function onnxConvOn(
  backend: string,
  node: NodeProto,
  shapes: number[][],
  data: Float32Array[],
  gradients: boolean,
  seed: number,
): { shape: number[]; outputs: Float32Array[] } {
  return on(backend, () =>
    tf.tidy(() => {
      const ctx = { tf, ints: () => null, isScalar: () => false };
      const xs = data.map((d, k) => tf.tensor(d, shapes[k]));
      const f = (...a: tf.Tensor[]) => OPS.Conv(ctx, node, a) as tf.Tensor;
      const y = f(...xs);
      if (!gradients) return { shape: y.shape, outputs: [y.dataSync() as Float32Array] };
      const r = tf.tensor(randomArray(y.size, uniform(seed)), y.shape);
      const grads = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(f(...a), r)))(xs);
      return { shape: y.shape, outputs: [y, ...grads].map((t) => t.dataSync() as Float32Array) };
    }),
  );
}

describe('native tfjs backend', () => {
  before(() => {
    registerNativeBackend(tf);
    tf.setBackend('cpu');
    (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
  });

  for (const batch of [1, 64]) {
    it(`Conv2D and its gradients match tfjs-backend-cpu on random shapes, batch ${batch}`, () => {
      const next = uniform(100 + batch);
      for (let i = 0; i < (batch === 1 ? 40 : 12); i++) checkConv(randomConvCase(next, batch, false), 1000 * batch + i);
    });
    it(`Conv2D with dilation matches tfjs-backend-cpu, batch ${batch}`, () => {
      const next = uniform(200 + batch);
      for (let i = 0; i < (batch === 1 ? 20 : 6); i++) checkConv(randomConvCase(next, batch, true), 2000 * batch + i);
    });
  }

  it('a layer4-sized 3×3 convolution (stride 2, 1×1 shortcut) matches', () => {
    const base = { batch: 2, h: 14, w: 14, cin: 64, cout: 96, dilation: [1, 1] as [number, number] };
    checkConv({ ...base, kh: 3, kw: 3, stride: [2, 2], pad: 'same' }, 7);
    checkConv({ ...base, kh: 1, kw: 1, stride: [2, 2], pad: 'valid' }, 8);
    checkConv({ ...base, kh: 1, kw: 1, stride: [1, 1], pad: 'valid' }, 9);
  });

  for (const batch of [1, 64]) {
    it(`an ONNX Conv runs as one NCHW kernel (padding inside, no transposes): value and gradients match tfjs-backend-cpu, batch ${batch}`, () => {
      const next = uniform(500 + batch);
      const pick = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
      for (let i = 0; i < (batch === 1 ? 30 : 10); i++) {
        const [kh, kw] = [pick(1, 3), pick(1, 3)];
        // tfjs's reference takes strides or dilations above 1, not both.
        const dilated = next() < 0.3;
        const dilations = dilated ? [pick(1, 2), pick(1, 2)] : [1, 1];
        const strides = dilated ? [1, 1] : [pick(1, 3), pick(1, 3)];
        const pads = [pick(0, kh), pick(0, kw), pick(0, kh), pick(0, kw)];
        const [cin, cout] = [pick(1, 9), pick(1, 9)];
        const h = pick((kh - 1) * dilations[0] + 1, (kh - 1) * dilations[0] + (batch > 1 ? 4 : 9));
        const w = pick((kw - 1) * dilations[1] + 1, (kw - 1) * dilations[1] + (batch > 1 ? 4 : 9));
        const withBias = next() < 0.5;
        const node: NodeProto = {
          name: 'conv',
          opType: 'Conv',
          input: withBias ? ['x', 'w', 'b'] : ['x', 'w'],
          output: ['y'],
          attribute: [attr.ints('strides', strides), attr.ints('pads', pads), attr.ints('dilations', dilations), attr.ints('kernel_shape', [kh, kw])],
        };
        const shapes = [[batch, cin, h, w], [cout, cin, kh, kw], ...(withBias ? [[cout]] : [])];
        const data = shapes.map((sh) =>
          randomArray(
            sh.reduce((a, b) => a * b, 1),
            next,
          ),
        );
        const label = `x [${shapes[0]}], w [${shapes[1]}], strides ${strides}, pads ${pads}, dilations ${dilations}, bias ${withBias}`;
        // tfjs has no gradient for a dilated convolution: those are checked against finite differences below.
        const run = (backend: string) => onnxConvOn(backend, node, shapes, data, !dilated, i).outputs;
        const want = run('cpu');
        resetKernelProfile();
        const got = run(NATIVE_BACKEND);
        ['y', 'dx', 'dw', 'db'].slice(0, want.length).forEach((name, k) => {
          const e = relErr(got[k], want[k]);
          assert.ok(e < 2e-6, `${name} differs by ${e.toExponential(2)} for ${label}`);
        });
        for (const k of ['Conv2DNCHW', 'Conv2DNCHWBackpropInput', 'Conv2DNCHWBackpropFilter'].slice(0, dilated ? 1 : 3)) {
          assert.ok(nativeCalls(k).calls >= 1, `${k} ran for ${label}`);
        }
        for (const k of ['Transpose', 'PadV2']) assert.equal(nativeCalls(k).calls, 0, `no ${k} for ${label}`);
      }
    });
  }

  it('stride-1 NCHW convolutions whose output is as large as their input ("same" padding, asymmetric or dilated) match tfjs-backend-cpu', () => {
    const cases: Array<{ k: [number, number]; pads: number[]; dilations: number[]; x: number[] }> = [
      { k: [3, 3], pads: [1, 1, 1, 1], dilations: [1, 1], x: [4, 16, 7, 7] },
      { k: [3, 3], pads: [1, 1, 1, 1], dilations: [1, 1], x: [64, 3, 2, 5] },
      { k: [1, 3], pads: [0, 1, 0, 1], dilations: [1, 1], x: [1, 5, 6, 4] },
      { k: [2, 2], pads: [1, 0, 0, 1], dilations: [1, 1], x: [2, 3, 5, 5] },
      { k: [3, 3], pads: [2, 2, 2, 2], dilations: [2, 2], x: [2, 4, 6, 5] },
      { k: [3, 1], pads: [0, 0, 2, 0], dilations: [1, 1], x: [1, 2, 1, 3] },
    ];
    cases.forEach((c, i) => {
      const node: NodeProto = {
        name: 'conv',
        opType: 'Conv',
        input: ['x', 'w', 'b'],
        output: ['y'],
        attribute: [attr.ints('pads', c.pads), attr.ints('dilations', c.dilations)],
      };
      const shapes = [c.x, [5, c.x[1], ...c.k], [5]];
      const data = shapes.map((sh) =>
        randomArray(
          sh.reduce((a, b) => a * b, 1),
          uniform(70 + i),
        ),
      );
      const dilated = c.dilations.some((d) => d > 1);
      const run = (backend: string) => {
        const r = onnxConvOn(backend, node, shapes, data, !dilated, i);
        assert.deepEqual(r.shape.slice(2), c.x.slice(2));
        return r.outputs;
      };
      const want = run('cpu');
      const got = run(NATIVE_BACKEND);
      want.forEach((w, k) => {
        const e = relErr(got[k], w);
        assert.ok(e < 2e-6, `${['y', 'dx', 'dw', 'db'][k]} differs by ${e.toExponential(2)} for ${JSON.stringify(c)}`);
      });
    });
  });

  for (const [label, strides, pads, shapes] of [
    [
      'strided',
      [2, 1],
      [1, 2, 0, 1],
      [
        [2, 2, 7, 6],
        [3, 2, 3, 2],
      ],
    ],
    [
      'same-size',
      [1, 1],
      [2, 2, 2, 2],
      [
        [2, 2, 6, 5],
        [3, 2, 3, 3],
      ],
    ],
  ] as const) {
    it(`a dilated ${label} NCHW convolution: gradients for input and filter agree with central finite differences`, () => {
      const node: NodeProto = {
        name: 'conv',
        opType: 'Conv',
        input: ['x', 'w'],
        output: ['y'],
        attribute: [attr.ints('strides', [...strides]), attr.ints('pads', [...pads]), attr.ints('dilations', [2, 2])],
      };
      const data = shapes.map((sh) =>
        randomArray(
          sh.reduce((a, b) => a * b, 1),
          uniform(sh[0]),
        ),
      );
      on(NATIVE_BACKEND, () => {
        const f = (x: Float32Array, w: Float32Array) =>
          OPS.Conv({ tf, ints: () => null, isScalar: () => false }, node, [tf.tensor(x, [...shapes[0]]), tf.tensor(w, [...shapes[1]])]) as tf.Tensor;
        const outShape = tf.tidy(() => f(data[0], data[1]).shape);
        const r = randomArray(
          outShape.reduce((a, b) => a * b, 1),
          uniform(5),
        );
        const loss = (x: Float32Array, w: Float32Array) =>
          tf.tidy(() => {
            const y = f(x, w).dataSync();
            let acc = 0;
            for (let i = 0; i < y.length; i++) acc += r[i] * y[i];
            return acc;
          });
        const analytic = tf.tidy(() =>
          tf
            .grads((x: tf.Tensor, w: tf.Tensor) =>
              tf.sum(tf.mul(OPS.Conv({ tf, ints: () => null, isScalar: () => false }, node, [x, w]) as tf.Tensor, tf.tensor(r, outShape))),
            )(data.map((d, k) => tf.tensor(d, [...shapes[k]])))
            .map((t) => t.dataSync() as Float32Array),
        );
        for (const which of [0, 1]) {
          let err = 0;
          let scale = 0;
          for (let i = 0; i < data[which].length; i++) {
            const plus = data.map((d) => d.slice());
            const minus = data.map((d) => d.slice());
            plus[which][i] += 0.5;
            minus[which][i] -= 0.5;
            // The convolution is linear in each argument: the central difference is exact up to rounding.
            const numeric = loss(plus[0], plus[1]) - loss(minus[0], minus[1]);
            err = Math.max(err, Math.abs(numeric - analytic[which][i]));
            scale = Math.max(scale, Math.abs(analytic[which][i]));
          }
          assert.ok(err / scale < 1e-4, `${which === 0 ? 'dx' : 'dw'}: ${(err / scale).toExponential(2)}`);
        }
      });
    });
  }

  it('the filter gradient from the patch matrix the forward kept equals the one that rebuilds it', () => {
    const g: ConvGeometry = {
      batch: 3,
      inHeight: 6,
      inWidth: 5,
      inChannels: 4,
      filterHeight: 3,
      filterWidth: 2,
      outChannels: 5,
      outHeight: 3,
      outWidth: 5,
      strideHeight: 2,
      strideWidth: 1,
      dilationHeight: 1,
      dilationWidth: 1,
      padTop: 1,
      padLeft: 1,
    };
    const next = uniform(31);
    const x = randomArray(3 * 4 * 6 * 5, next);
    const w = randomArray(5 * 4 * 3 * 2, next);
    const dy = randomArray(3 * 5 * 3 * 5, next);
    const cols = new Float32Array(patchMatrixSize(g)).fill(Number.NaN);
    assert.deepEqual(conv2dNchw(x, w, g, undefined, cols), conv2dNchw(x, w, g));
    assert.ok(cols.every((v) => Number.isFinite(v)));
    assert.deepEqual(conv2dNchwBackpropFilter(x, dy, g, cols), conv2dNchwBackpropFilter(x, dy, g));
  });

  it('a convolution whose input needs no gradient (the cut) skips the input gradient', () => {
    const node: NodeProto = { name: 'conv', opType: 'Conv', input: ['x', 'w'], output: ['y'], attribute: [attr.ints('pads', [1, 1, 1, 1])] };
    on(NATIVE_BACKEND, () =>
      tf.tidy(() => {
        const x = tf.tensor(randomArray(2 * 3 * 5 * 5, uniform(3)), [2, 3, 5, 5]);
        const w = tf.variable(tf.tensor(randomArray(4 * 3 * 3 * 3, uniform(4)), [4, 3, 3, 3]));
        resetKernelProfile();
        const { grads } = tf.variableGrads(
          () => tf.sum(OPS.Conv({ tf, ints: () => null, isScalar: () => false }, node, [x, w]) as tf.Tensor) as tf.Scalar,
          [w],
        );
        assert.equal(grads[w.name].shape.join(), '4,3,3,3');
        assert.equal(nativeCalls('Conv2DNCHWBackpropInput').calls, 0);
        assert.equal(nativeCalls('Conv2DNCHWBackpropFilter').calls, 1);
        w.dispose();
      }),
    );
  });

  interface MatCase {
    a: number[];
    b: number[];
    ta: boolean;
    tb: boolean;
  }

  function randomMatCase(next: () => number, batch: number): MatCase {
    const pick = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
    const [m, k, n] = [pick(1, 17), pick(1, 17), pick(1, 17)];
    const ta = next() < 0.5;
    const tb = next() < 0.5;
    const kind = pick(0, 3);
    const outerA = kind === 0 ? [] : kind === 3 ? [1] : batch === 1 ? [1] : [batch];
    const outerB = kind === 0 ? [] : kind === 2 ? [1] : batch === 1 ? [1] : [batch];
    return { a: [...outerA, ...(ta ? [k, m] : [m, k])], b: [...outerB, ...(tb ? [n, k] : [k, n])], ta, tb };
  }

  function matOn(backend: string, c: MatCase, a: Float32Array, b: Float32Array, seed: number): Float32Array[] {
    return on(backend, () =>
      tf.tidy(() => {
        const at = tf.tensor(a, c.a);
        const bt = tf.tensor(b, c.b);
        const y = tf.matMul(at, bt, c.ta, c.tb);
        // tfjs's own MatMul gradient does not sum over a broadcast batch, on any backend: forward only there.
        if (c.a.length !== c.b.length || c.a[0] !== c.b[0]) return [y.dataSync() as Float32Array];
        const r = tf.tensor(randomArray(y.size, uniform(seed)), y.shape);
        const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.matMul(p, q, c.ta, c.tb), r)))([at, bt]);
        return [y.dataSync(), da.dataSync(), db.dataSync()] as Float32Array[];
      }),
    );
  }

  for (const batch of [1, 64]) {
    it(`MatMul / BatchMatMul and their gradients match tfjs-backend-cpu, batch ${batch}`, () => {
      const next = uniform(300 + batch);
      for (let i = 0; i < 30; i++) {
        const c = randomMatCase(next, batch);
        const a = randomArray(
          c.a.reduce((x, y) => x * y, 1),
          next,
        );
        const b = randomArray(
          c.b.reduce((x, y) => x * y, 1),
          next,
        );
        const want = matOn('cpu', c, a, b, i);
        resetKernelProfile();
        const got = matOn(NATIVE_BACKEND, c, a, b, i);
        ['y', 'da', 'db'].slice(0, want.length).forEach((name, j) => {
          const e = relErr(got[j], want[j]);
          assert.ok(e < 2e-6, `${name} differs by ${e.toExponential(2)} for a [${c.a}] b [${c.b}] ta ${c.ta} tb ${c.tb}`);
        });
        const t = nativeCalls('BatchMatMul');
        assert.ok(t.calls >= want.length && t.fallbacks === 0, `BatchMatMul ran natively: ${JSON.stringify(t)}`);
      }
    });
  }

  it('batch dimensions that broadcast other than by a single matrix fall back to the cpu kernel', () => {
    const a = randomArray(2 * 1 * 3 * 4, uniform(1));
    const b = randomArray(1 * 3 * 4 * 5, uniform(2));
    const run = (backend: string) =>
      on(backend, () => tf.tidy(() => tf.matMul(tf.tensor(a, [2, 1, 3, 4]), tf.tensor(b, [1, 3, 4, 5])).dataSync() as Float32Array));
    const want = run('cpu');
    resetKernelProfile();
    assert.ok(relErr(run(NATIVE_BACKEND), want) < 2e-6);
    assert.equal(nativeCalls('BatchMatMul').fallbacks, 1);
  });

  function randomShape(next: () => number, rank: number, big: boolean): number[] {
    return Array.from({ length: rank }, () => 1 + Math.floor(next() * (big ? 9 : 5)));
  }

  function compareOps(name: string, kernels: string[], cases: number, make: (next: () => number) => { label: string; run: () => tf.Tensor }): void {
    const next = uniform(400 + name.length);
    for (let i = 0; i < cases; i++) {
      const c = make(next);
      const want = on('cpu', () => tf.tidy(() => c.run().dataSync() as Float32Array));
      resetKernelProfile();
      const got = on(NATIVE_BACKEND, () => tf.tidy(() => c.run().dataSync() as Float32Array));
      const e = relErr(got, want);
      assert.ok(e < 2e-6, `${name}: differs by ${e.toExponential(2)} for ${c.label}`);
      for (const k of kernels) {
        const t = nativeCalls(k);
        assert.ok(t.calls >= 1 && t.fallbacks === 0, `${k} ran natively for ${c.label}: ${JSON.stringify(t)}`);
      }
    }
  }

  it('Transpose, Slice and PadV2 match tfjs-backend-cpu on random shapes, with their gradients', () => {
    compareOps('transpose', ['Transpose'], 30, (next) => {
      const rank = 2 + Math.floor(next() * 4);
      const shape = randomShape(next, rank, rank < 4);
      let perm = shape.map((_, i) => i).sort(() => next() - 0.5);
      // tfjs answers an identity permutation without calling the kernel.
      if (perm.every((p, i) => p === i)) perm = perm.reverse();
      const x = randomArray(
        shape.reduce((a, b) => a * b, 1),
        next,
      );
      return { label: `[${shape}] perm [${perm}]`, run: () => tf.transpose(tf.tensor(x, shape), perm) };
    });
    compareOps('slice', ['Slice'], 30, (next) => {
      const rank = 1 + Math.floor(next() * 4);
      const shape = randomShape(next, rank, true);
      const begin = shape.map((n) => Math.floor(next() * n));
      const size = shape.map((n, d) => 1 + Math.floor(next() * (n - begin[d])));
      const x = randomArray(
        shape.reduce((a, b) => a * b, 1),
        next,
      );
      return { label: `[${shape}] begin [${begin}] size [${size}]`, run: () => tf.slice(tf.tensor(x, shape), begin, size) };
    });
    compareOps('pad and its gradient', ['PadV2', 'Slice'], 30, (next) => {
      const rank = 1 + Math.floor(next() * 4);
      const shape = randomShape(next, rank, true);
      const pads = shape.map(() => [Math.floor(next() * 3), Math.floor(next() * 3)] as [number, number]);
      const constant = next() < 0.5 ? 0 : 1.5;
      const x = randomArray(
        shape.reduce((a, b) => a * b, 1),
        next,
      );
      return {
        label: `[${shape}] pads ${JSON.stringify(pads)} constant ${constant}`,
        run: () => {
          const xt = tf.tensor(x, shape);
          const padded = tf.pad(xt, pads, constant);
          const r = tf.tensor(randomArray(padded.size, uniform(9)), padded.shape);
          const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.pad(a, pads, constant), r)))(xt);
          return tf.concat([tf.reshape(padded, [-1]), tf.reshape(dx, [-1])]);
        },
      };
    });
  });

  it('SplitV and Concat match tfjs-backend-cpu on random shapes, with their gradients', () => {
    compareOps('split and concat', ['SplitV', 'Concat'], 30, (next) => {
      const rank = 1 + Math.floor(next() * 4);
      const shape = randomShape(next, rank, true).map((n) => n + 1);
      const axis = Math.floor(next() * rank);
      const cut = 1 + Math.floor(next() * (shape[axis] - 1));
      const sizes = [cut, shape[axis] - cut];
      const x = randomArray(
        shape.reduce((a, b) => a * b, 1),
        next,
      );
      return {
        label: `[${shape}] axis ${axis} sizes [${sizes}]`,
        run: () => {
          const xt = tf.tensor(x, shape);
          const [p, q] = tf.split(xt, sizes, axis);
          const r = tf.tensor(randomArray(xt.size, uniform(9)), shape);
          // The gradient of a split is a concatenation; the pieces swapped, then concatenated, exercise Concat too.
          const dx = tf.grad((a: tf.Tensor) => {
            const [u, v] = tf.split(a, sizes, axis);
            return tf.sum(tf.mul(tf.concat([u, tf.mul(v, 2)], axis), r));
          })(xt);
          return tf.concat([tf.reshape(tf.concat([q, p], axis), [-1]), tf.reshape(dx, [-1])]);
        },
      };
    });
  });

  it('Sum over any axes and broadcasting Add, Sub, Multiply and RealDiv match tfjs-backend-cpu', () => {
    compareOps('sum', ['Sum'], 30, (next) => {
      const rank = 1 + Math.floor(next() * 4);
      const shape = randomShape(next, rank, true);
      const axes = shape.map((_, i) => i).filter(() => next() < 0.5);
      const keepDims = next() < 0.5;
      const x = randomArray(
        shape.reduce((a, b) => a * b, 1),
        next,
      );
      return { label: `[${shape}] axes [${axes}] keepDims ${keepDims}`, run: () => tf.sum(tf.tensor(x, shape), axes.length ? axes : undefined, keepDims) };
    });
    const ops = { Add: tf.add, Sub: tf.sub, Multiply: tf.mul, RealDiv: tf.div } as const;
    for (const [kernel, op] of Object.entries(ops)) {
      compareOps(kernel, [kernel], 15, (next) => {
        // Batch 64 so that the result is large enough to run natively; each side broadcasts along random axes.
        // At least 64·8·4·2 elements: smaller results stay on tfjs's own loop.
        const shape = [64, ...randomShape(next, 3, true)].map((n, d) => Math.max(n, [64, 8, 4, 2][d]));
        const aShape = shape.map((n) => (next() < 0.3 ? 1 : n));
        const bShape = shape.map((n) => (next() < 0.5 ? 1 : n)).slice(Math.floor(next() * 3));
        const a = randomArray(
          aShape.reduce((x, y) => x * y, 1),
          next,
        );
        const b = Float32Array.from(
          randomArray(
            bShape.reduce((x, y) => x * y, 1),
            next,
          ),
          (v) => (kernel === 'RealDiv' ? 1 + Math.abs(v) : v),
        );
        const bigA = [...shape];
        return { label: `[${bigA}]-sized a [${aShape}] b [${bShape}]`, run: () => op(tf.add(tf.tensor(a, aShape), tf.zeros(shape)), tf.tensor(b, bShape)) };
      });
    }
  });

  it('Sum and Mean over every subset of axes of tensors large enough for two threads match tfjs-backend-cpu', () => {
    const next = uniform(4242);
    for (const shape of [
      [64, 33, 40],
      [64, 5, 7, 61],
      [1, 197, 768],
      [3, 1, 5000],
    ]) {
      const x = randomArray(
        shape.reduce((a, b) => a * b, 1),
        next,
      );
      for (let mask = 1; mask < 1 << shape.length; mask++) {
        const axes = shape.map((_, d) => d).filter((d) => mask & (1 << d));
        for (const [kernel, op] of [
          ['Sum', tf.sum],
          ['Mean', tf.mean],
        ] as const) {
          const run = () => tf.tidy(() => op(tf.tensor(x, shape), axes, mask % 2 === 0).dataSync() as Float32Array);
          const want = on('cpu', run);
          resetKernelProfile();
          const got = on(NATIVE_BACKEND, run);
          const e = relErr(got, want);
          assert.ok(e < 2e-6, `${kernel} of [${shape}] over [${axes}] differs by ${e.toExponential(2)}`);
          assert.equal(nativeCalls(kernel).fallbacks, 0);
        }
      }
    }
  });

  it('Exp, Erf, Neg, Square, Relu, Step, Softmax and Mean match tfjs-backend-cpu, with their gradients', () => {
    const unaries = { Exp: tf.exp, Erf: tf.erf, Neg: tf.neg, Square: tf.square, Relu: tf.relu, Softmax: tf.softmax } as const;
    for (const [kernel, op] of Object.entries(unaries)) {
      compareOps(kernel, kernel === 'Relu' ? ['Relu', 'Step'] : [kernel], 5, (next) => {
        const shape = [64, ...randomShape(next, 2, true)].map((n, d) => Math.max(n, [64, 8, 8][d]));
        const x = randomArray(
          shape.reduce((a, b) => a * b, 1),
          next,
        );
        return {
          label: `[${shape}]`,
          run: () => {
            const xt = tf.tensor(x, shape);
            const r = tf.tensor(randomArray(xt.size, uniform(3)), shape);
            const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(op(a), r)))(xt);
            return tf.concat([tf.reshape(op(xt), [-1]), tf.reshape(dx, [-1])]);
          },
        };
      });
    }
    compareOps('mean', ['Mean'], 20, (next) => {
      const shape = [64, ...randomShape(next, 3, true)].map((n, d) => Math.max(n, [64, 8, 4, 2][d]));
      const axes = shape.map((_, i) => i).filter(() => next() < 0.5);
      const x = randomArray(
        shape.reduce((a, b) => a * b, 1),
        next,
      );
      return { label: `[${shape}] axes [${axes}]`, run: () => tf.mean(tf.tensor(x, shape), axes.length ? axes : undefined, next() < 0.5) };
    });
  });

  it('kernels write every element of their uninitialised outputs, also while freed memory is kept for reuse', () => {
    const letGo = keepFreedMemory();
    const again = keepFreedMemory();
    try {
      // Garbage in freed blocks that later outputs may be handed.
      for (let i = 0; i < 20; i++) outputFloats(1 << 18).fill(Number.NaN);
      const next = uniform(77);
      for (let i = 0; i < 6; i++) checkConv(randomConvCase(next, 64, false), 7000 + i);
      assert.equal(outputFloats(0).length, 0);
      assert.equal(outputFloats(5).length, 5);
    } finally {
      letGo();
      letGo();
      again();
    }
  });

  it('bad shapes throw an Error and leave the process running', () => {
    const g: ConvGeometry = {
      batch: 1,
      inHeight: 4,
      inWidth: 4,
      inChannels: 2,
      filterHeight: 3,
      filterWidth: 3,
      outChannels: 2,
      outHeight: 2,
      outWidth: 2,
      strideHeight: 1,
      strideWidth: 1,
      dilationHeight: 1,
      dilationWidth: 1,
      padTop: 0,
      padLeft: 0,
    };
    const x = new Float32Array(32);
    const w = new Float32Array(36);
    assert.equal(conv2d(x, w, g).length, 8);
    const badArgument = (fn: () => unknown) => assert.throws(fn, (e: Error & { code?: string }) => isLinalgErrorCode(e.code) && e.code === 'BAD_ARGUMENT');
    badArgument(() => conv2d(new Float32Array(31), w, g));
    badArgument(() => conv2d(x, w, { ...g, strideHeight: 0 }));
    badArgument(() => conv2d(x, w, { ...g, padTop: -1 }));
    // Caught in C++: an output past the padded input.
    badArgument(() => conv2d(x, w, { ...g, outHeight: 40 }));
    badArgument(() => conv2d(x, w, { ...g, inChannels: 2 ** 31 }));
    badArgument(() => conv2d(new Float64Array(32) as unknown as Float32Array, w, g));
    badArgument(() => batchMatMul(new Float32Array(6), new Float32Array(6), { batchA: 1, batchB: 1, m: 2, k: 3, n: 3, transposeA: false, transposeB: false }));
    badArgument(() =>
      batchMatMul(new Float32Array(12), new Float32Array(18), { batchA: 2, batchB: 3, m: 2, k: 3, n: 3, transposeA: false, transposeB: false }),
    );
    const copy = { shape: [2, 3], srcStrides: [3, 1], dstStrides: [3, 1], srcBase: 0, dstBase: 0 };
    stridedCopy(new Float32Array(6), new Float32Array(6), copy);
    badArgument(() => stridedCopy(new Float32Array(6), new Float32Array(5), copy));
    badArgument(() => stridedCopy(new Float32Array(6), new Float32Array(6), { ...copy, srcBase: 1 }));
    badArgument(() => stridedCopy(new Float32Array(6), new Float32Array(6), { ...copy, srcStrides: [3] }));
    assert.equal(binary('add', new Float32Array(6), new Float32Array(3), [2, 3], [3, 1], [0, 1]).length, 6);
    badArgument(() => binary('add', new Float32Array(6), new Float32Array(3), [2, 3], [3, 1], [3, 1]));
    badArgument(() => conv2dNchw(new Float32Array(31), w, g));
    badArgument(() => conv2dNchw(x, w, { ...g, inChannels: 3 }));
    badArgument(() => conv2dNchwBackpropInput(new Float32Array(7), w, g));
    badArgument(() => conv2dNchwBackpropFilter(x, new Float32Array(9), g));
    badArgument(() => conv2dNchw(x, w, g, undefined, new Float32Array(patchMatrixSize(g) - 1)));
    badArgument(() => conv2dNchwBackpropFilter(x, new Float32Array(8), g, new Float32Array(3)));
    badArgument(() => outputFloats(-1));
    badArgument(() => reduce(new Float32Array(6), [2, 3], [true]));
    badArgument(() => reduce(new Float32Array(5), [2, 3], [true, false]));
    badArgument(() => reduce(new Float32Array(6), [2, -3], [true, false]));
    badArgument(() => outputFloats(2 ** 31));
    badArgument(() => binary('pow' as 'add', new Float32Array(6), new Float32Array(3), [2, 3], [3, 1], [0, 1]));
    // Through tfjs: its own shape checks answer before the kernel runs.
    on(NATIVE_BACKEND, () => {
      assert.throws(() => tf.matMul(tf.zeros([2, 3]), tf.zeros([4, 5])), Error);
      assert.throws(() => tf.conv2d(tf.zeros([1, 4, 4, 2]) as tf.Tensor4D, tf.zeros([3, 3, 5, 2]) as tf.Tensor4D, 1, 'valid'), Error);
      const conv = (x: number[], w: number[], pads = [0, 0, 0, 0]) =>
        tf.engine().runKernel('Conv2DNCHW', { x: tf.zeros(x), filter: tf.zeros(w) }, { strides: [1, 1], pads, dilations: [1, 1] });
      assert.throws(() => conv([1, 2, 4, 4], [3, 5, 3, 3]), Error);
      assert.throws(() => conv([1, 2, 2, 2], [3, 2, 3, 3]), Error);
      assert.equal((conv([1, 2, 2, 2], [3, 2, 3, 3], [1, 1, 1, 1]) as tf.Tensor).shape.join(), '1,3,2,2');
    });
  });
});
