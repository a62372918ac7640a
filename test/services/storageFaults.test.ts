/**
 * A full disk, met by the service: an upload that cannot be written answers 507 insufficient_storage and leaves no
 * partial file and no record; a job whose artifacts cannot be written fails its attempt with a retryable code, keeps
 * no artifact, and completes on a retry once there is space again. The faults are injected at the store's writes.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, statSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { encodeOnnx } from '../../scripts/fixtures/onnxMinimal.js';
import type { RunningServer } from '../../services/server.js';
import { FS_WRITES, type StoreWrites } from '../../services/storage/fsStore.js';
import { writeDurably, type FileWriter } from '../../workers/staging.js';
import { ALICE, cleanup, eventually, multipart, randomNpy, REDIS_URL, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

interface Doc {
  id: string;
  status: string;
  attempts: number;
  error?: { code: string; message: string };
  lastError?: { code: string; message: string };
  artifacts: Array<{ name: string; size: number; sha256: string }>;
}

let t: TestEnv;
let api: RunningServer;
let worker: RunningServer;
let redis: Redis;

before(async () => {
  t = await testEnv({ IMMUNIZE_JOB_ATTEMPTS: '2' });
  api = await start('api', t);
  worker = await start('worker', t);
  redis = new Redis(REDIS_URL);
});

afterEach(() => {
  api.services.store.writes = FS_WRITES;
  worker.services.store.writes = FS_WRITES;
});

after(async () => {
  redis?.disconnect();
  await worker?.close();
  await api?.close();
  if (t) await cleanup(t);
});

function systemError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated, write`), { code, syscall: 'write' });
}

/**
 * An upload stream on a disk that fills up after `room` bytes: those reach the file, then the write fails as a
 * full disk does. `seen` gets the partial file's size at the moment of the failure.
 */
function diskOfSize(room: number, code = 'ENOSPC'): { uploadStream: StoreWrites['uploadStream']; seen: number[] } {
  const seen: number[] = [];
  const uploadStream = (path: string) => {
    const file = createWriteStream(path, { flags: 'wx', mode: 0o600 });
    let written = 0;
    return new Writable({
      write(chunk: Buffer, _enc, done) {
        const fits = Math.min(chunk.length, room - written);
        written += fits;
        file.write(chunk.subarray(0, fits), (err) => {
          if (err || fits === chunk.length) return done(err);
          seen.push(statSync(path).size);
          done(systemError(code));
        });
      },
      final(done) {
        file.end(done);
      },
      destroy(err, done) {
        file.destroy();
        done(err);
      },
    });
  };
  return { uploadStream, seen };
}

function post(url: string, name: string, bytes: Buffer) {
  const body = multipart(name, bytes);
  return api.api!.inject({ method: 'POST', url, headers: { ...ALICE, ...body.headers }, payload: body.payload });
}

async function upload(name: string, bytes: Buffer): Promise<string> {
  const r = await post('/v1/datasets', name, bytes);
  assert.equal(r.statusCode, 201, r.body);
  return r.json().id as string;
}

/** Nothing under uploads/, no stored blob and no record for alice beyond `kept`. */
async function assertNoTrace(kept: string[]): Promise<void> {
  assert.deepEqual(await readdir(join(t.dataDir, 'uploads')), [], 'no partial upload is left');
  const blobs = (await readdir(join(t.dataDir, 'datasets'))).map((f) => f.replace(/\.\w+$/, ''));
  assert.deepEqual(blobs.sort(), [...kept].sort(), 'no stored blob beyond the uploads that succeeded');
  const ids = await redis.zrange(`${t.prefix}:datasets:alice`, 0, -1);
  assert.deepEqual(ids.sort(), [...kept].sort(), 'no record beyond the uploads that succeeded');
  const keys = await redis.keys(`${t.prefix}:ds:*`);
  assert.equal(keys.length, kept.length);
}

describe('uploads on a full disk', () => {
  const kept: string[] = [];

  it('answers 507 insufficient_storage to a dataset upload and removes its partial file', async () => {
    const disk = diskOfSize(64 * 1024);
    api.services.store.writes = { ...FS_WRITES, uploadStream: disk.uploadStream };
    const r = await post('/v1/datasets', 'big.npy', randomNpy(400, 100, 1));
    assert.equal(r.statusCode, 507, r.body);
    assert.equal(r.json().error.code, 'insufficient_storage');
    assert.match(r.json().error.message, /^big\.npy: storing the upload: no space left .*; try again later$/);
    assert.ok(!r.body.includes(t.dataDir), 'no server path in the answer');
    assert.deepEqual(disk.seen, [64 * 1024], 'a partial file of 64 KiB was on the disk when it filled up');
    await assertNoTrace(kept);
  });

  it('answers 507 to a backbone upload the same way', async () => {
    const onnx = encodeOnnx({ input: 'x', output: 'y', shape: [1, 4], opType: 'Relu' });
    const disk = diskOfSize(Math.floor(onnx.length / 2));
    api.services.store.writes = { ...FS_WRITES, uploadStream: disk.uploadStream };
    const r = await post('/v1/backbones', 'model.onnx', onnx);
    assert.equal(r.statusCode, 507, r.body);
    assert.equal(r.json().error.code, 'insufficient_storage');
    assert.equal(disk.seen.length, 1);
    await assertNoTrace(kept);
  });

  it('answers 500 io_error to another I/O error', async () => {
    api.services.store.writes = { ...FS_WRITES, uploadStream: diskOfSize(1000, 'EIO').uploadStream };
    const r = await post('/v1/datasets', 'eio.npy', randomNpy(100, 10, 2));
    assert.equal(r.statusCode, 500, r.body);
    assert.equal(r.json().error.code, 'io_error');
    await assertNoTrace(kept);
  });

  it('accepts the same upload once there is space again', async () => {
    kept.push(await upload('big.npy', randomNpy(400, 100, 1)));
    await assertNoTrace(kept);
  });
});

