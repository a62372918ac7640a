/**
 * The BullMQ worker: takes jobs off the queue, runs each through its registered processor in an engine thread,
 * and keeps the job record up to date (attempts, throttled progress, artifacts with their sha256, errors).
 *
 * Failure handling:
 * - bad input fails at once (UnrecoverableError), anything else is retried with the queue's backoff;
 * - a worker that dies mid-job loses its lock; BullMQ's stalled-job check hands the job to another worker, and a job
 *   that stalled too often is failed by the worker that takes it next, which records that failure too;
 * - each attempt writes into its own staging directory, committed in one rename only on success, so a killed
 *   attempt leaves no half-written artifact and an artifact is recorded once.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type ConnectionOptions, type Job, type WorkerOptions } from 'bullmq';
import type { StepEvent } from '../models/engine/index.js';
import { logAccelerators } from './accelerators.js';
import { EngineJobError, EnginePool, type EngineOutput } from './enginePool.js';
import { errorClass } from './errorTable.js';
import { describeJobError, type DescribedError } from './jobErrors.js';
import {
  TERMINAL_STATUSES,
  type AttemptStore,
  type DatasetResolver,
  type JobProgress,
  type JobRecordView,
  type QueuedJobData,
  type WorkerLogger,
  type WorkerMetrics,
  type WorkerRecords,
} from './ports.js';
import { QueueFailureSweep, recordQueueFailure } from './queueFailures.js';
import { assertRegistry, isJobName, jobDefinition, parseJobPayload, type JobName } from './registry.js';

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
  /** Records the failures the queue decided and the records missed (see queueFailures.ts); returns how many. */
  sweepQueueFailures(): Promise<number>;
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
      case 'load':
        f = 0.02;
        break;
      case 'statistics':
        f = 0.05;
        break;
      case 'optimize':
        f = 0.05 + 0.65 * (event.of && event.step ? Math.min(1, event.step / event.of) : 0);
        break;
      case 'evaluate':
        f = 0.72;
        break;
      case 'attacks':
        attacks++;
        f = 0.75 + 0.23 * Math.min(1, attacks / 10);
        break;
      case 'done':
        f = 0.99;
        break;
    }
    best = Math.max(best, f);
    const p: JobProgress = { fraction: Math.round(best * 1e4) / 1e4, phase: event.phase };
    for (const k of ['step', 'of', 'kappaBenign', 'kappaHarmful', 'message'] as const) {
      if (event[k] !== undefined) (p as unknown as Record<string, unknown>)[k] = event[k];
    }
    return p;
  };
}

const SUMMARY_KEYS = [
  'method',
  'task',
  'dim',
  'rows',
  'verdict',
  'verdictReasons',
  'rir',
  'benignRatio',
  'harmfulRatio',
  'rirBound',
  'thetaCondition',
  'kappaBudget',
  'kappa',
];

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

/** The codes the worker itself tells apart; the error table has them, as it has every other. */
const CANCELLED = errorClass('job.CANCELLED').code;
const INTERNAL = errorClass('job.INTERNAL').code;

/**
 * Progress goes to the record and to the queue's event stream at most once per interval; the latest value of a
 * quiet spell is written when the interval ends. One throttle per attempt.
 */
export class ProgressThrottle {
  private lastWrite = 0;
  private writing: Promise<void> | null = null;
  private latest: JobProgress | null = null;
  private trailing: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly intervalMs: number,
    private readonly write: (progress: JobProgress) => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
  ) {}

  push(progress: JobProgress): void {
    this.latest = progress;
    if (this.stopped) return;
    const wait = this.lastWrite + this.intervalMs - performance.now();
    if (this.writing || wait > 0) {
      this.trailing ??= setTimeout(
        () => {
          this.trailing = null;
          if (this.latest) this.push(this.latest);
        },
        Math.max(wait, 10),
      );
      return;
    }
    this.lastWrite = performance.now();
    this.writing = this.write(this.latest)
      .then(() => undefined, this.onError)
      .finally(() => {
        this.writing = null;
      });
  }

  /** Writes nothing more; resolves once the write in flight, if any, has landed. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.trailing) clearTimeout(this.trailing);
    this.trailing = null;
    await this.writing;
  }
}

/**
 * Turns a cancel request into an abort of one attempt's signal. Three paths lead to it: bullmq's own signal, the
 * pub/sub message (the fast path: the worker calls abort()) and a poll of the record (in case the message was missed).
 */
