/**
 * The BullMQ worker: takes jobs off the queue, runs each through its registered processor in an engine thread,
 * and keeps the job record up to date (attempts, throttled progress, artifacts with their sha256, errors).
 *
 * Failure handling:
 * - bad input fails at once (UnrecoverableError), anything else is retried with the queue's backoff;
 * - a worker that dies mid-job loses its lock; BullMQ's stalled-job check hands the job to another worker;
 * - each attempt writes into its own staging directory, committed in one rename only on success, so a killed
 *   attempt leaves no half-written artifact and an artifact is recorded once.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { StepEvent } from '../models/engine/index.js';
import { EngineJobError, EnginePool } from './enginePool.js';
import { describeJobError, type DescribedError } from './jobErrors.js';
import {
  PermanentJobError,
  TERMINAL_STATUSES,
  type AttemptStore,
  type DatasetResolver,
  type JobProgress,
  type WorkerLogger,
  type WorkerMetrics,
  type WorkerRecords,
} from './ports.js';
import { assertRegistry, isJobName, jobDefinition } from './registry.js';

/** What a job carries in the queue. The job id is the record id. */
export interface QueuedJobData {
  tenant: string;
  payload: unknown;
}

export interface QueueWorkerOptions {
  queueName: string;
  prefix: string;
  connection: ConnectionOptions;
  concurrency: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  /** Minimum time between two progress writes for one job. */
  progressIntervalMs: number;
  /** How often a running job's record is checked for a cancel request (the pub/sub message is the fast path). */
  cancelPollMs: number;
  cancelGraceMs: number;
  store: AttemptStore;
  records: WorkerRecords;
  datasets: DatasetResolver;
  logger: WorkerLogger;
  metrics?: WorkerMetrics;
  workerId?: string;
}

export interface QueueWorkerHandle {
  readonly id: string;
  readonly worker: Worker<QueuedJobData>;
  /** Stops taking jobs, waits for the running ones (force: abandons them to the stalled-job check), frees threads. */
  close(force?: boolean): Promise<void>;
}

/** Maps the engine's step events to a monotone 0–1 fraction. */
export function progressTracker(): (event: StepEvent) => JobProgress {
  let best = 0;
  let attacks = 0;
  return (event) => {
    let f = 0;
    switch (event.phase) {
      case 'load': f = 0.02; break;
      case 'statistics': f = 0.05; break;
      case 'optimize': f = 0.05 + 0.65 * (event.of && event.step ? Math.min(1, event.step / event.of) : 0); break;
      case 'evaluate': f = 0.72; break;
      case 'attacks': attacks++; f = 0.75 + 0.23 * Math.min(1, attacks / 10); break;
      case 'done': f = 0.99; break;
    }
    best = Math.max(best, f);
    const p: JobProgress = { fraction: Math.round(best * 1e4) / 1e4, phase: event.phase };
    for (const k of ['step', 'of', 'kappaBenign', 'kappaHarmful', 'message'] as const) {
      if (event[k] !== undefined) (p as unknown as Record<string, unknown>)[k] = event[k];
    }
    return p;
  };
}

const SUMMARY_KEYS = ['method', 'task', 'dim', 'rows', 'verdict', 'verdictReasons', 'rir', 'benignRatio', 'harmfulRatio', 'rirBound', 'thetaCondition', 'kappaBudget', 'kappa'];

/** The metrics summary kept in the job record; the full document is the metrics.json artifact. */
export function metricsSummary(metrics: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of SUMMARY_KEYS) if (k in metrics) out[k] = metrics[k];
  return out;
}

/** Replaces local paths in a message with the dataset ids they stand for. */
function scrubPaths(message: string, paths: Record<string, string>): string {
  let out = message;
  for (const [id, path] of Object.entries(paths)) out = out.split(path).join(`dataset ${id}`);
  return out;
}

