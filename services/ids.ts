/**
 * Resource ids: a kind letter, the creation time in base 36 (so ids sort by age) and 64 random bits (the ids of one
 * process sort in the order they were made, within a millisecond too).
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

function random64(): bigint {
  if (used + 8 > pool.length) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  used += 8;
  return pool.readBigUInt64BE(used - 8);
}

const RANDOM_LIMIT = 1n << 64n;
/**
 * The last id's time and random part. An id made in the same millisecond as the last one (or while the clock stands
 * still or steps back) keeps that time and takes the next number after the last random part, so that the ids one
 * process makes sort in the order it made them: a tenant's jobs are listed by id, newest first.
 */
let lastTime = -1;
let lastRandom = 0n;

export function newId(kind: IdKind, now = Date.now()): string {
  if (now > lastTime) {
    lastTime = now;
    lastRandom = random64();
  } else if (++lastRandom >= RANDOM_LIMIT) {
    lastTime++;
    lastRandom = random64();
  }
  return LETTER[kind] + lastTime.toString(36).padStart(9, '0') + lastRandom.toString(16).padStart(16, '0');
}

export function isId(kind: IdKind, value: unknown): value is string {
  return typeof value === 'string' && PATTERN[kind].test(value);
}
