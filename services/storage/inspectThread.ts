/** Thread entry for inspectInThread: parses one uploaded file and posts the outcome. */
import { parentPort, workerData } from 'node:worker_threads';
import { inspectFile } from './inspect.js';

const { path, format, name } = workerData as { path: string; format: 'npy' | 'csv' | 'onnx'; name: string };
inspectFile(path, format, name).then(
  (result) => parentPort!.postMessage({ result }),
  (err: unknown) => parentPort!.postMessage({ error: err instanceof Error ? err.message : String(err) }),
);
