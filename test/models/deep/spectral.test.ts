/**
 * The float64 spectral gradient ∂R/∂F = 2·F·G against central finite differences of R computed independently
 * (plain-loop Gram matrix and a Jacobi eigen-solver), and the tfjs custom gradient against the same numbers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { headNullProjector, spectralLoss, spectralTerm, type SpectralKind } from '../../../models/deep/spectral.js';
import { froNorm, gram, jacobi, normals } from '../../helpers/reference.js';
import { cpuBackend } from '../../helpers/deep.js';

/** R from scratch: R_ill = 1/(‖S‖²/2D − λ_min²/2), R_well = λ_max²/2 − ‖S‖²/2D, S = FᵀF (full rank here). */
function referenceR(F: Float64Array, rows: number, dim: number, kind: SpectralKind): number {
  const S = gram({ rows, cols: dim, data: F });
  const values = [...jacobi(S).values].sort((a, b) => a - b);
  const fro2 = froNorm(S) ** 2;
  if (kind === 'ill') return 1 / (fro2 / (2 * dim) - values[0] ** 2 / 2);
  return values[dim - 1] ** 2 / 2 - fro2 / (2 * dim);
}

function randomFeatures(rows: number, dim: number, seed: number): Float64Array {
  const next = normals(seed);
  // Uneven column scales keep the extreme eigenvalues well separated, so small steps never reorder them.
  return Float64Array.from({ length: rows * dim }, (_, i) => next() * (1 + (i % dim) * 0.3));
}

describe('deep spectral gradient', () => {
  for (const kind of ['ill', 'well'] as const) {
    it(`R_${kind}: value from scratch, gradient equals central finite differences`, () => {
      const rows = 12;
      const dim = 5;
      const F = randomFeatures(rows, dim, kind === 'ill' ? 3 : 4);
      const term = spectralTerm(F, rows, dim, kind);
      const ref = referenceR(F, rows, dim, kind);
      assert.ok(Math.abs(term.value - ref) <= 1e-10 * Math.abs(ref), `R ${term.value} vs ${ref}`);
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < F.length; i++) {
        const h = 1e-5 * Math.max(1, Math.abs(F[i]));
        const plus = Float64Array.from(F);
        const minus = Float64Array.from(F);
        plus[i] += h;
        minus[i] -= h;
        const fd = (referenceR(plus, rows, dim, kind) - referenceR(minus, rows, dim, kind)) / (2 * h);
        worst = Math.max(worst, Math.abs(fd - term.gradF[i]));
        scale = Math.max(scale, Math.abs(fd));
      }
      assert.ok(scale > 0);
      assert.ok(worst / scale < 1e-6, `max |FD − analytic| / max |FD| = ${worst / scale}`);
    });
  }

  it('the head null-space projector: W·P = 0, P² = P, symmetric, trace D − rank(W)', () => {
    const C = 4;
    const D = 9;
    const next = normals(21);
    const W = { rows: C, cols: D, data: Float64Array.from({ length: C * D }, () => next()) };
    // A repeated row makes W rank-deficient (rank 3).
    for (let d = 0; d < D; d++) W.data[3 * D + d] = 2 * W.data[d];
    const P = headNullProjector(W)!;
    let worst = 0;
    for (let c = 0; c < C; c++) {
      for (let j = 0; j < D; j++) {
        let v = 0;
        for (let k = 0; k < D; k++) v += W.data[c * D + k] * P.data[k * D + j];
        worst = Math.max(worst, Math.abs(v));
      }
    }
    assert.ok(worst < 1e-12, `|W·P| = ${worst}`);
    let trace = 0;
    for (let i = 0; i < D; i++) {
      trace += P.data[i * D + i];
      for (let j = 0; j < D; j++) {
        let pp = 0;
        for (let k = 0; k < D; k++) pp += P.data[i * D + k] * P.data[k * D + j];
        assert.ok(Math.abs(pp - P.data[i * D + j]) < 1e-12 && Math.abs(P.data[i * D + j] - P.data[j * D + i]) < 1e-15);
      }
    }
    assert.ok(Math.abs(trace - (D - 3)) < 1e-12, `trace ${trace}`);
    assert.equal(headNullProjector({ rows: D, cols: D, data: new Float64Array(D * D) }), null);
  });

  it('tfjs sees the same gradient through customGrad', async () => {
    const { tf } = await cpuBackend();
    const rows = 10;
    const dim = 4;
    const F = randomFeatures(rows, dim, 9);
    const term = spectralTerm(Float32Array.from(F), rows, dim, 'ill');
    const timing = { seconds: 0, last: null };
    const loss = spectralLoss(tf, 'ill', timing);
    const grad = tf.tidy(() =>
      tf
        .grad((f: import('@tensorflow/tfjs').Tensor) => tf.mul(loss(f as import('@tensorflow/tfjs').Tensor2D), 3))(
          tf.tensor2d(Float32Array.from(F), [rows, dim]),
        )
        .dataSync()
        .slice(),
    );
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < grad.length; i++) {
      worst = Math.max(worst, Math.abs(grad[i] - 3 * term.gradF[i]));
      scale = Math.max(scale, Math.abs(3 * term.gradF[i]));
    }
    assert.ok(worst / scale < 1e-5, `relative difference ${worst / scale}`);
    assert.ok(timing.seconds > 0);
  });
});
