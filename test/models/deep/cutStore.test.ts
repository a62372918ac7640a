/** Cached cut activations: the file store returns exactly what the memory store does, subsets map rows, files go. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cutSubset, cutWriter, FileCut, MemoryCut } from '../../../models/deep/cutStore.js';

describe('cut activation store', () => {
  it('file and memory stores agree, in batches and for any row order; the file is removed on close', () => {
    const rows = 23;
    const perRow = 7;
    const data = Float32Array.from({ length: rows * perRow }, (_, i) => Math.sin(i) * 1e3);
    const mem = new MemoryCut(rows, perRow);
    const file = new FileCut(rows, perRow);
    for (let at = 0; at < rows; at += 5) {
      const batch = data.subarray(at * perRow, Math.min(rows, at + 5) * perRow);
      mem.append(batch);
      file.append(batch);
    }
    const pick = [22, 0, 5, 5, 13];
    const expected = Float32Array.from(pick.flatMap((r) => [...data.subarray(r * perRow, (r + 1) * perRow)]));
    assert.deepEqual(mem.read(pick), expected);
    assert.deepEqual(file.read(pick), expected);
    const sub = cutSubset(file, [3, 9, 21]);
    assert.equal(sub.rows, 3);
    assert.deepEqual(sub.read([2, 0]), Float32Array.from([...data.subarray(21 * perRow, 22 * perRow), ...data.subarray(3 * perRow, 4 * perRow)]));
    assert.throws(() => file.read([rows]), /past the end/);
    assert.ok(existsSync(file.path));
    file.close();
    assert.ok(!existsSync(file.path));
  });

  it('goes to disk only above the memory budget', () => {
    const small = cutWriter(10, 10, 400);
    const big = cutWriter(10, 10, 399);
    assert.equal(small.where, 'memory');
    assert.equal(big.where, 'disk');
    small.close();
    big.close();
  });
});
