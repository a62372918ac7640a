import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sseBlocks } from '../../services/sse.js';

async function* chunks(text: string, size: number): AsyncGenerator<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function all(text: string, size: number) {
  const out = [];
  for await (const b of sseBlocks(chunks(text, size))) out.push(b);
  return out;
}

test('sseBlocks: fields, multi-line data and comment blocks, whatever the chunk boundaries (multi-byte characters included)', async () => {
  const stream = ': keep-alive\n\nevent: state\nid: a1\nretry: 2000\ndata: {"x":"κ"}\n\ndata: one\ndata: two\n\nevent: gone\n\n';
  for (const size of [1, 2, 3, 7, 1000]) {
    assert.deepEqual(await all(stream, size), [
      { event: 'state', id: 'a1', retry: 2000, data: '{"x":"κ"}' },
      { event: 'message', id: null, retry: null, data: 'one\ntwo' },
    ]);
  }
});

test('sseBlocks: a block cut off by the end of the stream is not yielded', async () => {
  assert.deepEqual(await all('data: whole\n\ndata: cut', 4), [{ event: 'message', id: null, retry: null, data: 'whole' }]);
});
