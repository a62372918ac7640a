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

/**
 * What the failure is, where the code alone is too coarse: the same bad file is also refused before any job reads
 * it (its upload, or the submit check of a spec against the uploads), and it must carry the code it gets there.
 * The error table (workers/errorTable.ts) maps a reason before the code.
 */
export type DataErrorReason =
  /** The bytes are not an .npy array the project reads (magic, header, dtype, length, dimensions). */
  | 'NPY_MALFORMED'
  /** The bytes are not a CSV table with a header row and data rows. */
  | 'CSV_MALFORMED'
  /** A well-formed array of the wrong kind for its place: images or a label vector where features go, or features where images go. */
  | 'WRONG_KIND'
  /** A labels file that is not one column of labels. */
  | 'LABELS_NOT_VECTOR'
  /** A labels file with another number of labels than its dataset has rows. */
  | 'LABEL_COUNT';

export class DataError extends Error {
  readonly code: DataErrorCode;
  /** Named apart from the `reason` of the backbone and deep-mode subclasses, which is theirs to set. */
  readonly dataReason?: DataErrorReason;

  constructor(code: DataErrorCode, message: string, options?: { cause?: unknown; dataReason?: DataErrorReason }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DataError';
    this.code = code;
    if (options?.dataReason !== undefined) this.dataReason = options.dataReason;
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
