import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';

/** Runs `fn` with `backend` as tfjs's active backend. */
export function on<T>(backend: string, fn: () => T): T {
  tf.setBackend(backend);
  return fn();
}

/** Largest difference relative to the reference's largest magnitude (1 at least). */
export function relErr(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length);
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / scale;
}
