/**
 * The feature phase of a backbone job: every image set goes through the backbone once, in batches, into the
 * engine's statistics; labels come from a labels file or from class folders.
 */
import type { LabelledData } from '../engine/index.js';
import { checkAbort } from '../engine/index.js';
import type { SufficientStats } from '../engine/index.js';
import { DataError } from '../io/index.js';
import type { Backbone } from './index.js';
import type { FeatureSample } from './extract.js';
import { BackboneError } from './errors.js';
import type { ImageSource, PreprocessSpec } from './images.js';
import { readLabelFile } from './labels.js';

export interface ImageSet {
  role: string;
  images: string;
  labels?: string;
  limit?: number;
}

export interface ImageSetSummary {
  kind: ImageSource['kind'];
  images: number;
  labels: 'file' | 'class folders' | null;
  classes?: string[];
  seconds: number;
  imagesPerSecond: number;
}

export interface FeaturePhase {
  data: Record<string, LabelledData>;
  /** K, Xᵀ1 and n per set, streamed batch by batch. */
  stats: Record<string, SufficientStats>;
  /** The first rows of the first set, with the original model's outputs, for the checkpoint check. */
  sample: FeatureSample | null;
  summary: Record<string, ImageSetSummary>;
  dim: number;
  seconds: number;
}

export interface FeaturePhaseOptions {
  preprocess?: PreprocessSpec;
  batchSize?: number;
  sampleRows?: number;
  progress?: (done: number, total: number, role: string) => void;
  signal?: AbortSignal;
}

async function labelsFor(set: ImageSet, source: ImageSource, fullCount: () => Promise<number>): Promise<{ y?: Float64Array; from: ImageSetSummary['labels'] }> {
  if (set.labels) {
    const y = await readLabelFile(set.labels);
    const expected = await fullCount();
    if (y.length !== expected) {
      throw new BackboneError(
        'LABELS',
        `${set.labels}: ${y.length} labels for ${expected} images in ${set.images}; expected one label per image, in path order for image files`,
      );
    }
    return { y: y.length > source.count ? y.slice(0, source.count) : y, from: 'file' };
  }
  return source.labels ? { y: source.labels, from: 'class folders' } : { from: null };
}

export async function extractImageSets(backbone: Backbone, sets: ImageSet[], opts: FeaturePhaseOptions = {}): Promise<FeaturePhase> {
  const start = performance.now();
  const sources: ImageSource[] = [];
  try {
    // Open (and so check) every input before the first inference.
    for (const set of sets) sources.push(await backbone.openImages(set.images, { preprocess: opts.preprocess, limit: set.limit }));
    const labels = [];
    for (let i = 0; i < sets.length; i++) {
      const fullCount = async () => {
        if (sets[i].limit === undefined) return sources[i].count;
        const all = await backbone.openImages(sets[i].images, { preprocess: opts.preprocess });
        await all.close();
        return all.count;
      };
      labels.push(await labelsFor(sets[i], sources[i], fullCount));
    }
    const total = sources.reduce((a, s) => a + s.count, 0);
    let before = 0;
    const data: Record<string, LabelledData> = {};
    const summary: Record<string, ImageSetSummary> = {};
    const stats: Record<string, SufficientStats> = {};
    let sample: FeatureSample | null = null;
    let dim = 0;
    for (let i = 0; i < sets.length; i++) {
      checkAbort(opts.signal);
      const source = sources[i];
      const offset = before;
      const ex = await backbone.extract(source, {
        batchSize: opts.batchSize,
        // immunize() takes the feature matrices (it derives K itself and scores benign quality on rows), so they
        // are kept besides the streamed statistics; an engine entry taking SufficientStats would make this optional.
        keep: true,
        sample: i === 0 ? opts.sampleRows : 0,
        signal: opts.signal,
        progress: (done) => opts.progress?.(offset + done, total, sets[i].role),
      });
      before += source.count;
      if (i === 0) sample = ex.sample;
      if (dim !== 0 && ex.dim !== dim) throw new DataError('DIM_MISMATCH', `${sets[i].images}: ${ex.dim}-wide features, the first set's are ${dim}`);
      dim = ex.dim;
      data[sets[i].role] = labels[i].y ? { X: ex.X!, y: labels[i].y } : { X: ex.X! };
      stats[sets[i].role] = ex.stats;
      summary[sets[i].role] = {
        kind: source.kind,
        images: source.count,
        labels: labels[i].from,
        ...(labels[i].from === 'class folders' ? { classes: source.classes } : {}),
        seconds: ex.seconds.total,
        imagesPerSecond: source.count / ex.seconds.total,
      };
    }
    return { data, stats, sample, summary, dim, seconds: (performance.now() - start) / 1000 };
  } finally {
    await Promise.all(sources.map((s) => s.close().catch(() => undefined)));
  }
}
