/**
 * The frozen trunk in onnxruntime: each image goes through once, and the cut activations (the tail's input), the
 * original features and the original logits are kept in memory as float32.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { checkAbort } from '../engine/index.js';
import type { OnnxGraph } from '../backbones/graph.js';
import { DataType, encodeModel, floatValueInfo, type TensorProto } from '../backbones/onnxProto.js';
import type { ImageSource } from '../backbones/images.js';
import { createSession, loadOrt, type RuntimeOptions, type Session } from '../backbones/runtime.js';
import { BackboneError } from '../backbones/errors.js';
import type { TailPlan } from './split.js';
import { cutWriter, type CutWriter } from './cutStore.js';

export interface Activations {
  rows: number;
  /** One row's cut activation shape, e.g. [C, H, W]. */
  cutShape: number[];
  /** In memory, or in a temporary file when over the memory budget; close it when done. */
  cut: CutWriter;
  features: Float32Array;
  dim: number;
  logits: Float32Array;
  classes: number;
}

/** The model with the cut and the features as extra outputs (after its own). */
export function withTailOutputs(graph: OnnxGraph, plan: TailPlan): Uint8Array {
  const outputs = graph.graph.output ?? [];
  const have = new Set(outputs.map((v) => v.name));
  const extra = [plan.cut, plan.features].filter((n) => !have.has(n)).map((n) => floatValueInfo(n));
  return encodeModel({ ...graph.model, graph: { ...graph.graph, output: [...outputs, ...extra] } });
}

/** The original graph with the named initializers replaced by new float32 values (the exported checkpoint). */
export function withInitializers(graph: OnnxGraph, values: Map<string, { dims: number[]; values: Float32Array }>, extraOutputs: string[] = []): Uint8Array {
  const tensor = (name: string, dataType: number | undefined, v: { dims: number[]; values: Float32Array }): TensorProto => ({
    name,
    dims: v.dims,
    dataType: dataType ?? DataType.FLOAT,
    rawData: new Uint8Array(v.values.buffer.slice(v.values.byteOffset, v.values.byteOffset + v.values.byteLength)),
  });
  const existing = graph.graph.initializer ?? [];
  const initializer = existing.map((t): TensorProto => {
    const v = values.get(t.name ?? '');
    return v ? tensor(t.name ?? '', t.dataType ?? undefined, v) : t;
  });
  // A trained copy of a shared initializer (see TailPlan.copies) replaces the Identity that made it.
  const known = new Set(existing.map((t) => t.name));
  const copies = new Set([...values.keys()].filter((name) => !known.has(name)));
  for (const name of copies) initializer.push(tensor(name, DataType.FLOAT, values.get(name)!));
  const node = (graph.graph.node ?? []).filter((n) => !(n.opType === 'Identity' && copies.has(n.output?.[0] ?? '')));
  const outputs = graph.graph.output ?? [];
  const have = new Set(outputs.map((o) => o.name));
  const extra = extraOutputs.filter((n) => !have.has(n)).map((n) => floatValueInfo(n));
  return encodeModel({ ...graph.model, graph: { ...graph.graph, node, initializer, output: [...outputs, ...extra] } });
}

export class Trunk {
  private constructor(
    readonly runtime: Session,
    readonly inputName: string,
    readonly plan: TailPlan,
  ) {}

  static async open(graph: OnnxGraph, plan: TailPlan, opts: RuntimeOptions = {}): Promise<Trunk> {
    const input = graph.input();
    let runtime: Session;
    try {
      runtime = await createSession(withTailOutputs(graph, plan), opts);
    } catch (err) {
      const detail = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new BackboneError('ONNX_MALFORMED', `${graph.label}: onnxruntime cannot load the model (${detail})`, { cause: err });
    }
    return new Trunk(runtime, input.name, plan);
  }

