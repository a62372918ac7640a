/**
 * What a worker computes on: the tfjs backend last-block jobs train on and the onnxruntime execution provider
 * backbone jobs run on, logged once at start. On a host that should have a GPU (the GPU image sets
 * IMMUNIZE_EXPECT_GPU=1, or an NVIDIA device node is present) and got none, the log says why: the library is
 * missing, no device is visible, or the library failed to load (most often a CUDA/cuDNN version mismatch, with the
 * loader's own text).
 */
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';

export type GpuMissReason = 'library-missing' | 'no-device' | 'load-failed';

export interface AcceleratorProbes {
  /** Names of the NVIDIA device nodes under /dev (nvidia0, nvidiactl, …). */
  deviceNodes(): Promise<string[]>;
  /** nvidia-smi's outcome: the GPU names it lists, or its error. */
  nvidiaSmi(): Promise<{ ok: true; gpus: string[] } | { ok: false; error: string }>;
  env: Record<string, string | undefined>;
  /** The tfjs backend selectBackend chose, with its note (why it, and why not the ones before it). */
  tfBackend(): Promise<{ name: string; note: string }>;
  /** The onnxruntime execution provider a session got, with its note. */
  ortProvider(): Promise<{ provider: 'cpu' | 'cuda'; note: string }>;
}

export interface GpuVerdict {
  /** The library is present and running on the GPU. */
  gpu: boolean;
  reason?: GpuMissReason;
  detail?: string;
}

export interface AcceleratorReport {
  expectGpu: boolean;
  device: { nodes: string[]; smi: string; visibleDevices: string | null; problem: string | null };
  tfjs: { backend: string; note: string } & GpuVerdict;
  onnxruntime: { provider: string; note: string } & GpuVerdict;
}

/** Why no device is usable, or null when one is: no device node, nvidia-smi failing, or CUDA_VISIBLE_DEVICES empty. */
export function deviceProblem(nodes: string[], smi: Awaited<ReturnType<AcceleratorProbes['nvidiaSmi']>>, visible: string | undefined): string | null {
  if (visible !== undefined && (visible.trim() === '' || visible.trim() === '-1'))
    return `CUDA_VISIBLE_DEVICES is ${JSON.stringify(visible)}: every GPU is hidden`;
  if (!nodes.some((n) => /^nvidia\d+$/.test(n))) return 'no /dev/nvidia* device node (run the container with a GPU: --gpus, or a compose device reservation)';
  if (!smi.ok) return `nvidia-smi fails: ${smi.error}`;
  if (smi.gpus.length === 0) return 'nvidia-smi lists no GPU';
  return null;
}

/** tfjs: the GPU build in use, or why not, from selectBackend's note. */
export function classifyTfjs(backend: { name: string; note: string }, device: string | null): GpuVerdict {
  if (backend.name === 'tfjs-node-gpu') return { gpu: true };
  if (/tfjs-node-gpu is not installed/.test(backend.note))
    return { gpu: false, reason: 'library-missing', detail: '@tensorflow/tfjs-node-gpu is not installed' };
  if (device) return { gpu: false, reason: 'no-device', detail: device };
  const failure = /tfjs-node-gpu (failed: [^;)]*|failed to initialise)/.exec(backend.note);
  if (failure)
    return { gpu: false, reason: 'load-failed', detail: `@tensorflow/tfjs-node-gpu ${failure[1]} (libtensorflow 2.9.1 needs CUDA 11.2 and cuDNN 8.1)` };
  return { gpu: false, reason: 'load-failed', detail: `tfjs-node-gpu was passed over: ${backend.note}` };
}

/** onnxruntime: the CUDA execution provider in use, or why not, from the session's note. */
export function classifyOrt(session: { provider: string; note: string }, installed: boolean, device: string | null): GpuVerdict {
  if (session.provider === 'cuda') return { gpu: true };
  if (!installed)
    return { gpu: false, reason: 'library-missing', detail: "onnxruntime-node's CUDA execution provider is not installed (ONNXRUNTIME_NODE_INSTALL=cuda12)" };
  if (device) return { gpu: false, reason: 'no-device', detail: device };
  const failure = /CUDA failed to start: (.*)\)$/.exec(session.note);
  return {
    gpu: false,
    reason: 'load-failed',
    detail: failure ? `the CUDA execution provider failed to load: ${failure[1]} (it needs CUDA 12 and cuDNN 9)` : session.note,
  };
}

