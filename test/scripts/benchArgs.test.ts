/** `npm run bench`'s options and the backbone section's printing (no trained backbone needed). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ArgsError, parseArgs, SECTIONS } from '../../scripts/bench/args.js';
import { renderBackbone, slowdownText, type BackboneResult } from '../../scripts/bench/backbone.js';

describe('bench arguments', () => {
  it('runs every section, the backbone one included, by default', () => {
    const a = parseArgs([]);
    assert.deepEqual(a.sections, [...SECTIONS]);
    assert.ok(a.sections.includes('backbone'));
    assert.equal(a.backboneDir, undefined);
  });

  it('takes --only backbone and --backbone-dir in both spellings', () => {
    assert.deepEqual(parseArgs(['--only', 'backbone']).sections, ['backbone']);
    assert.equal(parseArgs(['--backbone-dir', 'fx/r18']).backboneDir, 'fx/r18');
    assert.equal(parseArgs(['--only=backbone,house', '--backbone-dir=/tmp/x']).backboneDir, '/tmp/x');
    assert.deepEqual(parseArgs(['--only=backbone,house']).sections, ['house', 'backbone']);
  });

  it('refuses --backbone-dir without a folder', () => {
    assert.throws(() => parseArgs(['--backbone-dir']), ArgsError);
    assert.throws(() => parseArgs(['--backbone-dir', '--quick']), ArgsError);
    assert.throws(() => parseArgs(['--backbone-dir=']), ArgsError);
  });
});

describe('bench backbone section', () => {
  it('prints a slowdown as a number only when measured', () => {
    assert.equal(slowdownText({ slowdown: 2.5, status: 'measured', capped: false }), '2.5×');
    assert.equal(slowdownText({ slowdown: 100, status: 'capped', capped: true }), '≥100×');
    assert.equal(slowdownText({ slowdown: null, status: 'unmeasured', capped: true }), 'unmeasured');
    assert.equal(slowdownText({ slowdown: 1.5, status: 'unmeasured', capped: true }), 'unmeasured');
    // Without a status field, the capped flag alone makes the value a lower bound.
    assert.equal(slowdownText({ slowdown: 40, capped: true }), '≥40×');
    assert.equal(slowdownText({ slowdown: 3, capped: false }), '3×');
  });

  it('says how to make the fixtures in one line when they are missing', () => {
    const lines = renderBackbone({ status: 'missing', dir: '/nowhere/r18', missing: ['model.onnx'], hint: 'make it' }).filter((l) => l !== '');
    assert.equal(lines.length, 1);
    assert.match(lines[0], /skipped/);
    assert.match(lines[0], /make it/);
  });

  it('prints every attack row with its status, the verdict reasons and the time split', () => {
    const r: BackboneResult = {
      status: 'ran',
      dir: '/nowhere/r18',
      outDir: '/nowhere/out',
      command: 'immunize run …',
      fixture: null,
      jobSeconds: 5,
      head: { images: 10, original: 0.9, immunized: 0.9, torchMaxAbsLogitDiff: 1e-6, seconds: 0.1 },
      metrics: {
        verdict: 'weak',
        verdictReasons: ['harmful κ ratio 0.7 < 2'],
        kappaCriterion: 'tested',
        attacks: [
          { attacker: 'gd', data: 'harmful', stepsRaw: 10, stepsImmunized: 1000, cap: 1000, capped: true, status: 'capped', slowdown: 100 },
          { attacker: 'gd', data: 'benign', stepsRaw: 10, stepsImmunized: 1000, cap: 1000, capped: true, status: 'unmeasured', slowdown: null, reason: 'cap' },
        ],
        timings: { engineSeconds: 3, solveSeconds: 1.25, metricsSeconds: 1.75, attackSeconds: 1.5 },
        features: { tensor: 'f', dim: 512, source: 'auto', seconds: 2 },
      },
    };
    const text = renderBackbone(r).join('\n');
    assert.match(text, /verdict: WEAK/);
    assert.match(text, /harmful κ ratio 0\.7 < 2/);
    assert.match(text, /gd\s+harmful.*capped\s+≥100×/);
    assert.match(text, /gd\s+benign.*unmeasured\s+unmeasured\s+"cap"/);
    assert.match(text, /θ 1\.25 s, attacks 1\.5 s/);
    assert.match(text, /feature extraction 2 s/);
  });
});