  /** One batch of images (n×C×H×W) through the original model. */
  async runBatch(images: Float32Array, shape: number[]): Promise<{ cut: Tensor; features: Tensor; logits: Tensor }> {
    const ort = await loadOrt();
    let out: InferenceSession.OnnxValueMapType;
    try {
      out = await this.runtime.session.run({ [this.inputName]: new ort.Tensor('float32', images, shape) }, [
        this.plan.cut,
        this.plan.features,
        this.plan.logits,
      ]);
    } catch (err) {
      const detail = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new BackboneError('INFERENCE_FAILED', `the backbone failed on a batch of shape [${shape.join(', ')}] (${detail})`, { cause: err });
    }
    return { cut: out[this.plan.cut] as Tensor, features: out[this.plan.features] as Tensor, logits: out[this.plan.logits] as Tensor };
  }

  /** Every image of `source`, in batches, into memory. */
  async run(
    source: ImageSource,
    opts: { batchSize?: number; signal?: AbortSignal; progress?: (done: number, total: number) => void; memoryBytes?: number } = {},
  ): Promise<Activations> {
    const total = source.count;
    const batch = Math.max(1, Math.min(opts.batchSize ?? 32, total));
    const per = source.channels * source.height * source.width;
    let buffer: Float32Array = new Float32Array(batch * per);
    let acts: Activations | null = null;
    let cutPer = 0;
    for (let at = 0; at < total; at += batch) {
      checkAbort(opts.signal);
      const n = Math.min(batch, total - at);
      buffer = await source.read(at, n, buffer);
      const out = await this.runBatch(n === batch ? buffer : buffer.subarray(0, n * per), [n, source.channels, source.height, source.width]);
      if (!acts) {
        const f = out.features;
        if (f.dims.length !== 2)
          throw new BackboneError('FEATURE_SHAPE', `feature tensor "${this.plan.features}" has shape [${f.dims.join(', ')}]; expected N×D`);
        cutPer = out.cut.dims.slice(1).reduce((a, b) => a * b, 1);
        const classes = out.logits.dims.slice(1).reduce((a, b) => a * b, 1);
        acts = {
          rows: total,
          cutShape: out.cut.dims.slice(1),
          cut: cutWriter(total, cutPer, opts.memoryBytes),
          features: new Float32Array(total * f.dims[1]),
          dim: f.dims[1],
          logits: new Float32Array(total * classes),
          classes,
        };
      }
      acts.cut.append((out.cut.data as Float32Array).subarray(0, n * cutPer));
      acts.features.set((out.features.data as Float32Array).subarray(0, n * acts.dim), at * acts.dim);
      acts.logits.set((out.logits.data as Float32Array).subarray(0, n * acts.classes), at * acts.classes);
      opts.progress?.(at + n, total);
    }
    return acts!;
  }

  async close(): Promise<void> {
    await this.runtime.session.release();
  }
}

/** Every tail tensor's shape for the given images (one is enough), from an onnxruntime run that exposes them all. */
export async function tailShapes(
  graph: OnnxGraph,
  plan: TailPlan,
  images: Float32Array,
  shape: number[],
  opts: RuntimeOptions = {},
): Promise<Map<string, readonly number[]>> {
  const names = plan.nodes.filter((n) => n.opType !== 'Constant').map((n) => n.output![0]);
  const outputs = graph.graph.output ?? [];
  const have = new Set(outputs.map((v) => v.name));
  // Outputs without a declared type: shape subgraphs produce int64 tensors, and onnxruntime infers each type.
  const extra = [plan.cut, ...names].filter((n) => !have.has(n)).map((name) => ({ name }));
  const model = encodeModel({ ...graph.model, graph: { ...graph.graph, output: [...outputs, ...extra] } });
  const ort = await loadOrt();
  const session = await createSession(model, opts);
  try {
    const out = await session.session.run({ [graph.input().name]: new ort.Tensor('float32', images, shape) }, [plan.cut, ...names]);
    return new Map(Object.entries(out).map(([k, v]) => [k, (v as Tensor).dims]));
  } finally {
    await session.session.release();
  }
}
