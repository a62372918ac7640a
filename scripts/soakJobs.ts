#!/usr/bin/env node
/**
 * Soak check: many small jobs and two worker processes, one of which is SIGKILLed mid-run (while it holds a
 * longer job). Every job must still complete, none twice, with no duplicate artifact and no half-written file.
 *
 *   npm run soak:jobs -- --jobs 1000
 *
 * Needs Redis (REDIS_URL, default redis://127.0.0.1:6379); it uses a private key prefix and removes it after.
 * With --redis-crash it runs a Redis of its own instead and SIGKILLs that (scripts/soakRedisCrash.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createLogger } from '../services/logger.js';
import { matrix, soakEnv } from './soakEnv.js';
import { deleteByPrefix } from '../services/redis.js';
import { startServer, type RunningServer } from '../services/server.js';
import { describeRedisCrash, soakRedisCrash, type AppendFsync } from './soakRedisCrash.js';
import { handleUsage } from './usage.js';

export interface SoakOptions {
  jobs: number;
  /** Steps of the long job whose worker gets killed (paper method, D=32: about 0.6 ms a step). */
  longSteps: number;
  concurrency: number;
  lockMs: number;
  redisUrl: string;
  timeoutMs: number;
  log: (line: string) => void;
}

export interface SoakReport {
  submitted: number;
  completed: number;
  failed: number;
  cancelled: number;
  unfinished: number;
  /** Jobs whose record is gone. */
  lost: number;
  /** Jobs that list an artifact name more than once. */
  duplicateArtifactNames: number;
  /** Artifacts whose stored bytes do not match their recorded sha256 (or are missing). */
  badArtifacts: number;
  /** Attempt directories left behind by completed jobs. */
  leftoverAttempts: number;
  retried: number;
  maxAttempts: number;
  killedPid: number | null;
  killedJob: { id: string; attempts: number; status: string } | null;
  seconds: number;
}

const SERVER = fileURLToPath(new URL('../services/server.js', import.meta.url));
const KEY = `soak-${randomBytes(12).toString('hex')}`;
const AUTH = { authorization: `Bearer ${KEY}` };

interface JobDoc {
  id: string;
  status: string;
  attempts: number;
  progress: number;
  stage: { phase?: string; step?: number };
  artifacts: Array<{ name: string; sha256: string }>;
}

