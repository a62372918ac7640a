/**
 * OpenBLAS kernel (coretype) selection.
 *
 * A DYNAMIC_ARCH OpenBLAS picks its kernels once, when the library is loaded, from the CPU model;
 * on virtual machines that hide the model it falls back to a generic SSE3 core that runs dgemm
 * several times slower. OPENBLAS_CORETYPE overrides that choice, so it has to be in the C
 * environment before the addon (and libopenblas with it) is loaded.
 *
 * A kernel that the CPU cannot actually execute would kill the process with SIGILL, so every
 * candidate is first tried in a short-lived child process that checks a few results against
 * plain JS arithmetic.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';

export type CoretypeSource = 'env' | 'auto' | 'default';

export interface ProbeOutcome {
  core: string;
  ok: boolean;
  /** openblas_get_corename() as reported by the probe. */
  reported?: string;
  reason?: string;
}

export interface CoretypeDecision {
  /** Value of OPENBLAS_CORETYPE in effect for this process, or null when OpenBLAS detects the core itself. */
  requested: string | null;
  source: CoretypeSource;
  /** The auto choice was read from the on-disk cache instead of being probed. */
  fromCache: boolean;
  /** Probes run by this process, strongest candidate first. */
  probes: ProbeOutcome[];
}

export interface CpuInfo {
  model: string;
  flags: Set<string>;
}

const ENV_VAR = 'OPENBLAS_CORETYPE';
/** Set next to OPENBLAS_CORETYPE when we chose it, so child processes inheriting both still report 'auto'. */
const AUTO_MARKER = 'IMMUNIZE_OPENBLAS_CORETYPE_AUTO';
const PROBE_TIMEOUT_MS = 10_000;
const CACHE_VERSION = 1;
const ADDON_NAME = 'immunize_linalg';

export function parseCpuInfo(text: string): CpuInfo {
  let model = '';
  let flags = new Set<string>();
  let haveFlags = false;
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'model name' && model === '') model = value;
    // The first processor block is representative; hybrid parts report the common subset.
    if (key === 'flags' && !haveFlags) {
      flags = new Set(value.split(/\s+/).filter(Boolean));
      haveFlags = true;
    }
  }
  return { model, flags };
}

export function readCpuInfo(): CpuInfo | null {
  try {
    return parseCpuInfo(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return null;
  }
}

/** Coretypes worth trying for these CPU flags, strongest first. */
export function candidatesFromFlags(flags: ReadonlySet<string>): string[] {
  const out: string[] = [];
  if (['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'].every((f) => flags.has(f))) out.push('SkylakeX');
  if (flags.has('avx2') && flags.has('fma')) out.push('Haswell');
  return out;
}

/** First candidate whose probe succeeds, or null. */
export function resolveCoretype(candidates: readonly string[], probe: (core: string) => ProbeOutcome): { chosen: string | null; probes: ProbeOutcome[] } {
  const probes: ProbeOutcome[] = [];
  for (const core of candidates) {
    const outcome = probe(core);
    probes.push(outcome);
    if (outcome.ok) return { chosen: core, probes };
  }
  return { chosen: null, probes };
}

let rootMemo: string | undefined;

/** Nearest ancestor of this module holding a package.json (the directory `bindings` resolves the addon from). */
export function packageRoot(): string {
  if (rootMemo !== undefined) return rootMemo;
  const here = path.dirname(fileURLToPath(import.meta.url));
  let dir = here;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return (rootMemo = dir);
    const parent = path.dirname(dir);
    if (parent === dir) return (rootMemo = here);
    dir = parent;
  }
}

