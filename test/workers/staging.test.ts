import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsStore } from '../../services/storage/fsStore.js';
import { StagingSink, STORED_FILE } from '../../workers/staging.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'immunize-staging-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const JOB = 'j0mwwf1ehn39e6e056447fcae5';

describe('staging sink', () => {
  it('stores allowed artifacts under file names of its own, once each', async () => {
    const sink = new StagingSink(join(root, 'one'));
    const body = Buffer.from('{"a":1}');
    const rec = await sink.put('metrics.json', body, 'text/plain');
    assert.deepEqual(rec, { name: 'metrics.json', bytes: 7, sha256: createHash('sha256').update(body).digest('hex'), contentType: 'application/json' });
    await sink.put('theta.safetensors', Buffer.alloc(16), 'application/octet-stream');
    assert.deepEqual(await readdir(join(root, 'one')), ['a0.bin', 'a1.bin']);
    assert.ok(sink.artifacts.every((a) => STORED_FILE.test(a.file)));
    assert.deepEqual(await readFile(join(root, 'one', 'a0.bin')), body);
    await assert.rejects(sink.put('metrics.json', body, 'application/json'), /already written/);
    for (const bad of ['../escape.json', 'notes.txt', '', 'metrics.json/..', '.metrics.json']) {
      await assert.rejects(sink.put(bad, body, 'application/json'), /is not one of/);
    }
    assert.deepEqual(await readdir(join(root, 'one')), ['a0.bin', 'a1.bin']);
  });
});

describe('filesystem store', () => {
  it('commits one attempt atomically; a second attempt cannot overwrite it', async () => {
    const store = new FsStore(join(root, 'store'));
    await store.init();
    const first = await store.stagingDir(JOB, '1-aaaaaaaa');
    const second = await store.stagingDir(JOB, '2-bbbbbbbb');
    await new StagingSink(first).put('metrics.json', Buffer.from('first'), 'application/json');
    await new StagingSink(second).put('metrics.json', Buffer.from('second'), 'application/json');
    assert.equal(await store.committed(JOB), null);
    const manifest = { metrics: { verdict: 'immunized' }, artifacts: [] };
    assert.equal(await store.commit(JOB, '2-bbbbbbbb', manifest), true);
    assert.equal(await store.commit(JOB, '1-aaaaaaaa', { metrics: {}, artifacts: [] }), false);
    assert.deepEqual(await store.committed(JOB), manifest, "the winner's manifest stays");
    const { stream, size } = await store.openArtifact(JOB, 'a0.bin');
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'second');
    assert.equal(size, 6);
    await store.discard(JOB);
    assert.deepEqual(await readdir(join(root, 'store', 'jobs', JOB)), ['artifacts']);
    await store.purgeJob(JOB);
    assert.deepEqual(await readdir(join(root, 'store', 'jobs')), []);
  });

  it('never turns a client string into a path', async () => {
    const store = new FsStore(join(root, 'store2'));
    await store.init();
    await assert.rejects(store.openArtifact(JOB, '../../../etc/passwd'), /invalid stored file name/);
    await assert.rejects(store.openArtifact('../etc', 'a0.bin'), /invalid job id/);
    await assert.rejects(store.stagingDir(JOB, '../../x'), /invalid attempt id/);
    assert.throws(() => store.blobPath('dataset', 'd../../../x', 'npy'), /invalid dataset id/);
    assert.throws(() => store.blobPath('dataset', 'd0mwwf1ehn39e6e056447fcae5', 'exe' as 'npy'), /invalid format/);
  });
});
