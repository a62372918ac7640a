/** Thread entry for inspectInThread and checkBackboneInThread: parses one uploaded file and posts the outcome. */
import { parentPort, workerData } from 'node:worker_threads';
import { checkBackboneFile, inspectFile, type ThreadTask } from './inspect.js';

const job = workerData as ThreadTask;
const outcome = job.task === 'backbone' ? checkBackboneFile(job.path, job.name, job.featureTensor, job.lastBlock) : inspectFile(job.path, job.format, job.name);
outcome.then(
  (result) => parentPort!.postMessage({ result }),
  (err: unknown) => parentPort!.postMessage({ error: err instanceof Error ? err.message : String(err) }),
);
