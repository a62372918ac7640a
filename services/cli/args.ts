import { parseArgs } from 'node:util';
import { parseJobSpec, type JobSpec } from '../../workers/jobSpec.js';

export class UsageError extends Error {
  readonly code = 'USAGE';
}

export const USAGE = `usage:
  immunize run --benign FILE --harmful FILE [--benign-labels FILE | --benign-label-column NAME]
               [--harmful-labels FILE | --harmful-label-column NAME] [--drop-columns A,B] [--benign-test FILE]
               [--task regression|binary|multiclass] [--method closed-form|gradient|paper] [--steps N]
               [--kappa-budget X] [--seed N] [--init identity|random] [--json] [--debug] --out DIR
  immunize evaluate --benign FILE --harmful FILE --theta theta.safetensors [label options] [--json] --out DIR
  immunize demo house-price [--method closed-form|gradient|paper] [--json] --out DIR

exit codes: 0 immunized, 3 weak or infeasible (artifacts still written), 1 error`;

const OPTIONS = {
  benign: { type: 'string' },
  harmful: { type: 'string' },
  'benign-labels': { type: 'string' },
  'benign-label-column': { type: 'string' },
  'harmful-labels': { type: 'string' },
  'harmful-label-column': { type: 'string' },
  'drop-columns': { type: 'string' },
  'benign-test': { type: 'string' },
  task: { type: 'string' },
  method: { type: 'string' },
  steps: { type: 'string' },
  'kappa-budget': { type: 'string' },
  seed: { type: 'string' },
  init: { type: 'string' },
  theta: { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean', default: false },
  debug: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export interface CliCommand {
  command: 'run' | 'evaluate' | 'demo' | 'help';
  spec?: JobSpec;
  demo?: string;
  method?: JobSpec['method'];
  theta?: string;
  out?: string;
  json: boolean;
  debug: boolean;
}

function number(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} expects a number, got ${JSON.stringify(value)}`);
  return n;
}

export function parseCli(argv: string[]): CliCommand {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values: v, positionals } = parsed;
  const [command, ...rest] = positionals;
  const json = v.json ?? false;
  const debug = v.debug ?? false;
  if (v.help || command === undefined || command === 'help') return { command: 'help', json, debug };
  if (command !== 'run' && command !== 'evaluate' && command !== 'demo') throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  if (!v.out) throw new UsageError('--out DIR is required');
  if (command === 'demo') {
    if (rest[0] !== 'house-price') throw new UsageError(`unknown demo ${JSON.stringify(rest[0] ?? '')}: the available demo is house-price`);
    const method = v.method as JobSpec['method'] | undefined;
    if (method && !['closed-form', 'gradient', 'paper'].includes(method)) throw new UsageError(`--method must be closed-form, gradient or paper`);
    return { command, demo: rest[0], method, out: v.out, json, debug };
  }
  if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
  if (!v.benign || !v.harmful) throw new UsageError('--benign FILE and --harmful FILE are required');
  if (command === 'evaluate' && !v.theta) throw new UsageError('evaluate needs --theta theta.safetensors');
  const drop = v['drop-columns'] ? v['drop-columns'].split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  // One --drop-columns list serves both files, so a side's own label column is never dropped from it.
  const dropFor = (label?: string) => drop?.filter((c) => c !== label);
  const raw: Record<string, unknown> = {
    benign: { dataset: v.benign, labels: v['benign-labels'], labelColumn: v['benign-label-column'], dropColumns: dropFor(v['benign-label-column']) },
    harmful: { dataset: v.harmful, labels: v['harmful-labels'], labelColumn: v['harmful-label-column'], dropColumns: dropFor(v['harmful-label-column']) },
    benignTest: v['benign-test']
      ? { dataset: v['benign-test'], labelColumn: v['benign-label-column'], dropColumns: dropFor(v['benign-label-column']) }
      : undefined,
    task: v.task,
    method: v.method,
    steps: number('steps', v.steps),
    kappaBudget: number('kappa-budget', v['kappa-budget']),
    seed: number('seed', v.seed),
    init: v.init,
  };
  const spec = parseJobSpec(JSON.parse(JSON.stringify(raw)));
  return { command, spec, theta: v.theta, out: v.out, json, debug };
}
