import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCli, UsageError } from '../../services/cli/args.js';

describe('CLI flags → job spec', () => {
  it('image preprocessing flags become spec.preprocess', () => {
    const cmd = parseCli([
      'run',
      '--backbone',
      'm.onnx',
      '--benign',
      'a',
      '--harmful',
      'b',
      '--resize',
      '160',
      '--crop',
      '128',
      '--mean',
      '0.5,0.5,0.5',
      '--std',
      '0.25,0.25,0.25',
      '--out',
      'o',
    ]);
    assert.deepEqual(cmd.spec?.preprocess, { resize: 160, crop: 128, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
    const plain = parseCli(['run', '--backbone', 'm.onnx', '--benign', 'a', '--harmful', 'b', '--out', 'o']);
    assert.equal(plain.spec?.preprocess, undefined);
  });

  it('refuses preprocessing without a backbone and values that are not numbers', () => {
    assert.throws(
      () => parseCli(['run', '--benign', 'a', '--harmful', 'b', '--crop', '10', '--out', 'o']),
      (e: unknown) => e instanceof UsageError && /need --backbone/.test(e.message),
    );
    assert.throws(
      () => parseCli(['run', '--backbone', 'm', '--benign', 'a', '--harmful', 'b', '--std', '1,x', '--out', 'o']),
      (e: unknown) => e instanceof UsageError && /--std expects a number/.test(e.message),
    );
    assert.throws(() => parseCli(['run', '--backbone', 'm', '--benign', 'a', '--harmful', 'b', '--std', '0,1,1', '--out', 'o']), /std/);
  });
});
