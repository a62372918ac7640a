/**
 * Reads just enough of an ONNX file to know it is a model: a protobuf ModelProto (the subset below) with an IR
 * version and a graph that has inputs and outputs. Fields outside the subset, the weights among them, are
 * skipped by the decoder.
 */
import protobuf from 'protobufjs';

const ONNX_SUBSET = {
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            producerName: { type: 'string', id: 2 },
            producerVersion: { type: 'string', id: 3 },
            domain: { type: 'string', id: 4 },
            modelVersion: { type: 'int64', id: 5 },
            graph: { type: 'GraphProto', id: 7 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
          },
        },
        OperatorSetIdProto: {
          fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } },
        },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            domain: { type: 'string', id: 7 },
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            dataType: { type: 'int32', id: 2 },
            name: { type: 'string', id: 8 },
          },
        },
        ValueInfoProto: {
          fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } },
        },
        TypeProto: {
          fields: { tensorType: { type: 'TypeProto.Tensor', id: 1 } },
          nested: {
            Tensor: {
              fields: { elemType: { type: 'int32', id: 1 }, shape: { type: 'TensorShapeProto', id: 2 } },
            },
          },
        },
        TensorShapeProto: {
          fields: { dim: { rule: 'repeated', type: 'TensorShapeProto.Dimension', id: 1 } },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dimValue', 'dimParam'] } },
              fields: { dimValue: { type: 'int64', id: 1 }, dimParam: { type: 'string', id: 2 } },
            },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(ONNX_SUBSET);
export const ModelProto = root.lookupType('onnx.ModelProto');

const ELEM_TYPES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool',
  10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16',
};

export interface OnnxTensorInfo {
  name: string;
  elemType: string | null;
  /** A number for a fixed size, a string for a named (symbolic) one, null for an unknown one. */
  shape: Array<number | string | null> | null;
}

export interface OnnxInfo {
  irVersion: number;
  opset: number | null;
  producer: string | null;
  nodes: number;
  inputs: OnnxTensorInfo[];
  outputs: OnnxTensorInfo[];
}

export class OnnxFormatError extends Error {
  readonly code = 'invalid_onnx';
}

interface ValueInfo {
  name?: string;
  type?: { tensorType?: { elemType?: number; shape?: { dim?: Array<{ dimValue?: number; dimParam?: string }> } } };
}

function tensorInfo(v: ValueInfo): OnnxTensorInfo {
  const t = v.type?.tensorType;
  return {
    name: v.name ?? '',
    elemType: t?.elemType !== undefined ? (ELEM_TYPES[t.elemType] ?? `type${t.elemType}`) : null,
    shape: t?.shape ? (t.shape.dim ?? []).map((d) => d.dimValue ?? d.dimParam ?? null) : null,
  };
}

/** Parses an ONNX file's bytes; throws OnnxFormatError saying what was expected. */
export function inspectOnnx(bytes: Uint8Array, name = 'the upload'): OnnxInfo {
  if (bytes.length === 0) throw new OnnxFormatError(`${name} is empty; expected an ONNX model (a protobuf ModelProto)`);
  let model: {
    irVersion?: number;
    producerName?: string;
    opsetImport?: Array<{ domain?: string; version?: number }>;
    graph?: { node?: Array<{ opType?: string }>; initializer?: Array<{ name?: string }>; input?: ValueInfo[]; output?: ValueInfo[] };
  };
  try {
    const message = ModelProto.decode(bytes);
    model = ModelProto.toObject(message, { longs: Number, defaults: false, arrays: true }) as typeof model;
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    const truncated = /index out of range|premature/i.test(detail);
    throw new OnnxFormatError(
      `${name} is not a readable ONNX model (${truncated ? 'the protobuf data ends early: truncated file?' : `protobuf decoding failed: ${detail}`}); expected an ONNX ModelProto`,
    );
  }
  if (!model.irVersion || model.irVersion < 1) {
    throw new OnnxFormatError(`${name} has no ONNX IR version: it is not an ONNX ModelProto (expected a file exported by torch.onnx.export or similar)`);
  }
  const graph = model.graph;
  if (!graph) throw new OnnxFormatError(`${name} is an ONNX ModelProto without a graph; expected a model with a graph`);
  const nodes = graph.node ?? [];
  if (nodes.length === 0) throw new OnnxFormatError(`${name}: the ONNX graph has no nodes; expected at least one operator`);
  if (nodes.some((n) => !n.opType)) throw new OnnxFormatError(`${name}: an ONNX graph node has no op_type`);
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  // Before IR version 4, weights were also listed as graph inputs; they are not inputs a caller feeds.
  const inputs = (graph.input ?? []).filter((v) => !initializers.has(v.name)).map(tensorInfo);
  const outputs = (graph.output ?? []).map(tensorInfo);
  if (inputs.length === 0) throw new OnnxFormatError(`${name}: the ONNX graph has no inputs; expected at least one input tensor`);
  if (outputs.length === 0) throw new OnnxFormatError(`${name}: the ONNX graph has no outputs; expected at least one output tensor`);
  if ([...inputs, ...outputs].some((t) => t.name === '')) throw new OnnxFormatError(`${name}: an ONNX graph input or output has no name`);
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? null;
  return { irVersion: model.irVersion, opset, producer: model.producerName || null, nodes: nodes.length, inputs, outputs };
}

/** Builds a minimal ONNX model (for tests and fixtures): one node from `input` to `output`. */
export function encodeOnnx(opts: { input: string; output: string; shape: number[]; opType?: string; irVersion?: number }): Buffer {
  const dims = opts.shape.map((d) => ({ dimValue: d }));
  const valueInfo = (name: string) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: dims } } } });
  const message = ModelProto.fromObject({
    irVersion: opts.irVersion ?? 8,
    producerName: 'immunize-fixture',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'fixture',
      node: [{ input: [opts.input], output: [opts.output], name: 'n0', opType: opts.opType ?? 'Identity' }],
      input: [valueInfo(opts.input)],
      output: [valueInfo(opts.output)],
    },
  });
  return Buffer.from(ModelProto.encode(message).finish());
}
