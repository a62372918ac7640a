/**
 * Splitting a backbone's ONNX graph at a cut tensor: the trunk (everything up to the cut, run by onnxruntime) and
 * the tail (cut → features → logits, converted to tfjs and trained). By default the cut is the input of the last
 * stage (ResNet: the blocks from the last downsampling one on) or of the last encoder block (ViT: attention and MLP
 * residuals, then the final norm).
 */
import type { OnnxGraph } from '../backbones/graph.js';
import { dimsOf, DataType, type NodeProto, type TensorProto } from '../backbones/onnxProto.js';
import { DeepError } from './errors.js';
import { SUPPORTED_OPS } from './ops.js';

export interface TailPlan {
  cut: string;
  cutSource: 'auto' | 'spec';
  /** The feature tensor (input of the final classifier) and the logits (the graph output the classifier makes). */
  features: string;
  logits: string;
  /** Tail nodes in topological order: the block(s), then the head. */
  nodes: NodeProto[];
  /** How many of `nodes` compute the features; the rest is the head. */
  featureNodeCount: number;
  /** Float initializers the block's nodes read that training may change (not the head's, not BN statistics). */
  trainable: string[];
  /**
   * Trainable tensors that the tail computes as Identity(initializer), by the Identity's output → the initializer.
   * torch.onnx.export writes one initializer for parameters of equal value (a freshly initialised model's zero
   * biases and unit norm scales) and an Identity per parameter; each is trained as its own copy, so that the trunk
   * and the other readers of the shared initializer stay as they were.
   */
  copies: Map<string, string>;
  /** Every initializer (and Constant node value) the tail reads, by name. */
  constants: Map<string, TensorProto>;
  /** Operator names in the tail, for messages and backend choice. */
  ops: string[];
  description: string;
}

class GraphIndex {
  readonly nodes: NodeProto[];
  readonly producer = new Map<string, number>();
  readonly consumers = new Map<string, number[]>();
  readonly initializers = new Map<string, TensorProto>();

  constructor(readonly graph: OnnxGraph) {
    this.nodes = graph.graph.node ?? [];
    for (const t of graph.graph.initializer ?? []) if (t.name) this.initializers.set(t.name, t);
    this.nodes.forEach((n, i) => {
      for (const o of n.output ?? []) if (o) this.producer.set(o, i);
      for (const inp of n.input ?? []) if (inp) (this.consumers.get(inp) ?? this.consumers.set(inp, []).get(inp)!).push(i);
    });
  }

  isConstant(name: string): boolean {
    if (this.initializers.has(name)) return true;
    const p = this.producer.get(name);
    return p !== undefined && this.nodes[p].opType === 'Constant';
  }

  /**
   * The nodes that compute `targets` from `from` and constants, in graph order; null when they need anything
   * else (the graph input, or a tensor computed before `from` other than through it).
   */
  sliceFrom(from: string, targets: string[]): number[] | null {
    const seen = new Set<number>();
    const stack = [...targets];
    const visited = new Set<string>();
    while (stack.length > 0) {
      const t = stack.pop()!;
      if (visited.has(t)) continue;
      visited.add(t);
      if (t === from) continue;
      if (this.initializers.has(t)) continue;
      const p = this.producer.get(t);
      if (p === undefined) return null;
      if (seen.has(p)) continue;
      seen.add(p);
      for (const inp of this.nodes[p].input ?? []) if (inp) stack.push(inp);
    }
    return [...seen].sort((a, b) => a - b);
  }

  exists(name: string): boolean {
    return this.producer.has(name) || (this.graph.graph.input ?? []).some((v) => v.name === name);
  }
}

interface Segment {
  /** The articulation tensor it starts from. */
  start: string;
  end: string;
  nodes: number[];
}

const MAX_ARTICULATIONS = 64;

