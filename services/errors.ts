/**
 * API errors: an HTTP status and a stable code. Every error answer has the shape {error: {code, message}}.
 */
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
export const redisUnavailable = (message = 'the job store (Redis) is not answering; try again shortly') =>
  new ApiError(503, 'redis_unavailable', message);

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
