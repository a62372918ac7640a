import { gemm, syrk } from '../linalg/index.js';
import type { Mat } from '../linalg/types.js';
import { mat } from './dense.js';

/** Everything linear probing on a dataset depends on: K = XᵀX, Xᵀ1, XᵀY, YᵀY and 1ᵀY. */
export interface SufficientStats {
  n: number;
  dim: number;
  K: Mat;
  colSum: Float64Array;
  /** D×C, or null without targets. */
  XtY: Mat | null;
  /** Per output column: Σ y², Σ y. */
  yty: Float64Array | null;
  ySum: Float64Array | null;
}

/**
 * Streams row blocks into the statistics so that the feature matrix itself never has to be kept:
 * K accumulates through dsyrk with beta = 1.
 */
export class StatsAccumulator {
  private readonly K: Mat;
  private readonly colSum: Float64Array;
  private XtY: Mat | null = null;
  private yty: Float64Array | null = null;
  private ySum: Float64Array | null = null;
  private n = 0;

  constructor(
    readonly dim: number,
    readonly outputs = 0,
  ) {
    this.K = mat(dim, dim);
    this.colSum = new Float64Array(dim);
    if (outputs > 0) {
      this.XtY = mat(dim, outputs);
      this.yty = new Float64Array(outputs);
      this.ySum = new Float64Array(outputs);
    }
  }

  addRows(X: Mat, Y?: Mat): void {
    if (X.cols !== this.dim) throw new RangeError(`expected ${this.dim} feature columns, got ${X.cols}`);
    if (X.rows === 0) return;
    syrk(X, { out: this.K, beta: 1 });
    for (let i = 0; i < X.rows; i++) {
      for (let j = 0; j < this.dim; j++) this.colSum[j] += X.data[i * this.dim + j];
    }
    if (this.outputs > 0) {
      if (!Y || Y.rows !== X.rows || Y.cols !== this.outputs) {
        throw new RangeError(`expected ${X.rows}×${this.outputs} targets with these rows`);
      }
      gemm(X, Y, { transA: true, out: this.XtY!, beta: 1 });
      for (let i = 0; i < Y.rows; i++) {
        for (let c = 0; c < this.outputs; c++) {
          const v = Y.data[i * this.outputs + c];
          this.yty![c] += v * v;
          this.ySum![c] += v;
        }
      }
    }
    this.n += X.rows;
  }

  finish(): SufficientStats {
    return { n: this.n, dim: this.dim, K: this.K, colSum: this.colSum, XtY: this.XtY, yty: this.yty, ySum: this.ySum };
  }
}

export function statsOf(X: Mat, Y?: Mat, blockRows = 4096): SufficientStats {
  const acc = new StatsAccumulator(X.cols, Y ? Y.cols : 0);
  for (let start = 0; start < X.rows; start += blockRows) {
    const end = Math.min(X.rows, start + blockRows);
    const block: Mat = { rows: end - start, cols: X.cols, data: X.data.subarray(start * X.cols, end * X.cols) };
    const yBlock = Y ? { rows: end - start, cols: Y.cols, data: Y.data.subarray(start * Y.cols, end * Y.cols) } : undefined;
    acc.addRows(block, yBlock);
  }
  return acc.finish();
}

/** The statistics of the features X·θ, derived without touching X again. */
export function transformStats(s: SufficientStats, theta: Mat): SufficientStats {
  const K = gemm(theta, gemm(s.K, theta), { transA: true });
  const colSum = gemm({ rows: 1, cols: s.dim, data: s.colSum }, theta).data;
  const XtY = s.XtY ? gemm(theta, s.XtY, { transA: true }) : null;
  return { ...s, dim: theta.cols, K, colSum, XtY };
}
