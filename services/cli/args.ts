import { parseArgs } from 'node:util';
import { parseJobSpec, type JobSpec, type ModeJobSpec } from '../../workers/jobSpec.js';

export class UsageError extends Error {
  readonly code = 'USAGE';
}

/** A missing API key is not a usage mistake worth the whole usage text: one line says what to do. */
export class MissingApiKeyError extends Error {
  readonly code = 'NO_API_KEY';
}

export const USAGE = `usage:
  immunize run --benign DATA --harmful DATA [--benign-labels FILE | --benign-label-column NAME]
               [--harmful-labels FILE | --harmful-label-column NAME] [--drop-columns A,B] [--benign-test FILE [--benign-test-labels FILE]]
               [--row-limit N] [--task regression|binary|multiclass] [--method spectral|closed-form|gradient|paper] [--steps N]
               [--kappa-budget X] [--seed N] [--init identity|random] [--json] [--debug] --out DIR
  immunize run --backbone MODEL.onnx --benign IMAGES --harmful IMAGES [--feature-tensor NAME]
               [--benign-labels FILE] [--harmful-labels FILE] [--resize N] [--crop N] [--mean R,G,B] [--std R,G,B]
               [engine options] --out DIR
      IMAGES: a float32 N×C×H×W .npy, or a folder or uncompressed .tar of PNG/JPEG (class subfolders give labels);
      image files are resized (shorter side 256), centre-cropped (224) and normalized with the ImageNet mean/std
      unless the flags say otherwise; writes DIR/immunized.onnx besides the other artifacts
  immunize run --mode last-block --backbone MODEL.onnx --benign IMAGES --harmful IMAGES [--cut-tensor NAME]
               [--benign-labels FILE] [--steps N] [--seed N] [--allow-slow-backend] [--time-budget SECONDS] --out DIR
      trains the backbone's last block (tfjs) instead of adding θ; immunized.onnx carries the trained weights
  immunize evaluate --benign FILE --harmful FILE --theta theta.safetensors [label options] [--json] --out DIR
  immunize demo house-price [--method spectral|closed-form|gradient|paper] [--json] --out DIR
  immunize demo backbone [--quick] [--json] --out DIR
      the bundled ViT (data/backbone/vit-fmnist): a linear-head job, then a last-block job, in DIR/linear-head and DIR/last-block

talking to a running service (--url or IMMUNIZE_URL, default http://127.0.0.1:8080; --api-key or IMMUNIZE_API_KEY):
  immunize submit --benign FILE --harmful FILE [run options] [--idempotency-key KEY] [--watch] [--json]
  immunize status JOB [--json]
  immunize watch JOB [--json]
  immunize download JOB [--name ARTIFACT] [--out DIR]

exit codes: 0 immunized, 3 weak or infeasible (artifacts still written), 1 error, 141 stdout closed before the end (as by | head)`;

