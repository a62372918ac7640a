import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Backbone, IMMUNIZED_FEATURES, inspectBackbone, OnnxGraph } from '../../../models/backbones/index.js';
import { decodeModel, encodeModel, floatValues, type ModelProto } from '../../../models/backbones/onnxProto.js';
import type { Mat } from '../../../models/linalg/types.js';
import { assertFeaturesTimesTheta, maxRelDiff, randomImages, rejects, runModel, smallResnet, smallVit, testTheta } from '../../helpers/backbones.js';

/** The exported graph against the untouched original (logits) and the fixture's own feature graph (F·θ). */
async function checkExport(fx: ReturnType<typeof smallResnet>, theta: Mat, exported: Uint8Array, logits = true): Promise<void> {
  const images = randomImages(9, 99);
  const F = await runModel(fx.features.bytes, images, fx.featureTensor);
  const G = await runModel(exported, images, IMMUNIZED_FEATURES);
  assert.deepEqual([...G.dims], [9, fx.dim]);
  assertFeaturesTimesTheta(G.data, F.data, theta);
  if (logits) {
    const before = await runModel(fx.model.bytes, images, 'output');
    const after = await runModel(exported, images, 'output');
    const rel = maxRelDiff(after.data, before.data);
    assert.ok(rel <= 1e-3, `max|Δlogit|/max|logit| = ${rel}`);
    // θ really moves the features (so the logit check above could fail if the head were not compensated).
    assert.ok(maxRelDiff(G.data, F.data) > 0.1, 'θ must change the features');
  }
}

describe('feature tensor detection', () => {
  it('finds the Flatten output feeding the Gemm of a ResNet', () => {
    const fx = smallResnet();
    const site = OnnxGraph.parse(fx.model.bytes, 'resnet.onnx').locateFeatures();
    assert.equal(site.tensor, fx.featureTensor);
    assert.equal(site.dim, 48);
    assert.equal(site.source, 'auto');
    assert.equal(site.classifiers.length, 1);
    assert.equal(site.classifiers[0].op, 'Gemm');
  });

  // torch.onnx.export folds an eval-mode model's BatchNormalization into the convolutions: the same function.
  it('a ResNet with BatchNormalization folded computes what the unfolded one does, and its features are found', async () => {
    const folded = smallResnet('gemm', 18, 'folded');
    const separate = smallResnet();
    const graph = OnnxGraph.parse(folded.model.bytes, 'resnet.onnx');
    assert.ok(!graph.graph.node?.some((n) => n.opType === 'BatchNormalization'));
    assert.equal(graph.locateFeatures().tensor, folded.featureTensor);
    const images = randomImages(5, 7);
    const a = await runModel(folded.model.bytes, images, 'output');
    const b = await runModel(separate.model.bytes, images, 'output');
    assert.ok(maxRelDiff(a.data, b.data) < 1e-4, `logits differ by ${maxRelDiff(a.data, b.data)}`);
  });

  it('finds the class-token Gather feeding the head of a ViT, also as MatMul plus Add with a decomposed LayerNorm', () => {
    for (const fx of [smallVit(), smallVit('matmul-add', 'decomposed')]) {
      const site = OnnxGraph.parse(fx.model.bytes, 'vit.onnx').locateFeatures();
      assert.equal(site.tensor, fx.featureTensor);
      assert.equal(site.dim, 32);
    }
  });

  it('inspectBackbone summarizes a model without onnxruntime', () => {
    const fx = smallVit();
    const s = inspectBackbone(fx.model.bytes, 'vit.onnx');
    assert.deepEqual(s, {
      input: { name: 'input', elemType: 'float32', shape: ['batch_size', 3, 32, 32] },
      featureTensor: fx.featureTensor,
      dim: 32,
      classifier: 'Gemm /heads.head/Gemm',
    });
  });

  it('a model without a classifier is refused with the candidate tensors listed', async () => {
    const fx = smallResnet('none');
    const err = await rejects(() => OnnxGraph.parse(fx.model.bytes, 'headless.onnx').locateFeatures(), 'NO_CLASSIFIER', /comes from Flatten/);
    assert.ok(err.message.includes(`"${fx.featureTensor}" (output of Flatten`), err.message);
    assert.match(err.message, /featureTensor/);
  });

  it('an unknown featureTensor is refused with the candidates', async () => {
    const fx = smallVit();
    const err = await rejects(() => OnnxGraph.parse(fx.model.bytes, 'vit.onnx').locateFeatures('/nope'), 'UNKNOWN_TENSOR', /"\/nope" is not a tensor/);
    assert.ok(err.message.includes(`"${fx.featureTensor}" (input of Gemm /heads.head/Gemm, 32 wide)`), err.message);
  });

  it('a named tensor that feeds non-linear layers cannot carry θ', async () => {
    const fx = smallResnet();
    const graph = OnnxGraph.parse(fx.model.bytes, 'resnet.onnx');
    await rejects(() => graph.locateFeatures('/stem/bn/BatchNormalization_output_0'), 'FEATURE_NOT_LINEAR', /Relu \/relu\/Relu is not a linear layer/);
  });

  it('malformed files say what was expected', async () => {
    const fx = smallResnet();
    await rejects(() => OnnxGraph.parse(new Uint8Array(), 'empty.onnx'), 'ONNX_MALFORMED', /empty\.onnx is empty/);
    await rejects(
      () => OnnxGraph.parse(fx.model.bytes.subarray(0, fx.model.bytes.length - 100), 'cut.onnx'),
      'ONNX_MALFORMED',
      /cut short|not a readable ONNX/,
    );
    await rejects(() => OnnxGraph.parse(Buffer.from('this is not a model at all'), 'text.onnx'), 'ONNX_MALFORMED', /ONNX/);
    await rejects(Backbone.fromBytes(Buffer.from([0x08, 0x08, 0x3a, 0x00]), 'nograph.onnx'), 'ONNX_MALFORMED', /no graph nodes/);
  });
});

