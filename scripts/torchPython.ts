/**
 * Finds a Python that can import torch and torchvision, for the benchmarks' PyTorch side. The `python3` first on PATH
 * may lack them while Debian's own interpreter (the one `dpkg -L python3-minimal` lists) has them, so the candidates
 * are, in order: $IMMUNIZE_PYTHON, `python3` on PATH, Debian's python3, /usr/bin/python3.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TorchPython {
  /** The interpreter to run. */
  python: string;
  torch: string;
  torchvision: string;
}

async function debianPython(): Promise<string[]> {
  try {
    const { stdout } = await run('dpkg', ['-L', 'python3-minimal'], { timeout: 10_000 });
    return stdout.split('\n').filter((line) => /^\/usr\/bin\/python3(\.\d+)?$/.test(line.trim()));
  } catch {
    return [];
  }
}

async function versions(python: string): Promise<TorchPython | null> {
  try {
    const { stdout } = await run(python, ['-c', 'import torch, torchvision; print(torch.__version__, torchvision.__version__)'], { timeout: 60_000 });
    const [torch, torchvision] = stdout.trim().split(/\s+/);
    return torch && torchvision ? { python, torch, torchvision } : null;
  } catch {
    return null;
  }
}

let found: Promise<{ found: TorchPython | null; tried: string[] }> | undefined;

/** The first candidate with torch, and every candidate tried (for the message when there is none). */
export function findTorchPython(): Promise<{ found: TorchPython | null; tried: string[] }> {
  found ??= (async () => {
    const candidates = [process.env.IMMUNIZE_PYTHON, 'python3', ...(await debianPython()), '/usr/bin/python3'].filter((p): p is string => !!p);
    const tried = [...new Set(candidates)];
    for (const python of tried) {
      const v = await versions(python);
      if (v) return { found: v, tried };
    }
    return { found: null, tried };
  })();
  return found;
}
