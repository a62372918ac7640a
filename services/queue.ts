/**
 * The queue client: adds jobs to the BullMQ queue, removes jobs that have not started, reads its counts, and
 * relays the queue's events (QueueEvents) to in-process listeners such as the SSE streams. The events are read only
 * while some listener follows a job (and a while after the last one leaves): every job adds several events, and a
 * process that reads them all for nobody pays for each submission twice.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { Job, Queue, QueueEvents, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueuedJobData } from '../workers/ports.js';
import type { Logger } from './logger.js';
import { EntryTemplate, type BullEntry } from './queueEntry.js';
import { blockingOptions } from './redis.js';

export interface QueueSettings {
  redisUrl: string;
  /** BullMQ key prefix. */
  prefix: string;
  queueName: string;
  attempts: number;
  /** How long BullMQ keeps its own copy of a finished job; the job record is kept apart from it. */
  keepFinishedSeconds: number;
  /** How long the event reader runs on after its last listener leaves (default 30 s). */
  readerLingerMs?: number;
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

/** How long the event reader runs on after the last listener leaves, so that a client that reconnects finds it. */
const READER_LINGER_MS = 30_000;

/** BullMQ's own script that adds a job to a queue (the one Queue.add sends), as the installed version ships it. */
const ADD_SCRIPT = (createRequire(import.meta.url)('bullmq/dist/cjs/scripts/index.js') as { addStandardJob: { content: string; keys: number } }).addStandardJob;

/**
 * A queue entry for a script of the caller's to add: BullMQ's add script (Lua, to run as a function of KEYS and
 * ARGV) and the keys and arguments BullMQ's own code builds for this job.
 */
export interface QueueEntry {
  script: string;
  keys: readonly string[];
  args: Array<string | Buffer>;
}

export class JobQueue {
  readonly queue: Queue<QueuedJobData>;
  private events: QueueEvents | null = null;
  /** Listeners following a job, and the timer that stops the reader once there have been none for a while. */
  private followers = 0;
  private idle: NodeJS.Timeout | null = null;
  private readonly emitter = new EventEmitter();
  private readonly connection: Redis;
  /** By job name: the template its entries are made from, or null where BullMQ builds each one. */
  private readonly templates = new Map<string, EntryTemplate | null>();

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
   * Made from a template learned from BullMQ's own entries (see queueEntry.ts), or by BullMQ where none was learned.
   */
  entry(name: string, jobId: string, data: QueuedJobData): QueueEntry {
    let template = this.templates.get(name);
    if (template === undefined) {
      template = EntryTemplate.learn((id, d) => this.bullEntry(name, id, d as QueuedJobData));
      this.templates.set(name, template);
      if (template === null) this.logger?.info('queue entries are built by BullMQ for each job: its add arguments are not laid out as this version expects');
    }
    const { keys, args } = template ? template.make(jobId, Date.now(), data) : this.bullEntry(name, jobId, data);
    return { script: ADD_SCRIPT.content, keys, args };
  }

  /** The entry as BullMQ builds it: its Job builds the command and hands it to the client it is given, which keeps it. */
  bullEntry(name: string, jobId: string, data: QueuedJobData): BullEntry & { timestamp: number } {
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
    return { keys: args.slice(0, ADD_SCRIPT.keys).map(String), args: args.slice(ADD_SCRIPT.keys), timestamp: job.timestamp };
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

  /** Whether the queue's events are being read (some listener follows a job, or did a moment ago). */
  get relaying(): boolean {
    return this.events !== null;
  }

  /**
   * Calls `listener` on each queue event about this job from now on; returns the function that stops it. The first
   * listener starts the reader (one blocking connection per process): events written while it starts are not seen,
   * so a listener reads the job's state itself after joining.
   */
  onJob(jobId: string, listener: (kind: QueueEventKind) => void): () => void {
    this.emitter.on(`job:${jobId}`, listener);
    this.follow();
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.emitter.off(`job:${jobId}`, listener);
      this.unfollow();
    };
  }

  private follow(): void {
    this.followers++;
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (!this.events) this.events = this.startReader();
  }

  private unfollow(): void {
    if (--this.followers > 0) return;
    this.idle = setTimeout(() => {
      this.idle = null;
      const events = this.events;
      this.events = null;
      void events?.close().catch(() => undefined);
    }, this.settings.readerLingerMs ?? READER_LINGER_MS);
    this.idle.unref();
  }

  private startReader(): QueueEvents {
    const events = new QueueEvents(this.settings.queueName, {
      connection: blockingOptions(this.settings.redisUrl),
      prefix: this.settings.prefix,
    });
    events.on('error', (err) => this.logger?.debug({ err: err.message }, 'queue events error'));
    const relay = (kind: QueueEventKind) => (args: { jobId: string }) => this.emitter.emit(`job:${args.jobId}`, kind);
    for (const kind of ['waiting', 'active', 'progress', 'completed', 'failed', 'removed', 'stalled'] as const) {
      events.on(kind as 'waiting', relay(kind) as never);
    }
    return events;
  }

  async close(): Promise<void> {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    const events = this.events;
    this.events = null;
    await events?.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
  }
}
