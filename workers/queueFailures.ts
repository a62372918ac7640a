/**
 * Failures BullMQ decides without the processor recording them: a job that stalled more often than allowed, or one
 * whose last attempt ended while its failure could not be written. The worker that sees the queue's 'failed' event
 * writes them to the job's record; when that write cannot be made either (Redis away at that moment, or the worker
 * killed in between), the record would stay queued or running for good. A sweep of the queue's failed set writes them
 * later: every worker runs it at start (the whole set) and then every minute (what failed since the last sweep).
 */
import { Job, Queue, type ConnectionOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { TERMINAL_STATUSES, type AttemptStore, type QueuedJobData, type WorkerLogger, type WorkerRecords } from './ports.js';

const SWEEP_EVERY_MS = 60_000;
/** Each sweep looks this far back before the last one started: a failure and its event land a moment apart. */
const SWEEP_OVERLAP_MS = 10_000;
/** Failed jobs looked at together. */
const SWEEP_BATCH = 50;

/**
 * Records a failure the queue decided, unless the processor recorded one or the queue will retry the job. A job whose
 * artifacts an attempt committed is recorded as completed instead. Returns what was recorded, or null for nothing.
 */
export async function recordQueueFailure(
  records: WorkerRecords,
  store: AttemptStore,
  job: Job<QueuedJobData>,
  reason: string,
): Promise<'completed' | 'failed' | null> {
  if (job.id === undefined) return null;
  const record = await records.get(job.id);
  if (!record || TERMINAL_STATUSES.has(record.status)) return null;
  if ((await job.getState()) !== 'failed') return null;
  const prior = await store.committed(job.id);
  if (prior) {
    await records.complete(job.id, prior.metrics, prior.artifacts);
    return 'completed';
  }
  await records.fail(job.id, { code: /stall/i.test(reason) ? 'stalled' : 'internal', message: reason }, true);
  return 'failed';
}

export interface QueueFailureSweepOptions {
  queueName: string;
  prefix: string;
  connection: ConnectionOptions;
  records: WorkerRecords;
  store: AttemptStore;
  logger: WorkerLogger;
}

export class QueueFailureSweep {
  private readonly queue: Queue<QueuedJobData>;
  /** Failures before this time (ms) were looked at by an earlier sweep; 0 before the first. */
  private since = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private closed = false;

  constructor(private readonly opts: QueueFailureSweepOptions) {
    // Nothing is awaited at creation: BullMQ's own readiness wait, when Redis is away and the queue is closed before
    // it returns, ends in an 'error' event with no listener left (a crash at shutdown).
    this.queue = new Queue<QueuedJobData>(opts.queueName, {
      connection: opts.connection,
      prefix: opts.prefix,
      skipWaitingForReady: true,
      skipVersionCheck: true,
    });
    this.queue.on('error', () => undefined);
  }

  /** Sweeps now and then every minute; a sweep that fails (Redis away) is logged, and the next one covers its time. */
  start(): void {
    const run = () => {
      this.sweep().catch(
        (err: unknown) => this.closed || this.opts.logger.warn({ err: String(err) }, 'the sweep of failed jobs could not run; the next one covers this one'),
      );
    };
    run();
    this.timer = setInterval(run, SWEEP_EVERY_MS);
    this.timer.unref();
  }

  /** Records the failures of the jobs the queue failed since the last sweep (all of them on the first); returns how many it recorded. */
  sweep(): Promise<number> {
    this.running ??= this.sweepOnce().finally(() => (this.running = null));
    return this.running;
  }

  private async sweepOnce(): Promise<number> {
    const started = Date.now();
    // BullMQ's client type lists only the commands BullMQ sends itself; it is an ioredis client.
    const client = (await this.queue.client) as unknown as Redis;
    const ids = await client.zrangebyscore(this.queue.keys.failed, this.since, '+inf');
    let recorded = 0;
    for (let i = 0; i < ids.length; i += SWEEP_BATCH) {
      const outcomes = await Promise.all(
        ids.slice(i, i + SWEEP_BATCH).map(async (id) => {
          // Most failed jobs have their failure recorded: their records alone are read.
          const record = await this.opts.records.get(id);
          if (!record || TERMINAL_STATUSES.has(record.status)) return null;
          const job = await Job.fromId<QueuedJobData>(this.queue, id);
          return job ? recordQueueFailure(this.opts.records, this.opts.store, job, job.failedReason || 'failed by the queue') : null;
        }),
      );
      recorded += outcomes.filter((o) => o !== null).length;
    }
    this.since = started - SWEEP_OVERLAP_MS;
    if (recorded > 0) this.opts.logger.warn({ recorded }, 'recorded the end of jobs the queue had failed while their records still said otherwise');
    return recorded;
  }

  /** Stops the sweeps; one in progress is abandoned (it may wait for Redis for as long as Redis is away). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.queue.close();
  }
}
