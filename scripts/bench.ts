/**
 * `npm run bench`: environment header, House Price per method, synthetic kernels against plain JS, the 784-d pixel
 * problem, and the default backbone job on a real trained ResNet-18 (when scripts/fixtures/trainBackbone.py has made
 * it). Tables go to stdout; `--json` prints one JSON document instead; progress goes to stderr when it is a terminal.
 */
import os from 'node:os';
import { ArgsError, parseArgs, USAGE, type Section } from './bench/args.js';
import { renderBackbone, runBackbone } from './bench/backbone.js';
import { benchEnvironment, loadNote, renderEnvironment } from './bench/environment.js';
import { num } from './bench/format.js';
import { renderHouse, runHouse } from './bench/house.js';
import { renderKernels, runKernels } from './bench/kernels.js';
import { renderPixels, runPixels } from './bench/pixels.js';

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof ArgsError)) throw err;
    process.stderr.write(`bench: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const progress = process.stderr.isTTY ? (msg: string) => process.stderr.write(`[bench] ${msg}\n`) : () => {};
  const print = (lines: string[]) => {
    if (!args.json) process.stdout.write(lines.join('\n') + '\n');
  };

  const started = performance.now();
  const environment = benchEnvironment();
  const mode = `${args.quick ? 'quick' : 'full'}; sections: ${args.sections.join(', ')}`;
  print(renderEnvironment(environment, mode));

  const report: Record<string, unknown> = { environment, quick: args.quick, sections: args.sections };
  const errors: Array<{ section: Section; message: string }> = [];
  let exitCode = 0;
  for (const section of args.sections) {
    try {
      if (section === 'house') {
        const r = await runHouse({ quick: args.quick, progress });
        report.house = r;
        print(renderHouse(r));
      } else if (section === 'kernels') {
        const r = runKernels({ quick: args.quick, progress });
        report.kernels = r;
        print(renderKernels(r));
        if (!r.allChecksOk) exitCode = 1;
      } else if (section === 'backbone') {
        const r = await runBackbone({ dir: args.backboneDir, progress });
        report.backbone = r;
        print(renderBackbone(r));
      } else {
        const r = runPixels({ progress });
        report.pixels = r;
        print(renderPixels(r));
      }
    } catch (err) {
      const e = err as Error;
      errors.push({ section, message: e.message });
      print(['', `${section}: FAILED: ${e.message}`]);
      exitCode = 1;
    }
  }
  const totalSeconds = (performance.now() - started) / 1000;
  report.errors = errors;
  report.totalSeconds = totalSeconds;
  report.loadAverageAtEnd = os.loadavg()[0];
  print(['', `total bench time: ${num(totalSeconds, 3)} s; load average at the end: ${loadNote(os.loadavg()[0], environment.logicalCpus)}`]);
  if (args.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  return exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
