import { DataError, type DataErrorCode, type DataErrorReason } from '../io/index.js';

/**
 * Stable reasons for a backbone job's bad input. Each maps onto the DataError code the job machinery already
 * treats as a permanent client error, so the CLI prints the message and the service answers with a 4xx.
 */
export type BackboneErrorReason =
  | 'ONNX_MALFORMED'
  | 'ONNX_UNSUPPORTED'
  | 'NO_CLASSIFIER'
  | 'UNKNOWN_TENSOR'
  | 'FEATURE_NOT_LINEAR'
  | 'FEATURE_SHAPE'
  | 'MODEL_INPUT'
  | 'IMAGE_SIZE'
  | 'IMAGES_EMPTY'
  | 'IMAGE_UNREADABLE'
  | 'IMAGES_DTYPE'
  | 'IMAGES_SHAPE'
  | 'TAR_MALFORMED'
  | 'LABELS'
  | 'PREPROCESS'
  | 'INFERENCE_FAILED';

const DATA_CODE: Record<BackboneErrorReason, DataErrorCode> = {
  ONNX_MALFORMED: 'BAD_FORMAT',
  ONNX_UNSUPPORTED: 'BAD_FORMAT',
  NO_CLASSIFIER: 'BAD_FORMAT',
  UNKNOWN_TENSOR: 'BAD_ARGUMENT',
  FEATURE_NOT_LINEAR: 'BAD_ARGUMENT',
  FEATURE_SHAPE: 'BAD_SHAPE',
  MODEL_INPUT: 'BAD_FORMAT',
  IMAGE_SIZE: 'DIM_MISMATCH',
  IMAGES_EMPTY: 'TOO_FEW_ROWS',
  IMAGE_UNREADABLE: 'BAD_FORMAT',
  IMAGES_DTYPE: 'BAD_DTYPE',
  IMAGES_SHAPE: 'BAD_SHAPE',
  TAR_MALFORMED: 'BAD_FORMAT',
  LABELS: 'BAD_SHAPE',
  PREPROCESS: 'BAD_ARGUMENT',
  INFERENCE_FAILED: 'BAD_FORMAT',
};

export class BackboneError extends DataError {
  readonly reason: BackboneErrorReason;

  /** `dataReason`, where given, names the failure more closely than the reason (see DataErrorReason). */
  constructor(reason: BackboneErrorReason, message: string, options?: { cause?: unknown; dataReason?: DataErrorReason }) {
    super(DATA_CODE[reason], message, options);
    this.name = 'BackboneError';
    this.reason = reason;
  }
}

export function isBackboneError(e: unknown, reason?: BackboneErrorReason): e is BackboneError {
  return e instanceof BackboneError && (reason === undefined || e.reason === reason);
}