export async function soak(opts: SoakOptions): Promise<SoakReport> {
  const started = Date.now();
  const tag = randomBytes(5).toString('hex');
  const dataDir = await mkdtemp(join(tmpdir(), 'immunize-soak-'));
  const env = soakEnv({ redisUrl: opts.redisUrl, tag, dataDir, key: KEY, logLevel: 'warn', lockMs: opts.lockMs, concurrency: opts.concurrency });
  let api: RunningServer | null = null;
  const workers: ChildProcess[] = [];
  const exited = new Set<number>();
  try {
    api = await startServer('api', env, createLogger('warn', false));
    const url = api.url!;
    const call = async <T>(path: string, init: RequestInit = {}): Promise<{ status: number; body: T }> => {
      const res = await fetch(`${url}${path}`, { ...init, headers: { ...AUTH, ...(init.headers as Record<string, string>) } });
      return { status: res.status, body: (await res.json()) as T };
    };
    const upload = async (name: string, bytes: Buffer) => {
      const form = new FormData();
      form.append('file', new Blob([new Uint8Array(bytes)]), name);
      const r = await call<{ id: string }>('/v1/datasets', { method: 'POST', body: form });
      if (r.status !== 201) throw new Error(`upload ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.id;
    };
    const smallB = await upload('small-b.npy', matrix(50, 8, 1));
    const smallH = await upload('small-h.npy', matrix(50, 8, 2));
    const longB = await upload('long-b.npy', matrix(200, 32, 3));
    const longH = await upload('long-h.npy', matrix(200, 32, 4));

    for (let i = 0; i < 2; i++) {
      const child = spawn(process.execPath, [SERVER, '--role', 'worker'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
      child.on('exit', () => exited.add(child.pid!));
      workers.push(child);
    }

    const submit = async (spec: unknown) => {
      const r = await call<{ id: string }>('/v1/jobs', { method: 'POST', body: JSON.stringify(spec), headers: { 'content-type': 'application/json' } });
      if (r.status !== 202) throw new Error(`submit: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.id;
    };
    const longId = await submit({ benign: { dataset: longB }, harmful: { dataset: longH }, method: 'paper', steps: opts.longSteps });
    const ids: string[] = [longId];
    for (let i = 0; i < opts.jobs; i++) ids.push(await submit({ benign: { dataset: smallB }, harmful: { dataset: smallH }, method: 'closed-form', seed: i }));
    opts.log(`submitted ${ids.length} jobs (${opts.jobs} small + 1 long)`);

    const records = api.services.records;
    let killedPid: number | null = null;
    const deadline = started + opts.timeoutMs;
    let lastLine = 0;
    for (;;) {
      const all = await records.getJobs(ids);
      const finished = all.filter((r) => ['completed', 'failed', 'cancelled'].includes(r.status)).length;
      if (killedPid === null) {
        const long = all.find((r) => r.id === longId);
        const smallDone = all.filter((r) => r.id !== longId && r.status === 'completed').length;
        const pid = long?.worker ? Number(long.worker.split(':')[1]) : NaN;
        // Kill once a quarter of the small jobs are done, or earlier if the long job is about to end.
        const optimizing = long?.status === 'running' && long.progress.phase === 'optimize' && (long.progress.step ?? 0) > 0;
        if (optimizing && (smallDone >= Math.floor(opts.jobs / 4) || long!.progress.fraction >= 0.35)) {
          const victim = workers.find((w) => w.pid === pid);
          if (victim) {
            victim.kill('SIGKILL');
            killedPid = pid;
            opts.log(`SIGKILLed worker ${pid} at step ${long.progress.step} of the long job, with ${finished}/${ids.length} jobs finished`);
          }
        }
      }
      if (finished === ids.length && killedPid !== null) break;
      if (finished === ids.length && killedPid === null) {
        opts.log('every job finished before a worker could be killed (raise --long-steps)');
        break;
      }
      if (Date.now() > deadline) {
        opts.log(`timed out with ${finished}/${ids.length} finished`);
        break;
      }
      if (Date.now() - lastLine > 5000) {
        lastLine = Date.now();
        opts.log(`${finished}/${ids.length} finished`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }

    // Everything is read back through the API, as a client would.
    const report: SoakReport = {
      submitted: ids.length,
      completed: 0,
      failed: 0,
      cancelled: 0,
      unfinished: 0,
      lost: 0,
      duplicateArtifactNames: 0,
      badArtifacts: 0,
      leftoverAttempts: 0,
      retried: 0,
      maxAttempts: 0,
      killedPid,
      killedJob: null,
      seconds: 0,
    };
    for (const id of ids) {
      const r = await call<JobDoc>(`/v1/jobs/${id}`);
      if (r.status === 404) {
        report.lost++;
        continue;
      }
      const doc = r.body;
      if (doc.status === 'completed') report.completed++;
      else if (doc.status === 'failed') report.failed++;
      else if (doc.status === 'cancelled') report.cancelled++;
      else report.unfinished++;
      if (doc.attempts > 1) report.retried++;
      report.maxAttempts = Math.max(report.maxAttempts, doc.attempts);
      if (id === longId) report.killedJob = { id, attempts: doc.attempts, status: doc.status };
      const names = doc.artifacts.map((a) => a.name);
      if (new Set(names).size !== names.length) report.duplicateArtifactNames++;
      const record = await records.getJob(id);
      for (const a of record?.artifacts ?? []) {
        const bytes = await readFile(join(dataDir, 'jobs', id, 'artifacts', a.file)).catch(() => null);
        if (!bytes || createHash('sha256').update(bytes).digest('hex') !== a.sha256) report.badArtifacts++;
      }
      if (doc.status === 'completed') {
        const entries = await readdir(join(dataDir, 'jobs', id));
        if (entries.some((e) => e !== 'artifacts')) {
          const attempts = await readdir(join(dataDir, 'jobs', id, 'attempts')).catch(() => []);
          report.leftoverAttempts += attempts.length;
        }
      }
    }
    report.seconds = Math.round((Date.now() - started) / 100) / 10;
    return report;
  } finally {
    for (const w of workers) {
      if (!exited.has(w.pid!)) {
        let timer: NodeJS.Timeout | undefined;
        const gone = new Promise((r) => w.once('exit', r));
        w.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
        clearTimeout(timer);
        if (!exited.has(w.pid!)) w.kill('SIGKILL');
      }
    }
    await api?.close();
    const client = new Redis(opts.redisUrl, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    await deleteByPrefix(client, env.IMMUNIZE_REDIS_PREFIX).catch(() => undefined);
    client.disconnect();
    await rm(dataDir, { recursive: true, force: true });
  }
}

function arg(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} needs a non-negative integer`);
  return v;
}

const USAGE = `usage: npm run soak:jobs -- [--jobs N] [--long-steps N] [--concurrency N] [--lock-ms N] [--timeout-s N]
  submits N small jobs and one long one to a private queue, SIGKILLs a worker mid-job, and checks that every job
  completes exactly once (Redis from REDIS_URL, default redis://127.0.0.1:6379)

       npm run soak:jobs -- --redis-crash [--jobs N] [--appendfsync everysec|always|everysec,always] [--redis-kills N]
                            [--redis-down-ms N] [--clients N] [--no-retry] [--concurrency N] [--lock-ms N] [--timeout-s N]
  runs a redis-server of its own (a free port, its own AOF directory, appendonly yes; Debian's binary on PATH), has
  N small jobs (default 400) submitted by several clients while that Redis is SIGKILLed and started again from the
  same AOF, and checks that every acknowledged job (202) completes, runs to its end once, and has artifacts whose
  sha256 matches its record; one run per appendfsync policy given (default always, as docker-compose.yml has it).
  Redis is killed --redis-kills times (default 1) and kept down --redis-down-ms (2000); --clients (8) submit at once,
  and a refused submit is sent again with the same Idempotency-Key unless --no-retry`;

function policies(argv: string[]): AppendFsync[] {
  const i = argv.indexOf('--appendfsync');
  const list = (i < 0 ? 'always' : (argv[i + 1] ?? '')).split(',');
  for (const p of list)
    if (p !== 'everysec' && p !== 'always') throw new Error(`--appendfsync takes everysec, always or both (everysec,always), not ${JSON.stringify(p)}`);
  return list as AppendFsync[];
}

async function redisCrashMain(argv: string[]): Promise<void> {
  let list: AppendFsync[];
  try {
    list = policies(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  let ok = true;
  for (const appendfsync of list) {
    const report = await soakRedisCrash({
      jobs: arg(argv, 'jobs', 400),
      appendfsync,
      kills: arg(argv, 'redis-kills', 1),
      downMs: arg(argv, 'redis-down-ms', 2000),
      clients: arg(argv, 'clients', 8),
      retry: !argv.includes('--no-retry'),
      workers: 2,
      concurrency: arg(argv, 'concurrency', 2),
      lockMs: arg(argv, 'lock-ms', 2000),
      timeoutMs: arg(argv, 'timeout-s', 600) * 1000,
      log: (line) => process.stderr.write(`soak: ${line}\n`),
    });
    const d = describeRedisCrash(report);
    process.stdout.write(d.lines.join('\n') + '\n');
    ok &&= d.ok;
  }
  process.exitCode = ok ? 0 : 1;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const known = {
    flags: ['redis-crash', 'no-retry'],
    values: ['jobs', 'long-steps', 'concurrency', 'lock-ms', 'timeout-s', 'appendfsync', 'redis-kills', 'redis-down-ms', 'clients'],
  };
  if (!handleUsage(argv, known, USAGE)) return;
  if (argv.includes('--redis-crash')) return redisCrashMain(argv);
  const report = await soak({
    jobs: arg(argv, 'jobs', 1000),
    longSteps: arg(argv, 'long-steps', 60_000),
    concurrency: arg(argv, 'concurrency', 2),
    lockMs: arg(argv, 'lock-ms', 2000),
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    timeoutMs: arg(argv, 'timeout-s', 1800) * 1000,
    log: (line) => process.stderr.write(`soak: ${line}\n`),
  });
  const ok =
    report.completed === report.submitted &&
    report.lost === 0 &&
    report.duplicateArtifactNames === 0 &&
    report.badArtifacts === 0 &&
    report.leftoverAttempts === 0 &&
    report.killedPid !== null &&
    (report.killedJob?.attempts ?? 0) >= 2;
  process.stdout.write(
    [
      `submitted ${report.submitted}  completed ${report.completed}  failed ${report.failed}  cancelled ${report.cancelled}  unfinished ${report.unfinished}  lost ${report.lost}`,
      `worker SIGKILLed: ${report.killedPid ?? 'none'}; its long job ${report.killedJob?.id} ${report.killedJob?.status} after ${report.killedJob?.attempts} attempts`,
      `jobs retried ${report.retried} (max attempts ${report.maxAttempts})  duplicate artifact names ${report.duplicateArtifactNames}  bad artifacts ${report.badArtifacts}  leftover attempt dirs ${report.leftoverAttempts}`,
      `${report.seconds} s  →  ${ok ? 'OK' : 'FAILED'}`,
    ].join('\n') + '\n',
  );
  process.exitCode = ok ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
}
