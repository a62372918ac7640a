/** evaluate: the θ to score comes from a theta.safetensors file instead of an optimizer. */
import { DataError, readSafetensors } from '../../models/io/index.js';
import type { Mat } from '../../models/linalg/types.js';

/** Reads `theta` from a theta.safetensors file and checks that it is D×D for features of width D. */
export async function readTheta(thetaPath: string, D: number): Promise<Mat> {
  const tensors = await readSafetensors(thetaPath);
  const t = tensors.theta;
  if (!t) throw new DataError('BAD_FORMAT', `${thetaPath}: no tensor named "theta" (found ${Object.keys(tensors).join(', ') || 'none'})`);
  if (t.shape.length !== 2) throw new DataError('BAD_SHAPE', `${thetaPath}: theta must be 2-D, got shape [${t.shape.join(', ')}]`);
  if (t.shape[0] !== D || t.shape[1] !== D) {
    throw new DataError('DIM_MISMATCH', `${thetaPath}: theta is ${t.shape[0]}×${t.shape[1]}, the features have D=${D}`);
  }
  return { rows: D, cols: D, data: t.data };
}
