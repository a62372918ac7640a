/**
 * The fixtures written the way torch 1.13 exports torchvision's vit_b_16 and resnet18 (opset 17, dynamic batch,
 * weights=None): their tails hold the same operators, as many of each, as the real exports'; the tfjs tail
 * reproduces onnxruntime on them; every trainable tensor's gradient (the Identity copies of shared initializers
 * included) agrees with central finite differences; and trained values, copies included, are written back so that
 * onnxruntime computes what the trained tail computes, with the trunk's shared initializers untouched.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs';
import { OnnxGraph } from '../../../models/backbones/graph.js';
import { planTail, type TailPlan } from '../../../models/deep/split.js';
import { TailModel } from '../../../models/deep/tail.js';
import { withInitializers } from '../../../models/deep/trunk.js';
import { vitFixture } from '../../../scripts/fixtures/onnxVit.js';
import { resnetFixture } from '../../../scripts/fixtures/onnxResnet.js';
import { cpuBackend, maxAbs, maxAbsDiff, randomImages, reference, SIZE } from '../../helpers/deep.js';
import { runModel } from '../../helpers/backbones.js';
import { normals } from '../../helpers/reference.js';

/**
 * opType counts of the tails planTail finds in the real exports, printed from the files that
 * scripts/fixtures/exportTorchvision.py writes with Debian's torch 1.13.0 / torchvision 0.14.1: vit_b_16 cut
 * before encoder layer 11, resnet18 before layer4.
 */
const TORCH_TAILS = {
  vit_b_16: {
    Add: 7,
    Cast: 2,
    Concat: 5,
    Constant: 34,
    Div: 4,
    Erf: 1,
    Gather: 8,
    Gemm: 2,
    Identity: 8,
    LayerNormalization: 3,
    MatMul: 5,
    Mul: 7,
    Reshape: 5,
    Shape: 7,
    Slice: 3,
    Softmax: 1,
    Transpose: 6,
    Unsqueeze: 14,
  },
  resnet18: { Add: 2, Conv: 5, Flatten: 1, Gemm: 1, GlobalAveragePool: 1, Identity: 4, Relu: 4 },
};

const torchVit = () => vitFixture({ imageSize: SIZE, patch: 8, hidden: 32, layers: 2, heads: 4, mlp: 64, classes: 10, sharedParameters: true });
const torchResnet = () => resnetFixture({ imageSize: SIZE, widths: [8, 16, 24, 48], blocks: [2, 2, 2, 2], classes: 10, batchNorm: 'torch' });
const FIXTURES = { vit_b_16: torchVit, resnet18: torchResnet };
/**
 * Finite-difference steps (relative to each tensor's RMS) and tolerances: large steps where the tail is smooth
 * (ViT). ReLU's kinks make the ResNet tail piecewise linear, so its steps are smaller (fewer kinks crossed) and
 * its differences noisier: measured errors there are up to 5e-3 at either step, so it gets 1e-2, still far below a
 * missing or wrong term (O(1)).
 */
const steps = { vit_b_16: 0.02, resnet18: 0.005 };
const tolerances = { vit_b_16: 3e-3, resnet18: 1e-2 };

