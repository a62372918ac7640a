/**
 * Requests per minute per caller (the API key's tenant; the address of a request without one), counted in fixed
 * windows that start with a caller's first request. Every answer says the budget (x-ratelimit-limit, -remaining and
 * -reset, in seconds); past it, 429 with Retry-After. A plain counter in a callback hook: the request path of a read
 * is a few tens of µs, and a limiter that awaits a promise per step costs a tenth of it.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { ApiError } from '../errors.js';

interface Window {
  count: number;
  /** When the window ends (ms since the epoch). */
  endsAt: number;
}

/** How many callers are remembered; past that, the one whose window started first is forgotten. */
const CALLERS_KEPT = 5000;

export function rateLimiter(max: number, windowMs = 60_000): (req: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void {
  const windows = new Map<string, Window>();
  const limit = String(max);
  return (req, reply, done) => {
    const key = req.principal?.tenant ?? req.ip;
    const now = Date.now();
    let w = windows.get(key);
    if (w === undefined || w.endsAt <= now) {
      // A new window goes to the end of the map's order, so that the first key is always the oldest window.
      if (w !== undefined) windows.delete(key);
      else if (windows.size >= CALLERS_KEPT) windows.delete(windows.keys().next().value!);
      w = { count: 0, endsAt: now + windowMs };
      windows.set(key, w);
    }
    w.count++;
    const reset = String(Math.ceil((w.endsAt - now) / 1000));
    void reply
      .header('x-ratelimit-limit', limit)
      .header('x-ratelimit-remaining', String(Math.max(0, max - w.count)))
      .header('x-ratelimit-reset', reset);
    if (w.count <= max) return done();
    void reply.header('retry-after', reset);
    done(new ApiError(429, 'rate_limited', `rate limit of ${max} requests per minute reached; retry in ${reset} s`));
  };
}
