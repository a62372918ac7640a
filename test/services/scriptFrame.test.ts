/** A script frame is read back by Redis's own cmsgpack exactly as written: every length class, text and bytes. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { scriptFrame, UNFRAME_LUA } from '../../services/scriptFrame.js';
import { REDIS_URL, requireRedis } from '../helpers/service.js';

await requireRedis();

let redis: Redis;
before(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
});
after(() => redis.disconnect());

/** Runs UNFRAME_LUA on the frame and answers KEYS then ARGV, as bytes. */
async function unframed(frame: Buffer): Promise<{ keys: Buffer[]; args: Buffer[] }> {
  const lua = `${UNFRAME_LUA}return {KEYS, ARGV}`;
  const [keys, args] = (await redis.callBuffer('eval', lua, 0, frame)) as [Buffer[], Buffer[]];
  return { keys, args };
}

const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + seed * 17) & 0xff));
const text = (n: number) => 'κx'.repeat(n).slice(0, n);

test('keys and arguments of every length class come back byte for byte', async () => {
  const keys = ['a:job:1', '', text(31)];
  const args: Array<string | Buffer> = [];
  for (const n of [0, 1, 31, 32, 255, 256, 65_535, 65_536, 70_000]) args.push(bytes(n, n), text(n));
  const { keys: k, args: a } = await unframed(scriptFrame(keys, args));
  assert.deepEqual(
    k.map((b) => b.toString('utf8')),
    keys,
  );
  assert.equal(a.length, args.length);
  args.forEach((want, i) => assert.ok(a[i].equals(typeof want === 'string' ? Buffer.from(want, 'utf8') : want), `argument ${i}`));
});

test('arrays of up to 15, 16 and more items, and no arguments at all', async () => {
  for (const count of [0, 14, 15, 16, 300]) {
    const args = Array.from({ length: count }, (_, i) => `arg-${i}`);
    const { keys, args: a } = await unframed(scriptFrame(['only-key'], args));
    assert.deepEqual(keys.map(String), ['only-key']);
    assert.deepEqual(a.map(String), args, `${count} arguments`);
  }
});