describe('job artifacts on a full disk', () => {
  let data: { benign: string; harmful: string };

  before(async () => {
    data = { benign: await upload('b.npy', randomNpy(50, 8, 3)), harmful: await upload('h.npy', randomNpy(50, 8, 4)) };
  });

  async function doc(id: string): Promise<Doc> {
    return (await api.api!.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json() as Doc;
  }

  async function submit(seed: number): Promise<string> {
    const spec = { benign: { dataset: data.benign }, harmful: { dataset: data.harmful }, method: 'closed-form', seed };
    const r = await api.api!.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec });
    assert.equal(r.statusCode, 202, r.body);
    return r.json().id as string;
  }

  function finished(id: string): Promise<Doc> {
    return eventually(`job ${id} to finish`, async () => {
      const d = await doc(id);
      return d.status === 'completed' || d.status === 'failed' ? d : undefined;
    });
  }

  /** The commit's write: half of it reaches the disk, then the disk is full (`times` times). */
  function fullDisk(times: number): { writeFile: FileWriter; hits: () => number } {
    let hits = 0;
    const write: FileWriter = async (path, body) => {
      if (hits >= times) return writeDurably(path, body);
      hits++;
      await writeFile(path, body.subarray(0, body.length >> 1), { flag: 'wx' });
      throw systemError('ENOSPC');
    };
    return { writeFile: write, hits: () => hits };
  }

  /** No file of the job is left but its committed artifacts (none while it has not completed). */
  async function jobFiles(id: string): Promise<string[]> {
    const dir = join(t.dataDir, 'jobs', id);
    if (!existsSync(dir)) return [];
    const files = await readdir(dir, { recursive: true, withFileTypes: true });
    return files.filter((f) => f.isFile()).map((f) => join(f.parentPath, f.name).slice(dir.length + 1));
  }

  it('fails each attempt retryably while the disk is full, and records no artifact', async () => {
    const disk = fullDisk(Infinity);
    worker.services.store.writes = { ...FS_WRITES, writeFile: disk.writeFile };
    const id = await submit(11);
    const d = await finished(id);
    assert.equal(d.status, 'failed', JSON.stringify(d));
    assert.equal(d.error?.code, 'insufficient_storage');
    assert.match(d.error!.message, /no space left/);
    assert.ok(!d.error!.message.includes(t.dataDir), 'no server path in the record');
    assert.equal(d.attempts, 2, 'the failure was retried (IMMUNIZE_JOB_ATTEMPTS=2)');
    assert.equal(disk.hits(), 2);
    assert.deepEqual(d.artifacts, [], 'the record points at no artifact');
    assert.deepEqual(await jobFiles(id), [], 'no partial or uncommitted file is left');
    const dl = await api.api!.inject({ url: `/v1/jobs/${id}/artifacts/metrics.json`, headers: ALICE });
    assert.equal(dl.statusCode, 404, dl.body);
  });

  it('completes on the retry once there is space, with whole artifacts', async () => {
    const disk = fullDisk(1);
    worker.services.store.writes = { ...FS_WRITES, writeFile: disk.writeFile };
    const id = await submit(12);
    const d = await finished(id);
    assert.equal(d.status, 'completed', JSON.stringify(d));
    assert.equal(d.attempts, 2);
    assert.equal(disk.hits(), 1);
    assert.ok(d.artifacts.length >= 4, JSON.stringify(d.artifacts));
    for (const a of d.artifacts) {
      const dl = await api.api!.inject({ url: `/v1/jobs/${id}/artifacts/${a.name}`, headers: ALICE });
      assert.equal(dl.statusCode, 200, a.name);
      assert.equal(dl.rawPayload.length, a.size, `${a.name}: whole`);
      assert.equal(createHash('sha256').update(dl.rawPayload).digest('hex'), a.sha256, `${a.name}: its recorded sha256`);
    }
    const files = await jobFiles(id);
    assert.ok(
      files.every((f) => f.startsWith('artifacts/')),
      `only the committed attempt is left: ${files.join(', ')}`,
    );
  });
});
