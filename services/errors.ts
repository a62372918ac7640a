/**
 * API errors: an HTTP status and a stable code. Every error answer has the shape {error: {code, message}}.
 *
 * Two kinds reach the error handler. An ApiError is about the request itself (authentication, limits, an unknown
 * id, the protocol) and carries its own status. A domain failure (bad data, a backbone without a classifier, a bad
 * spec: CodedError or the models' error classes) is answered from the error table in workers/errorTable.ts, the
 * same table a job's recorded error comes from, so a failure has one code at upload, at submit and in a job.
 */
import { errorClass, reasonOf } from '../workers/errorTable.js';

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const badRequest = (code: string, message: string) => new ApiError(400, code, message);
export const unauthorized = (message: string) => new ApiError(401, 'unauthorized', message);
export const notFound = (message: string) => new ApiError(404, 'not_found', message);
export const conflict = (code: string, message: string) => new ApiError(409, code, message);
export const payloadTooLarge = (message: string) => new ApiError(413, 'payload_too_large', message);
export const redisUnavailable = (message = 'the job store (Redis) is not answering; try again shortly') => new ApiError(503, 'redis_unavailable', message);

export interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
}

/**
 * The answer for an ApiError or a domain failure the table classes as the client's (4xx); null for anything else
 * (a server-side failure, whose message may name local paths: the handler answers a plain 500 for it).
 */
export function errorAnswer(err: unknown): ErrorAnswer | null {
  if (err instanceof ApiError) return { status: err.statusCode, code: err.code, message: err.message };
  const reason = reasonOf(err);
  if (!reason) return null;
  const { status, code } = errorClass(reason);
  return status < 500 ? { status, code, message: (err as Error).message } : null;
}

export interface ErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

const REDIS_DOWN = [
  /Connection is closed/i,
  /Stream isn't writeable/i,
  /enableOfflineQueue/i,
  /Command timed out/i,
  /ECONNREFUSED/,
  /ECONNRESET/,
  /EPIPE/,
  /ETIMEDOUT/,
  /EHOSTUNREACH/,
  /MaxRetriesPerRequest/i,
  /Reached the max retries per request/i,
  /Socket closed unexpectedly/i,
];

/** True for the errors ioredis and BullMQ raise when Redis cannot be reached. */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const text = `${err.name} ${err.message} ${(err as { code?: string }).code ?? ''}`;
  return REDIS_DOWN.some((re) => re.test(text));
}

/**
 * True for a write Redis refused because it reached its maxmemory (under noeviction, the policy the queue needs): the
 * command's own error, or a transaction discarded because of it.
 */
export function isRedisFull(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.message.startsWith('OOM command not allowed')) return true;
  const previous = (err as { previousErrors?: unknown[] }).previousErrors;
  return Array.isArray(previous) && previous.some(isRedisFull);
}
