/**
 * The processor file: runs one registered job at a time inside a worker thread, so that the engine's long,
 * synchronous BLAS calls never block the queue worker's event loop (lock renewal, progress, cancellation).
 *
 * The engine is synchronous, so a message from the parent cannot be delivered while it runs. Cancellation
 * therefore goes through shared memory: the parent sets a flag, and the step observer, which the engine calls
 * between steps, turns it into an abort of the engine's AbortSignal.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { StepEvent } from '../models/engine/index.js';
import { DataError } from '../models/io/index.js';
import { describeJobError } from './jobErrors.js';
import { jobDefinition } from './registry.js';
import { StagingSink } from './staging.js';
import type { ThreadRequest, ThreadMessage } from './engineProtocol.js';

const port = parentPort;
if (!port) throw new Error('engineThread must run in a worker thread');
const cancelFlag = new Int32Array((workerData as { cancel: SharedArrayBuffer }).cancel);
const POST_EVERY_MS = 100;

function post(message: ThreadMessage): void {
  port!.postMessage(message);
}

async function run(req: ThreadRequest): Promise<void> {
  const controller = new AbortController();
  const checkCancel = () => {
    if (Atomics.load(cancelFlag, 0) !== 0 && !controller.signal.aborted) controller.abort();
  };
  let lastPost = 0;
  let lastPhase = '';
  let lastAt = performance.now();
  let pending: StepEvent | null = null;
  let timings: Array<[string, number]> = [];
  const flush = (now: number) => {
    if (!pending && timings.length === 0) return;
    post({ type: 'progress', id: req.id, event: pending, timings });
    pending = null;
    timings = [];
    lastPost = now;
  };
  const observe = (event: StepEvent) => {
    checkCancel();
    const now = performance.now();
    // The last event of a phase goes out before the first of the next one.
    if (event.phase !== lastPhase && pending) flush(now);
    timings.push([event.phase, (now - lastAt) / 1000]);
    lastAt = now;
    pending = { ...event };
    // Phase changes go out at once so that the attacks count and the phases are never skipped.
    if (event.phase !== lastPhase || event.phase === 'attacks' || now - lastPost >= POST_EVERY_MS) flush(now);
    lastPhase = event.phase;
  };
  try {
    checkCancel();
    const def = jobDefinition(req.name);
    const sink = new StagingSink(req.stagingDir);
    const resolve = (ref: string): string => {
      checkCancel();
      if (!Object.hasOwn(req.paths, ref)) throw new DataError('NOT_FOUND', `${ref} is not an upload available to this job`);
      return req.paths[ref];
    };
    const result = await def.run(req.payload, { sink, resolve, observe }, controller.signal);
    flush(performance.now());
    post({ type: 'done', id: req.id, metrics: result.metrics as unknown as Record<string, unknown>, artifacts: sink.artifacts });
  } catch (err) {
    flush(performance.now());
    post({ type: 'error', id: req.id, error: describeJobError(err) });
  }
}

port.on('message', (msg: ThreadRequest) => {
  if (msg?.type === 'run') void run(msg);
});
post({ type: 'ready' });