export async function acceleratorReport(probes: AcceleratorProbes, ortInstalled: boolean): Promise<AcceleratorReport> {
  const [nodes, smi] = await Promise.all([probes.deviceNodes(), probes.nvidiaSmi()]);
  const visible = probes.env.CUDA_VISIBLE_DEVICES;
  const problem = deviceProblem(nodes, smi, visible);
  const expectGpu = probes.env.IMMUNIZE_EXPECT_GPU === '1' || nodes.length > 0;
  const tf = await probes.tfBackend();
  const ort = await probes.ortProvider();
  return {
    expectGpu,
    device: { nodes, smi: smi.ok ? smi.gpus.join(', ') : smi.error, visibleDevices: visible ?? null, problem },
    tfjs: { backend: tf.name, note: tf.note, ...classifyTfjs(tf, problem) },
    onnxruntime: { provider: ort.provider, note: ort.note, ...classifyOrt(ort, ortInstalled, problem) },
  };
}

/** The log lines of a report: one per library, a warning where a GPU was expected and not found. */
export function reportLines(r: AcceleratorReport): Array<{ level: 'info' | 'warn'; message: string }> {
  const line = (what: string, using: string, v: GpuVerdict) =>
    r.expectGpu && !v.gpu
      ? { level: 'warn' as const, message: `${what}: ${using}; no GPU (${v.reason}): ${v.detail}` }
      : { level: 'info' as const, message: `${what}: ${using}` };
  return [line('tfjs backend', r.tfjs.note, r.tfjs), line('onnxruntime execution provider', r.onnxruntime.note, r.onnxruntime)];
}

function run(cmd: string, args: string[]): Promise<{ ok: true; stdout: string } | { ok: false; error: string }> {
  return new Promise((done) =>
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) =>
      done(err ? { ok: false, error: (stderr.trim() || err.message).split('\n')[0] } : { ok: true, stdout }),
    ),
  );
}

/** The probes of this host. The libraries are loaded only here, so a caller that never reports never loads them. */
export function hostProbes(env: Record<string, string | undefined> = process.env): AcceleratorProbes {
  return {
    env,
    deviceNodes: async () => (await readdir('/dev').catch(() => [] as string[])).filter((n) => n.startsWith('nvidia')).sort(),
    nvidiaSmi: async () => {
      const r = await run('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader']);
      return r.ok ? { ok: true, gpus: r.stdout.split('\n').filter((l) => l.trim() !== '') } : r;
    },
    tfBackend: async () => {
      const { selectBackend } = await import('../models/deep/backend.js');
      return selectBackend();
    },
    ortProvider: async () => {
      const { encodeModel, floatValueInfo } = await import('../models/backbones/index.js');
      const { createSession } = await import('../models/backbones/runtime.js');
      // The smallest model onnxruntime accepts: creating its session is what tries the CUDA provider.
      const model = encodeModel({
        irVersion: 8,
        opsetImport: [{ domain: '', version: 17 }],
        graph: {
          name: 'probe',
          node: [{ input: ['x'], output: ['y'], name: 'n', opType: 'Identity' }],
          input: [floatValueInfo('x', [1])],
          output: [floatValueInfo('y', [1])],
        },
      });
      const s = await createSession(model);
      return { provider: s.provider, note: s.note };
    },
  };
}

/** Logs what this worker computes on; never throws (a probe that fails is logged as such). */
export async function logAccelerators(
  logger: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void },
  probes = hostProbes(),
): Promise<void> {
  try {
    const { cudaAvailability } = await import('../models/backbones/index.js');
    const report = await acceleratorReport(probes, cudaAvailability().installed);
    for (const { level, message } of reportLines(report)) logger[level]({ accelerators: report }, message);
  } catch (err) {
    logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not tell which accelerators this worker has');
  }
}
