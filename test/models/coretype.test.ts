import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { candidatesFromFlags, parseCpuInfo, probeCoretype, readCpuInfo, resolveCoretype, type ProbeOutcome } from '../../models/linalg/coretype.js';

const AVX512 = ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'];
const cpu = readCpuInfo();
const localCandidates = cpu ? candidatesFromFlags(cpu.flags) : [];
const canHaswell = localCandidates.includes('Haswell');
const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
const indexUrl = new URL('../../models/linalg/index.js', import.meta.url).href;
const coretypeUrl = new URL('../../models/linalg/coretype.js', import.meta.url).href;

interface ChildReport {
  sel: { requested: string | null; source: string; core: string };
  dec: { requested: string | null; source: string; fromCache: boolean; probes: ProbeOutcome[] };
  cache: string | null;
}

/** Loads the linalg module in a fresh process (OpenBLAS reads OPENBLAS_CORETYPE only at load time). */
function loadInChild(env: Record<string, string | undefined>, tmpdir: string): ChildReport {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmpdir };
  delete childEnv.OPENBLAS_CORETYPE;
  delete childEnv.IMMUNIZE_OPENBLAS_CORETYPE_AUTO;
  delete childEnv.NODE_TEST_CONTEXT;
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete childEnv[k];
    else childEnv[k] = v;
  }
  const script = `
    const L = await import(${JSON.stringify(indexUrl)});
    const C = await import(${JSON.stringify(coretypeUrl)});
    console.log(JSON.stringify({ sel: L.coreSelection(), dec: C.selectCoretype(), cache: C.coretypeCachePath() }));
  `;
  const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: repoRoot,
    env: childEnv,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(res.signal, null, `child died with ${res.signal}: ${res.stderr}`);
  assert.equal(res.status, 0, res.stderr);
  return JSON.parse(res.stdout.trim().split('\n').pop() ?? '') as ChildReport;
}

function withTmp(fn: (dir: string) => void): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'immunize-coretype-test-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('coretype selection logic', () => {
  it('parses /proc/cpuinfo', () => {
    const text = [
      'processor\t: 0',
      'vendor_id\t: AuthenticAMD',
      'model name\t: AMD EPYC',
      'flags\t\t: fpu sse2 avx2 fma avx512f',
      '',
      'processor\t: 1',
      'model name\t: other',
      'flags\t\t: fpu',
    ].join('\n');
    const info = parseCpuInfo(text);
    assert.equal(info.model, 'AMD EPYC');
    assert.deepEqual([...info.flags].sort(), ['avx2', 'avx512f', 'fma', 'fpu', 'sse2']);
  });

  it('maps CPU flags to candidate cores, strongest first', () => {
    assert.deepEqual(candidatesFromFlags(new Set([...AVX512, 'avx2', 'fma'])), ['SkylakeX', 'Haswell']);
    assert.deepEqual(candidatesFromFlags(new Set(['avx512f', 'avx512bw', 'avx512dq', 'avx2', 'fma'])), ['Haswell']);
    assert.deepEqual(candidatesFromFlags(new Set(['avx2', 'fma'])), ['Haswell']);
    assert.deepEqual(candidatesFromFlags(new Set(['avx2', 'avx'])), []);
    assert.deepEqual(candidatesFromFlags(new Set()), []);
  });

  it('falls back to the next candidate when a probe fails', () => {
    const tried: string[] = [];
    const probe =
      (failing: string[]) =>
      (core: string): ProbeOutcome => {
        tried.push(core);
        return { core, ok: !failing.includes(core), reason: failing.includes(core) ? 'killed by SIGILL' : undefined };
      };
    assert.deepEqual(resolveCoretype(['SkylakeX', 'Haswell'], probe([])).chosen, 'SkylakeX');
    assert.deepEqual(tried, ['SkylakeX']);
    tried.length = 0;
    const r = resolveCoretype(['SkylakeX', 'Haswell'], probe(['SkylakeX']));
    assert.equal(r.chosen, 'Haswell');
    assert.deepEqual(tried, ['SkylakeX', 'Haswell']);
    assert.equal(r.probes[0].ok, false);
    const none = resolveCoretype(['SkylakeX', 'Haswell'], probe(['SkylakeX', 'Haswell']));
    assert.equal(none.chosen, null);
    assert.equal(none.probes.length, 2);
  });

  it('probe rejects a core OpenBLAS does not honour and accepts supported ones', () => {
    const bogus = probeCoretype('NoSuchCore');
    assert.equal(bogus.ok, false);
    assert.ok(bogus.reason && bogus.reason.length > 0);
    for (const core of localCandidates) {
      const p = probeCoretype(core);
      assert.equal(p.ok, true, `${core}: ${p.reason}`);
      assert.equal(p.reported, core);
    }
  });
});

