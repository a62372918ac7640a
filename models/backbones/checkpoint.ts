/**
 * The in-job check of an immunized checkpoint: the immunized graph runs on a sample batch that the original
 * graph already ran on, and the two are compared.
 * - logits: max |Δ| over every classifier output, and that over max |logit| (the 1e-3 acceptance criterion);
 * - features: features_immunized against F·θ computed here in float64, with the float32 rounding bound of a
 *   length-D dot product (γ_{D+1}·(|F|·|θ|) element by element; the +1 covers θ's own rounding to float32).
 */
import type { Tensor } from 'onnxruntime-node';
import type { Mat } from '../linalg/types.js';
import type { FeatureSample } from './extract.js';
import { IMMUNIZED_FEATURES } from './graph.js';
import { createSession, loadOrt, type RuntimeOptions } from './runtime.js';

export const LOGIT_TOLERANCE = 1e-3;

export interface CheckpointCheck {
  sampleRows: number;
  /** null for a model with no classifier output (a headless backbone). */
  maxAbsLogitDiff: number | null;
  maxRelLogitDiff: number | null;
  maxFeatureDiff: number;
  maxRelFeatureDiff: number;
  /** The largest |Δ| divided by its element's float32 rounding bound; ≤ 1 means within rounding. */
  featureRoundingRatio: number;
  logitTolerance: number;
  passed: boolean;
  outputs: string[];
}

const U32 = 2 ** -24;

export async function checkCheckpoint(
  immunized: Uint8Array,
  inputName: string,
  theta: Mat,
  sample: FeatureSample,
  logitOutputs: string[],
  runtime: RuntimeOptions = {},
): Promise<CheckpointCheck> {
  const ort = await loadOrt();
  const { session } = await createSession(immunized, { ...runtime, log: undefined });
  try {
    const out = await session.run({ [inputName]: new ort.Tensor('float32', sample.input, sample.inputShape) }, [...logitOutputs, IMMUNIZED_FEATURES]);
    let maxAbs: number | null = null;
    let maxRef = 0;
    for (const name of logitOutputs) {
      const ref = sample.outputs[name];
      const got = (out[name] as Tensor).data as Float32Array;
      if (!ref || got.length !== ref.data.length)
        throw new Error(`checkpoint check: output "${name}" has ${got.length} values, the original ${ref?.data.length ?? 0}`);
      for (let i = 0; i < got.length; i++) {
        maxAbs = Math.max(maxAbs ?? 0, Math.abs(got[i] - ref.data[i]));
        maxRef = Math.max(maxRef, Math.abs(ref.data[i]));
      }
    }
    const D = theta.rows;
    const F = sample.features;
    const G = (out[IMMUNIZED_FEATURES] as Tensor).data as Float32Array;
    const gamma = ((D + 1) * U32) / (1 - (D + 1) * U32);
    let maxDiff = 0;
    let maxExpected = 0;
    let ratio = 0;
    for (let r = 0; r < sample.rows; r++) {
      for (let j = 0; j < D; j++) {
        let exact = 0;
        let magnitude = 0;
        for (let k = 0; k < D; k++) {
          const a = F[r * D + k];
          const t = theta.data[k * D + j];
          exact += a * t;
          magnitude += Math.abs(a * t);
        }
        const diff = Math.abs(G[r * D + j] - exact);
        maxDiff = Math.max(maxDiff, diff);
        maxExpected = Math.max(maxExpected, Math.abs(exact));
        const bound = gamma * magnitude;
        ratio = Math.max(ratio, bound > 0 ? diff / bound : diff > 0 ? Infinity : 0);
      }
    }
    const maxRel = maxAbs === null ? null : maxRef > 0 ? maxAbs / maxRef : maxAbs;
    return {
      sampleRows: sample.rows,
      maxAbsLogitDiff: maxAbs,
      maxRelLogitDiff: maxRel,
      maxFeatureDiff: maxDiff,
      maxRelFeatureDiff: maxExpected > 0 ? maxDiff / maxExpected : maxDiff,
      featureRoundingRatio: ratio,
      logitTolerance: LOGIT_TOLERANCE,
      passed: (maxRel === null || maxRel <= LOGIT_TOLERANCE) && ratio <= 1,
      outputs: logitOutputs,
    };
  } finally {
    await session.release();
  }
}
