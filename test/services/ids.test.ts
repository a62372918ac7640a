/** Resource ids: the pattern each kind is checked against, ordering by age, and no repeats across the random pool. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isId, newId } from '../../services/ids.js';

describe('ids', () => {
  it('match their own kind only', () => {
    const id = newId('job');
    assert.ok(isId('job', id));
    assert.ok(!isId('dataset', id));
    assert.ok(!isId('job', `${id}0`));
  });

  it('sort by creation time', () => {
    assert.ok(newId('job', 1_000) < newId('job', 2_000));
  });

  it('made within one millisecond, or while the clock steps back, still sort in the order they were made', () => {
    const t = Date.now() + 60_000;
    const ids = [newId('job', t), newId('job', t), newId('job', t), newId('job', t - 5), newId('job', t)];
    assert.deepEqual([...ids].sort(), ids);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.every((id) => isId('job', id)));
    assert.ok(newId('job', t + 1) > ids[4], 'a later millisecond sorts after them');
  });

  it('never repeat, across many refills of the random pool', () => {
    const ids = Array.from({ length: 5000 }, () => newId('dataset', 0));
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.every((id) => isId('dataset', id)));
  });
});
