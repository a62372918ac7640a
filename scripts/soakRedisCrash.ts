/**
 * Soak check of a Redis crash: a Redis of its own (a free port, its own AOF directory, appendonly yes, the
 * appendfsync policy under test), the API in this process and worker processes pointed at it. Clients submit small
 * jobs while Redis is SIGKILLed mid-run and started again from the same AOF. Afterwards every acknowledged job (a
 * 202 answered) must be complete, run to its end once, with artifacts whose bytes match the sha256 in its record.
 *
 *   npm run soak:jobs -- --redis-crash --jobs 400 --appendfsync everysec,always
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../services/logger.js';
import { matrix, soakEnv } from './soakEnv.js';
import { startServer, type RunningServer } from '../services/server.js';
import { startPrivateRedis, type PrivateRedis } from './privateRedis.js';
import { JOB_END_MESSAGES } from '../workers/queueWorker.js';

export type AppendFsync = 'everysec' | 'always';

export interface RedisCrashOptions {
  jobs: number;
  appendfsync: AppendFsync;
  /** How many times Redis is SIGKILLed, spread over the submissions. */
  kills: number;
  /** How long Redis stays down after each kill. */
  downMs: number;
  /** Clients submitting at once. */
  clients: number;
  /** A submit that is not answered 202 is sent again with the same Idempotency-Key, as a careful client does. */
  retry: boolean;
  workers: number;
  concurrency: number;
  lockMs: number;
  timeoutMs: number;
  log: (line: string) => void;
}

export interface RedisCrashReport {
  appendfsync: AppendFsync;
  /** Submit requests sent, retries included. */
  requests: number;
  /** Jobs answered 202 (each counted once, whatever the retries). */
  acknowledged: number;
  /** Requests answered otherwise (503 while Redis was down) or not answered at all. */
  refused: number;
  completed: number;
  /** Acknowledged but not completed, by what became of them. */
  lost: { total: number; recordMissing: number; failed: number; cancelled: number; unfinished: number; acknowledgedOnRetry: number };
  /** Jobs a worker started more than once (a run cut short by the crash, taken up again). */
  restarted: number;
  /** Jobs run to their end more than once. */
  runTwice: number;
  /** Runs to the end the workers logged for the acknowledged jobs, all together. */
  runsToEnd: number;
  /** Jobs whose record lists an artifact name twice, or whose artifact folder holds files it does not list. */
  duplicateArtifacts: number;
  /** Artifacts whose bytes are missing or do not match the sha256 in the job record. */
  badHashes: number;
  /** Job records that no acknowledgement stands for (a refused submit that left its record behind). */
  unacknowledgedRecords: number;
  /** The ids of the lost jobs (the first few), with what their record and the queue say. */
  lostJobs: Array<{ id: string; status: string; queue: string | null; requests: number }>;
  kills: Array<{ atAcknowledged: number; inFlightJobs: number; delayedFsyncs: string | null; downMs: number }>;
  /** Submit latency of the 202 answers, and the acknowledgement rate while submitting. */
  submitMs: { p50: number; p99: number; max: number };
  ackPerSecond: number;
  /** Commands Redis processed over the run (every life of it), per acknowledged job. */
  redisCommandsPerJob: number;
  /** Warnings the workers logged, by message. */
  workerWarnings: Record<string, number>;
  seconds: number;
}

const SERVER = fileURLToPath(new URL('../services/server.js', import.meta.url));
const KEY = `soak-${randomBytes(12).toString('hex')}`;
const AUTH = { authorization: `Bearer ${KEY}` };

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

interface JobDoc {
  id: string;
  status: string;
  artifacts: Array<{ name: string; sha256: string }>;
}

const RAN_TO_END = new Set<string>([JOB_END_MESSAGES.completed, JOB_END_MESSAGES.completionUnrecorded, JOB_END_MESSAGES.anotherAttemptCommitted]);

/** What the workers' log lines say about each job. */
class WorkerLog {
  readonly started = new Map<string, number>();
  readonly ranToEnd = new Map<string, number>();
  readonly warnings: Record<string, number> = {};
  ready = 0;

  follow(child: ChildProcess): void {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let entry: { level?: number; msg?: string; jobId?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      const id = entry.jobId;
      const bump = (m: Map<string, number>) => id && m.set(id, (m.get(id) ?? 0) + 1);
      if (entry.msg === 'queue worker started') this.ready++;
      if (entry.msg === 'job started') bump(this.started);
      // Each means the engine ran the job to its end: the first attempt to commit (whether or not its completion could
      // be recorded then), and any later one.
      if (entry.msg !== undefined && RAN_TO_END.has(entry.msg)) bump(this.ranToEnd);
      if ((entry.level ?? 0) >= 40 && entry.msg) {
        const key = entry.msg.replace(/job_[0-9A-Za-z]+/g, 'job_…').slice(0, 120);
        this.warnings[key] = (this.warnings[key] ?? 0) + 1;
      }
    });
  }
}

