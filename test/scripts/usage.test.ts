/** The scripts' option check: known options pass, --help prints the usage, anything else stops with exit code 2. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { handleUsage } from '../../scripts/usage.js';

function captured(fn: () => boolean): { result: boolean; out: string; err: string; exitCode: typeof process.exitCode } {
  const saved = { out: process.stdout.write, err: process.stderr.write, code: process.exitCode };
  let out = '';
  let err = '';
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    const result = fn();
    return { result, out, err, exitCode: process.exitCode };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    process.exitCode = saved.code;
  }
}

describe('script usage', () => {
  const known = { values: ['jobs', 'timeout-s'], flags: ['quick'] };

  it('lets known options through, values included', () => {
    const r = captured(() => handleUsage(['--jobs', '10', '--quick', '--timeout-s', '5'], known, 'USAGE'));
    assert.equal(r.result, true);
    assert.equal(r.out + r.err, '');
  });

  it('prints the usage for --help and stops', () => {
    const r = captured(() => handleUsage(['--jobs', '3', '--help'], known, 'USAGE'));
    assert.equal(r.result, false);
    assert.equal(r.out, 'USAGE\n');
    assert.notEqual(r.exitCode, 2);
  });

  it('stops at an unknown option with exit code 2, naming it', () => {
    const r = captured(() => handleUsage(['--jobz', '3'], known, 'USAGE'));
    assert.equal(r.result, false);
    assert.match(r.err, /unknown option --jobz/);
    assert.equal(r.exitCode, 2);
  });
});