// Runs in a child process with OPENBLAS_CORETYPE set to the candidate. Exits non-zero (or dies
// with a signal) unless dgemm, dsyrk, dgemv and dsyevr agree with straightforward JS arithmetic.
const PROBE_SCRIPT = `
'use strict';
const path = require('path');
const { createRequire } = require('module');
const root = process.argv[1];
const addon = createRequire(path.join(root, 'package.json'))('bindings')({ bindings: '${ADDON_NAME}', module_root: root });
let seed = 0x2545f491;
function rnd() { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) / 4294967296 - 0.5; }
function randMat(r, c) { const d = new Float64Array(r * c); for (let i = 0; i < d.length; i++) d[i] = rnd(); return { rows: r, cols: c, data: d }; }
function fail(reason) { console.log(JSON.stringify({ ok: false, reason })); process.exit(3); }

const m = 67, n = 45, k = 131;
const A = randMat(k, m), B = randMat(n, k);
const C = addon.gemm(A, B, true, true, 1, 0, null);
let err = 0;
for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
  let s = 0;
  for (let p = 0; p < k; p++) s += A.data[p * m + i] * B.data[j * k + p];
  err = Math.max(err, Math.abs(C.data[i * n + j] - s));
}
if (!(err < 1e-10)) fail('dgemm error ' + err);

const K = addon.syrk(A, 1, 0, null);
err = 0;
for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) {
  let s = 0;
  for (let p = 0; p < k; p++) s += A.data[p * m + i] * A.data[p * m + j];
  err = Math.max(err, Math.abs(K.data[i * m + j] - s));
}
if (!(err < 1e-10)) fail('dsyrk error ' + err);

const x = randMat(1, m).data;
const y = addon.matvec(A, x, false);
err = 0;
for (let i = 0; i < k; i++) {
  let s = 0;
  for (let j = 0; j < m; j++) s += A.data[i * m + j] * x[j];
  err = Math.max(err, Math.abs(y[i] - s));
}
if (!(err < 1e-10)) fail('dgemv error ' + err);

const N = 48, G = randMat(N, N), S = { rows: N, cols: N, data: new Float64Array(N * N) };
let trace = 0, frob = 0;
for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) {
  const v = G.data[i * N + j] + G.data[j * N + i];
  S.data[i * N + j] = v;
  frob += v * v;
  if (i === j) trace += v;
}
const E = addon.syevr(S, true, null, null);
let sum = 0, sumSq = 0, res = 0;
for (let j = 0; j < N; j++) {
  const lam = E.values[j];
  if (j > 0 && !(lam >= E.values[j - 1])) fail('dsyevr order');
  sum += lam;
  sumSq += lam * lam;
  for (let i = 0; i < N; i++) {
    let s = 0;
    for (let p = 0; p < N; p++) s += S.data[i * N + p] * E.vectors.data[p * N + j];
    res = Math.max(res, Math.abs(s - lam * E.vectors.data[i * N + j]));
  }
}
if (!(res < 1e-9 && Math.abs(sum - trace) < 1e-9 && Math.abs(sumSq - frob) < 1e-8 * frob)) {
  fail('dsyevr residual ' + res);
}
console.log(JSON.stringify({ ok: true, core: addon.corename() }));
`;

