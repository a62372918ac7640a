/**
 * The queue client: adds jobs to the BullMQ queue, removes jobs that have not started, reads its counts, and
 * relays the queue's events (QueueEvents) to in-process listeners such as the SSE streams.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { Job, Queue, QueueEvents, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueuedJobData } from '../workers/queueWorker.js';
import type { Logger } from './logger.js';
import { blockingOptions } from './redis.js';

export interface QueueSettings {
  redisUrl: string;
  /** BullMQ key prefix. */
  prefix: string;
  queueName: string;
  attempts: number;
  /** How long BullMQ keeps its own copy of a finished job; the job record is kept apart from it. */
  keepFinishedSeconds: number;
}

export type QueueEventKind = 'waiting' | 'active' | 'progress' | 'completed' | 'failed' | 'removed' | 'stalled';

/** Rejects like a dropped Redis connection when `p` takes longer than `ms`. */
function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Command timed out after ${ms} ms (Redis)`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const QUEUE_TIMEOUT_MS = 5000;

/** BullMQ's own script that adds a job to a queue (the one Queue.add sends), as the installed version ships it. */
const ADD_SCRIPT = (createRequire(import.meta.url)('bullmq/dist/cjs/scripts/index.js') as { addStandardJob: { content: string; keys: number } }).addStandardJob;

/**
 * A queue entry for a script of the caller's to add: BullMQ's add script (Lua, to run as a function of KEYS and
 * ARGV) and the keys and arguments BullMQ's own code builds for this job.
 */
export interface QueueEntry {
  script: string;
  keys: string[];
  args: Array<string | Buffer>;
}

export class JobQueue {
  readonly queue: Queue<QueuedJobData>;
  private events: QueueEvents | null = null;
  private readonly emitter = new EventEmitter();
  private readonly connection: Redis;

  /** BullMQ waits for a connection forever; a request should not. */
  private guarded<T>(fn: () => Promise<T>): Promise<T> {
    if (this.connection.status !== 'ready') return Promise.reject(new Error('Connection is closed (Redis is not connected)'));
    return bounded(fn(), QUEUE_TIMEOUT_MS);
  }

  constructor(
    private readonly settings: QueueSettings,
    connection: Redis,
    private readonly logger?: Logger,
  ) {
    this.connection = connection;
    this.emitter.setMaxListeners(0);
    this.queue = new Queue<QueuedJobData>(settings.queueName, { connection, prefix: settings.prefix });
    this.queue.on('error', (err) => logger?.debug({ err: err.message }, 'queue error'));
  }

  private jobOptions(jobId: string): JobsOptions {
    return {
      jobId,
      attempts: this.settings.attempts,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: this.settings.keepFinishedSeconds },
      removeOnFail: { age: this.settings.keepFinishedSeconds },
    };
  }

  async add(name: string, jobId: string, data: QueuedJobData): Promise<void> {
    await this.guarded(() => this.queue.add(name, data, this.jobOptions(jobId)));
  }

  /**
   * The job as an entry for another script to add (see QueueEntry): what Queue.add would send, without sending it.
   * BullMQ's Job builds the command and hands it to the client it is given; this client keeps it instead.
   */
  entry(name: string, jobId: string, data: QueuedJobData): QueueEntry {
    const job = new Job<QueuedJobData>(this.queue, name, data, this.jobOptions(jobId), jobId);
    let sent: { command: string; args: Array<string | Buffer> } | null = null;
    const keeper = {
      runCommand(command: string, args: Array<string | Buffer>) {
        sent = { command, args };
        return Promise.resolve(jobId);
      },
    };
    job.addJob(keeper as never).catch(() => undefined);
    const { command, args } = (sent ?? { command: '', args: [] }) as { command: string; args: Array<string | Buffer> };
    if (!command.startsWith('addStandardJob:')) throw new Error(`BullMQ adds this job with ${command || 'no command'}, not its standard add script`);
    return { script: ADD_SCRIPT.content, keys: args.slice(0, ADD_SCRIPT.keys).map(String), args: args.slice(ADD_SCRIPT.keys) };
  }

  /** Removes the job if no worker holds it (waiting, delayed or finished); false when it is running. */
  async removeUnlessActive(jobId: string): Promise<boolean> {
    const job = await this.guarded(() => this.queue.getJob(jobId));
    if (!job) return true;
    try {
      const removed = await this.guarded(() => this.queue.remove(jobId));
      return removed === 1;
    } catch {
      // A locked (active) job cannot be removed.
      return false;
    }
  }

  async state(jobId: string): Promise<string | null> {
    const job = await this.guarded(() => this.queue.getJob(jobId));
    return job ? await this.guarded(() => job.getState()) : null;
  }

  async counts(): Promise<Record<string, number>> {
    return this.guarded(() => this.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'paused'));
  }

  /** Starts relaying queue events (one blocking connection per process). */
  async listen(): Promise<void> {
    if (this.events) return;
    const events = new QueueEvents(this.settings.queueName, {
      connection: blockingOptions(this.settings.redisUrl),
      prefix: this.settings.prefix,
    });
    events.on('error', (err) => this.logger?.debug({ err: err.message }, 'queue events error'));
    const relay = (kind: QueueEventKind) => (args: { jobId: string; failedReason?: string }) => {
      this.emitter.emit('event', { kind, jobId: args.jobId, failedReason: args.failedReason });
      this.emitter.emit(`job:${args.jobId}`, kind);
    };
    for (const kind of ['waiting', 'active', 'progress', 'completed', 'failed', 'removed', 'stalled'] as const) {
      events.on(kind as 'waiting', relay(kind) as never);
    }
    this.events = events;
    // Wait a little for the stream reader, but never block a start while Redis is away.
    await Promise.race([events.waitUntilReady().catch(() => undefined), new Promise((ok) => setTimeout(ok, 2000).unref())]);
  }

  /** Calls `listener` on each queue event about this job; returns the function that stops it. */
  onJob(jobId: string, listener: (kind: QueueEventKind) => void): () => void {
    this.emitter.on(`job:${jobId}`, listener);
    return () => this.emitter.off(`job:${jobId}`, listener);
  }

  onAny(listener: (e: { kind: QueueEventKind; jobId: string; failedReason?: string }) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }

  async close(): Promise<void> {
    await this.events?.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
  }
}