function opCounts(plan: TailPlan): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of plan.nodes) counts[n.opType ?? ''] = (counts[n.opType ?? ''] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

describe('fixtures as torch 1.13 exports them', () => {
  for (const [name, make] of Object.entries(FIXTURES) as Array<[keyof typeof TORCH_TAILS, () => ReturnType<typeof torchVit>]>) {
    it(`${name}: the tail has the real export's operators, as many of each`, () => {
      const plan = planTail(OnnxGraph.parse(make().model.bytes, `${name}.onnx`));
      assert.deepEqual(opCounts(plan), TORCH_TAILS[name]);
      assert.equal(plan.copies.size, TORCH_TAILS[name].Identity, 'each Identity of a shared initializer trains as a copy');
    });

    it(`${name}: the tfjs tail reproduces onnxruntime`, async () => {
      const ref = await reference(make().model.bytes, 5, 21);
      const { tf } = await cpuBackend();
      const tail = new TailModel(tf, ref.plan);
      try {
        const [features, logits] = tf.tidy(() => {
          const r = tail.forward(tf.tensor(ref.cut.data, ref.cut.dims));
          return [r.features.dataSync().slice(), r.logits.dataSync().slice()];
        });
        assert.ok(maxAbsDiff(features, ref.features.data) / maxAbs(ref.features.data) < 1e-5);
        assert.ok(maxAbsDiff(logits, ref.logits.data) / maxAbs(ref.logits.data) < 1e-5);
      } finally {
        tail.dispose();
      }
    });

    /*
     * For each trainable tensor θ and a random direction v (entries of θ's own RMS scale), the directional
     * derivative of L = Σ w·features along v against central differences (L(θ + εv) − L(θ − εv)) / 2ε at ε = `steps`
     * and half of it, combined by Richardson's extrapolation (error O(ε⁴)), in float32 with L summed in float64. Large
     * steps keep float32's rounding noise (about 1e-6 of Σ|w·f|, divided by 2ε) small next to the derivative, and
     * the extrapolation keeps the truncation error small too; 3e-3 relative is above both (measured: at most
     * 7e-5) and far below a missing or wrong term.
     */
    it(`${name}: every trainable tensor's gradient agrees with central differences`, async () => {
      const ref = await reference(make().model.bytes, 4, 22);
      const { tf } = await cpuBackend();
      const tail = new TailModel(tf, ref.plan);
      const next = normals(23);
      try {
        const cut = tf.tensor(ref.cut.data, ref.cut.dims);
        const D = ref.features.dims[1];
        const w = tf.tensor(
          Float32Array.from({ length: ref.n * D }, () => next()),
          [ref.n, D],
        );
        const loss = () => tf.sum(tf.mul(tail.forward(cut, { headToo: false }).features, w)) as TF.Scalar;
        const lossValue = () => {
          const f = tf.tidy(() => tail.forward(cut, { headToo: false }).features.dataSync());
          const wv = w.dataSync();
          let s = 0;
          for (let i = 0; i < f.length; i++) s += f[i] * wv[i];
          return s;
        };
        const grads = tf.variableGrads(loss, [...tail.variables.values()]).grads;
        for (const [tensor, variable] of tail.variables) {
          const base = Float32Array.from(variable.dataSync() as Float32Array);
          const rms = Math.max(0.1, Math.sqrt(base.reduce((a, b) => a + b * b, 0) / base.length));
          // Random, but leaning along the gradient's signs so that the derivative stands clear of float32's noise
          // (a wrong entry of the gradient still changes g·v, and the differences see the true one).
          const g = grads[variable.name].dataSync();
          const v = Float32Array.from(base, (_, i) => (next() + Math.sign(g[i])) * rms);
          const shifted = (step: number) => {
            variable.assign(
              tf.tensor(
                Float32Array.from(base, (b, i) => b + step * v[i]),
                variable.shape,
              ),
            );
            return lossValue();
          };
          const central = (eps: number) => (shifted(eps) - shifted(-eps)) / (2 * eps);
          // Richardson's extrapolation of two central differences cancels their ε² error term.
          const numeric = (4 * central(steps[name] / 2) - central(steps[name])) / 3;
          variable.assign(tf.tensor(base, variable.shape));
          let analytic = 0;
          for (let i = 0; i < g.length; i++) analytic += g[i] * v[i];
          const err = Math.abs(numeric - analytic) / Math.max(Math.abs(analytic), 1e-3);
          assert.ok(err < tolerances[name], `${tensor}: directional derivative ${analytic} by autodiff, ${numeric} by central differences`);
        }
        tf.dispose([cut, w, ...Object.values(grads)]);
      } finally {
        tail.dispose();
      }
    });

    it(`${name}: trained values, copies of shared initializers included, are what onnxruntime then computes`, async () => {
      const bytes = make().model.bytes;
      const graph = OnnxGraph.parse(bytes, `${name}.onnx`);
      const ref = await reference(bytes, 3, 24);
      const { tf } = await cpuBackend();
      const tail = new TailModel(tf, ref.plan);
      const next = normals(25);
      try {
        for (const variable of tail.variables.values()) {
          const values = variable.dataSync();
          variable.assign(
            tf.tensor(
              Float32Array.from(values, (x) => x + 0.05 * next()),
              variable.shape,
            ),
          );
        }
        const trained = tail.trainedValues();
        const exported = withInitializers(graph, trained, [ref.plan.features]);
        const features = tf.tidy(() => tail.forward(tf.tensor(ref.cut.data, ref.cut.dims), { headToo: false }).features.dataSync().slice());
        const onnx = await runModel(exported, randomImages(3, 24), ref.plan.features);
        assert.ok(maxAbsDiff(onnx.data, features) / maxAbs(features) < 1e-5, 'onnxruntime runs the trained tail');
        const out = OnnxGraph.parse(exported, 'immunized.onnx');
        const initializer = new Map((out.graph.initializer ?? []).map((t) => [t.name, t]));
        const before = new Map((graph.graph.initializer ?? []).map((t) => [t.name, t]));
        for (const [copy, source] of ref.plan.copies) {
          assert.ok(initializer.has(copy), `the copy ${copy} is an initializer`);
          assert.ok(!(out.graph.node ?? []).some((n) => n.output?.includes(copy)), `no node makes ${copy} any more`);
          const tailNodes = new Set(ref.plan.nodes.map((n) => n.name));
          const trunkReads = (graph.graph.node ?? []).some((n) => n.input?.includes(source) && !tailNodes.has(n.name));
          if (trunkReads) assert.deepEqual(initializer.get(source)!.rawData, before.get(source)!.rawData, `${source} is the trunk's and stays`);
        }
        assert.equal(planTail(out).trainable.length, ref.plan.trainable.length, 'the immunized model trains the same tensors again');
      } finally {
        tail.dispose();
      }
    });
  }
});
