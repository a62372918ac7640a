/**
 * Reading and editing a backbone's ONNX graph: find the tensor linear probing sees (the input of the final
 * classifier), expose it as an extra output, and build the immunized checkpoint.
 *
 * Edits never mutate the decoded model: each builds a new graph from shallow copies, so one parsed model serves
 * the feature-extraction graph and the immunized one.
 */
import { gesv } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { BackboneError } from './errors.js';
import {
  attribute,
  decodeModel,
  dimsOf,
  dtypeName,
  encodeModel,
  floatTensor,
  floatValueInfo,
  floatValues,
  has,
  int,
  intAttribute,
  shapeOf,
  DataType,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './onnxProto.js';

/** The name of the extra output the immunized checkpoint carries. */
export const IMMUNIZED_FEATURES = 'features_immunized';

/** A node that reads the feature tensor linearly: Gemm (transA = 0) or MatMul, with constant weights. */
export interface LinearConsumer {
  nodeIndex: number;
  nodeName: string;
  op: 'Gemm' | 'MatMul';
  /** Where the weight enters the node, and the constant it resolves to. */
  weightInput: number;
  weightName: string;
  /** The weight as stored: C×D when `transposed` (Gemm with transB = 1, as torch exports nn.Linear), else D×C. */
  weight: Float32Array;
  transposed: boolean;
  dim: number;
  classes: number;
}

export interface FeatureSite {
  tensor: string;
  /** D, read from the classifier's weights; null for a headless model until the first batch tells. */
  dim: number | null;
  /** The classifier(s) to compensate; empty when the feature tensor is itself the model's output. */
  classifiers: LinearConsumer[];
  /** How the tensor was chosen. */
  source: 'auto' | 'spec';
  /** What the tensor feeds, for the report: e.g. "Gemm /fc/Gemm". */
  description: string;
}

export interface ModelInput {
  name: string;
  elemType: string;
  /** [batch, C, H, W] as declared: a number when fixed, a string when symbolic, null when unknown. */
  shape: Array<number | string | null> | null;
}

interface ConstantRef {
  tensor: TensorProto;
  /** The tensor's name where it is stored (an initializer, or a Constant node's output). */
  name: string;
}

const CANDIDATE_PRODUCERS = new Set(['Flatten', 'GlobalAveragePool', 'ReduceMean', 'Gather', 'Squeeze', 'Reshape']);
const MAX_CANDIDATES = 12;

export class OnnxGraph {
  readonly graph: GraphProto;
  private readonly nodes: NodeProto[];
  private readonly producer = new Map<string, number>();
  private readonly consumers = new Map<string, number[]>();
  private readonly initializers = new Map<string, TensorProto>();

  private constructor(
    readonly model: ModelProto,
    readonly label: string,
  ) {
    this.graph = model.graph!;
    this.nodes = this.graph.node ?? [];
    for (const t of this.graph.initializer ?? []) if (t.name) this.initializers.set(t.name, t);
    this.nodes.forEach((n, i) => {
      for (const out of n.output ?? []) if (out) this.producer.set(out, i);
      for (const inp of n.input ?? []) {
        if (!inp) continue;
        const list = this.consumers.get(inp);
        if (list) {
          if (list[list.length - 1] !== i) list.push(i);
        } else this.consumers.set(inp, [i]);
      }
    });
  }

  /** Parses an ONNX file's bytes; `label` names the file in messages. */
  static parse(bytes: Uint8Array, label: string): OnnxGraph {
    const expected = 'expected an ONNX model (a protobuf ModelProto, e.g. written by torch.onnx.export)';
    if (bytes.byteLength === 0) throw new BackboneError('ONNX_MALFORMED', `${label} is empty; ${expected}`);
    let model: ModelProto;
    try {
      model = decodeModel(bytes);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      const truncated = /index out of range|premature|invalid wire type/i.test(detail);
      throw new BackboneError(
        'ONNX_MALFORMED',
        `${label} is not a readable ONNX model (${truncated ? 'the protobuf data is cut short or corrupted' : detail}); ${expected}`,
        {
          cause: err,
        },
      );
    }
    if (!has(model, 'irVersion') || int(model.irVersion) < 3) {
      throw new BackboneError('ONNX_MALFORMED', `${label} has no valid ONNX IR version; ${expected}`);
    }
    const graph = model.graph;
    if (!graph || (graph.node ?? []).length === 0) throw new BackboneError('ONNX_MALFORMED', `${label}: the ONNX model has no graph nodes; ${expected}`);
    if ((graph.output ?? []).length === 0) throw new BackboneError('ONNX_MALFORMED', `${label}: the ONNX graph has no outputs; ${expected}`);
    // What the upload check refuses as not a model is refused here for the same reason, not later as a missing classifier.
    if ((graph.node ?? []).some((n) => !n.opType)) throw new BackboneError('ONNX_MALFORMED', `${label}: an ONNX graph node has no op_type; ${expected}`);
    const weights = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
    if (!(graph.input ?? []).some((v) => !weights.has(v.name ?? ''))) {
      throw new BackboneError('ONNX_MALFORMED', `${label}: the ONNX graph has no inputs; ${expected}`);
    }
    if ([...(graph.input ?? []), ...(graph.output ?? [])].some((v) => !v.name)) {
      throw new BackboneError('ONNX_MALFORMED', `${label}: an ONNX graph input or output has no name; ${expected}`);
    }
    const external = (graph.initializer ?? []).find((t) => t.dataLocation === 1);
    if (external) {
      throw new BackboneError(
        'ONNX_UNSUPPORTED',
        `${label}: weight "${external.name}" is stored in an external data file; export with the weights inside the .onnx (models under 2 GB)`,
      );
    }
    return new OnnxGraph(model, label);
  }

  /** The one input a caller feeds (initializers listed as inputs by old exporters are not inputs). */
  input(): ModelInput {
    const inputs = (this.graph.input ?? []).filter((v) => v.name && !this.initializers.has(v.name));
    if (inputs.length !== 1) {
      throw new BackboneError(
        'MODEL_INPUT',
        `${this.label}: the model takes ${inputs.length} inputs (${inputs.map((v) => v.name).join(', ') || 'none'}); expected exactly one image tensor N×C×H×W`,
      );
    }
    const v = inputs[0];
    const elem = v.type?.tensorType?.elemType;
    const shape = shapeOf(v);
    if (elem !== DataType.FLOAT) {
      throw new BackboneError('MODEL_INPUT', `${this.label}: input "${v.name}" is ${dtypeName(elem)}; expected a float32 image tensor N×C×H×W`);
    }
    if (shape && shape.length !== 4) {
      throw new BackboneError('MODEL_INPUT', `${this.label}: input "${v.name}" has ${shape.length} dimensions; expected an image tensor N×C×H×W`);
    }
    return { name: v.name!, elemType: 'float32', shape };
  }

  outputs(): string[] {
    return (this.graph.output ?? []).map((v) => v.name ?? '');
  }

  private constant(name: string, depth = 0): ConstantRef | null {
    const init = this.initializers.get(name);
    if (init) return { tensor: init, name };
    const p = this.producer.get(name);
    if (p === undefined || depth > 8) return null;
    const node = this.nodes[p];
    if (node.opType === 'Constant' && (node.domain ?? '') === '') {
      const value = attribute(node, 'value');
      return value?.t ? { tensor: value.t, name } : null;
    }
    if (node.opType === 'Identity') return this.constant(node.input![0], depth + 1);
    return null;
  }

  /** Why this consumer is not a linear read of `tensor` with constant weights, or the consumer itself. */
  private linearConsumer(nodeIndex: number, tensor: string): LinearConsumer | string {
    const node = this.nodes[nodeIndex];
    const name = node.name || `#${nodeIndex}`;
    const inputs = node.input ?? [];
    const op = node.opType ?? '';
    const where = `${op} ${name}`;
    if ((node.domain ?? '') !== '' || (op !== 'Gemm' && op !== 'MatMul')) return `${where} is not a linear layer`;
    if (inputs[0] !== tensor || inputs.slice(1).includes(tensor)) return `${where} does not take it as its first (data) input`;
    if (op === 'Gemm' && intAttribute(node, 'transA', 0) !== 0) return `${where} transposes its data input`;
    const w = this.constant(inputs[1] ?? '');
    if (!w) return `${where} has weights that are computed, not constant`;
    const dims = dimsOf(w.tensor);
    if (dims.length !== 2) return `${where} has ${dims.length}-D weights; expected 2-D`;
    const values = floatValues(w.tensor);
    if (!values) return `${where} has ${dtypeName(w.tensor.dataType)} weights; expected float32`;
    const transposed = op === 'Gemm' && intAttribute(node, 'transB', 0) !== 0;
    const [dim, classes] = transposed ? [dims[1], dims[0]] : [dims[0], dims[1]];
    return { nodeIndex, nodeName: name, op: op as 'Gemm' | 'MatMul', weightInput: 1, weightName: w.name, weight: values, transposed, dim, classes };
  }

  private graphOutputNames(): Set<string> {
    return new Set(this.outputs());
  }

  /** The classifier that produces `output`: Gemm, MatMul, or Add(MatMul, constant), through any Identity. */
  private classifierInput(output: string): string | null {
    let p = this.producer.get(output);
    for (let hops = 0; p !== undefined && this.nodes[p].opType === 'Identity' && hops < 8; hops++) p = this.producer.get(this.nodes[p].input![0]);
    if (p === undefined) return null;
    let node = this.nodes[p];
    if (node.opType === 'Add' && (node.domain ?? '') === '') {
      const [a, b] = node.input ?? [];
      const data = this.constant(b ?? '') ? a : this.constant(a ?? '') ? b : null;
      const mm = data ? this.producer.get(data) : undefined;
      if (mm === undefined || this.nodes[mm].opType !== 'MatMul') return null;
      p = mm;
      node = this.nodes[p];
    }
    const feature = node.input?.[0];
    if (!feature) return null;
    return typeof this.linearConsumer(p, feature) === 'string' ? null : feature;
  }

  /**
   * Tensors that could be a feature tensor, nearest the outputs first: the data inputs of linear layers with
   * constant weights, and the outputs of the pooling/flattening/token-selection ops that usually precede them.
   */
  candidates(): string[] {
    const seen = new Set<string>();
    const out: string[] = [];
    const offer = (name: string | undefined, note: string) => {
      if (!name || seen.has(name) || out.length >= MAX_CANDIDATES) return;
      seen.add(name);
      out.push(`"${name}" (${note})`);
    };
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i];
      const label = `${node.opType} ${node.name || `#${i}`}`;
      if (node.opType === 'Gemm' || node.opType === 'MatMul') {
        const c = this.linearConsumer(i, node.input?.[0] ?? '');
        if (typeof c !== 'string') offer(node.input![0], `input of ${label}, ${c.dim} wide`);
      }
      if (CANDIDATE_PRODUCERS.has(node.opType ?? '')) offer(node.output?.[0], `output of ${label}`);
    }
    return out;
  }

  private candidateText(): string {
    const c = this.candidates();
    return c.length > 0
      ? `candidate tensors: ${c.join(', ')}`
      : 'the graph has no Gemm/MatMul with constant weights and no pooling or flattening output to offer as candidates';
  }

  private exists(name: string): boolean {
    if (this.producer.has(name)) return true;
    return (this.graph.input ?? []).some((v) => v.name === name && !this.initializers.has(name));
  }

  /**
   * The feature tensor: `named` when given (checked), otherwise the input of the final classifier that produces
   * one of the graph's outputs.
   */
  locateFeatures(named?: string): FeatureSite {
    if (named !== undefined) {
      if (!this.exists(named)) {
        throw new BackboneError('UNKNOWN_TENSOR', `${this.label}: featureTensor "${named}" is not a tensor of this graph; ${this.candidateText()}`);
      }
      return this.siteFor(named, 'spec');
    }
    for (const out of this.outputs()) {
      const feature = this.classifierInput(out);
      if (feature) return this.siteFor(feature, 'auto');
    }
    const producers = this.outputs().map((o) => {
      const p = this.producer.get(o);
      return `"${o}" comes from ${p === undefined ? 'no node' : this.nodes[p].opType}`;
    });
    throw new BackboneError(
      'NO_CLASSIFIER',
      `${this.label}: no final linear classifier found (${producers.join('; ')}; expected Gemm, or MatMul plus Add, with constant weights). ` +
        `Name the feature tensor with featureTensor (--feature-tensor); ${this.candidateText()}`,
    );
  }

  private siteFor(tensor: string, source: FeatureSite['source']): FeatureSite {
    const users = this.consumers.get(tensor) ?? [];
    const isOutput = this.graphOutputNames().has(tensor);
    const classifiers: LinearConsumer[] = [];
    const problems: string[] = [];
    for (const i of users) {
      const c = this.linearConsumer(i, tensor);
      if (typeof c === 'string') problems.push(c);
      else classifiers.push(c);
    }
    if (problems.length > 0 || (users.length === 0 && !isOutput)) {
      const why = problems.length > 0 ? problems.join('; ') : 'nothing reads it';
      throw new BackboneError(
        'FEATURE_NOT_LINEAR',
        `${this.label}: feature tensor "${tensor}" cannot carry θ in linear-head mode: ${why}. It must feed only the final linear classifier ` +
          `(Gemm or MatMul with constant weights), or be a model output; ${this.candidateText()}`,
      );
    }
    const dims = new Set(classifiers.map((c) => c.dim));
    if (dims.size > 1) {
      throw new BackboneError('FEATURE_NOT_LINEAR', `${this.label}: the layers reading "${tensor}" disagree on its width (${[...dims].join(', ')})`);
    }
    const description = classifiers.length > 0 ? classifiers.map((c) => `${c.op} ${c.nodeName}`).join(', ') : 'model output';
    return { tensor, dim: classifiers.length > 0 ? classifiers[0].dim : null, classifiers, source, description };
  }

  private valueInfo(name: string): ValueInfoProto | undefined {
    return [...(this.graph.valueInfo ?? []), ...(this.graph.output ?? [])].find((v) => v.name === name);
  }

  private batchDim(): number | string | null {
    const shape = this.input().shape;
    return shape ? shape[0] : null;
  }

  private withGraph(graph: GraphProto): Uint8Array {
    return encodeModel({ ...this.model, graph });
  }

  /** The original model with the feature tensor as an extra output (listed last). */
  withFeatureOutput(site: FeatureSite): Uint8Array {
    if (this.graphOutputNames().has(site.tensor)) return this.withGraph({ ...this.graph });
    const known = this.valueInfo(site.tensor);
    const vi = known?.type?.tensorType ? { ...known } : floatValueInfo(site.tensor, site.dim ? [this.batchDim(), site.dim] : undefined);
    return this.withGraph({ ...this.graph, output: [...(this.graph.output ?? []), vi] });
  }

  private freshName(base: string): string {
    const taken = (n: string) => this.initializers.has(n) || this.producer.has(n) || (this.graph.input ?? []).some((v) => v.name === n);
    let name = base;
    for (let k = 1; taken(name); k++) name = `${base}_${k}`;
    return name;
  }

  /**
   * The immunized checkpoint: θ (D×D) multiplies the feature tensor in a new MatMul whose output,
   * `features_immunized`, replaces the feature tensor everywhere it was read and is an extra graph output; every
   * classifier reading it gets θ⁻¹·W in place of W, so its outputs are those of the original model.
   */
  immunized(site: FeatureSite, theta: Mat): Uint8Array {
    const D = theta.rows;
    if (theta.cols !== D) throw new RangeError(`theta must be square, got ${theta.rows}×${theta.cols}`);
    if (site.dim !== null && site.dim !== D) {
      throw new BackboneError('FEATURE_SHAPE', `${this.label}: θ is ${D}×${D} but feature tensor "${site.tensor}" is ${site.dim} wide`);
    }
    if (this.exists(IMMUNIZED_FEATURES) || this.initializers.has(IMMUNIZED_FEATURES)) {
      throw new BackboneError('ONNX_UNSUPPORTED', `${this.label}: the graph already has a tensor named "${IMMUNIZED_FEATURES}"; was it immunized before?`);
    }
    const thetaName = this.freshName('immunize_theta');
    const newInits: TensorProto[] = [floatTensor(thetaName, [D, D], Float32Array.from(theta.data))];
    const replaced = new Map<number, NodeProto>();
    const superseded = new Set<string>();
    for (const c of site.classifiers) {
      const compensated = compensate(c, theta);
      const name = this.freshName(`${c.weightName}_immunized`);
      newInits.push(floatTensor(name, c.transposed ? [c.classes, D] : [D, c.classes], compensated));
      const node = this.nodes[c.nodeIndex];
      const inputs = [...(node.input ?? [])];
      inputs[0] = IMMUNIZED_FEATURES;
      superseded.add(inputs[c.weightInput]);
      inputs[c.weightInput] = name;
      replaced.set(c.nodeIndex, { ...node, input: inputs });
    }
    const thetaNode: NodeProto = { name: 'immunize/theta/MatMul', opType: 'MatMul', input: [site.tensor, thetaName], output: [IMMUNIZED_FEATURES] };
    const firstUse = site.classifiers.length > 0 ? Math.min(...site.classifiers.map((c) => c.nodeIndex)) : this.nodes.length;
    let nodes = this.nodes.map((n, i) => replaced.get(i) ?? n);
    nodes.splice(firstUse, 0, thetaNode);
    nodes = pruneDead(nodes, new Set([...this.outputs(), IMMUNIZED_FEATURES]));
    const used = new Set(nodes.flatMap((n) => n.input ?? []));
    const keepInit = (t: TensorProto) => !superseded.has(t.name ?? '') || used.has(t.name ?? '');
    const outputs = (this.graph.output ?? []).filter((v) => v.name !== site.tensor);
    const outVi = floatValueInfo(IMMUNIZED_FEATURES, [this.batchDim() ?? 'batch', D]);
    const graph: GraphProto = {
      ...this.graph,
      node: nodes,
      initializer: [...(this.graph.initializer ?? []).filter(keepInit), ...newInits],
      input: (this.graph.input ?? []).filter((v) => !this.initializers.has(v.name ?? '') || used.has(v.name ?? '')),
      output: [...outputs, outVi],
    };
    return this.withGraph(graph);
  }
}

/** θ⁻¹·W in float64, returned in the weight's stored layout as float32. */
function compensate(c: LinearConsumer, theta: Mat): Float32Array {
  const D = c.dim;
  const C = c.classes;
  const W: Mat = { rows: D, cols: C, data: new Float64Array(D * C) };
  for (let i = 0; i < D; i++) for (let j = 0; j < C; j++) W.data[i * C + j] = c.transposed ? c.weight[j * D + i] : c.weight[i * C + j];
  const solved = gesv(theta, W);
  const out = new Float32Array(D * C);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < C; j++) {
      const v = solved.data[i * C + j];
      if (c.transposed) out[j * D + i] = v;
      else out[i * C + j] = v;
    }
  }
  return out;
}

/** Drops Constant/Identity nodes left without readers by the weight swap (the old weights' producers). */
function pruneDead(nodes: NodeProto[], outputs: Set<string>): NodeProto[] {
  let current = nodes;
  for (;;) {
    const read = new Set(current.flatMap((n) => n.input ?? []));
    const next = current.filter(
      (n) => !((n.opType === 'Constant' || n.opType === 'Identity') && (n.output ?? []).every((o) => !read.has(o) && !outputs.has(o))),
    );
    if (next.length === current.length) return next;
    current = next;
  }
}
