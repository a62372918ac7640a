/**
 * ONNX Slice on tensors, built only from operators whose gradients every tfjs backend has (Slice, whose gradient is
 * a pad, Reshape and Reverse). tf.stridedSlice would be the direct translation, but tfjs registers no gradient for
 * StridedSlice, so a tail that slices (torch's chunk of the fused q/k/v projection, say) could not train.
 */
import type * as TF from '@tensorflow/tfjs';
import type { Tf } from './backend.js';

/** What one axis keeps: `count` elements from `start`, every `step` (a negative step walks backwards). */
export interface AxisRange {
  axis: number;
  start: number;
  step: number;
  count: number;
}

/**
 * ONNX's clamping rules for one axis of length `dim`: negative starts and ends count from the end; with a positive
 * step both clamp to [0, dim], with a negative one the start clamps to [0, dim − 1] and the end to [−1, dim − 1].
 * Ends such as INT64_MAX (read as a large double) clamp the same way.
 */
export function axisRange(axis: number, dim: number, start: number, end: number, step: number): AxisRange {
  if (step === 0) throw new RangeError('Slice step 0');
  const wrap = (v: number) => (v < 0 ? v + dim : v);
  const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));
  if (step > 0) {
    const s = clamp(wrap(start), 0, dim);
    const e = clamp(wrap(end), 0, dim);
    return { axis, start: s, step, count: Math.max(0, Math.ceil((e - s) / step)) };
  }
  const s = clamp(wrap(start), 0, dim - 1);
  const e = clamp(wrap(end), -1, dim - 1);
  return { axis, start: s, step, count: Math.max(0, Math.ceil((s - e) / -step)) };
}

/** Every `step`-th element of `axis` from `start`, `count` of them, with a positive step. */
function strided(tf: Tf, x: TF.Tensor, axis: number, start: number, step: number, count: number): TF.Tensor {
  const dims = x.shape as number[];
  const begin = dims.map((_, i) => (i === axis ? start : 0));
  if (step === 1 || count <= 1)
    return tf.slice(
      x,
      begin,
      dims.map((d, i) => (i === axis ? count : d)),
    );
  // Take the span [start, start + count·step) (padded with zeros where it runs past the end), fold it into
  // count × step, and keep the first column.
  const available = Math.min(count * step, dims[axis] - start);
  let span = tf.slice(
    x,
    begin,
    dims.map((d, i) => (i === axis ? available : d)),
  );
  if (available < count * step) span = tf.pad(span, dims.map((_, i) => (i === axis ? [0, count * step - available] : [0, 0])) as Array<[number, number]>);
  const folded = tf.reshape(span, [...dims.slice(0, axis), count, step, ...dims.slice(axis + 1)]);
  const first = tf.slice(folded, [...begin.slice(0, axis), 0, 0, ...begin.slice(axis + 1)], [...dims.slice(0, axis), count, 1, ...dims.slice(axis + 1)]);
  return tf.reshape(first, [...dims.slice(0, axis), count, ...dims.slice(axis + 1)]);
}

/** Applies the ranges axis by axis; axes with step 1 go through one plain slice. */
export function sliceByRanges(tf: Tf, x: TF.Tensor, ranges: AxisRange[]): TF.Tensor {
  const dims = x.shape as number[];
  const unit = ranges.filter((r) => r.step === 1);
  let y = x;
  if (unit.length > 0) {
    const begin = dims.map(() => 0);
    const size = [...dims];
    for (const r of unit) {
      begin[r.axis] = r.start;
      size[r.axis] = r.count;
    }
    y = tf.slice(y, begin, size);
  }
  for (const r of ranges.filter((q) => q.step !== 1)) {
    if (r.step > 0) {
      y = strided(tf, y, r.axis, r.start, r.step, r.count);
    } else {
      // Walking backwards from `start` is walking forwards from its mirror image in the reversed axis.
      const n = y.shape[r.axis] as number;
      y = strided(tf, tf.reverse(y, [r.axis]), r.axis, n - 1 - r.start, -r.step, r.count);
    }
  }
  return y;
}
