/**
 * The format check of an uploaded backbone: just enough of the ONNX file to know it is a model (an IR version, a
 * graph with nodes, inputs and outputs) and to describe its inputs and outputs. The protobuf is read by the
 * models' own ONNX reader (models/backbones/onnxProto.ts); the graph analysis a job needs is a separate check
 * (inspectBackbone).
 */
import { decodeModel, dtypeName, has, int, shapeOf, type ModelProto, type ValueInfoProto } from '../../models/backbones/index.js';
import { CodedError } from '../../workers/errorTable.js';

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

/** Not an ONNX model: refused as invalid_onnx, the code a job loading the file would fail with. */
const malformed = (message: string) => new CodedError('backbone.ONNX_MALFORMED', message);

/** An element type's name: float32, int64, …; an unnamed one as typeN. */
function elemTypeName(code: number): string {
  const name = dtypeName(code);
  return name === `type ${code}` ? `type${code}` : name;
}

function tensorInfo(v: ValueInfoProto): OnnxTensorInfo {
  const t = v.type?.tensorType;
  return {
    name: v.name ?? '',
    elemType: t && has(t, 'elemType') && t.elemType !== undefined ? elemTypeName(t.elemType) : null,
    shape: shapeOf(v),
  };
}

function decode(bytes: Uint8Array, name: string): ModelProto {
  try {
    return decodeModel(bytes);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    const truncated = /index out of range|premature/i.test(detail);
    throw malformed(
      `${name} is not a readable ONNX model (${truncated ? 'the protobuf data ends early: truncated file?' : `protobuf decoding failed: ${detail}`}); expected an ONNX ModelProto`,
    );
  }
}

/** Parses an ONNX file's bytes; throws a CodedError (invalid_onnx) saying what was expected. */
export function inspectOnnx(bytes: Uint8Array, name = 'the upload'): OnnxInfo {
  if (bytes.length === 0) throw malformed(`${name} is empty; expected an ONNX model (a protobuf ModelProto)`);
  const model = decode(bytes, name);
  const irVersion = has(model, 'irVersion') ? int(model.irVersion) : 0;
  if (irVersion < 1) {
    throw malformed(`${name} has no ONNX IR version: it is not an ONNX ModelProto (expected a file exported by torch.onnx.export or similar)`);
  }
  const graph = model.graph;
  if (!graph) throw malformed(`${name} is an ONNX ModelProto without a graph; expected a model with a graph`);
  const nodes = graph.node ?? [];
  if (nodes.length === 0) throw malformed(`${name}: the ONNX graph has no nodes; expected at least one operator`);
  if (nodes.some((n) => !n.opType)) throw malformed(`${name}: an ONNX graph node has no op_type`);
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  // Before IR version 4, weights were also listed as graph inputs; they are not inputs a caller feeds.
  const inputs = (graph.input ?? []).filter((v) => !initializers.has(v.name ?? '')).map(tensorInfo);
  const outputs = (graph.output ?? []).map(tensorInfo);
  if (inputs.length === 0) throw malformed(`${name}: the ONNX graph has no inputs; expected at least one input tensor`);
  if (outputs.length === 0) throw malformed(`${name}: the ONNX graph has no outputs; expected at least one output tensor`);
  if ([...inputs, ...outputs].some((t) => t.name === '')) throw malformed(`${name}: an ONNX graph input or output has no name`);
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return {
    irVersion,
    opset: opset && has(opset, 'version') ? int(opset.version) : null,
    producer: model.producerName || null,
    nodes: nodes.length,
    inputs,
    outputs,
  };
}
