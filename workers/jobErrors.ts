/**
 * How a failure inside a job is reported: a stable lower_snake_case code, a message for people, and whether a
 * retry could help. Bad input is permanent (no retry); I/O hiccups and crashes are transient.
 */
import { CancelledError } from '../models/engine/progress.js';
import { DataError, type DataErrorCode } from '../models/io/errors.js';
import { LinalgError } from '../models/linalg/errors.js';
import { SpecError } from './jobSpec.js';
import { PermanentJobError } from './ports.js';
import { UnknownJobError } from './registry.js';

export interface DescribedError {
  code: string;
  message: string;
  permanent: boolean;
}

const DATA_CODES: Record<DataErrorCode, string> = {
  BAD_FORMAT: 'invalid_data',
  TRUNCATED: 'truncated_data',
  BAD_DTYPE: 'invalid_dtype',
  NON_FINITE: 'non_finite',
  BAD_SHAPE: 'invalid_shape',
  DIM_MISMATCH: 'dimension_mismatch',
  TOO_FEW_ROWS: 'too_few_rows',
  MISSING_COLUMN: 'missing_column',
  UNSUPPORTED_EXTENSION: 'unsupported_format',
  NOT_FOUND: 'not_found',
  BAD_ARGUMENT: 'invalid_argument',
  IO_ERROR: 'io_error',
};

export function describeJobError(err: unknown): DescribedError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof CancelledError) return { code: 'cancelled', message, permanent: true };
  if (err instanceof DataError) return { code: DATA_CODES[err.code] ?? 'invalid_data', message, permanent: err.code !== 'IO_ERROR' };
  if (err instanceof SpecError) return { code: 'invalid_spec', message, permanent: true };
  if (err instanceof UnknownJobError) return { code: 'unknown_job', message, permanent: true };
  if (err instanceof PermanentJobError) return { code: err.code, message, permanent: true };
  // The engine is deterministic: a numerical failure on this input happens again on a retry.
  if (err instanceof LinalgError) return { code: 'numerical_error', message, permanent: true };
  return { code: 'internal', message, permanent: false };
}
