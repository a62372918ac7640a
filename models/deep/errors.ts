import { DataError, type DataErrorCode } from '../io/index.js';

/**
 * Why a deep-mode (last-block) job cannot run. Each reason maps onto a DataError code, which the job machinery
 * treats as a permanent client error: the CLI prints the message, the service answers with a 4xx.
 */
export type DeepErrorReason = 'UNSUPPORTED_OPERATOR' | 'CUT_TENSOR' | 'SLOW_BACKEND' | 'TAIL_SHAPE' | 'LABELS';

const DATA_CODE: Record<DeepErrorReason, DataErrorCode> = {
  UNSUPPORTED_OPERATOR: 'BAD_FORMAT',
  CUT_TENSOR: 'BAD_ARGUMENT',
  SLOW_BACKEND: 'BAD_ARGUMENT',
  TAIL_SHAPE: 'BAD_SHAPE',
  LABELS: 'BAD_SHAPE',
};

export class DeepError extends DataError {
  readonly reason: DeepErrorReason;

  constructor(reason: DeepErrorReason, message: string, options?: { cause?: unknown }) {
    super(DATA_CODE[reason], message, options);
    this.name = 'DeepError';
    this.reason = reason;
  }
}

export function isDeepError(e: unknown, reason?: DeepErrorReason): e is DeepError {
  return e instanceof DeepError && (reason === undefined || e.reason === reason);
}
