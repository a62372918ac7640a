/**
 * Dense float64 matrices, stored row-major (C order): element (i, j) lives at data[i * cols + j].
 * A D×m eigenvector matrix holds one eigenvector per column.
 */
export interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

export type LinalgErrorCode = 'NON_FINITE' | 'SIZE_MISMATCH' | 'NOT_POSITIVE_DEFINITE' | 'SINGULAR' | 'LAPACK_FAILED' | 'BAD_ARGUMENT';

export interface EigenResult {
  /** Ascending eigenvalues. */
  values: Float64Array;
  /** D×m, column j is the eigenvector of values[j]; absent when vectors were not requested. */
  vectors?: Mat;
}

export interface SyevrOptions {
  /** Inclusive 0-based index range into the ascending spectrum, e.g. {lo: 0, hi: 0} for the smallest pair. */
  range?: { lo: number; hi: number };
  /** Compute eigenvectors (default true). */
  vectors?: boolean;
}

export interface GemmOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** When given, C = alpha·op(A)·op(B) + beta·C is written into it (and returned). */
  out?: Mat;
  beta?: number;
}
