/** The upload's ONNX format check (services/storage/onnx.ts), read through the models' ONNX schema. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeModel, floatTensor, floatValueInfo, type ModelProto } from '../../models/backbones/onnxProto.js';
import { encodeOnnx } from '../../scripts/fixtures/onnxMinimal.js';
import { inspectOnnx } from '../../services/storage/onnx.js';
import { CodedError } from '../../workers/errorTable.js';

function model(over: Partial<ModelProto> = {}): ModelProto {
  return {
    irVersion: 3,
    producerName: 'test',
    opsetImport: [
      { domain: 'com.example', version: 1 },
      { domain: '', version: 13 },
    ],
    graph: {
      name: 'g',
      node: [{ input: ['x', 'w'], output: ['y'], name: 'mm', opType: 'MatMul' }],
      initializer: [floatTensor('w', [2, 2], new Float32Array(4))],
      // An old exporter lists the weight among the inputs too.
      input: [floatValueInfo('x', ['batch', 2]), floatValueInfo('w', [2, 2])],
      output: [
        { name: 'y', type: { tensorType: { elemType: 7, shape: { dim: [{ dimParam: 'batch' }, {}] } } } },
        { name: 'z', type: { tensorType: { elemType: 21 } } },
      ],
    },
    ...over,
  };
}

const refused = (bytes: Uint8Array, message: RegExp) =>
  assert.throws(
    () => inspectOnnx(bytes, 'm.onnx'),
    (e: unknown) => e instanceof CodedError && e.code === 'invalid_onnx' && message.test(e.message),
  );

describe('ONNX upload check', () => {
  it('describes the model: IR version, the default-domain opset, inputs a caller feeds, outputs', () => {
    assert.deepEqual(inspectOnnx(encodeModel(model()), 'm.onnx'), {
      irVersion: 3,
      opset: 13,
      producer: 'test',
      nodes: 1,
      inputs: [{ name: 'x', elemType: 'float32', shape: ['batch', 2] }],
      outputs: [
        { name: 'y', elemType: 'int64', shape: ['batch', null] },
        { name: 'z', elemType: 'type21', shape: null },
      ],
    });
  });

  it('reads the test fixture', () => {
    const info = inspectOnnx(encodeOnnx({ input: 'pixels', output: 'features', shape: [1, 3, 32, 32] }));
    assert.deepEqual(info.inputs, [{ name: 'pixels', elemType: 'float32', shape: [1, 3, 32, 32] }]);
    assert.deepEqual([info.irVersion, info.opset, info.producer, info.nodes], [8, 17, 'immunize-fixture', 1]);
  });

  it('refuses what is not a model, as invalid_onnx', () => {
    refused(new Uint8Array(), /m\.onnx is empty/);
    const good = encodeModel(model());
    refused(good.subarray(0, good.length - 5), /not a readable ONNX model/);
    refused(encodeModel(model({ irVersion: 0 })), /no ONNX IR version/);
    refused(encodeModel(model({ graph: undefined })), /without a graph/);
    refused(encodeModel(model({ graph: { ...model().graph, node: [] } })), /no nodes/);
    refused(encodeModel(model({ graph: { ...model().graph, node: [{ input: ['x'], output: ['y'] }] } })), /no op_type/);
    refused(encodeModel(model({ graph: { ...model().graph, input: [floatValueInfo('w', [2, 2])] } })), /no inputs/);
    refused(encodeModel(model({ graph: { ...model().graph, output: [] } })), /no outputs/);
  });
});
