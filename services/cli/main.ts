#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import type { StepEvent } from '../../models/engine/index.js';
import { loadHousePrice } from '../../models/io/index.js';
import { DirectorySink } from '../../workers/artifacts.js';
import { runJob } from '../../workers/modes.js';
import type { JobResult } from '../../workers/processorDeps.js';
import { parseJobSpec } from '../../workers/jobSpec.js';
import { parseCli, USAGE, UsageError } from './args.js';
import { backboneDemoCommand } from './demoBackbone.js';
import { progressReporter } from './progress.js';
import { runRemote } from './remote.js';
import { summaryLines } from './summary.js';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const HOUSE_PRICE_DIR = join(PACKAGE_ROOT, 'data', 'house_price');

/** Node's file errors name the syscall, not what to do. */
function oneLine(e: Error & { code?: string; path?: string }): string {
  if (e.code === 'ENOENT' && e.path) return `${e.path}: no such file or folder (check the path)`;
  if (e.code === 'EACCES' && e.path) return `${e.path}: permission denied`;
  if (e.code === 'EISDIR' && e.path) return `${e.path} is a folder; a file was expected here`;
  return e.message;
}

export async function main(argv: string[]): Promise<number> {
  let debug = argv.includes('--debug');
  try {
    const cmd = parseCli(argv);
    debug = cmd.debug;
    if (cmd.command === 'help') {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (cmd.remote) {
      const tty = !cmd.json && process.stderr.isTTY;
      return await runRemote(
        cmd,
        (line) => process.stdout.write(line + '\n'),
        (text) => {
          if (tty) process.stderr.write(`\r\x1b[K${text}`);
        },
        (line) => process.stderr.write(line + '\n'),
      );
    }
    const mode = cmd.json ? 'json' : process.stderr.isTTY ? 'tty' : 'quiet';
    const progress = progressReporter(mode);
    const sink = new DirectorySink(cmd.out!);
    const deps = { sink, observe: (e: StepEvent) => progress.observe(e) };
    if (cmd.command === 'demo' && cmd.demo === 'backbone') {
      const code = await backboneDemoCommand(cmd, deps.observe);
      progress.end();
      return code;
    }
    let result: JobResult;
    if (cmd.command === 'demo') {
      const hp = await loadHousePrice(HOUSE_PRICE_DIR);
      const spec = parseJobSpec({
        benign: { dataset: join(HOUSE_PRICE_DIR, 'D1.csv'), labelColumn: 'LotArea', dropColumns: ['SalePrice'], rowLimit: 200 },
        harmful: { dataset: join(HOUSE_PRICE_DIR, 'D2.csv'), labelColumn: 'SalePrice', dropColumns: ['LotArea'], rowLimit: 200 },
        method: cmd.method,
      });
      // The demo also scores D1.csv's held-out rows 200–299, which a spec cannot name: its data come already loaded.
      const input = { benign: hp.benign, harmful: hp.harmful, benignTest: hp.benignTest };
      result = await runJob(spec, deps, undefined, { input, report: { paperRow: true, title: 'House Price demo' } });
    } else {
      result = await runJob(cmd.spec!, deps, undefined, { theta: cmd.command === 'evaluate' ? cmd.theta : undefined });
    }
    progress.end();
    const m = result.metrics;
    if (cmd.json) {
      process.stdout.write(
        JSON.stringify({
          type: 'result',
          out: cmd.out,
          verdict: m.verdict,
          rir: m.rir,
          benignRatio: m.benignRatio,
          harmfulRatio: m.harmfulRatio,
          artifacts: result.artifacts,
        }) + '\n',
      );
    } else {
      process.stdout.write(summaryLines(m, { paperRow: cmd.command === 'demo' }).join('\n') + '\n');
      process.stdout.write(`artifacts in ${cmd.out}: ${result.artifacts.map((a) => a.name).join(', ')}\n`);
    }
    if (m.verdict !== 'immunized') {
      const what = 'mode' in m && m.mode === 'last-block' ? 'the trained block does' : 'this θ does';
      process.stderr.write(`WARNING: verdict is ${m.verdict.toUpperCase()}: ${what} not immunize the backbone (${m.verdictReasons.join('; ')})\n`);
      return 3;
    }
    return 0;
  } catch (err) {
    const e = err as Error & { code?: string; path?: string };
    process.stderr.write(`immunize: ${oneLine(e)}\n`);
    if (err instanceof UsageError) process.stderr.write(USAGE + '\n');
    if (debug && e.stack) process.stderr.write(e.stack + '\n');
    return 1;
  }
}

/**
 * True when this module is the program node was asked to run. npx, `npm install -g` and node_modules/.bin reach it
 * through a symlink, so argv[1] is the link while import.meta.url is the real file: compare real paths.
 */
function runAsProgram(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/** As a process killed by SIGPIPE exits in a shell (128 + 13). */
const EXIT_STDOUT_CLOSED = 141;

if (runAsProgram()) {
  // A reader that stops early (`| head`) closes stdout: stop there, as command-line tools do, without a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(EXIT_STDOUT_CLOSED);
  });
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
