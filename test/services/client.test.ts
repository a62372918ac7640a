/** The REST client against a real server over HTTP: upload, submit, watch, status, download, cancel, errors. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiClientError, ImmunizeClient } from '../../services/client.js';
import type { RunningServer } from '../../services/server.js';
import { ALICE_KEY, BOB_KEY, cleanup, randomNpy, requireRedis, start, type TestEnv, testEnv } from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

let t: TestEnv;
let srv: RunningServer;

before(async () => {
  t = await testEnv();
  srv = await start('all', t);
});

after(async () => {
  await srv?.close();
  if (t) await cleanup(t);
});

describe('REST client', () => {
  it('uploads, submits, watches and downloads with checksums', async () => {
    const client = new ImmunizeClient({ baseUrl: `${srv.url}/`, apiKey: ALICE_KEY });
    const b = join(t.dataDir, 'client-b.npy');
    const h = join(t.dataDir, 'client-h.npy');
    await writeFile(b, randomNpy(40, 6, 1));
    await writeFile(h, randomNpy(40, 6, 2));
    const benign = await client.upload(b);
    assert.equal(benign.rows, 40);
    const harmful = await client.upload(h);
    const { id, status } = await client.submit({ benign: { dataset: benign.id }, harmful: { dataset: harmful.id }, method: 'closed-form' }, 'client-1');
    assert.equal(status, 'queued');
    const seen: string[] = [];
    const final = await client.watch(id, (event) => seen.push(event));
    assert.equal(final.status, 'completed');
    assert.equal(seen[seen.length - 1], 'completed');
    assert.equal((await client.status(id)).status, 'completed');
    const dest = join(t.dataDir, 'theta.safetensors');
    const got = await client.download(id, 'theta.safetensors', dest);
    assert.equal(
      createHash('sha256')
        .update(await readFile(dest))
        .digest('hex'),
      got.sha256,
    );
    assert.deepEqual(await client.cancel(id), { id, status: 'completed' });
  });

  it('raises the API error code', async () => {
    const bob = new ImmunizeClient({ baseUrl: srv.url!, apiKey: BOB_KEY });
    await assert.rejects(bob.status('j0000000000000000000000000'), (e: ApiClientError) => e.status === 404 && e.code === 'not_found');
    const stranger = new ImmunizeClient({ baseUrl: srv.url!, apiKey: 'nobody-0123456789abcdef' });
    await assert.rejects(stranger.submit({}), (e: ApiClientError) => e.status === 401 && e.code === 'unauthorized');
    await assert.rejects(bob.submit({ benign: {} }), (e: ApiClientError) => e.status === 400 && e.code === 'invalid_spec');
  });

  it('uploads stream from disk: a missing file fails before any request, a bad one gets the API error', async () => {
    const client = new ImmunizeClient({ baseUrl: srv.url!, apiKey: ALICE_KEY });
    await assert.rejects(client.upload(join(t.dataDir, 'no-such.npy')), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && /no-such\.npy/.test(e.message));
    await assert.rejects(client.upload(t.dataDir), /is not a file/);
    const junk = join(t.dataDir, 'junk.npy');
    await writeFile(junk, Buffer.from('not an npy file'));
    await assert.rejects(client.upload(junk), (e: ApiClientError) => e.status === 400);
  });
});
