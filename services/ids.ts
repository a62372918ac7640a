/**
 * Resource ids: a kind letter, the creation time in base 36 (so ids sort by age) and 64 random bits.
 * Every id that arrives from outside is checked against its pattern before it is used in a key or a path.
 */
import { randomBytes } from 'node:crypto';

export type IdKind = 'job' | 'dataset' | 'backbone';

const LETTER: Record<IdKind, string> = { job: 'j', dataset: 'd', backbone: 'b' };
const PATTERN: Record<IdKind, RegExp> = {
  job: /^j[0-9a-z]{9}[0-9a-f]{16}$/,
  dataset: /^d[0-9a-z]{9}[0-9a-f]{16}$/,
  backbone: /^b[0-9a-z]{9}[0-9a-f]{16}$/,
};

/** Random bytes drawn in blocks: one call to the system's generator for 512 ids rather than one for each. */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let used = POOL_BYTES;

function random8(): string {
  if (used + 8 > pool.length) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  used += 8;
  return pool.toString('hex', used - 8, used);
}

export function newId(kind: IdKind, now = Date.now()): string {
  return LETTER[kind] + now.toString(36).padStart(9, '0') + random8();
}

export function isId(kind: IdKind, value: unknown): value is string {
  return typeof value === 'string' && PATTERN[kind].test(value);
}