describe('the ONNX schema', () => {
  it('decodes and re-encodes a model byte for byte, opaque parts (functions, metadata) included', () => {
    const fx = smallVit();
    const model = decodeModel(fx.model.bytes) as ModelProto & { functions?: Uint8Array[]; metadataProps?: unknown[] };
    const withExtras = encodeModel({ ...model, functions: [Buffer.from([0x0a, 0x03, 0x66, 0x6f, 0x6f])], metadataProps: [{ key: 'k', value: 'v' }] });
    const again = encodeModel(decodeModel(withExtras));
    assert.ok(Buffer.from(again).equals(Buffer.from(withExtras)));
    const decoded = decodeModel(again) as ModelProto & { functions: Uint8Array[] };
    assert.deepEqual([...decoded.functions[0]], [0x0a, 0x03, 0x66, 0x6f, 0x6f]);
  });
});

describe('immunized export', () => {
  for (const [name, make] of [
    ['ResNet (Gemm head)', () => smallResnet()],
    ['ResNet (MatMul + Add head)', () => smallResnet('matmul-add')],
    ['ResNet with BatchNormalization folded into the convolutions', () => smallResnet('gemm', 18, 'folded')],
    ['ViT (Gemm head)', () => smallVit()],
    ['ViT with constant attention shapes', () => smallVit('gemm', 'op', 16, 'static')],
  ] as const) {
    it(`${name}: logits unchanged within 1e-3, features_immunized = F·θ within float32 rounding`, async () => {
      const fx = make();
      const graph = OnnxGraph.parse(fx.model.bytes, 'model.onnx');
      const site = graph.locateFeatures();
      const theta = testTheta(fx.dim);
      const exported = graph.immunized(site, theta);
      await checkExport(fx, theta, exported);
      const model = decodeModel(exported);
      const outputs = (model.graph!.output ?? []).map((o) => o.name);
      assert.deepEqual(outputs, ['output', IMMUNIZED_FEATURES]);
      const thetaNode = model.graph!.node!.find((n) => n.output?.[0] === IMMUNIZED_FEATURES)!;
      assert.equal(thetaNode.opType, 'MatMul');
      assert.equal(thetaNode.input![0], site.tensor);
      // The original classifier weights are gone from the file, replaced by θ⁻¹W.
      const names = new Set(model.graph!.initializer!.map((t) => t.name));
      assert.ok(!names.has(site.classifiers[0].weightName));
      const stored = model.graph!.initializer!.find((t) => t.name === thetaNode.input![1])!;
      assert.deepEqual([...floatValues(stored)!], [...Float32Array.from(theta.data)]);
    });
  }

  it('a headless backbone named by featureTensor exports θ with features_immunized as its output', async () => {
    const fx = smallResnet('none');
    const graph = OnnxGraph.parse(fx.model.bytes, 'headless.onnx');
    const site = graph.locateFeatures(fx.featureTensor);
    assert.equal(site.classifiers.length, 0);
    const theta = testTheta(fx.dim, 3);
    const exported = graph.immunized(site, theta);
    assert.deepEqual(
      decodeModel(exported).graph!.output!.map((o) => o.name),
      [IMMUNIZED_FEATURES],
    );
    await checkExport(fx, theta, exported, false);
  });

  it('refuses a θ of the wrong size and a model immunized twice', async () => {
    const fx = smallResnet();
    const graph = OnnxGraph.parse(fx.model.bytes, 'model.onnx');
    const site = graph.locateFeatures();
    await rejects(() => graph.immunized(site, testTheta(fx.dim + 1)), 'FEATURE_SHAPE');
    const once = OnnxGraph.parse(graph.immunized(site, testTheta(fx.dim)), 'once.onnx');
    await rejects(() => once.immunized(once.locateFeatures(), testTheta(fx.dim)), 'ONNX_UNSUPPORTED', /immunized before/);
  });
});
