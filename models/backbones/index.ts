/**
 * A user's ONNX backbone: where its features are, how to compute them for a set of images, and how to export it
 * with θ built in. See graph.ts (finding and editing), images.ts (inputs), extract.ts (batches into K) and
 * checkpoint.ts (the in-job check of the exported file).
 */
import { readFile } from 'node:fs/promises';
import { fsError } from '../io/index.js';
import type { Mat } from '../linalg/types.js';
import { checkCheckpoint, type CheckpointCheck } from './checkpoint.js';
import { BackboneError } from './errors.js';
import { extractFeatures, type Extracted, type ExtractOptions, type FeatureSample } from './extract.js';
import { OnnxGraph, type FeatureSite, type ModelInput } from './graph.js';
import { openImages, resolvePreprocess, type ImageSource, type InputGeometry, type OpenImagesOptions, type Preprocess, type PreprocessSpec } from './images.js';
import { createSession, type RuntimeOptions, type Session } from './runtime.js';

export { BackboneError, isBackboneError, type BackboneErrorReason } from './errors.js';
export { IMMUNIZED_FEATURES, OnnxGraph, type FeatureSite } from './graph.js';
export { describeImageArchive, IMAGENET_PREPROCESS, resolvePreprocess, type ImageSource, type Preprocess, type PreprocessSpec } from './images.js';
export { DEFAULT_BATCH, type Extracted, type FeatureSample } from './extract.js';
export { LOGIT_TOLERANCE, type CheckpointCheck } from './checkpoint.js';
export { cudaAvailability, preloadBackboneRuntime, type ProviderChoice, type RuntimeOptions } from './runtime.js';
export { decodeModel, dtypeName, encodeModel, floatValueInfo, has, int, shapeOf, type ModelProto, type ValueInfoProto } from './onnxProto.js';

export interface BackboneSummary {
  input: ModelInput;
  featureTensor: string;
  /** null for a headless model until features are computed. */
  dim: number | null;
  classifier: string;
}

/**
 * Checks a backbone without onnxruntime (protobuf parsing and graph analysis only), e.g. at upload or submit time:
 * throws the BackboneError a job would fail with (corrupt file, no classifier, unknown featureTensor, bad input).
 */
export function inspectBackbone(bytes: Uint8Array, label: string, featureTensor?: string): BackboneSummary {
  const graph = OnnxGraph.parse(bytes, label);
  const input = graph.input();
  const site = graph.locateFeatures(featureTensor);
  return { input, featureTensor: site.tensor, dim: site.dim, classifier: site.description };
}

export interface BackboneOptions extends RuntimeOptions {
  /** The tensor to take features from; found automatically when absent. */
  featureTensor?: string;
}

export class Backbone {
  private constructor(
    readonly path: string,
    readonly graph: OnnxGraph,
    readonly site: FeatureSite,
    readonly input: ModelInput,
    readonly runtime: Session,
    /** The model's own outputs (logits), fetched for the check sample. */
    readonly logitOutputs: string[],
    private readonly runtimeOptions: RuntimeOptions,
  ) {}

  /** Reads, checks and prepares a backbone: throws a BackboneError that says what is wrong with the file. */
  static async load(path: string, opts: BackboneOptions = {}): Promise<Backbone> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw fsError(err, path, 'an .onnx backbone');
    }
    return Backbone.fromBytes(bytes, path, opts);
  }

  static async fromBytes(bytes: Uint8Array, label: string, opts: BackboneOptions = {}): Promise<Backbone> {
    const graph = OnnxGraph.parse(bytes, label);
    const input = graph.input();
    const site = graph.locateFeatures(opts.featureTensor);
    const runtimeOptions: RuntimeOptions = { executionProvider: opts.executionProvider, threads: opts.threads, log: opts.log };
    let runtime: Session;
    try {
      runtime = await createSession(graph.withFeatureOutput(site), runtimeOptions);
    } catch (err) {
      const detail = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new BackboneError('ONNX_MALFORMED', `${label}: onnxruntime cannot load the model (${detail})`, { cause: err });
    }
    const logitOutputs = graph.outputs().filter((o) => o !== site.tensor);
    return new Backbone(label, graph, site, input, runtime, logitOutputs, runtimeOptions);
  }

  get geometry(): InputGeometry {
    const s = this.input.shape;
    const fixed = (d: number | string | null | undefined) => (typeof d === 'number' && d > 0 ? d : null);
    return { channels: fixed(s?.[1]), height: fixed(s?.[2]), width: fixed(s?.[3]) };
  }

  /** The preprocessing image files get for this model. */
  preprocessFor(spec?: PreprocessSpec): Preprocess {
    return resolvePreprocess(spec, this.geometry, this.path);
  }

  openImages(path: string, opts: OpenImagesOptions = {}): Promise<ImageSource> {
    return openImages(path, this.geometry, opts);
  }

  extract(source: ImageSource, opts: ExtractOptions = {}): Promise<Extracted> {
    return extractFeatures(this.runtime.session, this.input.name, this.site.tensor, source, {
      ...opts,
      sampleOutputs: opts.sample ? this.logitOutputs : undefined,
      describeCandidates: () => `candidate tensors: ${this.graph.candidates().join(', ')}`,
    });
  }

  /** The immunized checkpoint's bytes. */
  immunized(theta: Mat): Uint8Array {
    return this.graph.immunized(this.site, theta);
  }

  check(immunized: Uint8Array, theta: Mat, sample: FeatureSample): Promise<CheckpointCheck> {
    return checkCheckpoint(immunized, this.input.name, theta, sample, this.logitOutputs, this.runtimeOptions);
  }

  async close(): Promise<void> {
    await this.runtime.session.release();
  }
}
