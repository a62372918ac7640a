import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobSpec } from '../../workers/jobSpec.js';
import { ImmunizeClient, type ClientJob } from '../client.js';
import type { Metrics } from '../../models/engine/index.js';
import type { CliCommand } from './args.js';
import { summaryLines } from './summary.js';

/** The client side of the service: upload local files, submit, follow, fetch. Returns the process exit code. */
export async function runRemote(
  cmd: CliCommand,
  write: (line: string) => void,
  progressLine: (text: string) => void,
  warn: (line: string) => void = () => {},
): Promise<number> {
  try {
    return await remoteCommand(cmd, write, progressLine, warn);
  } catch (err) {
    throw unreachable(err, cmd.remote!.url);
  }
}

/** fetch's "fetch failed" names neither the address nor what to do. */
function unreachable(err: unknown, url: string): unknown {
  const e = err as Error & { cause?: { code?: string } };
  if (!(e instanceof TypeError) || e.message !== 'fetch failed') return err;
  const why = e.cause?.code ? ` (${e.cause.code})` : '';
  return new Error(`cannot reach the service at ${url}${why}: start it with \`npm run serve\`, or point --url / IMMUNIZE_URL at a running one`);
}

async function remoteCommand(
  cmd: CliCommand,
  write: (line: string) => void,
  progressLine: (text: string) => void,
  warn: (line: string) => void,
): Promise<number> {
  const r = cmd.remote!;
  const client = new ImmunizeClient({ baseUrl: r.url, apiKey: r.apiKey });
  switch (cmd.command) {
    case 'submit': {
      const spec = await uploadInputs(client, cmd.spec!);
      const job = await client.submit(spec, r.idempotencyKey);
      write(cmd.json ? JSON.stringify({ type: 'submitted', ...job }) : `submitted job ${job.id} (${job.status})`);
      return r.watch ? follow(client, job.id, cmd.json, write, progressLine, warn) : 0;
    }
    case 'status': {
      const job = await client.status(r.jobId!);
      write(cmd.json ? JSON.stringify(job) : describe(job, await fullMetrics(client, job)));
      if (!cmd.json) warnIfNotImmunized(job, warn);
      return 0;
    }
    case 'watch':
      return follow(client, r.jobId!, cmd.json, write, progressLine, warn);
    case 'download': {
      const job = await client.status(r.jobId!);
      const names = r.name ? [r.name] : job.artifacts.map((a) => a.name);
      if (names.length === 0) throw new Error(`job ${job.id} has no artifacts yet (it is ${job.status})`);
      await mkdir(cmd.out!, { recursive: true });
      for (const name of names) {
        const got = await client.download(job.id, name, join(cmd.out!, name));
        write(
          cmd.json
            ? JSON.stringify({ type: 'downloaded', name, verified: true, ...got })
            : `${name}  ${got.bytes} bytes  sha256 ${got.sha256}  matches the job record`,
        );
      }
      return 0;
    }
    default:
      throw new Error(`not a remote command: ${cmd.command}`);
  }
}

/** Replaces every local path in the spec by the id of its upload (each file once). */
async function uploadInputs(client: ImmunizeClient, spec: JobSpec): Promise<JobSpec> {
  const ids = new Map<string, string>();
  const upload = async (path: string, kind: 'dataset' | 'backbone') => {
    const key = `${kind}:${path}`;
    if ((await stat(path).catch(() => null))?.isDirectory()) {
      throw new Error(`${path} is a folder; the service takes files: pack it as an uncompressed archive (tar -cf images.tar -C ${path} .) and submit that`);
    }
    if (!ids.has(key)) ids.set(key, (await client.upload(path, kind)).id);
    return ids.get(key)!;
  };
  const out: JobSpec = structuredClone(spec);
  for (const side of ['benign', 'harmful', 'benignTest'] as const) {
    const ref = out[side];
    if (!ref) continue;
    ref.dataset = await upload(ref.dataset, 'dataset');
    if (ref.labels) ref.labels = await upload(ref.labels, 'dataset');
  }
  if (out.backbone) out.backbone = await upload(out.backbone, 'backbone');
  return out;
}

async function follow(
  client: ImmunizeClient,
  id: string,
  json: boolean,
  write: (line: string) => void,
  progressLine: (text: string) => void,
  warn: (line: string) => void,
): Promise<number> {
  const job = await client.watch(id, (event, j) => {
    if (json) write(JSON.stringify({ type: 'event', event, id: j.id, status: j.status, progress: j.progress }));
    else progressLine(`${j.status} ${bar(j.progress)} ${(100 * j.progress).toFixed(0)}%`);
  });
  progressLine('');
  write(json ? JSON.stringify({ type: 'result', ...job }) : describe(job, await fullMetrics(client, job)));
  if (!json) warnIfNotImmunized(job, warn);
  if (job.status !== 'completed') return 1;
  return (job.metrics as { verdict?: string } | undefined)?.verdict === 'immunized' ? 0 : 3;
}

function bar(fraction: number, width = 30): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(filled).padEnd(width, '.')}]`;
}

/**
 * The job record carries a summary of the metrics; the full metrics.json (every attacker, the timings) is an
 * artifact, fetched here (checked against its sha256) so that the summary below matches a local run's.
 */
async function fullMetrics(client: ImmunizeClient, job: ClientJob): Promise<Metrics | undefined> {
  if (!job.artifacts.some((a) => a.name === 'metrics.json')) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'immunize-metrics-'));
  try {
    await client.download(job.id, 'metrics.json', join(dir, 'metrics.json'));
    return JSON.parse(await readFile(join(dir, 'metrics.json'), 'utf8')) as Metrics;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The job's state, then the same summary a local run prints once its metrics are there. */
function describe(job: ClientJob, full?: Metrics): string {
  const lines = [`job ${job.id}: ${job.status}, progress ${(100 * job.progress).toFixed(0)}%, attempts ${job.attempts}`];
  const m = job.metrics as Partial<Metrics> | undefined;
  if (full) lines.push(...summaryLines(full));
  else if (m?.verdict) lines.push(`verdict: ${String(m.verdict).toUpperCase()}`);
  if (job.error) lines.push(`error ${job.error.code}: ${job.error.message}`);
  if (job.artifacts.length > 0) lines.push('artifacts (download with `immunize download JOB`):');
  for (const a of job.artifacts) lines.push(`  ${a.name}  ${a.size} bytes  sha256 ${a.sha256}`);
  return lines.join('\n');
}

function warnIfNotImmunized(job: ClientJob, warn: (line: string) => void): void {
  const m = job.metrics as Partial<Metrics> | undefined;
  if (!m?.verdict || m.verdict === 'immunized') return;
  warn(`WARNING: verdict is ${m.verdict.toUpperCase()}: this θ does not immunize the backbone (${(m.verdictReasons ?? []).join('; ')})`);
}