export async function startQueueWorker(opts: QueueWorkerOptions): Promise<QueueWorkerHandle> {
  assertRegistry();
  // Loading the BLAS binding on the main thread first fixes the OpenBLAS kernel for every engine thread.
  await import('../models/linalg/index.js');
  const workerId = opts.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const pool = new EnginePool({ size: opts.concurrency, cancelGraceMs: opts.cancelGraceMs });
  const running = new Map<string, AbortController>();
  const { records, store, datasets, logger, metrics } = opts;

  const processor = async (job: Job<QueuedJobData>, _token?: string, bullSignal?: AbortSignal): Promise<{ artifacts: number } | { skipped: string }> => {
    const jobId = job.id!;
    const log = { jobId, worker: workerId };
    if (!isJobName(job.name)) throw new UnrecoverableError(`unknown job name ${job.name}`);
    const def = jobDefinition(job.name);
    const record = await records.get(jobId);
    if (!record) throw new UnrecoverableError(`job ${jobId} has no record (purged?)`);
    if (TERMINAL_STATUSES.has(record.status)) return { skipped: `already ${record.status}` };
    if (record.cancelRequested) {
      await records.cancelled(jobId);
      throw new UnrecoverableError('cancelled before it started');
    }
    // An earlier attempt committed but died before recording it: record that result, do not run again.
    const prior = await store.committed(jobId);
    if (prior) {
      await records.complete(jobId, prior.metrics, prior.artifacts);
      logger.info(log, 'job completed by an earlier attempt; recorded now');
      return { artifacts: prior.artifacts.length };
    }
    const attempt = await records.startAttempt(jobId, workerId);
    const attemptId = `${attempt}-${randomBytes(4).toString('hex')}`;
    const started = performance.now();
    logger.info({ ...log, attempt }, 'job started');

    const controller = new AbortController();
    running.set(jobId, controller);
    const abort = () => controller.abort();
    bullSignal?.addEventListener('abort', abort, { once: true });
    const poll = setInterval(() => {
      records.isCancelRequested(jobId).then(
        (yes) => {
          if (yes) controller.abort();
        },
        () => undefined,
      );
    }, opts.cancelPollMs);
    poll.unref();

    let committed = false;
    let paths: Record<string, string> = {};
    const track = progressTracker();
    // Progress goes to the record and to the queue's event stream at most once per interval; the latest value
    // of a quiet spell is written when the interval ends.
    let lastWrite = 0;
    let writing: Promise<void> | null = null;
    let latest: JobProgress | null = null;
    let trailing: NodeJS.Timeout | null = null;
    let finished = false;
    const writeProgress = (p: JobProgress) => {
      latest = p;
      if (finished) return;
      const wait = lastWrite + opts.progressIntervalMs - performance.now();
      if (writing || wait > 0) {
        trailing ??= setTimeout(() => {
          trailing = null;
          if (latest) writeProgress(latest);
        }, Math.max(wait, 10));
        return;
      }
      lastWrite = performance.now();
      const value = latest;
      writing = Promise.all([records.progress(jobId, value), job.updateProgress({ ...value })])
        .then(() => undefined, (err: unknown) => logger.warn({ ...log, err: String(err) }, 'progress update failed'))
        .finally(() => {
          writing = null;
        });
    };
    const stopProgress = async () => {
      finished = true;
      if (trailing) clearTimeout(trailing);
      await writing;
    };
    try {
      let payload: unknown;
      try {
        payload = def.parse(job.data.payload);
      } catch (err) {
        throw new PermanentJobError('invalid_spec', err instanceof Error ? err.message : String(err));
      }
      paths = await datasets.resolve(record.tenant, def.datasetRefs(payload));
      const dir = await store.stagingDir(jobId, attemptId);
      const out = await pool.run(
        { name: job.name, payload, paths, stagingDir: dir },
        {
          onEvent: (e) => writeProgress(track(e)),
          onTimings: (t) => {
            if (!metrics) return;
            const byPhase = new Map<string, number[]>();
            for (const [phase, s] of t) byPhase.set(phase, [...(byPhase.get(phase) ?? []), s]);
            for (const [phase, s] of byPhase) metrics.engineSteps(phase, s);
          },
        },
        controller.signal,
      );
      if (controller.signal.aborted && (await records.isCancelRequested(jobId).catch(() => false))) {
        // It finished as the cancel arrived: honour the cancel, keep nothing.
        throw new EngineJobError({ code: 'cancelled', message: 'the job was cancelled', permanent: true });
      }
      await stopProgress();
      const summary = metricsSummary(out.metrics);
      committed = await store.commit(jobId, attemptId, { metrics: summary, artifacts: out.artifacts });
      if (!committed) {
        // Another attempt got there first: its artifacts are the job's, recorded once.
        logger.warn({ ...log, attempt }, 'another attempt already committed this job; dropping this one');
        const first = await store.committed(jobId);
        if (first) await records.complete(jobId, first.metrics, first.artifacts);
        return { skipped: 'another attempt committed first' };
      }
      await records.complete(jobId, summary, out.artifacts);
      await store.discard(jobId).catch(() => undefined);
      metrics?.jobFinished('completed', (performance.now() - started) / 1000);
      logger.info({ ...log, attempt, seconds: (performance.now() - started) / 1000 }, 'job completed');
      return { artifacts: out.artifacts.length };
    } catch (err) {
      await stopProgress();
      const d: DescribedError = err instanceof EngineJobError ? err.described : describeJobError(err);
      // Unexpected errors may name local paths: the record gets a plain message, the log the details.
      const message = d.code === 'internal' ? 'internal error in the worker; its log has the details' : scrubPaths(d.message, paths);
      const seconds = (performance.now() - started) / 1000;
      if (d.code === 'cancelled' || controller.signal.aborted) {
        await records.cancelled(jobId);
        metrics?.jobFinished('cancelled', seconds);
        logger.info({ ...log, attempt }, 'job cancelled');
        throw new UnrecoverableError('cancelled');
      }
      const final = d.permanent || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      await records.fail(jobId, { code: d.code, message }, final);
      metrics?.jobFinished(final ? 'failed' : 'retried', seconds);
      logger.warn({ ...log, attempt, code: d.code, final }, `job failed: ${d.message}`);
      if (d.permanent) throw new UnrecoverableError(message);
      throw new Error(message);
    } finally {
      finished = true;
      if (trailing) clearTimeout(trailing);
      clearInterval(poll);
      bullSignal?.removeEventListener('abort', abort);
      running.delete(jobId);
      if (!committed) await store.discard(jobId, attemptId).catch(() => undefined);
    }
  };

  const worker = new Worker<QueuedJobData>(opts.queueName, processor, {
    connection: opts.connection,
    prefix: opts.prefix,
    concurrency: opts.concurrency,
    lockDuration: opts.lockDurationMs,
    stalledInterval: opts.stalledIntervalMs,
    maxStalledCount: opts.maxStalledCount,
    autorun: false,
  });
  worker.on('error', (err) => logger.warn({ worker: workerId, err: err.message }, 'queue worker error'));
  const unsubscribe = await records.onCancel((jobId) => running.get(jobId)?.abort());
  void worker.run();
  await worker.waitUntilReady();
  logger.info({ worker: workerId, concurrency: opts.concurrency, queue: opts.queueName }, 'queue worker started');

  let closing: Promise<void> | null = null;
  return {
    id: workerId,
    worker,
    close(force = false) {
      closing ??= (async () => {
        await unsubscribe().catch(() => undefined);
        await worker.close(force);
        await pool.close();
      })();
      return closing;
    },
  };
}
