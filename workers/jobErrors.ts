/**
 * How a failure inside a job is reported: a stable lower_snake_case code, a message for people, and whether a
 * retry could help. The code and the retry class come from the error table (errorTable.ts), the same one the API
 * answers from at submit: bad input is permanent (no retry: the queue worker throws a bullmq UnrecoverableError),
 * I/O hiccups and crashes are transient.
 */
import { errorClass, reasonOf, type ErrorReason } from './errorTable.js';
import { PermanentJobError } from './ports.js';
import { UnknownJobError } from './registry.js';

export interface DescribedError {
  code: string;
  message: string;
  permanent: boolean;
}

/** The table's reason for an error a job can raise; job.INTERNAL for anything unexpected. */
export function jobErrorReason(err: unknown): ErrorReason {
  return reasonOf(err) ?? (err instanceof UnknownJobError ? 'job.UNKNOWN' : 'job.INTERNAL');
}

export function describeJobError(err: unknown): DescribedError {
  const message = err instanceof Error ? err.message : String(err);
  // Raised with a code of its own (a missing upload, a payload that does not parse); never worth a retry.
  if (err instanceof PermanentJobError) return { code: err.code, message, permanent: true };
  const c = errorClass(jobErrorReason(err));
  return { code: c.code, message, permanent: c.permanent };
}
