/**
 * The tail as a tfjs computation: trainable tf.Variables for the block's weights (initialised from the ONNX
 * initializers, in their ONNX layouts), constants for the rest, and an interpreter over the tail's nodes.
 */
import type * as TF from '@tensorflow/tfjs';
import { attribute, dimsOf, DataType, floatValues, intValues, type TensorProto } from '../backbones/onnxProto.js';
import type { Tf } from './backend.js';
import { DeepError } from './errors.js';
import { findGeluChains, fusedGelu, hasFusedKernels, type GeluChain } from './fusedOps.js';
import { OPS, type OpContext } from './ops.js';
import { SHAPE_OPS, shapeValue, type IntValue } from './shapeOps.js';
import { axisRange } from './slice.js';
import type { TailPlan } from './split.js';

export interface TailOutputs {
  features: TF.Tensor2D;
  logits: TF.Tensor2D;
}

export class TailModel {
  readonly variables = new Map<string, TF.Variable>();
  private readonly constants = new Map<string, TF.Tensor>();
  private readonly intConstants = new Map<string, IntValue>();
  /** Shape values computed during the current forward pass. */
  private shapeValues = new Map<string, IntValue>();
  private readonly ctx: OpContext;
  /** GELUs written out as ONNX nodes, by the index of their last node, run as one fused op where the backend has it. */
  private readonly gelus = new Map<number, GeluChain>();
  private readonly inGelu = new Set<number>();
  /** Slice nodes that read the same tensor, by node index: where they cut one axis into pieces, one split does. */
  private readonly sliceGroups = new Map<number, number[]>();

  constructor(
    readonly tf: Tf,
    readonly plan: TailPlan,
  ) {
    const trainable = new Set(plan.trainable);
    const addConstant = (name: string, t: TensorProto) => {
      const dims = dimsOf(t);
      if (t.dataType === DataType.FLOAT) {
        const values = floatValues(t);
        if (!values) throw new DeepError('TAIL_SHAPE', `initializer "${name}" could not be read as float32`);
        if (trainable.has(name)) this.variables.set(name, tf.variable(tf.tensor(values, dims, 'float32'), true, `tail/${name}`));
        else this.constants.set(name, tf.tensor(values, dims, 'float32'));
      } else {
        const values = intValues(t);
        if (!values) throw new DeepError('UNSUPPORTED_OPERATOR', `initializer "${name}" has an element type last-block mode does not read (${t.dataType})`);
        this.intConstants.set(name, { values, dims });
        this.constants.set(name, tf.tensor(values, dims, 'int32'));
      }
    };
    for (const [name, t] of plan.constants) addConstant(name, t);
    for (const [copy, source] of plan.copies) {
      const values = floatValues(plan.constants.get(source)!);
      if (!values) throw new DeepError('TAIL_SHAPE', `initializer "${source}" could not be read as float32`);
      this.variables.set(copy, tf.variable(tf.tensor(values, dimsOf(plan.constants.get(source)!), 'float32'), true, `tail/${copy}`));
    }
    for (const node of plan.nodes) {
      if (node.opType !== 'Constant') continue;
      const value = attribute(node, 'value')?.t;
      if (!value) throw new DeepError('UNSUPPORTED_OPERATOR', `Constant "${node.name ?? ''}" without a tensor value is not supported in last-block mode`);
      addConstant(node.output![0], value);
    }
    const scalar = (name: string): number | null => {
      const c = this.constants.get(name);
      return c && c.size === 1 && c.dtype === 'float32' ? c.dataSync()[0] : null;
    };
    for (const chain of findGeluChains(plan.nodes, scalar, new Set([plan.features, plan.logits]))) {
      this.gelus.set(chain.nodes[chain.nodes.length - 1], chain);
      chain.nodes.slice(0, -1).forEach((i) => this.inGelu.add(i));
    }
    const slicesOf = new Map<string, number[]>();
    plan.nodes.forEach((n, i) => {
      const input = n.input?.[0];
      if (n.opType === 'Slice' && input) slicesOf.set(input, [...(slicesOf.get(input) ?? []), i]);
    });
    for (const group of slicesOf.values()) if (group.length >= 2) for (const i of group) this.sliceGroups.set(i, group);
    this.ctx = {
      tf,
      ints: (name) => this.intValue(name)?.values ?? null,
      isScalar: (name) => this.intValue(name)?.dims.length === 0,
    };
  }

  /** Features (N×D) and logits through the original head, from cut activations. Call inside tf.tidy or a grad. */
  forward(cut: TF.Tensor, opts: { headToo?: boolean } = {}): TailOutputs {
    const env = new Map<string, TF.Tensor>([[this.plan.cut, cut]]);
    const lookup = (name: string): TF.Tensor | undefined => (name ? (env.get(name) ?? this.variables.get(name) ?? this.constants.get(name)) : undefined);
    const count = opts.headToo === false ? this.plan.featureNodeCount : this.plan.nodes.length;
    this.shapeValues = new Map();
    const fuse = hasFusedKernels(this.tf);
    const split = new Set<number>();
    for (let i = 0; i < count; i++) {
      if (split.has(i)) continue;
      const group = fuse ? this.sliceGroups.get(i) : undefined;
      if (group && group[0] === i && this.splitSlices(group, env, lookup)) {
        group.forEach((k) => split.add(k));
        continue;
      }
      const gelu = fuse ? this.gelus.get(i) : undefined;
      if (gelu) {
        const x = lookup(gelu.input);
        if (x && x.dtype === 'float32') {
          env.set(gelu.output, fusedGelu(this.tf, x));
          continue;
        }
        // Not a float tensor: the chain's nodes run one by one after all.
        for (const k of gelu.nodes.slice(0, -1)) this.runNode(k, env, lookup);
      } else if (fuse && this.inGelu.has(i)) continue;
      this.runNode(i, env, lookup);
    }
    const features = env.get(this.plan.features)!;
    if (features.rank !== 2) {
      throw new DeepError('TAIL_SHAPE', `feature tensor "${this.plan.features}" has shape [${features.shape.join(', ')}]; expected N×D`);
    }
    const logits = env.get(this.plan.logits);
    return { features: features as TF.Tensor2D, logits: (logits ?? features) as TF.Tensor2D };
  }

