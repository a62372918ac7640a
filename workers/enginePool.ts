/**
 * A small pool of engine threads (one per concurrent job). A thread is reused after a job that ended normally,
 * completed, failed or cancelled; one that crashed or had to be terminated is replaced.
 */
import { Worker } from 'node:worker_threads';
import type { StepEvent } from '../models/engine/index.js';
import { errorClass, type ErrorReason } from './errorTable.js';
import type { DescribedError } from './jobErrors.js';
import type { ThreadMessage, ThreadRequest } from './engineProtocol.js';
import type { JobName, JobPayload } from './registry.js';
import type { StoredArtifact } from './staging.js';

const THREAD_FILE = new URL('./engineThread.js', import.meta.url);

export interface EngineRun {
  name: string;
  /** Already validated (parseJobPayload): the engine thread runs it as it is. */
  payload: JobPayload<JobName>;
  paths: Record<string, string>;
  stagingDir: string;
}

export interface EngineHandlers {
  onEvent?(event: StepEvent): void;
  onTimings?(timings: Array<[string, number]>): void;
}

export interface EngineOutput {
  metrics: Record<string, unknown>;
  artifacts: StoredArtifact[];
}

/** The job failed inside the engine thread; `described` says how (and whether a retry could help). */
export class EngineJobError extends Error {
  constructor(readonly described: DescribedError) {
    super(described.message);
    this.name = 'EngineJobError';
  }

  /** A failure of the job machinery itself (a crash, a cancel): its code and retry class come from the error table. */
  static of(reason: ErrorReason, message: string): EngineJobError {
    const c = errorClass(reason);
    return new EngineJobError({ code: c.code, message, permanent: c.permanent });
  }
}

interface Slot {
  worker: Worker;
  flag: Int32Array;
  ready: Promise<void>;
  busy: boolean;
  dead: boolean;
}

export interface EnginePoolOptions {
  size: number;
  /** After a cancel, how long the engine may take to reach its next step before its thread is terminated. */
  cancelGraceMs?: number;
}

export class EnginePool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;
  private readonly cancelGraceMs: number;

  constructor(private readonly opts: EnginePoolOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new RangeError(`engine pool size must be a positive integer, got ${opts.size}`);
    this.cancelGraceMs = opts.cancelGraceMs ?? 15_000;
  }

  get threads(): number {
    return this.slots.filter((s) => !s.dead).length;
  }

  private spawn(): Slot {
    const cancel = new SharedArrayBuffer(4);
    const worker = new Worker(THREAD_FILE, { workerData: { cancel } });
    const slot: Slot = { worker, flag: new Int32Array(cancel), busy: false, dead: false, ready: Promise.resolve() };
    slot.ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: ThreadMessage) => {
        if (m.type === 'ready') {
          worker.off('message', onMessage);
          worker.off('error', onError);
          worker.off('exit', onExit);
          resolve();
        }
      };
      const onError = (e: Error) => reject(e);
      const onExit = (code: number) => reject(new Error(`engine thread exited with code ${code} while starting`));
      worker.on('message', onMessage);
      worker.once('error', onError);
      worker.once('exit', onExit);
    });
    worker.once('exit', () => {
      slot.dead = true;
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
    });
    // A thread holds no handle the process should wait for while it is idle.
    worker.unref();
    this.slots.push(slot);
    return slot;
  }

  private acquire(): Slot {
    const idle = this.slots.find((s) => !s.busy && !s.dead);
    if (idle) return idle;
    if (this.slots.length >= this.opts.size) throw new Error(`engine pool is full (${this.opts.size} threads busy)`);
    return this.spawn();
  }

  async run(job: EngineRun, handlers: EngineHandlers, signal?: AbortSignal): Promise<EngineOutput> {
    if (this.closed) throw new Error('engine pool is closed');
    const slot = this.acquire();
    slot.busy = true;
    Atomics.store(slot.flag, 0, 0);
    const id = this.nextId++;
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      Atomics.store(slot.flag, 0, 1);
      killTimer = setTimeout(() => {
        void slot.worker.terminate();
      }, this.cancelGraceMs);
    };
    slot.worker.ref();
    try {
      await slot.ready;
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
      return await new Promise<EngineOutput>((resolve, reject) => {
        const cleanup = () => {
          slot.worker.off('message', onMessage);
          slot.worker.off('error', onError);
          slot.worker.off('exit', onExit);
        };
        const onMessage = (m: ThreadMessage) => {
          if (m.type === 'ready' || m.id !== id) return;
          if (m.type === 'progress') {
            if (m.timings.length > 0) handlers.onTimings?.(m.timings);
            if (m.event) handlers.onEvent?.(m.event);
            return;
          }
          cleanup();
          if (m.type === 'done') resolve({ metrics: m.metrics, artifacts: m.artifacts });
          else reject(new EngineJobError(m.error));
        };
        const onError = (e: Error) => {
          cleanup();
          slot.dead = true;
          reject(EngineJobError.of('job.ENGINE_CRASHED', `the engine thread crashed: ${e.message}`));
        };
        const onExit = (code: number) => {
          cleanup();
          slot.dead = true;
          if (signal?.aborted) reject(EngineJobError.of('job.CANCELLED', 'the job was cancelled (the engine was stopped)'));
          else reject(EngineJobError.of('job.ENGINE_CRASHED', `the engine thread exited with code ${code}`));
        };
        slot.worker.on('message', onMessage);
        slot.worker.once('error', onError);
        slot.worker.once('exit', onExit);
        const req: ThreadRequest = { type: 'run', id, ...job };
        slot.worker.postMessage(req);
      });
    } finally {
      if (killTimer) clearTimeout(killTimer);
      signal?.removeEventListener('abort', onAbort);
      slot.busy = false;
      if (!slot.dead) slot.worker.unref();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