export class CancelWatch {
  private readonly controller = new AbortController();
  private readonly poll: NodeJS.Timeout;
  private readonly onQueueAbort = () => this.abort();

  constructor(
    isRequested: () => Promise<boolean>,
    pollMs: number,
    private readonly queueSignal?: AbortSignal,
  ) {
    queueSignal?.addEventListener('abort', this.onQueueAbort, { once: true });
    this.poll = setInterval(() => {
      isRequested().then(
        (yes) => {
          if (yes) this.abort();
        },
        () => undefined,
      );
    }, pollMs);
    this.poll.unref();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(): void {
    this.controller.abort();
  }

  stop(): void {
    clearInterval(this.poll);
    this.queueSignal?.removeEventListener('abort', this.onQueueAbort);
  }
}

/** Log messages of a job's end that tools read back (the Redis-crash soak counts runs by them). */
export const JOB_END_MESSAGES = {
  completed: 'job completed',
  completionUnrecorded: 'job ran to its end and its artifacts are committed, but its completion could not be recorded; a retry records it',
  anotherAttemptCommitted: 'another attempt already committed this job; dropping this one',
  recordedLate: 'job completed by an earlier attempt; recorded now',
} as const;

type Outcome = { artifacts: number } | { skipped: string };

/** A job's artifacts are committed but its record does not say so yet (see QueueJobProcessor.unrecorded). */
class UnrecordedCompletion extends Error {}

/** One attempt at a job, from its start on this worker to its commit or its failure. */
interface Attempt {
  job: Job<QueuedJobData>;
  jobId: string;
  name: JobName;
  tenant: string;
  /** The job's spec as its record holds it, not yet checked. */
  spec: unknown;
  /** The attempt's number (attempts started so far, this one included) and its staging id. */
  number: number;
  id: string;
  started: number;
  log: { jobId: string; worker: string; attempt: number };
  /** Dataset id → local path, once resolved; error messages name the ids instead. */
  paths: Record<string, string>;
  /** True once this attempt's files are the job's artifacts: they are kept whatever happens next. */
  committed: boolean;
}

/** What the queue hands to a bullmq Worker: runs each job in phases (admit, start, execute, commit or fail). */
class QueueJobProcessor {
  private readonly running = new Map<string, CancelWatch>();

  constructor(
    private readonly opts: QueueWorkerOptions,
    private readonly workerId: string,
    private readonly pool: EnginePool,
  ) {}

  /** A cancel request for a job this worker may be running (the pub/sub fast path). */
  cancel(jobId: string): void {
    this.running.get(jobId)?.abort();
  }

  readonly process = async (job: Job<QueuedJobData>, _token?: string, queueSignal?: AbortSignal): Promise<Outcome> => {
    const admitted = await this.admit(job);
    if ('settled' in admitted) return admitted.settled;
    const attempt = await this.start(job, admitted.name, admitted.record);
    const { records, logger } = this.opts;
    const watch = new CancelWatch(() => records.isCancelRequested(attempt.jobId), this.opts.cancelPollMs, queueSignal);
    this.running.set(attempt.jobId, watch);
    const progress = new ProgressThrottle(
      this.opts.progressIntervalMs,
      (p) => Promise.all([records.progress(attempt.jobId, p), job.updateProgress({ ...p })]),
      (err) => logger.warn({ jobId: attempt.jobId, worker: this.workerId, err: String(err) }, 'progress update failed'),
    );
    try {
      const out = await this.execute(attempt, watch.signal, progress);
      await progress.stop();
      return await this.commit(attempt, out);
    } catch (err) {
      await progress.stop();
      // The attempt's files go before its failure is recorded: a reader who sees "failed" finds none of them.
      if (!attempt.committed) await this.opts.store.discard(attempt.jobId, attempt.id).catch(() => undefined);
      if (err instanceof UnrecordedCompletion) throw err;
      return await this.fail(attempt, err, watch.signal);
    } finally {
      void progress.stop();
      watch.stop();
      this.running.delete(attempt.jobId);
      if (!attempt.committed) await this.opts.store.discard(attempt.jobId, attempt.id).catch(() => undefined);
    }
  };