/** Tensors every path to `features` goes through, nearest the features first, each with the nodes after it. */
function articulations(ix: GraphIndex, features: string): Segment[] {
  const featureNode = ix.producer.get(features);
  if (featureNode === undefined) return [];
  const segments: Segment[] = [];
  let end = features;
  let after = new Set<number>();
  for (let i = featureNode; i >= 0 && segments.length < MAX_ARTICULATIONS; i--) {
    const node = ix.nodes[i];
    if (node.opType === 'Constant') continue;
    const out = node.output?.[0];
    if (!out || out === features) continue;
    const slice = ix.sliceFrom(out, [features]);
    if (!slice) continue;
    const nodes = slice.filter((k) => !after.has(k));
    segments.push({ start: out, end, nodes });
    after = new Set(slice);
    end = out;
  }
  return segments;
}

/** A residual segment ends in Add(·, ·) of two computed tensors (ResNet adds a Relu after it). */
function residualAdd(ix: GraphIndex, seg: Segment): NodeProto | null {
  let p = ix.producer.get(seg.end);
  if (p === undefined) return null;
  if (ix.nodes[p].opType === 'Relu') p = ix.producer.get(ix.nodes[p].input![0]);
  if (p === undefined) return null;
  const node = ix.nodes[p];
  // The Add must be the segment's own (a segment holding only the Relu after an Add is not a block).
  if (node.opType !== 'Add' || !seg.nodes.includes(p)) return null;
  const inputs = node.input ?? [];
  return inputs.length === 2 && inputs.every((t) => !ix.isConstant(t)) ? node : null;
}

function autoCut(ix: GraphIndex, features: string): string {
  const segments = articulations(ix, features);
  const residual = segments.filter((s) => residualAdd(ix, s) !== null);
  if (residual.length === 0) {
    throw new DeepError(
      'CUT_TENSOR',
      `${ix.graph.label}: found no residual block before "${features}" to train; name the tensor to cut at with cutTensor (--cut-tensor)` +
        (segments.length > 0
          ? `; tensors that separate the tail: ${segments
              .slice(0, 8)
              .map((s) => `"${s.start}"`)
              .join(', ')}`
          : ''),
    );
  }
  const isConv = residual[0].nodes.some((k) => ix.nodes[k].opType === 'Conv');
  if (!isConv) {
    // A transformer block is two residuals (attention, MLP); the final norm comes along after them.
    return (residual[1] ?? residual[0]).start;
  }
  // A ResNet stage: blocks back to (and including) the first one whose shortcut is not the identity.
  for (const seg of residual) {
    const add = residualAdd(ix, seg)!;
    if (!(add.input ?? []).includes(seg.start)) return seg.start;
  }
  return residual[0].start;
}

function isTrainable(name: string, tensor: TensorProto, readers: NodeProto[]): boolean {
  if (tensor.dataType !== DataType.FLOAT) return false;
  const size = dimsOf(tensor).reduce((a, b) => a * b, 1);
  if (dimsOf(tensor).length === 0 || size <= 1) return false;
  // Running statistics are a BatchNormalization's inputs 3 and 4: fixed in inference, as in the paper's eval-mode BN.
  return !readers.some((n) => n.opType === 'BatchNormalization' && (n.input?.[3] === name || n.input?.[4] === name));
}

