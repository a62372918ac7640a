import type { LinalgErrorCode } from './types.js';

const CODES: ReadonlySet<string> = new Set<LinalgErrorCode>([
  'NON_FINITE',
  'SIZE_MISMATCH',
  'NOT_POSITIVE_DEFINITE',
  'SINGULAR',
  'LAPACK_FAILED',
  'BAD_ARGUMENT',
]);

export function isLinalgErrorCode(value: unknown): value is LinalgErrorCode {
  return typeof value === 'string' && CODES.has(value);
}

export class LinalgError extends Error {
  readonly code: LinalgErrorCode;

  constructor(code: LinalgErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LinalgError';
    this.code = code;
  }
}

/** Converts an error thrown by the native addon (a plain Error with a `code`) into a LinalgError; anything else is returned unchanged. */
export function toLinalgError(err: unknown): unknown {
  if (err instanceof LinalgError) return err;
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    if (isLinalgErrorCode(code)) return new LinalgError(code, err.message, { cause: err });
  }
  return err;
}
