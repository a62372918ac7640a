/**
 * A full disk (or another I/O error) while a job writes its artifacts: the attempt fails with a retryable code from
 * the error table, no partial file is left where a download could find it, and nothing is committed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FS_WRITES, FsStore } from '../../services/storage/fsStore.js';
import { CodedError } from '../../workers/errorTable.js';
import { describeJobError } from '../../workers/jobErrors.js';
import { StagingSink, writeDurably, type FileWriter } from '../../workers/staging.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'immunize-staging-faults-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const JOB = 'j0mwwf1ehn39e6e056447fcae5';

function systemError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated, write`), { code, syscall: 'write' });
}

/** A write that gets part of the bytes onto the disk and then fails as a full disk does (`times` times). */
function failingWrite(code: string, times = Infinity): { write: FileWriter; partials: number[] } {
  const partials: number[] = [];
  let left = times;
  const write: FileWriter = async (path, body) => {
    if (left-- <= 0) return writeDurably(path, body);
    const half = body.subarray(0, Math.floor(body.length / 2));
    await writeFile(path, half, { flag: 'wx' });
    partials.push(half.length);
    throw systemError(code);
  };
  return { write, partials };
}

describe('artifact writes on a full disk', () => {
  it('fails the write with insufficient_storage, retryable, and leaves no partial file', async () => {
    const dir = join(root, 'full');
    const { write, partials } = failingWrite('ENOSPC', 1);
    const sink = new StagingSink(dir, write);
    const body = Buffer.from(JSON.stringify({ verdict: 'immunized', padding: 'x'.repeat(1000) }));
    const err = await sink.put('metrics.json', body, 'application/json').then(
      () => assert.fail('the write succeeded'),
      (e: unknown) => e,
    );
    assert.deepEqual(partials, [Math.floor(body.length / 2)], 'half the bytes reached the disk before it was full');
    assert.ok(err instanceof CodedError, String(err));
    assert.equal(err.code, 'insufficient_storage');
    assert.equal(err.status, 507);
    assert.equal(err.permanent, false);
    assert.match(err.message, /writing the artifact metrics\.json: no space left/);
    assert.ok(!err.message.includes(root), 'no server path in the message');
    // What the job records for it: the same code, and a retry.
    assert.deepEqual(describeJobError(err), { code: 'insufficient_storage', message: err.message, permanent: false });
    assert.deepEqual(await readdir(dir), [], 'neither the partial nor a stored file is left');
    assert.equal(sink.artifacts.length, 0, 'nothing is recorded');
    // Space again: the same name writes afresh, under the first stored file name.
    const rec = await sink.put('metrics.json', body, 'application/json');
    assert.equal(rec.bytes, body.length);
    assert.deepEqual(await readdir(dir), ['a0.bin']);
    assert.deepEqual(
      sink.artifacts.map((a) => [a.name, a.file, a.bytes]),
      [['metrics.json', 'a0.bin', body.length]],
    );
  });

  it('fails any other I/O error with io_error, retryable', async () => {
    const dir = join(root, 'eio');
    const sink = new StagingSink(dir, failingWrite('EIO').write);
    const err = await sink.put('curves.json', Buffer.alloc(64), 'application/json').catch((e: unknown) => e);
    assert.ok(err instanceof CodedError);
    assert.deepEqual([err.code, err.status, err.permanent], ['io_error', 500, false]);
    assert.match(err.message, /I\/O error \(EIO\)/);
    assert.deepEqual(await readdir(dir), []);
  });
});

describe('committing an attempt', () => {
  it('refuses a short artifact and commits nothing', async () => {
    const store = new FsStore(join(root, 'short'));
    await store.init();
    const dir = await store.stagingDir(JOB, '1-aaaaaaaa');
    const sink = new StagingSink(dir);
    await sink.put('theta.safetensors', Buffer.alloc(4096, 7), 'application/octet-stream');
    await truncate(join(dir, 'a0.bin'), 100);
    const err = await store.commit(JOB, '1-aaaaaaaa', { metrics: {}, artifacts: sink.artifacts }).catch((e: unknown) => e);
    assert.ok(err instanceof CodedError, String(err));
    assert.equal(err.code, 'io_error');
    assert.match(err.message, /theta\.safetensors has 100 bytes on the disk; 4096 were written/);
    assert.equal(await store.committed(JOB), null);
    assert.ok(!existsSync(join(root, 'short', 'jobs', JOB, 'artifacts')));
    await rm(join(dir, 'a0.bin'));
    const missing = await store.commit(JOB, '1-aaaaaaaa', { metrics: {}, artifacts: sink.artifacts }).catch((e: unknown) => e);
    assert.ok(missing instanceof CodedError && missing.code === 'io_error', String(missing));
    assert.equal(await store.committed(JOB), null);
  });

  it('fails on a full disk while writing the manifest, removes it, and commits nothing; then commits', async () => {
    const store = new FsStore(join(root, 'manifest'));
    await store.init();
    const dir = await store.stagingDir(JOB, '1-bbbbbbbb');
    const sink = new StagingSink(dir);
    await sink.put('metrics.json', Buffer.from('{"verdict":"immunized"}'), 'application/json');
    const manifest = { metrics: { verdict: 'immunized' }, artifacts: sink.artifacts };
    const { write, partials } = failingWrite('ENOSPC', 1);
    store.writes = { ...FS_WRITES, writeFile: write };
    const err = await store.commit(JOB, '1-bbbbbbbb', manifest).catch((e: unknown) => e);
    assert.equal(partials.length, 1);
    assert.ok(err instanceof CodedError && err.code === 'insufficient_storage', String(err));
    assert.deepEqual(await readdir(dir), ['a0.bin'], 'the partial manifest is gone');
    assert.equal(await store.committed(JOB), null);
    // The retry (the write works again) commits the whole attempt.
    assert.equal(await store.commit(JOB, '1-bbbbbbbb', manifest), true);
    assert.deepEqual(await store.committed(JOB), manifest);
  });
});
