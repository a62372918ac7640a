/**
 * onnxruntime-node sessions. The CUDA execution provider is used when its libraries were installed
 * (ONNXRUNTIME_NODE_INSTALL=cuda12) and an NVIDIA GPU is visible; otherwise, or when it fails to start, the CPU one.
 * The choice and its reason are reported to the caller, who logs them and records them in metrics.json.
 *
 * onnxruntime-node and sharp are loaded on first use, so jobs on precomputed features never load them.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';

export type Ort = typeof import('onnxruntime-node');
export type ProviderChoice = 'auto' | 'cpu' | 'cuda';

export interface RuntimeOptions {
  executionProvider?: ProviderChoice;
  /** Intra-op threads; default: onnxruntime's own choice (one per physical core). */
  threads?: number;
  log?: (message: string) => void;
}

export interface Session {
  session: InferenceSession;
  provider: 'cpu' | 'cuda';
  /** Why this provider, in words. */
  note: string;
  threads: number | null;
}

let ortModule: Promise<Ort> | null = null;

export function loadOrt(): Promise<Ort> {
  ortModule ??= import('onnxruntime-node').then((m) => ((m as unknown as { default?: Ort }).default ?? m) as Ort);
  return ortModule;
}

/**
 * Loads the native modules this directory uses. A process that runs backbone jobs in worker threads should call
 * it once on its main thread: sharp's libraries must stay loaded for the process's lifetime (lovell/sharp#2263).
 */
export async function preloadBackboneRuntime(): Promise<void> {
  await loadOrt();
  await import('sharp');
}

export interface CudaAvailability {
  installed: boolean;
  gpu: boolean;
}

export function cudaAvailability(): CudaAvailability {
  let installed = false;
  try {
    const require = createRequire(import.meta.url);
    const root = dirname(dirname(require.resolve('onnxruntime-node')));
    installed = existsSync(join(root, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'));
  } catch {
    installed = false;
  }
  const gpu = existsSync('/dev/nvidiactl') || existsSync('/proc/driver/nvidia/version');
  return { installed, gpu };
}

function sessionOptions(providers: string[], threads: number | undefined): InferenceSession.SessionOptions {
  // Severity 3 (errors only): onnxruntime's warnings about, e.g., initializers it prunes would clutter job output.
  const opts: InferenceSession.SessionOptions = { executionProviders: providers, graphOptimizationLevel: 'all', logSeverityLevel: 3 };
  if (threads !== undefined) {
    opts.intraOpNumThreads = threads;
    opts.interOpNumThreads = 1;
  }
  return opts;
}

/** Creates a session on the best available provider; throws what onnxruntime throws when the model is refused. */
export async function createSession(model: Uint8Array, opts: RuntimeOptions = {}): Promise<Session> {
  const ort = await loadOrt();
  const choice = opts.executionProvider ?? 'auto';
  const threads = opts.threads;
  const threadNote = threads ?? null;
  if (choice !== 'cpu') {
    const cuda = cudaAvailability();
    if (cuda.installed && (cuda.gpu || choice === 'cuda')) {
      try {
        const session = await ort.InferenceSession.create(model, sessionOptions(['cuda', 'cpu'], threads));
        const note = 'CUDA execution provider';
        opts.log?.(`onnxruntime: ${note}`);
        return { session, provider: 'cuda', note, threads: threadNote };
      } catch (err) {
        const detail = err instanceof Error ? err.message.split('\n')[0] : String(err);
        opts.log?.(`onnxruntime: the CUDA execution provider failed to start (${detail}); falling back to the CPU`);
        const session = await ort.InferenceSession.create(model, sessionOptions(['cpu'], threads));
        return { session, provider: 'cpu', note: `CPU execution provider (CUDA failed to start: ${detail})`, threads: threadNote };
      }
    }
    const why = cuda.installed
      ? 'no NVIDIA GPU is visible'
      : cuda.gpu
        ? 'a GPU is present but the CUDA execution provider is not installed (install it with ONNXRUNTIME_NODE_INSTALL=cuda12 scripts/setup.sh)'
        : 'no CUDA execution provider installed and no GPU';
    if (choice === 'cuda') opts.log?.(`onnxruntime: CUDA was asked for but ${why}; using the CPU`);
    const session = await ort.InferenceSession.create(model, sessionOptions(['cpu'], threads));
    const note = `CPU execution provider (${why})`;
    opts.log?.(`onnxruntime: ${note}, ${threads ?? `default (${availableParallelism()} logical CPUs)`} threads`);
    return { session, provider: 'cpu', note, threads: threadNote };
  }
  const session = await ort.InferenceSession.create(model, sessionOptions(['cpu'], threads));
  const note = 'CPU execution provider (requested)';
  opts.log?.(`onnxruntime: ${note}`);
  return { session, provider: 'cpu', note, threads: threadNote };
}