export function planTail(graph: OnnxGraph, opts: { cutTensor?: string; featureTensor?: string } = {}): TailPlan {
  const ix = new GraphIndex(graph);
  const site = graph.locateFeatures(opts.featureTensor);
  const features = site.tensor;
  const logits = graph.outputs().find((o) => o !== features);
  if (!logits)
    throw new DeepError('CUT_TENSOR', `${graph.label}: last-block mode needs the model's classifier output (logits) besides the features "${features}"`);
  let cut: string;
  if (opts.cutTensor !== undefined) {
    if (!ix.exists(opts.cutTensor)) {
      const offer = articulations(ix, features)
        .slice(0, 8)
        .map((s) => `"${s.start}"`);
      throw new DeepError(
        'CUT_TENSOR',
        `${graph.label}: cutTensor "${opts.cutTensor}" is not a tensor of this graph; tensors that separate the tail: ${offer.join(', ') || 'none'}`,
      );
    }
    cut = opts.cutTensor;
  } else cut = autoCut(ix, features);
  const featureSlice = ix.sliceFrom(cut, [features]);
  const fullSlice = ix.sliceFrom(cut, [features, logits]);
  if (!featureSlice || !fullSlice || featureSlice.length === 0) {
    throw new DeepError(
      'CUT_TENSOR',
      `${graph.label}: the features "${features}" do not depend on "${cut}" alone (the tail also reads tensors computed before the cut); pick a tensor every path to the features goes through`,
    );
  }
  const inFeatures = new Set(featureSlice);
  const order = [...featureSlice, ...fullSlice.filter((k) => !inFeatures.has(k))];
  const nodes = order.map((k) => ix.nodes[k]);
  for (const n of nodes) {
    const op = n.opType ?? '';
    if ((n.domain ?? '') !== '' || !SUPPORTED_OPS.has(op)) {
      throw new DeepError(
        'UNSUPPORTED_OPERATOR',
        `${graph.label}: operator ${n.domain ? `${n.domain}.` : ''}${op} (node "${n.name ?? ''}") in the tail after "${cut}" is not supported in last-block mode; supported: ${[...SUPPORTED_OPS].sort().join(', ')}`,
      );
    }
  }
  const constants = new Map<string, TensorProto>();
  const trainable: string[] = [];
  const blockNodes = nodes.slice(0, featureSlice.length);
  for (const n of nodes) {
    for (const inp of n.input ?? []) {
      const t = ix.initializers.get(inp);
      if (t && !constants.has(inp)) constants.set(inp, t);
    }
  }
  const tailNodes = new Set(order);
  const readOutsideTail = (name: string) => (ix.consumers.get(name) ?? []).some((k) => !tailNodes.has(k));
  const readersOf = (name: string, within: NodeProto[]) => within.filter((n) => (n.input ?? []).includes(name));
  const headNodes = nodes.slice(featureSlice.length);
  const trainableAs = (name: string, t: TensorProto) => {
    const readers = readersOf(name, blockNodes);
    return readers.length > 0 && readersOf(name, headNodes).length === 0 && isTrainable(name, t, readers);
  };
  for (const [name, t] of constants) {
    // An initializer the trunk reads too stays fixed: changing it would change the cut activations. (Identities
    // that read it get their own copies below, so training it does not tie them to it.)
    const readers = readersOf(name, blockNodes).filter((n) => n.opType !== 'Identity');
    if (!readOutsideTail(name) && readers.length > 0 && readersOf(name, headNodes).length === 0 && isTrainable(name, t, readers)) trainable.push(name);
  }
  const copies = new Map<string, string>();
  for (const n of blockNodes) {
    const source = n.input?.[0] ?? '';
    const out = n.output?.[0] ?? '';
    const t = ix.initializers.get(source);
    if (n.opType !== 'Identity' || !t || !out) continue;
    if (trainableAs(out, t)) {
      trainable.push(out);
      copies.set(out, source);
    }
  }
  const ops = [...new Set(nodes.map((n) => n.opType ?? ''))];
  const params = trainable.reduce((a, name) => a + dimsOf(constants.get(copies.get(name) ?? name)!).reduce((x, y) => x * y, 1), 0);
  return {
    cut,
    cutSource: opts.cutTensor !== undefined ? 'spec' : 'auto',
    features,
    logits,
    nodes,
    featureNodeCount: featureSlice.length,
    trainable,
    copies,
    constants,
    ops,
    description: `${featureSlice.length} nodes from "${cut}" to "${features}" (${trainable.length} trainable tensors, ${params} parameters), head ${nodes.length - featureSlice.length} nodes`,
  };
}