  /**
   * Before any work: a job with no record, or one cancelled before it started, fails for good; one already finished
   * is skipped; one an earlier attempt committed but did not record is recorded now, not run again.
   */
  private async admit(job: Job<QueuedJobData>): Promise<{ name: JobName; record: JobRecordView } | { settled: Outcome }> {
    const { records, store, logger } = this.opts;
    const jobId = job.id!;
    if (!isJobName(job.name)) throw new UnrecoverableError(`unknown job name ${job.name}`);
    const record = await records.get(jobId);
    if (!record) throw new UnrecoverableError(`job ${jobId} has no record (purged?)`);
    if (TERMINAL_STATUSES.has(record.status)) return { settled: { skipped: `already ${record.status}` } };
    if (record.cancelRequested) {
      await records.cancelled(jobId);
      throw new UnrecoverableError('cancelled before it started');
    }
    const prior = await store.committed(jobId);
    if (prior) {
      await records.complete(jobId, prior.metrics, prior.artifacts);
      logger.info({ jobId, worker: this.workerId }, JOB_END_MESSAGES.recordedLate);
      return { settled: { artifacts: prior.artifacts.length } };
    }
    return { name: job.name, record };
  }

  /** Marks the job running for a new attempt, with a staging id of its own. */
  private async start(job: Job<QueuedJobData>, name: JobName, record: JobRecordView): Promise<Attempt> {
    const jobId = job.id!;
    const number = await this.opts.records.startAttempt(jobId, this.workerId);
    const log = { jobId, worker: this.workerId, attempt: number };
    this.opts.logger.info(log, 'job started');
    return {
      job,
      jobId,
      name,
      tenant: record.tenant,
      spec: record.spec,
      number,
      id: `${number}-${randomBytes(4).toString('hex')}`,
      started: performance.now(),
      log,
      paths: {},
      committed: false,
    };
  }

  /**
   * Parses the payload (bytes from Redis: untrusted), resolves its datasets and runs it in an engine thread. A job
   * that finished just as its cancel arrived counts as cancelled.
   */
  private async execute(a: Attempt, signal: AbortSignal, progress: ProgressThrottle): Promise<EngineOutput> {
    const { records, store, datasets } = this.opts;
    const def = jobDefinition(a.name);
    const payload = parseJobPayload(a.name, a.spec);
    a.paths = await datasets.resolve(a.tenant, def.datasetRefs(payload));
    const stagingDir = await store.stagingDir(a.jobId, a.id);
    const track = progressTracker();
    const out = await this.pool.run(
      { name: a.name, payload, paths: a.paths, stagingDir },
      { onEvent: (e) => progress.push(track(e)), onTimings: (t) => this.recordTimings(t) },
      signal,
    );
    if (signal.aborted && (await records.isCancelRequested(a.jobId).catch(() => false))) {
      // It finished as the cancel arrived: honour the cancel, keep nothing.
      throw EngineJobError.of('job.CANCELLED', 'the job was cancelled');
    }
    return out;
  }

  private recordTimings(timings: Array<[string, number]>): void {
    const metrics = this.opts.metrics;
    if (!metrics) return;
    const byPhase = new Map<string, number[]>();
    for (const [phase, s] of timings) byPhase.set(phase, [...(byPhase.get(phase) ?? []), s]);
    for (const [phase, s] of byPhase) metrics.engineSteps(phase, s);
  }

  /** Makes the attempt's files the job's artifacts in one step, then records the completion. */
  private async commit(a: Attempt, out: EngineOutput): Promise<Outcome> {
    const { records, store, logger, metrics } = this.opts;
    const summary = metricsSummary(out.metrics);
    a.committed = await store.commit(a.jobId, a.id, { metrics: summary, artifacts: out.artifacts });
    if (!a.committed) {
      // Another attempt got there first: its artifacts are the job's, recorded once.
      logger.warn(a.log, JOB_END_MESSAGES.anotherAttemptCommitted);
      const first = await store.committed(a.jobId);
      if (first) await records.complete(a.jobId, first.metrics, first.artifacts).catch((err: unknown) => this.unrecorded(a, err));
      return { skipped: 'another attempt committed first' };
    }
    await records.complete(a.jobId, summary, out.artifacts).catch((err: unknown) => this.unrecorded(a, err));
    await store.discard(a.jobId).catch(() => undefined);
    const seconds = (performance.now() - a.started) / 1000;
    metrics?.jobFinished('completed', seconds);
    logger.info({ ...a.log, seconds }, JOB_END_MESSAGES.completed);
    return { artifacts: out.artifacts.length };
  }

