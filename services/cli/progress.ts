import type { StepEvent } from '../../models/engine/index.js';

/** A one-line progress bar on a TTY, JSON lines with --json, and nothing otherwise. */
export function progressReporter(mode: 'tty' | 'json' | 'quiet', stream: NodeJS.WriteStream = process.stderr) {
  let last = 0;
  return {
    observe(e: StepEvent): void {
      if (mode === 'json') {
        process.stdout.write(JSON.stringify({ type: 'progress', ...e }) + '\n');
        return;
      }
      if (mode !== 'tty') return;
      const now = Date.now();
      if (e.phase === 'optimize' && now - last < 50) return;
      last = now;
      const width = 30;
      const frac = e.of ? Math.min(1, (e.step ?? 0) / e.of) : 0;
      const bar = e.phase === 'optimize' && e.of ? `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ${e.step}/${e.of}` : '';
      const kappa = e.kappaBenign ? ` κ_P ${e.kappaBenign.toExponential(2)} κ_H ${e.kappaHarmful!.toExponential(2)}` : '';
      stream.write(`\r\x1b[K${e.phase} ${bar}${kappa}${e.message ? ' ' + e.message : ''}`);
    },
    end(): void {
      if (mode === 'tty') stream.write('\r\x1b[K');
    },
  };
}