const OPTIONS = {
  benign: { type: 'string' },
  harmful: { type: 'string' },
  'benign-labels': { type: 'string' },
  'benign-label-column': { type: 'string' },
  'harmful-labels': { type: 'string' },
  'harmful-label-column': { type: 'string' },
  'drop-columns': { type: 'string' },
  'benign-test': { type: 'string' },
  'benign-test-labels': { type: 'string' },
  'row-limit': { type: 'string' },
  task: { type: 'string' },
  method: { type: 'string' },
  steps: { type: 'string' },
  'kappa-budget': { type: 'string' },
  seed: { type: 'string' },
  init: { type: 'string' },
  theta: { type: 'string' },
  backbone: { type: 'string' },
  'feature-tensor': { type: 'string' },
  mode: { type: 'string' },
  'cut-tensor': { type: 'string' },
  'allow-slow-backend': { type: 'boolean' },
  'time-budget': { type: 'string' },
  resize: { type: 'string' },
  crop: { type: 'string' },
  mean: { type: 'string' },
  std: { type: 'string' },
  out: { type: 'string' },
  url: { type: 'string' },
  'api-key': { type: 'string' },
  'idempotency-key': { type: 'string' },
  name: { type: 'string' },
  watch: { type: 'boolean', default: false },
  quick: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  debug: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export type RemoteCommand = 'submit' | 'status' | 'watch' | 'download';

export interface RemoteOptions {
  url: string;
  apiKey: string;
  jobId?: string;
  idempotencyKey?: string;
  name?: string;
  watch: boolean;
}

export interface CliCommand {
  command: 'run' | 'evaluate' | 'demo' | 'help' | RemoteCommand;
  remote?: RemoteOptions;
  spec?: ModeJobSpec;
  demo?: string;
  /** demo backbone: fewer last-block steps, to check the path quickly. */
  quick?: boolean;
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
  const remoteCommands: string[] = ['submit', 'status', 'watch', 'download'];
  if (command !== 'run' && command !== 'evaluate' && command !== 'demo' && !remoteCommands.includes(command)) {
    throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
  if (remoteCommands.includes(command)) return parseRemote(command as RemoteCommand, v, rest, json, debug);
  if (!v.out) throw new UsageError('--out DIR is required');
  if (command === 'demo') {
    if (rest[0] === 'backbone') {
      if (v.method) throw new UsageError('--method applies to demo house-price; demo backbone runs the defaults of each mode');
      return { command, demo: rest[0], quick: v.quick, out: v.out, json, debug };
    }
    if (v.quick) throw new UsageError('--quick applies to demo backbone');
    if (rest[0] !== 'house-price') throw new UsageError(`unknown demo ${JSON.stringify(rest[0] ?? '')}: the available demos are house-price and backbone`);
    const method = v.method as JobSpec['method'] | undefined;
    if (method && !['spectral', 'closed-form', 'gradient', 'paper'].includes(method))
      throw new UsageError(`--method must be spectral, closed-form, gradient or paper`);
    return { command, demo: rest[0], method, out: v.out, json, debug };
  }
  if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
  if (command === 'evaluate' && !v.theta) throw new UsageError('evaluate needs --theta theta.safetensors');
  if (command === 'evaluate' && v.backbone) throw new UsageError('evaluate takes precomputed features, not --backbone');
  return { command: command as 'run' | 'evaluate', spec: specFromFlags(v), theta: v.theta, out: v.out, json, debug };
}

type Flags = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

function parseRemote(command: RemoteCommand, v: Flags, rest: string[], json: boolean, debug: boolean): CliCommand {
  const url = v.url ?? process.env.IMMUNIZE_URL ?? 'http://127.0.0.1:8080';
  const apiKey = v['api-key'] ?? process.env.IMMUNIZE_API_KEY;
  if (!apiKey)
    throw new MissingApiKeyError('no API key: pass --api-key KEY or set IMMUNIZE_API_KEY to one of the keys the service was started with (IMMUNIZE_API_KEYS)');
  const remote: RemoteOptions = { url, apiKey, idempotencyKey: v['idempotency-key'], name: v.name, watch: v.watch ?? false };
  if (command === 'submit') {
    if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
    return { command, remote, spec: specFromFlags(v), json, debug };
  }
  if (rest.length !== 1) throw new UsageError(`${command} needs exactly one JOB id`);
  remote.jobId = rest[0];
  return { command, remote, out: v.out ?? '.', json, debug };
}

function numbers(name: string, value: string | undefined): number[] | undefined {
  return value === undefined ? undefined : value.split(',').map((part) => number(name, part)!);
}

function preprocessFromFlags(v: Flags): Record<string, unknown> | undefined {
  const p = { resize: number('resize', v.resize), crop: number('crop', v.crop), mean: numbers('mean', v.mean), std: numbers('std', v.std) };
  if (Object.values(p).every((x) => x === undefined)) return undefined;
  if (!v.backbone) throw new UsageError('--resize, --crop, --mean and --std need --backbone');
  return p;
}

function specFromFlags(v: Flags): ModeJobSpec {
  if (!v.benign || !v.harmful) throw new UsageError('--benign FILE and --harmful FILE are required');
  if (v['feature-tensor'] && !v.backbone) throw new UsageError('--feature-tensor needs --backbone');
  if (v.mode !== undefined && v.mode !== 'linear-head' && v.mode !== 'last-block')
    throw new UsageError(`--mode must be linear-head or last-block, got ${JSON.stringify(v.mode)}`);
  const deep = v.mode === 'last-block';
  for (const flag of ['cut-tensor', 'allow-slow-backend', 'time-budget'] as const) {
    if (v[flag] !== undefined && !deep) throw new UsageError(`--${flag} needs --mode last-block`);
  }
  if (deep && !v.backbone) throw new UsageError('--mode last-block needs --backbone MODEL.onnx');
  if (v['benign-test-labels'] && !v['benign-test']) throw new UsageError('--benign-test-labels needs --benign-test FILE');
  // The same first N rows of each file that REST's rowLimit takes (the House Price demo uses 200).
  const rowLimit = number('row-limit', v['row-limit']);
  const drop = v['drop-columns']
    ? v['drop-columns']
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
  // One --drop-columns list serves both files, so a side's own label column is never dropped from it.
  const dropFor = (label?: string) => drop?.filter((c) => c !== label);
  const raw: Record<string, unknown> = {
    backbone: v.backbone,
    featureTensor: v['feature-tensor'],
    mode: v.mode,
    cutTensor: v['cut-tensor'],
    allowSlowBackend: v['allow-slow-backend'],
    timeBudgetSeconds: number('time-budget', v['time-budget']),
    preprocess: preprocessFromFlags(v),
    benign: { dataset: v.benign, labels: v['benign-labels'], labelColumn: v['benign-label-column'], dropColumns: dropFor(v['benign-label-column']), rowLimit },
    harmful: {
      dataset: v.harmful,
      labels: v['harmful-labels'],
      labelColumn: v['harmful-label-column'],
      dropColumns: dropFor(v['harmful-label-column']),
      rowLimit,
    },
    benignTest: v['benign-test']
      ? {
          dataset: v['benign-test'],
          labels: v['benign-test-labels'],
          labelColumn: v['benign-test-labels'] ? undefined : v['benign-label-column'],
          dropColumns: dropFor(v['benign-label-column']),
        }
      : undefined,
    task: v.task,
    method: v.method,
    steps: number('steps', v.steps),
    kappaBudget: number('kappa-budget', v['kappa-budget']),
    seed: number('seed', v.seed),
    init: v.init,
  };
  return parseJobSpec(JSON.parse(JSON.stringify(raw)));
}