export async function soakRedisCrash(opts: RedisCrashOptions): Promise<RedisCrashReport> {
  const started = Date.now();
  const tag = randomBytes(5).toString('hex');
  const dataDir = await mkdtemp(join(tmpdir(), 'immunize-soak-'));
  const redisDir = await mkdtemp(join(tmpdir(), 'immunize-soak-redis-'));
  let redis: PrivateRedis | null = null;
  let api: RunningServer | null = null;
  const workers: ChildProcess[] = [];
  const workerLog = new WorkerLog();
  try {
    redis = await startPrivateRedis({
      dir: redisDir,
      args: ['--appendonly', 'yes', '--appendfsync', opts.appendfsync, '--maxmemory-policy', 'noeviction'],
    });
    opts.log(`Redis ${redis.url} (appendonly yes, appendfsync ${opts.appendfsync}, AOF in ${redisDir})`);
    const env = soakEnv({ redisUrl: redis.url, tag, dataDir, key: KEY, logLevel: 'info', lockMs: opts.lockMs, concurrency: opts.concurrency });
    // The API's own log would repeat, once per request, what the figures say: only errors.
    api = await startServer('api', env, createLogger('error', false));
    const url = api.url!;

    const upload = async (name: string, bytes: Buffer) => {
      const form = new FormData();
      form.append('file', new Blob([new Uint8Array(bytes)]), name);
      const res = await fetch(`${url}/v1/datasets`, { method: 'POST', body: form, headers: AUTH });
      if (res.status !== 201) throw new Error(`upload ${name}: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    };
    const benign = await upload('b.npy', matrix(50, 8, 1));
    const harmful = await upload('h.npy', matrix(50, 8, 2));

    for (let i = 0; i < opts.workers; i++) {
      const child = spawn(process.execPath, [SERVER, '--role', 'worker'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      workerLog.follow(child);
      workers.push(child);
    }
    // Submitting starts once every worker takes jobs, so that the crash finds jobs running.
    const readyBy = Date.now() + 60_000;
    while (workerLog.ready < opts.workers) {
      if (Date.now() > readyBy) throw new Error(`only ${workerLog.ready} of ${opts.workers} workers started within 60 s`);
      await new Promise((r) => setTimeout(r, 50));
    }

    // ---- clients: each job slot is submitted until it is acknowledged (or once, without --retry) -------------
    const acked = new Map<number, string>();
    const tries = new Map<string, number>();
    const latencies: number[] = [];
    let requests = 0;
    let refused = 0;
    let next = 0;
    let firstAck = 0;
    let lastAck = 0;
    const submitDeadline = started + opts.timeoutMs / 2;
    const submitOne = async (slot: number) => {
      const body = JSON.stringify({ benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form', seed: slot });
      const headers = { ...AUTH, 'content-type': 'application/json', 'idempotency-key': `soak-${tag}-${slot}` };
      for (let n = 1; ; n++) {
        requests++;
        const t0 = performance.now();
        const res = await fetch(`${url}/v1/jobs`, { method: 'POST', body, headers }).catch(() => null);
        const text = res ? await res.text().catch(() => '') : '';
        if (res?.status === 202) {
          latencies.push(performance.now() - t0);
          const id = (JSON.parse(text) as { id: string }).id;
          acked.set(slot, id);
          tries.set(id, n);
          lastAck = Date.now();
          firstAck ||= lastAck;
          return;
        }
        refused++;
        if (!opts.retry || Date.now() > submitDeadline) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const clients = Array.from({ length: opts.clients }, async () => {
      while (next < opts.jobs) await submitOne(next++);
    });
    const submitting = Promise.all(clients);

    // ---- the crashes: SIGKILL Redis once a share of the jobs is acknowledged, start it again after downMs -----
    const kills: RedisCrashReport['kills'] = [];
    const records = api.services.records;
    let commands = 0;
    // The soak's own reads of the records (one HGETALL a job) are not the service's: they are taken off.
    let ownReads = 0;
    const readRecords = (ids: string[]) => {
      ownReads += ids.length;
      return records.getJobs(ids);
    };
    const countCommands = async () => (commands += Number((await redis!.info('total_commands_processed')) ?? 0));
    const crashing = (async () => {
      for (let k = 1; k <= opts.kills; k++) {
        const at = Math.floor((opts.jobs * k) / (opts.kills + 1));
        while (acked.size < at && next < opts.jobs) await new Promise((r) => setTimeout(r, 5));
        const ids = [...acked.values()];
        const inFlight = (await readRecords(ids).catch(() => [])).filter((r) => r.status === 'running').length;
        const delayedFsyncs = await redis!.info('aof_delayed_fsync');
        await countCommands();
        await redis!.kill();
        const killedAt = Date.now();
        opts.log(`SIGKILLed Redis with ${acked.size}/${opts.jobs} jobs acknowledged, ${inFlight} running (aof_delayed_fsync ${delayedFsyncs})`);
        await new Promise((r) => setTimeout(r, opts.downMs));
        await redis!.restart();
        const downMs = Date.now() - killedAt;
        opts.log(`Redis back after ${downMs} ms, from the same AOF`);
        kills.push({ atAcknowledged: ids.length, inFlightJobs: inFlight, delayedFsyncs, downMs });
      }
    })();
    // Awaited below, after the clients; a failed restart must not go unhandled meanwhile.
    crashing.catch(() => undefined);
    await submitting;
    await crashing;
    opts.log(`${acked.size}/${opts.jobs} jobs acknowledged in ${requests} requests`);

    // ---- wait until every acknowledged job is finished, or nothing has changed for a while ------------------
    const ids = [...acked.values()];
    const quietMs = Math.max(30_000, 10 * opts.lockMs);
    let lastFinished = -1;
    let lastChange = Date.now();
    let lastLine = 0;
    for (;;) {
      const all = await readRecords(ids).catch(() => null);
      if (all) {
        const finished = all.filter((r) => ['completed', 'failed', 'cancelled'].includes(r.status)).length;
        if (finished !== lastFinished) {
          lastFinished = finished;
          lastChange = Date.now();
        }
        if (finished === ids.length && all.length === ids.length) break;
        // Every record there is has finished; a missing one does not come back.
        if (finished === all.length && Date.now() - lastChange > 5000) break;
        if (Date.now() - lastChange > quietMs) {
          opts.log(`nothing finished for ${quietMs / 1000} s: ${finished}/${ids.length} finished, ${ids.length - all.length} records missing`);
          break;
        }
        if (Date.now() - lastLine > 5000) {
          lastLine = Date.now();
          opts.log(`${finished}/${ids.length} finished`);
        }
      }
      if (Date.now() > started + opts.timeoutMs) {
        opts.log(`timed out with ${lastFinished}/${ids.length} finished`);
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }

    await countCommands();
    // ---- the checks, read back through the API as a client would --------------------------------------------
    const sorted = [...latencies].sort((a, b) => a - b);
    const report: RedisCrashReport = {
      appendfsync: opts.appendfsync,
      requests,
      acknowledged: ids.length,
      refused,
      completed: 0,
      lost: { total: 0, recordMissing: 0, failed: 0, cancelled: 0, unfinished: 0, acknowledgedOnRetry: 0 },
      restarted: 0,
      runTwice: 0,
      runsToEnd: 0,
      duplicateArtifacts: 0,
      badHashes: 0,
      unacknowledgedRecords: 0,
      lostJobs: [],
      kills,
      submitMs: { p50: Math.round(quantile(sorted, 0.5) * 10) / 10, p99: Math.round(quantile(sorted, 0.99) * 10) / 10, max: Math.round(sorted.at(-1) ?? 0) },
      ackPerSecond: lastAck > firstAck ? Math.round((ids.length / ((lastAck - firstAck) / 1000)) * 10) / 10 : 0,
      redisCommandsPerJob: ids.length > 0 ? Math.round((commands - ownReads) / ids.length) : 0,
      workerWarnings: workerLog.warnings,
      seconds: 0,
    };
    const loseOne = async (id: string, status: string) => {
      report.lost.total++;
      if ((tries.get(id) ?? 0) > 1) report.lost.acknowledgedOnRetry++;
      if (report.lostJobs.length < 10) {
        report.lostJobs.push({ id, status, queue: await api!.services.queue.state(id).catch(() => null), requests: tries.get(id) ?? 0 });
      }
    };
    for (const id of ids) {
      const res = await fetch(`${url}/v1/jobs/${id}`, { headers: AUTH });
      if (res.status === 404) {
        report.lost.recordMissing++;
        await loseOne(id, 'record missing');
        continue;
      }
      const doc = (await res.json()) as JobDoc;
      if (doc.status === 'completed') report.completed++;
      else {
        if (doc.status === 'failed') report.lost.failed++;
        else if (doc.status === 'cancelled') report.lost.cancelled++;
        else report.lost.unfinished++;
        await loseOne(id, doc.status);
      }
      if ((workerLog.started.get(id) ?? 0) > 1) report.restarted++;
      if ((workerLog.ranToEnd.get(id) ?? 0) > 1) report.runTwice++;
      report.runsToEnd += workerLog.ranToEnd.get(id) ?? 0;
      const record = await records.getJob(id);
      const listed = (record?.artifacts ?? []).map((a) => a.file);
      const names = doc.artifacts.map((a) => a.name);
      const onDisk = (await readdir(join(dataDir, 'jobs', id, 'artifacts')).catch(() => [] as string[])).filter((f) => f !== 'manifest.json');
      if (new Set(names).size !== names.length || onDisk.some((f) => !listed.includes(f))) report.duplicateArtifacts++;
      for (const a of record?.artifacts ?? []) {
        const bytes = await readFile(join(dataDir, 'jobs', id, 'artifacts', a.file)).catch(() => null);
        if (!bytes || createHash('sha256').update(bytes).digest('hex') !== a.sha256) report.badHashes++;
      }
    }
    // Every record in the tenant's list should stand for an acknowledged job.
    const known = new Set(ids);
    let cursor: string | null = null;
    do {
      const res = await fetch(`${url}/v1/jobs?limit=100${cursor ? `&cursor=${cursor}` : ''}`, { headers: AUTH });
      const page = (await res.json()) as { items: JobDoc[]; nextCursor: string | null };
      report.unacknowledgedRecords += page.items.filter((j) => !known.has(j.id)).length;
      cursor = page.nextCursor;
    } while (cursor);
    report.seconds = Math.round((Date.now() - started) / 100) / 10;
    return report;
  } finally {
    for (const w of workers) {
      if (w.exitCode === null && w.signalCode === null) {
        let timer: NodeJS.Timeout | undefined;
        const gone = new Promise((r) => w.once('exit', r));
        w.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
        clearTimeout(timer);
        if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
      }
    }
    await api?.close().catch(() => undefined);
    await redis?.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(redisDir, { recursive: true, force: true });
  }
}

/** The report's lines, and whether the run passed: nothing acknowledged lost, nothing run twice, no bad artifact. */
export function describeRedisCrash(r: RedisCrashReport): { lines: string[]; ok: boolean } {
  const ok = r.acknowledged > 0 && r.kills.length > 0 && r.lost.total === 0 && r.runTwice === 0 && r.duplicateArtifacts === 0 && r.badHashes === 0;
  const lost = r.lost;
  const lines = [
    `appendfsync ${r.appendfsync}: Redis SIGKILLed ${r.kills.length}× (${r.kills.map((k) => `at ${k.atAcknowledged} acknowledged, ${k.inFlightJobs} running, down ${k.downMs} ms, aof_delayed_fsync ${k.delayedFsyncs}`).join('; ')})`,
    `  acknowledged ${r.acknowledged} (202, in ${r.requests} requests; ${r.refused} refused while Redis was away)  completed ${r.completed}  runs to the end ${r.runsToEnd}`,
    `  lost ${lost.total} (record missing ${lost.recordMissing}, failed ${lost.failed}, cancelled ${lost.cancelled}, never finished ${lost.unfinished}; ` +
      `${lost.acknowledgedOnRetry} of them acknowledged on a retry)  run twice ${r.runTwice}  restarted after the crash ${r.restarted}`,
    `  duplicate artifacts ${r.duplicateArtifacts}  bad hashes ${r.badHashes}  records no 202 stands for ${r.unacknowledgedRecords}`,
    `  submit p50 ${r.submitMs.p50} ms  p99 ${r.submitMs.p99} ms  max ${r.submitMs.max} ms  ${r.ackPerSecond} acknowledged/s  ${r.redisCommandsPerJob} Redis commands a job   ${r.seconds} s  →  ${ok ? 'OK' : 'FAILED'}`,
  ];
  for (const j of r.lostJobs) lines.push(`  lost: ${j.id} ${j.status} (queue: ${j.queue ?? 'no entry'}; acknowledged at request ${j.requests} of its slot)`);
  const warnings = Object.entries(r.workerWarnings).sort((a, b) => b[1] - a[1]);
  if (warnings.length > 0) lines.push(`  worker warnings: ${warnings.map(([m, n]) => `${n}× ${m}`).join(' | ')}`);
  return { lines, ok };
}
