/**
 * The one table of failures. A domain reason (a DataError code, a BackboneError or DeepError reason, a linalg error,
 * a bad spec, …) maps to a stable lower_snake_case code; the code fixes the HTTP status and whether a retry can help.
 * The job machinery (workers/jobErrors.ts), the submit and upload checks (services/datasets.ts,
 * services/storage/inspect.ts) and the API's error handler all read it, so the same failure carries the same code
 * wherever it is caught.
 *
 * It lives in workers/ so that both workers/ and services/ can import it; models/ knows nothing of HTTP and only
 * supplies the reasons. Keep this module light: the upload inspection thread loads it.
 */
import { BackboneError, type BackboneErrorReason } from '../models/backbones/errors.js';
import { DeepError, type DeepErrorReason } from '../models/deep/errors.js';
import { DataError, type DataErrorCode, type DataErrorReason } from '../models/io/index.js';
import { LinalgError } from '../models/linalg/errors.js';
import type { LinalgErrorCode } from '../models/linalg/types.js';
import { SpecError } from './specError.js';

/** permanent: retrying cannot help (a job fails at once, as a bullmq UnrecoverableError); retryable: it might. */
export type Retry = 'permanent' | 'retryable';

export interface CodeClass {
  /** The HTTP status the API answers with. */
  status: number;
  retry: Retry;
}

const permanent = (status: number): CodeClass => ({ status, retry: 'permanent' });
const retryable = (status: number): CodeClass => ({ status, retry: 'retryable' });

/** Every code a domain failure can carry. A code has one status and one retry class, whichever reason led to it. */
export const ERROR_CODES = {
  // The job spec, and data that do not fit it.
  invalid_spec: permanent(400),
  invalid_argument: permanent(400),
  not_found: permanent(404),
  unsupported_format: permanent(415),
  missing_column: permanent(400),
  too_few_rows: permanent(400),
  dimension_mismatch: permanent(400),
  label_mismatch: permanent(400),
  invalid_labels: permanent(400),
  // File contents.
  invalid_data: permanent(400),
  truncated_data: permanent(400),
  invalid_dtype: permanent(400),
  invalid_shape: permanent(400),
  non_finite: permanent(400),
  invalid_npy: permanent(400),
  invalid_csv: permanent(400),
  invalid_tar: permanent(400),
  invalid_onnx: permanent(400),
  // Backbones and their images.
  onnx_unsupported: permanent(400),
  model_input: permanent(400),
  no_classifier: permanent(400),
  unknown_tensor: permanent(400),
  feature_not_linear: permanent(400),
  image_size: permanent(400),
  images_empty: permanent(400),
  // Last-block mode.
  unsupported_operator: permanent(400),
  cut_tensor: permanent(400),
  // The engine is deterministic: a numerical failure on this input happens again on a retry.
  numerical_error: permanent(422),
  // The job machinery.
  cancelled: permanent(409),
  unknown_job: permanent(400),
  io_error: retryable(500),
  // A full disk (ENOSPC, EDQUOT) while writing an upload or a job's artifacts: worth a retry once space is freed.
  insufficient_storage: retryable(507),
  engine_crashed: retryable(500),
  internal: retryable(500),
} as const satisfies Record<string, CodeClass>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Each domain reason's code, by the domain that raises it. Where a check runs both at submit (or upload) and in the
 * job, the reason is the same and so is the code.
 */
export const ERROR_TABLE = {
  /** models/io/errors.ts: reading data files and checkpoints. */
  data: {
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
    // Reasons a DataError may carry beside its code: the codes the upload and submit checks give the same files.
    NPY_MALFORMED: 'invalid_npy',
    CSV_MALFORMED: 'invalid_csv',
    WRONG_KIND: 'invalid_spec',
    LABELS_NOT_VECTOR: 'invalid_labels',
    LABEL_COUNT: 'label_mismatch',
  } satisfies Record<DataErrorCode | DataErrorReason, ErrorCode>,
  /** models/backbones/errors.ts: the ONNX backbone and its images, at upload, at submit and in the job. */
  backbone: {
    ONNX_MALFORMED: 'invalid_onnx',
    ONNX_UNSUPPORTED: 'onnx_unsupported',
    NO_CLASSIFIER: 'no_classifier',
    UNKNOWN_TENSOR: 'unknown_tensor',
    FEATURE_NOT_LINEAR: 'feature_not_linear',
    FEATURE_SHAPE: 'invalid_shape',
    MODEL_INPUT: 'model_input',
    IMAGE_SIZE: 'image_size',
    IMAGES_EMPTY: 'images_empty',
    IMAGE_UNREADABLE: 'invalid_data',
    IMAGES_DTYPE: 'invalid_dtype',
    // The upload check refuses such an array (3-D, Fortran order) as invalid_npy.
    IMAGES_SHAPE: 'invalid_npy',
    TAR_MALFORMED: 'invalid_tar',
    LABELS: 'label_mismatch',
    PREPROCESS: 'invalid_argument',
    INFERENCE_FAILED: 'invalid_data',
  } satisfies Record<BackboneErrorReason, ErrorCode>,
  /** models/deep/errors.ts: last-block mode. */
  deep: {
    UNSUPPORTED_OPERATOR: 'unsupported_operator',
    CUT_TENSOR: 'cut_tensor',
    SLOW_BACKEND: 'invalid_argument',
    TAIL_SHAPE: 'invalid_shape',
    LABELS: 'invalid_shape',
  } satisfies Record<DeepErrorReason, ErrorCode>,
  /** models/linalg/errors.ts: the native BLAS/LAPACK binding. */
  linalg: {
    NON_FINITE: 'numerical_error',
    SIZE_MISMATCH: 'numerical_error',
    NOT_POSITIVE_DEFINITE: 'numerical_error',
    SINGULAR: 'numerical_error',
    LAPACK_FAILED: 'numerical_error',
    BAD_ARGUMENT: 'numerical_error',
  } satisfies Record<LinalgErrorCode, ErrorCode>,
  /** workers/jobSpec.ts, and the submit checks of a spec against the uploads. */
  spec: {
    INVALID: 'invalid_spec',
  },
  /** A labels file against its dataset (checked at submit from the upload metadata). */
  labels: {
    COUNT: 'label_mismatch',
    NOT_VECTOR: 'invalid_labels',
  },
  /** An upload whose format check fails (services/storage/inspect.ts). */
  upload: {
    NPY: 'invalid_npy',
    CSV: 'invalid_csv',
  },
  /** Writing our own files: uploads and job artifacts (services/storage/fsStore.ts, workers/staging.ts). */
  storage: {
    NO_SPACE: 'insufficient_storage',
    IO_ERROR: 'io_error',
  },
  /** The job machinery itself. */
  job: {
    CANCELLED: 'cancelled',
    UNKNOWN: 'unknown_job',
    ENGINE_CRASHED: 'engine_crashed',
    INTERNAL: 'internal',
  },
} as const satisfies Record<string, Record<string, ErrorCode>>;

