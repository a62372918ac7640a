/**
 * An upload cut off mid-body. The API process is killed while it receives a file (SIGKILL: no cleanup of its own),
 * then started again on the same data directory: the half-received file is gone once it listens, and no record
 * points at it. A client that hangs up mid-body on a running API leaves nothing either. The sweep's rules (whose
 * partial files it may remove) are checked on their own.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { request, type ClientRequest } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { FsStore, UPLOAD_IDLE_MS } from '../../services/storage/fsStore.js';
import { ALICE, cleanup, eventually, multipart, randomNpy, REDIS_URL, requireRedis, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

const SERVER = fileURLToPath(new URL('../../services/server.js', import.meta.url));

interface Child {
  proc: ChildProcess;
  url: string;
  exited: Promise<number | null>;
}

/** Starts the API in a child process, as `npm run serve` would (role api), and waits until it listens. */
async function startChild(t: TestEnv): Promise<Child> {
  const proc = spawn(process.execPath, [SERVER, '--role', 'api'], {
    env: { ...process.env, ...t.env, IMMUNIZE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((ok) => proc.once('exit', (code) => ok(code)));
  let log = '';
  proc.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the API did not start within 30 s:\n${log}`)), 30_000);
    proc.stdout!.on('data', (b: Buffer) => {
      log += b.toString();
      const m = /"url":"(http:\/\/[^"]+)".*immunize API listening/.exec(log);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    void exited.then((code) => fail(new Error(`the API exited (${code}) before it listened:\n${log}`)));
  });
  return { proc, url, exited };
}

/** Sends the start of a multipart upload of `declared` bytes and stops sending (the request stays open). */
function startUpload(url: string, declared: number, sent: number): ClientRequest {
  const boundary = `----cut${randomBytes(6).toString('hex')}`;
  const u = new URL('/v1/datasets', url);
  const req = request(u, {
    method: 'POST',
    headers: { ...ALICE, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(declared) },
  });
  req.on('error', () => undefined); // the connection is cut on purpose
  req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.npy"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  req.write(Buffer.alloc(sent, 0x41));
  return req;
}

let t: TestEnv;
let redis: Redis;
let child: Child | null = null;

before(async () => {
  t = await testEnv();
  redis = new Redis(REDIS_URL);
});

after(async () => {
  if (child && child.proc.exitCode === null) {
    child.proc.kill('SIGTERM');
    await child.exited;
  }
  redis?.disconnect();
  if (t) await cleanup(t);
});

const uploads = () => join(t.dataDir, 'uploads');

/** The partial upload files with at least `bytes` in them, once there are some. */
function partials(bytes: number): Promise<string[]> {
  return eventually(`a partial upload of ${bytes}+ bytes`, async () => {
    const names = await readdir(uploads());
    const sizes = await Promise.all(names.map((n) => stat(join(uploads(), n)).then((s) => s.size)));
    return names.length > 0 && sizes.every((s) => s >= bytes) ? names : undefined;
  });
}

async function assertNoRecord(): Promise<void> {
  assert.equal(await redis.zcard(`${t.prefix}:datasets:alice`), 0, 'no dataset record for the tenant');
  assert.deepEqual(await redis.keys(`${t.prefix}:ds:*`), [], 'no dataset record at all');
  assert.deepEqual(await readdir(join(t.dataDir, 'datasets')), [], 'no stored blob');
}

describe('an upload cut off mid-body', () => {
  it('is cleaned up when the API is killed while receiving it and started again', { timeout: 90_000 }, async () => {
    child = await startChild(t);
    const req = startUpload(child.url, 10_000_000, 300_000);
    const [partial] = await partials(200_000);
    assert.match(partial, /\.part$/);
    child.proc.kill('SIGKILL');
    await child.exited;
    req.destroy();
    assert.ok(existsSync(join(uploads(), partial)), 'the killed API left its partial file');
    await assertNoRecord();

    child = await startChild(t);
    assert.deepEqual(await readdir(uploads()), [], 'the partial file is gone once the API listens again');
    await assertNoRecord();

    // The restarted API works as before: an upload is stored, and nothing is left under uploads/.
    const body = multipart('whole.npy', randomNpy(20, 4, 1));
    const r = await fetch(new URL('/v1/datasets', child.url), { method: 'POST', headers: { ...ALICE, ...body.headers }, body: new Uint8Array(body.payload) });
    assert.equal(r.status, 201, await r.clone().text());
    const { id } = (await r.json()) as { id: string };
    assert.deepEqual(await redis.zrange(`${t.prefix}:datasets:alice`, 0, -1), [id]);
    assert.deepEqual(await readdir(uploads()), []);
    const del = await fetch(new URL(`/v1/datasets/${id}`, child.url), { method: 'DELETE', headers: ALICE });
    assert.equal(del.status, 204);
  });

  it('is cleaned up at once when the client hangs up on a running API', { timeout: 60_000 }, async () => {
    assert.ok(child, 'the API from the test before');
    const req = startUpload(child.url, 10_000_000, 300_000);
    await partials(200_000);
    req.destroy();
    await eventually('the partial file to go', async () => ((await readdir(uploads())).length === 0 ? true : undefined), 10_000);
    await assertNoRecord();
    child.proc.kill('SIGTERM');
    assert.equal(await child.exited, 0, 'a clean shutdown');
  });
});

describe('the upload sweep', () => {
  it('removes the partial files that will never finish, and only those', async () => {
    const store = new FsStore(join(t.dataDir, 'sweep'));
    await store.init();
    const dir = join(t.dataDir, 'sweep', 'uploads');
    const ours = store.tempUploadPath();
    const [tag, pid] = ours.split('/').pop()!.split('-');
    assert.equal(Number(pid), process.pid);
    const hex = () => randomBytes(12).toString('hex');
    // A process of this host that has ended.
    const gone = spawn(process.execPath, ['-e', '']);
    const deadPid = await new Promise<number>((ok) => gone.once('exit', () => ok(gone.pid!)));
    const beforeStart = (performance.timeOrigin - 5_000) / 1000;
    const now = Date.now();
    const idle = (now - UPLOAD_IDLE_MS - 60_000) / 1000;
    const files: Record<string, { mtime: number; removed: boolean }> = {
      [`${tag}-${deadPid}-${hex()}.part`]: { mtime: beforeStart, removed: true },
      // The same pid as this process, from before it started: an earlier run (a restarted container).
      [`${tag}-${process.pid}-${hex()}.part`]: { mtime: beforeStart, removed: true },
      // A process of this host still running (the test runner): its upload may still be coming in.
      [`${tag}-${process.ppid}-${hex()}.part`]: { mtime: beforeStart, removed: false },
      // Another host's upload, written lately; and one not written for longer than the idle time.
      [`0badc0de-1-${hex()}.part`]: { mtime: now / 1000, removed: false },
      [`0badc0de-2-${hex()}.part`]: { mtime: idle, removed: true },
      // A name of no upload: only its age counts.
      ['.probe-1234abcd']: { mtime: beforeStart, removed: false },
      ['stray.bin']: { mtime: idle, removed: true },
    };
    for (const [name, { mtime }] of Object.entries(files)) {
      await writeFile(join(dir, name), 'partial');
      await utimes(join(dir, name), mtime, mtime);
    }
    // This process's own upload in progress, however long it has been quiet.
    await writeFile(ours, 'mine');
    await utimes(ours, idle, idle);
    await mkdir(join(dir, 'a-directory'));
    const expectRemoved = Object.values(files).filter((f) => f.removed).length;
    assert.equal(await store.sweepUploads(UPLOAD_IDLE_MS, now), expectRemoved);
    const left = await readdir(dir);
    const expected = [...Object.keys(files).filter((n) => !files[n].removed), ours.split('/').pop()!, 'a-directory'];
    assert.deepEqual(left.sort(), expected.sort());
    assert.equal(await store.sweepUploads(UPLOAD_IDLE_MS, now), 0, 'a second sweep finds nothing more');
    await store.dropUpload(ours);
    assert.ok(!existsSync(ours));
  });
});