/** Loads the addon in a child process with OPENBLAS_CORETYPE=core and checks that it computes correctly. */
export function probeCoretype(core: string, root: string = packageRoot()): ProbeOutcome {
  const env: NodeJS.ProcessEnv = { ...process.env, [ENV_VAR]: core, OPENBLAS_NUM_THREADS: '1' };
  delete env[AUTO_MARKER];
  delete env.NODE_OPTIONS;
  const r = spawnSync(process.execPath, ['-e', PROBE_SCRIPT, root], {
    cwd: root,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: PROBE_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    windowsHide: true,
  });
  if (r.error) {
    const timedOut = (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    return { core, ok: false, reason: timedOut ? `timed out after ${PROBE_TIMEOUT_MS} ms` : r.error.message };
  }
  if (r.signal) return { core, ok: false, reason: `killed by ${r.signal}` };
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  let parsed: { ok?: unknown; core?: unknown; reason?: unknown } | undefined;
  try {
    parsed = JSON.parse(last) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  if (r.status !== 0 || !parsed || parsed.ok !== true || typeof parsed.core !== 'string') {
    const why = typeof parsed?.reason === 'string' ? parsed.reason : (r.stderr ?? '').trim().split('\n').pop();
    return { core, ok: false, reason: `exit ${r.status}${why ? `: ${why}` : ''}` };
  }
  // An unknown or unsupported name makes OpenBLAS silently fall back to its own detection.
  if (parsed.core.toLowerCase() !== core.toLowerCase()) {
    return { core, ok: false, reported: parsed.core, reason: `OpenBLAS reported core ${parsed.core}` };
  }
  return { core, ok: true, reported: parsed.core };
}

function addonFingerprint(root: string): string {
  for (const rel of ['build/Release', 'build/Debug', 'build']) {
    try {
      const st = statSync(path.join(root, rel, `${ADDON_NAME}.node`));
      return `${rel}:${st.size}:${st.mtimeMs}`;
    } catch {
      // try the next location
    }
  }
  return 'none';
}

/** Cache file for the verified choice on this CPU and addon build, or null without CPU information. */
export function coretypeCachePath(cpu: CpuInfo | null = readCpuInfo(), root: string = packageRoot()): string | null {
  if (!cpu) return null;
  const key = createHash('sha256')
    .update(JSON.stringify([CACHE_VERSION, cpu.model, [...cpu.flags].sort().join(' '), process.arch, process.versions.modules, addonFingerprint(root)]))
    .digest('hex')
    .slice(0, 24);
  return path.join(os.tmpdir(), `immunize-openblas-coretype-${key}.json`);
}

function readCache(file: string, allowed: readonly string[]): string | null {
  try {
    const st = lstatSync(file);
    // The temp dir may be shared: only trust a regular file we own that nobody else can write.
    const uid = process.getuid?.();
    if (!st.isFile() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) return null;
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown; core?: unknown };
    if (parsed.version !== CACHE_VERSION || typeof parsed.core !== 'string') return null;
    return allowed.includes(parsed.core) ? parsed.core : null;
  } catch {
    return null;
  }
}

function writeCache(file: string, core: string): void {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify({ version: CACHE_VERSION, core }), { mode: 0o600, flag: 'wx' });
    renameSync(tmp, file);
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing was written
    }
  }
}

let decision: CoretypeDecision | undefined;

/**
 * Decides OPENBLAS_CORETYPE for this process and writes it into process.env. Idempotent; must run
 * before the addon is first loaded to have any effect.
 */
export function selectCoretype(): CoretypeDecision {
  if (decision) return decision;
  const current = process.env[ENV_VAR];
  if (current !== undefined && current !== '') {
    const inherited = process.env[AUTO_MARKER] === current;
    return (decision = { requested: current, source: inherited ? 'auto' : 'env', fromCache: false, probes: [] });
  }
  // A worker's process.env is a private copy that never reaches the C environment, so a choice
  // made here could not influence OpenBLAS.
  if (!isMainThread) return (decision = { requested: null, source: 'default', fromCache: false, probes: [] });

  const cpu = readCpuInfo();
  const candidates = cpu ? candidatesFromFlags(cpu.flags) : [];
  if (candidates.length === 0) return (decision = { requested: null, source: 'default', fromCache: false, probes: [] });

  const root = packageRoot();
  const cacheFile = coretypeCachePath(cpu, root);
  const cached = cacheFile ? readCache(cacheFile, candidates) : null;
  let chosen = cached;
  let probes: ProbeOutcome[] = [];
  if (chosen === null) {
    ({ chosen, probes } = resolveCoretype(candidates, (core) => probeCoretype(core, root)));
    // Only successes are cached: a failure may be transient (e.g. a timeout on a loaded machine).
    if (chosen !== null && cacheFile) writeCache(cacheFile, chosen);
  }
  if (chosen === null) return (decision = { requested: null, source: 'default', fromCache: false, probes });

  process.env[ENV_VAR] = chosen;
  process.env[AUTO_MARKER] = chosen;
  return (decision = { requested: chosen, source: 'auto', fromCache: cached !== null, probes });
}