type Table = typeof ERROR_TABLE;
export type ErrorDomain = keyof Table;
/** A domain reason, written `domain.REASON`: `backbone.NO_CLASSIFIER`, `data.NON_FINITE`, `spec.INVALID`, … */
export type ErrorReason = { [D in ErrorDomain]: `${D}.${keyof Table[D] & string}` }[ErrorDomain];

export interface ErrorClass extends CodeClass {
  reason: ErrorReason;
  code: ErrorCode;
  permanent: boolean;
}

const CLASSES = new Map<string, ErrorClass>();
for (const [domain, reasons] of Object.entries(ERROR_TABLE)) {
  for (const [name, code] of Object.entries(reasons as Record<string, ErrorCode>)) {
    const reason = `${domain}.${name}` as ErrorReason;
    const c = ERROR_CODES[code];
    CLASSES.set(reason, Object.freeze({ reason, code, status: c.status, retry: c.retry, permanent: c.retry === 'permanent' }));
  }
}

/** Every reason in the table. */
export function errorReasons(): ErrorReason[] {
  return [...CLASSES.keys()] as ErrorReason[];
}

export function isErrorReason(value: unknown): value is ErrorReason {
  return typeof value === 'string' && CLASSES.has(value);
}

/** The code, HTTP status and retry class of a reason. */
export function errorClass(reason: ErrorReason): ErrorClass {
  const c = CLASSES.get(reason);
  if (!c) throw new RangeError(`unknown error reason ${JSON.stringify(reason)}`);
  return c;
}

/** The status and retry class of a code; null for a code the table does not know. */
export function codeClass(code: string): CodeClass | null {
  return Object.hasOwn(ERROR_CODES, code) ? ERROR_CODES[code as ErrorCode] : null;
}

/** A failure raised by a check outside models/ (an upload's format, a spec against the uploads): the reason fixes the rest. */
export class CodedError extends Error {
  readonly reason: ErrorReason;
  readonly code: ErrorCode;
  readonly status: number;
  readonly permanent: boolean;

  constructor(reason: ErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    const c = errorClass(reason);
    this.name = 'CodedError';
    this.reason = reason;
    this.code = c.code;
    this.status = c.status;
    this.permanent = c.permanent;
  }
}

/**
 * The engine's CancelledError, told by its stable code: importing the class would load the whole engine (its native
 * addon included) into every module that classifies errors, the upload inspection thread among them.
 */
function isCancellation(err: unknown): boolean {
  return err instanceof Error && !(err instanceof DataError) && (err as { code?: unknown }).code === 'CANCELLED';
}

const known = (reason: string): ErrorReason | null => (CLASSES.has(reason) ? (reason as ErrorReason) : null);

/**
 * The domain reason of an error, or null when it is none of ours (an unexpected error: internal). A BackboneError or
 * DeepError is also a DataError; its own reason wins over the DataError code it carries, and a DataError's
 * dataReason (a file the upload or submit check refuses under another code) wins over both.
 */
export function reasonOf(err: unknown): ErrorReason | null {
  if (err instanceof CodedError) return err.reason;
  if (isCancellation(err)) return 'job.CANCELLED';
  if (err instanceof SpecError) return 'spec.INVALID';
  if (err instanceof LinalgError) return known(`linalg.${err.code}`) ?? 'linalg.LAPACK_FAILED';
  // A data reason names the failure more closely than the code, or than a backbone's reason.
  if (err instanceof DataError && err.dataReason) {
    const reason = known(`data.${err.dataReason}`);
    if (reason) return reason;
  }
  if (err instanceof BackboneError) {
    const reason = known(`backbone.${err.reason}`);
    if (reason) return reason;
  }
  if (err instanceof DeepError) {
    const reason = known(`deep.${err.reason}`);
    if (reason) return reason;
  }
  if (err instanceof DataError) return known(`data.${err.code}`) ?? 'data.BAD_FORMAT';
  return null;
}
