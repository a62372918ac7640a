import os from 'node:os';
import { readCpuInfo, selectCoretype } from '../../models/linalg/coretype.js';
import { coreSelection, getThreads, openblasConfig, openblasCore, type CoreSelection } from '../../models/linalg/index.js';
import { table } from './format.js';

export interface BenchEnvironment {
  openblasCore: string;
  coreSelection: CoreSelection;
  /** How the coretype was chosen, in words. */
  selectionNote: string;
  openblasConfig: string;
  node: string;
  cpuModel: string | null;
  simdFlags: string[];
  logicalCpus: number;
  openblasThreads: number;
  /** 1-minute load average when the bench started: other processes competing for the CPUs skew every timing. */
  loadAverage: number;
}

const SIMD_FLAGS = ['sse4_2', 'avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq'];

function describeSelection(sel: CoreSelection): string {
  // Already decided when the linalg module loaded; this call only returns that memoized decision.
  const decision = selectCoretype();
  if (sel.source === 'env') return `OPENBLAS_CORETYPE=${sel.requested} set in the environment`;
  if (sel.source === 'default') {
    const failed = decision.probes.filter((p) => !p.ok).map((p) => `${p.core}: ${p.reason ?? 'failed'}`);
    return `OpenBLAS's own CPU detection, no OPENBLAS_CORETYPE${failed.length ? ` (rejected: ${failed.join('; ')})` : ''}`;
  }
  const how = decision.fromCache
    ? 'choice read from the verified-coretype cache'
    : decision.probes.length === 0
      ? "inherited from a parent process's choice"
      : `probed now: ${decision.probes.map((p) => `${p.core} ${p.ok ? 'ok' : `failed (${p.reason ?? '?'})`}`).join(', ')}`;
  const mismatch = sel.requested && sel.requested.toLowerCase() !== sel.core.toLowerCase() ? `; OpenBLAS reports ${sel.core}` : '';
  return `auto: OPENBLAS_CORETYPE=${sel.requested}, strongest core for the CPU flags that passed a child-process check (${how})${mismatch}`;
}

export function benchEnvironment(): BenchEnvironment {
  const cpu = readCpuInfo();
  const sel = coreSelection();
  return {
    openblasCore: openblasCore(),
    coreSelection: sel,
    selectionNote: describeSelection(sel),
    openblasConfig: openblasConfig().trim(),
    node: process.version,
    cpuModel: cpu?.model || null,
    simdFlags: cpu ? SIMD_FLAGS.filter((f) => cpu.flags.has(f)) : [],
    logicalCpus: os.availableParallelism(),
    openblasThreads: getThreads(),
    loadAverage: os.loadavg()[0],
  };
}

export function loadNote(load: number, cpus: number): string {
  const busy = load > 0.5 * cpus;
  return `${load.toFixed(2)} (1 min, ${cpus} CPUs)${busy ? ' — WARNING: the machine is busy, timings will be inflated and noisy' : ''}`;
}

export function renderEnvironment(env: BenchEnvironment, mode: string): string[] {
  return table(
    ['immunize bench', ''],
    [
      ['OpenBLAS core', env.openblasCore],
      ['core selection', env.selectionNote],
      ['OpenBLAS build', env.openblasConfig],
      ['OpenBLAS threads', String(env.openblasThreads)],
      ['logical CPUs', String(env.logicalCpus)],
      ['CPU model', env.cpuModel ?? 'unknown (/proc/cpuinfo unreadable)'],
      ['SIMD flags', env.simdFlags.join(' ') || 'none of interest'],
      ['Node', env.node],
      ['load average', loadNote(env.loadAverage, env.logicalCpus)],
      ['mode', mode],
    ],
    ['left', 'left'],
  );
}
