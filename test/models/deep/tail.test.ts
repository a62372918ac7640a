/**
 * The tail converted to tfjs against onnxruntime on the same cut activations: features and logits agree within
 * float32 rounding, for the ResNet fixture, both ViT layer-norm spellings and both ways of writing attention's
 * reshapes (Shape subgraphs, as torch exports a dynamic batch, or constants); the automatic cut is the input of the
 * last stage / block; unknown operators and cut tensors are refused with their names.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OnnxGraph } from '../../../models/backbones/graph.js';
import { isDeepError } from '../../../models/deep/errors.js';
import { inspectTail } from '../../../models/deep/index.js';
import { planTail } from '../../../models/deep/split.js';
import { TailModel } from '../../../models/deep/tail.js';
import { OPS } from '../../../models/deep/ops.js';
import type { NodeProto } from '../../../models/backbones/onnxProto.js';
import { attr } from '../../../scripts/fixtures/onnxBuilder.js';
import type { Tensor } from '@tensorflow/tfjs';
import { resnetFixture } from '../../../scripts/fixtures/onnxResnet.js';
import { cpuBackend, maxAbs, maxAbsDiff, reference, smallResnet, smallVit, unsupportedTailModel } from '../../helpers/deep.js';

async function compare(bytes: Uint8Array): Promise<{ featureErr: number; logitErr: number; cut: string; plan: ReturnType<typeof planTail> }> {
  const ref = await reference(bytes, 6, 11);
  const { tf } = await cpuBackend();
  const tail = new TailModel(tf, ref.plan);
  try {
    const out = tf.tidy(() => {
      const r = tail.forward(tf.tensor(ref.cut.data, ref.cut.dims));
      return { features: r.features.dataSync().slice(), logits: r.logits.dataSync().slice(), shape: r.features.shape };
    });
    assert.deepEqual(out.shape, ref.features.dims);
    return {
      featureErr: maxAbsDiff(out.features, ref.features.data) / maxAbs(ref.features.data),
      logitErr: maxAbsDiff(out.logits, ref.logits.data) / maxAbs(ref.logits.data),
      cut: ref.plan.cut,
      plan: ref.plan,
    };
  } finally {
    tail.dispose();
  }
}

describe('deep tail conversion', () => {
  it('ResNet: cuts before the last stage and reproduces onnxruntime', async () => {
    const r = await compare(smallResnet().model.bytes);
    assert.equal(r.cut, '/layer3.0/relu_out/Relu_output_0');
    assert.ok(r.plan.ops.includes('Conv') && r.plan.ops.includes('BatchNormalization') && r.plan.ops.includes('Gemm'));
    assert.ok(r.plan.trainable.includes('layer4.0.1.conv.weight'));
    assert.ok(!r.plan.trainable.includes('layer4.0.1.bn.running_mean'), 'BN statistics stay fixed');
    assert.ok(!r.plan.trainable.includes('fc.weight'), 'the head stays fixed');
    assert.ok(r.featureErr < 1e-5, `features differ by ${r.featureErr}`);
    assert.ok(r.logitErr < 1e-5, `logits differ by ${r.logitErr}`);
  });

  for (const ln of ['op', 'decomposed'] as const) {
    it(`ViT (${ln} layer norm): cuts before the last encoder block and reproduces onnxruntime`, async () => {
      const r = await compare(smallVit('gemm', ln).model.bytes);
      assert.match(r.cut, /encoder_layer_0\/Add_1_output_0$/);
      assert.ok(r.plan.trainable.some((t) => t.includes('encoder_layer_1')));
      assert.ok(!r.plan.trainable.some((t) => t.includes('encoder_layer_0')));
      assert.ok(r.featureErr < 1e-5, `features differ by ${r.featureErr}`);
      assert.ok(r.logitErr < 1e-5, `logits differ by ${r.logitErr}`);
    });
  }

  // torch writes the attention's reshapes for a dynamic batch as Shape subgraphs; constant shapes are the other way.
  it('ViT: attention reshapes computed from Shape at run time, as torch exports them, or constant', async () => {
    const dynamic = await compare(smallVit('gemm', 'op', 16, 'dynamic').model.bytes);
    for (const op of ['Shape', 'Cast', 'Unsqueeze', 'Concat', 'Squeeze']) assert.ok(dynamic.plan.ops.includes(op), `the tail has ${op}`);
    const constant = await compare(smallVit('gemm', 'op', 16, 'static').model.bytes);
    assert.ok(!constant.plan.ops.includes('Shape'));
    for (const r of [dynamic, constant]) {
      assert.ok(r.featureErr < 1e-5, `features differ by ${r.featureErr}`);
      assert.ok(r.logitErr < 1e-5, `logits differ by ${r.logitErr}`);
    }
  });

  it('Split, Expand, Cast, Reciprocal and Dropout on tensors', async () => {
    const { tf } = await cpuBackend();
    const ints = new Map<string, number[]>([
      ['sizes', [1, 3]],
      ['shape', [2, 1, 4]],
    ]);
    const ctx = { tf, ints: (n: string) => ints.get(n) ?? null, isScalar: () => false };
    const x = tf.tensor([1, 2, 3, 4, 5, 6, 7, 8], [2, 4]);
    const split = (inputs: string[], attribute: NodeProto['attribute'], outputs: number) =>
      OPS.Split(ctx, { name: 's', opType: 'Split', input: inputs, output: Array.from({ length: outputs }, (_, i) => `o${i}`), attribute }, [x]) as Tensor[];
    assert.deepEqual(
      split(['x', 'sizes'], [attr.int('axis', 1)], 2).map((t) => t.arraySync()),
      [
        [[1], [5]],
        [
          [2, 3, 4],
          [6, 7, 8],
        ],
      ],
    );
    assert.deepEqual(
      split(['x'], [attr.int('axis', 0)], 2).map((t) => t.shape),
      [
        [1, 4],
        [1, 4],
      ],
    );
    const row = tf.tensor([1, 2, 3, 4], [1, 4]);
    const expanded = OPS.Expand(ctx, { name: 'e', opType: 'Expand', input: ['row', 'shape'], output: ['y'] }, [row]) as Tensor;
    assert.deepEqual(expanded.shape, [2, 1, 4]);
    const cast = OPS.Cast(ctx, { name: 'c', opType: 'Cast', input: ['x'], output: ['y'], attribute: [attr.int('to', 1)] }, [x]) as Tensor;
    assert.equal(cast, x);
    const inv = OPS.Reciprocal(ctx, { name: 'r', opType: 'Reciprocal', input: ['x'], output: ['y'] }, [tf.tensor([2, 4])]) as Tensor;
    assert.deepEqual(inv.arraySync(), [0.5, 0.25]);
    assert.equal(OPS.Dropout(ctx, { name: 'd', opType: 'Dropout', input: ['x'], output: ['y'] }, [x]), x);
  });

  it('ResNet with BatchNormalization folded into the convolutions (a torch eval-mode export): cut, weights and biases train', async () => {
    const r = await compare(smallResnet('gemm', 18, 'folded').model.bytes);
    assert.equal(r.cut, '/layer3.0/relu_out/Relu_output_0');
    assert.ok(!r.plan.ops.includes('BatchNormalization'));
    assert.ok(r.plan.trainable.includes('onnx::Conv_layer4.0.1.weight') && r.plan.trainable.includes('onnx::Conv_layer4.0.1.bias'));
    assert.ok(r.featureErr < 1e-5, `features differ by ${r.featureErr}`);
    assert.ok(r.logitErr < 1e-5, `logits differ by ${r.logitErr}`);
  });

  it('ResNet with two blocks per stage: the cut is the input of the whole last stage', () => {
    const fx = resnetFixture({ imageSize: 32, widths: [8, 16, 24, 48], blocks: [2, 2, 2, 2], classes: 10 });
    const plan = planTail(OnnxGraph.parse(fx.model.bytes, 'm.onnx'));
    assert.equal(plan.cut, '/layer3.1/relu_out/Relu_output_0');
    assert.ok(plan.trainable.includes('layer4.0.downsample.conv.weight') && plan.trainable.includes('layer4.1.2.conv.weight'));
  });

  it('takes a cut tensor by name, and the MatMul+Add head', async () => {
    const fx = smallResnet('matmul-add');
    const r = await compare(fx.model.bytes);
    assert.ok(r.featureErr < 1e-5 && r.logitErr < 1e-5);
    const graph = OnnxGraph.parse(fx.model.bytes, 'm.onnx');
    const named = planTail(graph, { cutTensor: '/layer4.0/relu_out/Relu_output_0' });
    assert.equal(named.cutSource, 'spec');
    assert.deepEqual(named.trainable, []);
  });

  it('refuses an unknown cut tensor, naming it', () => {
    const graph = OnnxGraph.parse(smallResnet().model.bytes, 'm.onnx');
    assert.throws(
      () => planTail(graph, { cutTensor: 'nope' }),
      (e) => isDeepError(e, 'CUT_TENSOR') && /"nope"/.test((e as Error).message),
    );
  });

  it('refuses a tail with an unsupported operator, naming it', () => {
    const bytes = unsupportedTailModel();
    const graph = OnnxGraph.parse(bytes, 'odd.onnx');
    assert.throws(
      () => inspectTail(bytes, 'odd.onnx'),
      (e) => isDeepError(e, 'UNSUPPORTED_OPERATOR'),
    );
    assert.equal(inspectTail(smallResnet().model.bytes, 'r.onnx').cutTensor, '/layer3.0/relu_out/Relu_output_0');
    assert.throws(
      () => planTail(graph),
      (e) => isDeepError(e, 'UNSUPPORTED_OPERATOR') && /HardSigmoid/.test((e as Error).message) && (e as { code: string }).code === 'BAD_FORMAT',
    );
  });
});
