/**
 * The tfjs backend a deep-mode job trains on. Native TensorFlow (tfjs-node-gpu, then tfjs-node) is optional: its
 * install downloads libtensorflow, so it is imported only when present. Without it, our own `native` backend
 * (tfjs-backend-cpu with the heavy kernels over OpenBLAS sgemm in the addon), then wasm, then the plain JS cpu
 * backend. A backend that lacks a gradient kernel the tail needs is passed over, with the reason.
 */
import type * as TF from '@tensorflow/tfjs';

export type Tf = typeof TF;

export interface TfBackend {
  tf: Tf;
  /** tfjs-node-gpu, tfjs-node, native, wasm or cpu. */
  name: 'tfjs-node-gpu' | 'tfjs-node' | 'native' | 'wasm' | 'cpu';
  /** The tfjs backend id ('tensorflow', 'native', 'wasm', 'cpu'). */
  id: string;
  /** Compiled kernels for the heavy operators (TensorFlow's, or our sgemm ones), not JS or wasm. */
  native: boolean;
  /** Why this backend, and why not the ones before it. */
  note: string;
}

export interface BackendOptions {
  /** Kernels the job needs (forward and gradient), e.g. Conv2DBackpropFilter for a conv tail. */
  kernels?: string[];
  /** Restrict the search, e.g. ['cpu'] in tests. */
  only?: Array<TfBackend['name']>;
  log?: (message: string) => void;
}

const ORDER: Array<TfBackend['name']> = ['tfjs-node-gpu', 'tfjs-node', 'native', 'wasm', 'cpu'];

/** A module name the type checker does not try to resolve: these packages are optional. */
async function optionalImport(name: string): Promise<unknown> {
  return import(name);
}

async function plainTf(): Promise<Tf> {
  return (await import('@tensorflow/tfjs')) as Tf;
}

/**
 * tfjs's cpu backend (and so our native one, built on it) prints an advert for tfjs-node on its first tensor in
 * Node; the job log says it more precisely.
 */
function quiet(tf: Tf): void {
  const backend = tf.backend() as unknown as { firstUse?: boolean };
  if (backend && typeof backend.firstUse === 'boolean') backend.firstUse = false;
}

function missingKernels(tf: Tf, id: string, kernels: string[]): string[] {
  return kernels.filter((k) => !tf.getKernel(k, id));
}

export async function selectBackend(opts: BackendOptions = {}): Promise<TfBackend> {
  const kernels = opts.kernels ?? [];
  const skipped: string[] = [];
  for (const name of ORDER) {
    if (opts.only && !opts.only.includes(name)) continue;
    try {
      let tf: Tf;
      let id: string;
      if (name === 'tfjs-node-gpu' || name === 'tfjs-node') {
        const pkg = `@tensorflow/${name}`;
        let mod: unknown;
        try {
          mod = await optionalImport(pkg);
        } catch {
          skipped.push(`${name} is not installed`);
          continue;
        }
        tf = ((mod as { default?: Tf }).default ?? mod) as Tf;
        id = 'tensorflow';
      } else {
        tf = await plainTf();
        if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
        if (name === 'native') (await import('./nativeBackend.js')).registerNativeBackend(tf);
        id = name;
      }
      if (!(await tf.setBackend(id))) {
        skipped.push(`${name} failed to initialise`);
        continue;
      }
      await tf.ready();
      if (id === 'cpu' || id === 'native') quiet(tf);
      const missing = missingKernels(tf, id, kernels);
      if (missing.length > 0) {
        skipped.push(`${name} lacks ${missing.join(', ')}`);
        continue;
      }
      const note = skipped.length > 0 ? `${name} (${skipped.join('; ')})` : name;
      opts.log?.(`tfjs backend: ${note}`);
      return { tf, name, id, native: id === 'tensorflow' || id === 'native', note };
    } catch (err) {
      skipped.push(`${name} failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  }
  throw new Error(`no usable tfjs backend: ${skipped.join('; ')}`);
}

/** What to install for a fast deep-mode job, in words. */
export const FAST_BACKEND_ADVICE =
  'install @tensorflow/tfjs-node-gpu@4.22.0 on a CUDA host (libtensorflow 2.9.1: CUDA 11.2, cuDNN 8.1), or @tensorflow/tfjs-node@4.22.0 for native CPU kernels; see the README, "Deep mode (last block)"';
