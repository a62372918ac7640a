import type { Mat } from '../linalg/types.js';
import { mat } from './dense.js';
import { gaussian } from './random.js';

export type Task = 'regression' | 'binary' | 'multiclass';

const MAX_CLASSES = 100;

/** 2 distinct values → binary; a small set of integers → multiclass; anything else → regression. */
export function inferTask(labels: Float64Array): Task {
  const distinct = new Set<number>();
  let integers = true;
  for (const v of labels) {
    distinct.add(v);
    if (!Number.isInteger(v)) integers = false;
    if (distinct.size > MAX_CLASSES) return 'regression';
  }
  if (distinct.size === 2) return 'binary';
  if (integers && distinct.size > 2) return 'multiclass';
  return 'regression';
}

export interface EncodedTargets {
  Y: Mat;
  classes: number[] | null;
}

/** Squared-loss probing targets: the value itself, ±1 for two classes, one-hot for several. */
export function encodeTargets(labels: Float64Array, task: Task, classes?: number[]): EncodedTargets {
  const n = labels.length;
  if (task === 'regression') return { Y: { rows: n, cols: 1, data: Float64Array.from(labels) }, classes: null };
  const cls = classes ?? [...new Set(labels)].sort((a, b) => a - b);
  if (task === 'binary') {
    if (cls.length > 2) throw new Error(`binary task needs two classes, found ${cls.length}`);
    const Y = mat(n, 1);
    for (let i = 0; i < n; i++) Y.data[i] = labels[i] === cls[cls.length - 1] ? 1 : -1;
    return { Y, classes: cls };
  }
  const index = new Map(cls.map((c, k) => [c, k]));
  const Y = mat(n, cls.length);
  for (let i = 0; i < n; i++) {
    const k = index.get(labels[i]);
    if (k !== undefined) Y.data[i * cls.length + k] = 1;
  }
  return { Y, classes: cls };
}

/** Seeded Gaussian targets for attack simulations on unlabelled data. */
export function gaussianTargets(n: number, seed: number): Mat {
  const rand = gaussian(seed);
  const Y = mat(n, 1);
  for (let i = 0; i < n; i++) Y.data[i] = rand();
  return Y;
}