  /**
   * The job's artifacts are committed (by this attempt or another) but its completion could not be recorded, most
   * often because Redis went away. It is never recorded as failed: a retry records the completion without running
   * the job again (admit), and so does the queue's final failure (recordQueueFailure).
   */
  private unrecorded(a: Attempt, err: unknown): never {
    this.opts.logger.warn({ ...a.log, err: String(err) }, JOB_END_MESSAGES.completionUnrecorded);
    throw new UnrecordedCompletion(`the completion could not be recorded: ${String(err)}`);
  }

  /**
   * Records a failed attempt and tells bullmq what to do next: a cancel or a permanent failure ends the job (an
   * UnrecoverableError), anything else is retried while attempts are left.
   */
  private async fail(a: Attempt, err: unknown, signal: AbortSignal): Promise<never> {
    const { records, logger, metrics } = this.opts;
    const d: DescribedError = err instanceof EngineJobError ? err.described : describeJobError(err);
    // Unexpected errors may name local paths: the record gets a plain message, the log the details.
    const message = d.code === INTERNAL ? 'internal error in the worker; its log has the details' : scrubPaths(d.message, a.paths);
    const seconds = (performance.now() - a.started) / 1000;
    if (d.code === CANCELLED || signal.aborted) {
      await records.cancelled(a.jobId);
      metrics?.jobFinished('cancelled', seconds);
      logger.info(a.log, 'job cancelled');
      throw new UnrecoverableError('cancelled');
    }
    const final = d.permanent || a.job.attemptsMade + 1 >= (a.job.opts.attempts ?? 1);
    await records.fail(a.jobId, { code: d.code, message }, final).catch((e: unknown) => {
      logger.warn({ ...a.log, code: d.code, final, err: String(e) }, `job failed: ${d.message}; the failure could not be recorded`);
      throw e;
    });
    metrics?.jobFinished(final ? 'failed' : 'retried', seconds);
    logger.warn({ ...a.log, code: d.code, final }, `job failed: ${d.message}`);
    if (d.permanent) throw new UnrecoverableError(message);
    throw new Error(message);
  }
}

function workerOptions(opts: QueueWorkerOptions): WorkerOptions {
  return {
    connection: opts.connection,
    prefix: opts.prefix,
    concurrency: opts.concurrency,
    lockDuration: opts.lockDurationMs,
    stalledInterval: opts.stalledIntervalMs,
    maxStalledCount: opts.maxStalledCount,
    autorun: false,
  };
}

export async function startQueueWorker(opts: QueueWorkerOptions): Promise<QueueWorkerHandle> {
  assertRegistry();
  // Loading the BLAS binding on the main thread first fixes the OpenBLAS kernel for every engine thread.
  await import('../models/linalg/index.js');
  const workerId = opts.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const { records, logger } = opts;
  const pool = new EnginePool({ size: opts.concurrency, cancelGraceMs: opts.cancelGraceMs });
  const processor = new QueueJobProcessor(opts, workerId, pool);
  const worker = new Worker<QueuedJobData>(opts.queueName, processor.process, workerOptions(opts));
  worker.on('error', (err) => logger.warn({ worker: workerId, err: err.message }, 'queue worker error'));
  worker.on('failed', (job, err) => {
    if (!job) return;
    recordQueueFailure(records, opts.store, job, err.message).then(
      (recorded) => {
        if (recorded === 'completed') logger.info({ worker: workerId, jobId: job.id }, JOB_END_MESSAGES.recordedLate);
      },
      (e: unknown) =>
        logger.warn({ worker: workerId, jobId: job.id, err: e instanceof Error ? e.message : String(e) }, 'could not record a failure decided by the queue'),
    );
  });
  const unsubscribe = await records.onCancel((jobId) => processor.cancel(jobId));
  void worker.run();
  await worker.waitUntilReady();
  logger.info({ worker: workerId, concurrency: opts.concurrency, queue: opts.queueName }, 'queue worker started');
  // In the background: loading tfjs and onnxruntime to ask them takes a moment, and jobs need not wait for it.
  void logAccelerators(logger);
  const failures = new QueueFailureSweep(opts);
  failures.start();

  let closing: Promise<void> | null = null;
  return {
    id: workerId,
    worker,
    sweepQueueFailures: () => failures.sweep(),
    close(force = false) {
      closing ??= (async () => {
        await unsubscribe().catch(() => undefined);
        await failures.close();
        await worker.close(force);
        await pool.close();
      })();
      return closing;
    },
  };
}
