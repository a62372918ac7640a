/**
 * Shared by the backbone tests: small fixtures, a reference onnxruntime run on untouched graphs, and plain-loop
 * reference arithmetic (no BLAS, no code under test).
 */
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { DataError } from '../../models/io/errors.js';
import { BackboneError, type BackboneErrorReason } from '../../models/backbones/errors.js';
import type { Mat } from '../../models/linalg/types.js';
import { resnetFixture } from '../../scripts/fixtures/onnxResnet.js';
import { vitFixture } from '../../scripts/fixtures/onnxVit.js';
import type { HeadKind } from '../../scripts/fixtures/onnxBuilder.js';
import { lcg, normals } from './reference.js';

export const SIZE = 32;

export const smallResnet = (head: HeadKind = 'gemm', seed = 18, batchNorm: 'separate' | 'folded' = 'separate') =>
  resnetFixture({ imageSize: SIZE, widths: [8, 16, 24, 48], blocks: [1, 1, 1, 1], classes: 10, head, seed, batchNorm });

export const smallVit = (head: HeadKind = 'gemm', layerNorm: 'op' | 'decomposed' = 'op', seed = 16, attention: 'dynamic' | 'static' = 'dynamic') =>
  vitFixture({ imageSize: SIZE, patch: 8, hidden: 32, layers: 2, heads: 4, mlp: 64, classes: 10, head, layerNorm, seed, attention });

export function randomImages(n: number, seed: number, shift = 0, size = SIZE): Float32Array {
  const next = normals(seed);
  return Float32Array.from({ length: n * 3 * size * size }, () => next() + shift);
}

/** Runs an untouched model and returns the named output. */
export async function runModel(bytes: Uint8Array, images: Float32Array, output: string, size = SIZE): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const n = images.length / (3 * size * size);
    const out = await session.run({ input: new ort.Tensor('float32', images, [n, 3, size, size]) });
    const t = out[output];
    assert.ok(t, `the model has no output ${output}; it has ${Object.keys(out).join(', ')}`);
    return { data: t.data as Float32Array, dims: t.dims };
  } finally {
    await session.release();
  }
}

/** A well-conditioned but far from diagonal θ: diag(10^(2i/(D-1))) plus a dense random part; κ in the hundreds. */
export function testTheta(D: number, seed = 7): Mat {
  const u = lcg(seed);
  const data = new Float64Array(D * D);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) data[i * D + j] = (u() - 0.5) / Math.sqrt(D);
    data[i * D + i] += 10 ** ((2 * i) / (D - 1));
  }
  return { rows: D, cols: D, data };
}

export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/**
 * Asserts G = F·θ within float32 rounding, element by element: |G − F·θ| ≤ γ_{D+1}·(|F|·|θ|) with
 * γ_n = n·u/(1 − n·u), u = 2⁻²⁴ (a length-D dot product in float32, plus θ's own rounding to float32).
 */
export function assertFeaturesTimesTheta(G: ArrayLike<number>, F: ArrayLike<number>, theta: Mat): void {
  const D = theta.rows;
  const rows = F.length / D;
  assert.equal(G.length, rows * D);
  const u = 2 ** -24;
  const gamma = ((D + 1) * u) / (1 - (D + 1) * u);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < D; j++) {
      let exact = 0;
      let magnitude = 0;
      for (let k = 0; k < D; k++) {
        exact += F[r * D + k] * theta.data[k * D + j];
        magnitude += Math.abs(F[r * D + k] * theta.data[k * D + j]);
      }
      const diff = Math.abs(G[r * D + j] - exact);
      assert.ok(diff <= gamma * magnitude, `features_immunized[${r}, ${j}] = ${G[r * D + j]}, F·θ = ${exact}: off by ${diff} > bound ${gamma * magnitude}`);
    }
  }
}

export async function rejects(action: Promise<unknown> | (() => unknown), reason: BackboneErrorReason, message?: RegExp): Promise<BackboneError> {
  let caught: unknown;
  try {
    if (typeof action === 'function') await action();
    else await action;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof BackboneError, `expected BackboneError ${reason}, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.ok(caught instanceof DataError, 'a BackboneError is a DataError (permanent, 4xx)');
  assert.equal(caught.reason, reason, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

export async function rejectsData(action: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(action, (e: unknown) => {
    assert.ok(e instanceof DataError, `expected DataError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** A ustar archive written by hand (independent of the reader under test). */
export function tarOf(files: Array<[string, Buffer]>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, data] of files) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0' + '00', 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