describe('coretype selection in a fresh process', () => {
  it('respects OPENBLAS_CORETYPE from the user', { skip: !canHaswell && 'CPU lacks AVX2+FMA' }, () => {
    withTmp((dir) => {
      const r = loadInChild({ OPENBLAS_CORETYPE: 'Haswell' }, dir);
      assert.deepEqual(r.sel, { requested: 'Haswell', source: 'env', core: 'Haswell' });
      assert.deepEqual(r.dec.probes, []);
    });
  });

  it('never overrides a weaker user choice', () => {
    withTmp((dir) => {
      const r = loadInChild({ OPENBLAS_CORETYPE: 'Prescott' }, dir);
      assert.deepEqual(r.sel, { requested: 'Prescott', source: 'env', core: 'Prescott' });
    });
  });

  it('reports an inherited automatic choice as auto', { skip: !canHaswell && 'CPU lacks AVX2+FMA' }, () => {
    withTmp((dir) => {
      const r = loadInChild({ OPENBLAS_CORETYPE: 'Haswell', IMMUNIZE_OPENBLAS_CORETYPE_AUTO: 'Haswell' }, dir);
      assert.deepEqual(r.sel, { requested: 'Haswell', source: 'auto', core: 'Haswell' });
    });
  });

  it('picks, verifies and caches the strongest core', { skip: localCandidates.length === 0 && 'no candidate' }, () => {
    withTmp((dir) => {
      const first = loadInChild({}, dir);
      const best = localCandidates[0];
      assert.deepEqual(first.sel, { requested: best, source: 'auto', core: best });
      assert.equal(first.dec.fromCache, false);
      assert.equal(first.dec.probes[0]?.ok, true);
      assert.ok(first.cache && first.cache.startsWith(dir), `cache ${first.cache} not under ${dir}`);
      assert.ok(existsSync(first.cache));

      const second = loadInChild({}, dir);
      assert.deepEqual(second.sel, first.sel);
      assert.equal(second.dec.fromCache, true);
      assert.deepEqual(second.dec.probes, []);
    });
  });

  it('uses a valid cache entry and ignores corrupt or foreign ones', { skip: !canHaswell && 'CPU lacks AVX2+FMA' }, () => {
    withTmp((dir) => {
      const cache = loadInChild({}, dir).cache;
      assert.ok(cache);
      const best = localCandidates[0];

      writeFileSync(cache, JSON.stringify({ version: 1, core: 'Haswell' }), { mode: 0o600 });
      const planted = loadInChild({}, dir);
      assert.deepEqual(planted.sel, { requested: 'Haswell', source: 'auto', core: 'Haswell' });
      assert.equal(planted.dec.fromCache, true);

      for (const junk of ['{not json', JSON.stringify({ version: 1, core: 'Prescott' }), '']) {
        writeFileSync(cache, junk, { mode: 0o600 });
        const r = loadInChild({}, dir);
        assert.deepEqual(r.sel, { requested: best, source: 'auto', core: best }, `cache content ${junk}`);
        assert.equal(r.dec.fromCache, false);
        assert.equal(JSON.parse(readFileSync(cache, 'utf8')).core, best, 'cache rewritten');
      }

      writeFileSync(cache, JSON.stringify({ version: 1, core: 'Haswell' }));
      chmodSync(cache, 0o666);
      const writable = loadInChild({}, dir);
      assert.equal(writable.dec.fromCache, false, 'a world-writable cache file must not be trusted');
      assert.equal(writable.sel.core, best);
    });
  });
});