  /**
   * Slices of one tensor that cut a single axis into consecutive pieces with step 1 (torch's chunk of the fused
   * q/k/v projection) as one tf.split, whose gradient is one concatenation: as separate slices, each gradient is a
   * zero-padded copy of the whole tensor, and the copies are then added up. False when they are not such pieces.
   */
  private splitSlices(group: number[], env: Map<string, TF.Tensor>, lookup: (name: string) => TF.Tensor | undefined): boolean {
    const nodes = group.map((k) => this.plan.nodes[k]);
    const x = lookup(nodes[0].input![0]);
    if (!x || x.rank === 0 || this.intValue(nodes[0].input![0])) return false;
    const pieces: Array<{ start: number; count: number; output: string }> = [];
    let axis = -1;
    for (const node of nodes) {
      const [, starts, ends, axes, steps] = (node.input ?? []).map((n) => (n ? (this.intValue(n)?.values ?? null) : undefined));
      if (!starts || !ends || starts.length !== 1 || ends.length !== 1 || axes === null || steps === null) return false;
      if (steps && (steps.length !== 1 || steps[0] !== 1)) return false;
      const a0 = axes ? axes[0] : 0;
      if (axes && axes.length !== 1) return false;
      const a = a0 < 0 ? a0 + x.rank : a0;
      if (a < 0 || a >= x.rank || (axis >= 0 && a !== axis)) return false;
      axis = a;
      const r = axisRange(a, x.shape[a] as number, starts[0], ends[0], 1);
      if (r.count === 0) return false;
      pieces.push({ start: r.start, count: r.count, output: node.output![0] });
    }
    pieces.sort((p, q) => p.start - q.start);
    let next = 0;
    for (const p of pieces) {
      if (p.start !== next) return false;
      next += p.count;
    }
    if (next !== x.shape[axis]) return false;
    const parts = this.tf.split(
      x,
      pieces.map((p) => p.count),
      axis,
    );
    pieces.forEach((p, k) => env.set(p.output, parts[k]));
    return true;
  }

  private runNode(i: number, env: Map<string, TF.Tensor>, lookup: (name: string) => TF.Tensor | undefined): void {
    const node = this.plan.nodes[i];
    const op = node.opType!;
    if (op === 'Constant') return;
    // A trained copy stands in for the Identity that read the shared initializer.
    if (op === 'Identity' && this.plan.copies.has(node.output?.[0] ?? '')) return;
    const names = node.input ?? [];
    const out = node.output![0];
    if (op === 'Shape') {
      const x = lookup(names[0] ?? '');
      if (!x) throw new DeepError('TAIL_SHAPE', `Shape "${node.name ?? ''}": its input is missing`);
      this.setShapeValue(env, out, shapeValue(node, x.shape));
      return;
    }
    const asInts = names.map((n) => (n ? this.intValue(n) : undefined));
    const shapeOp = Object.hasOwn(SHAPE_OPS, op) ? SHAPE_OPS[op] : undefined;
    const onInts = shapeOp && names.every((n, k) => !n || asInts[k]) ? shapeOp(node, asInts as IntValue[]) : null;
    if (onInts) {
      this.setShapeValue(env, out, onInts);
      return;
    }
    const tensorOp = Object.hasOwn(OPS, op) ? OPS[op] : undefined;
    if (!tensorOp) throw new DeepError('UNSUPPORTED_OPERATOR', `${op} "${node.name ?? ''}" is supported on shape values only, not on the tensors it gets here`);
    const inputs = names.map((n) => lookup(n));
    const y = tensorOp(this.ctx, node, inputs);
    if (Array.isArray(y)) y.forEach((t, k) => node.output![k] && env.set(node.output![k], t));
    else env.set(out, y);
  }

  private intValue(name: string): IntValue | undefined {
    return this.shapeValues.get(name) ?? this.intConstants.get(name);
  }

  /** Records a shape value, and keeps it as an int32 tensor too for an operator that reads it as one. */
  private setShapeValue(env: Map<string, TF.Tensor>, name: string, v: IntValue): void {
    this.shapeValues.set(name, v);
    env.set(name, this.tf.tensor(v.values, v.dims, 'int32'));
  }

  /** The trained values, by initializer name, as float32 in the initializer's layout. */
  trainedValues(): Map<string, { dims: number[]; values: Float32Array }> {
    const out = new Map<string, { dims: number[]; values: Float32Array }>();
    for (const [name, v] of this.variables) out.set(name, { dims: [...v.shape], values: v.dataSync() as Float32Array });
    return out;
  }

  parameterCount(): number {
    let n = 0;
    for (const v of this.variables.values()) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    for (const c of this.constants.values()) c.dispose();
  }
}
