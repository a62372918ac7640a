/**
 * Errors raised while reading or writing data files and checkpoints.
 * `code` is stable and meant for programmatic handling; `message` is for people
 * and always says what was expected and which file (or dataset) was at fault.
 */
export type DataErrorCode =
  | 'BAD_FORMAT'
  | 'TRUNCATED'
  | 'BAD_DTYPE'
  | 'NON_FINITE'
  | 'BAD_SHAPE'
  | 'DIM_MISMATCH'
  | 'TOO_FEW_ROWS'
  | 'MISSING_COLUMN'
  | 'UNSUPPORTED_EXTENSION'
  | 'NOT_FOUND'
  | 'BAD_ARGUMENT'
  | 'IO_ERROR';

export class DataError extends Error {
  readonly code: DataErrorCode;

  constructor(code: DataErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DataError';
    this.code = code;
  }
}

export function isDataError(e: unknown, code?: DataErrorCode): e is DataError {
  return e instanceof DataError && (code === undefined || e.code === code);
}

/** Wraps a filesystem error: ENOENT becomes NOT_FOUND, anything else IO_ERROR. */
export function fsError(err: unknown, path: string, what: string): DataError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOENT') {
    return new DataError('NOT_FOUND', `${path}: file not found (expected ${what})`, { cause: err });
  }
  if (code === 'EISDIR') {
    return new DataError('BAD_FORMAT', `${path}: is a directory (expected ${what})`, { cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new DataError('IO_ERROR', `${path}: could not read ${what}: ${detail}`, { cause: err });
}
