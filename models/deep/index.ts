/**
 * Deep mode (last block): train the backbone's last block in tfjs against linear probing for the harmful task.
 * See split.ts (cut and tail), tail.ts/ops.ts (the tfjs computation), spectral.ts (the float64 objective),
 * train.ts (SGD with the acceptance rule), evaluate.ts (the paper's draws) and run.ts (the job).
 */
export { DeepError, isDeepError, type DeepErrorReason } from './errors.js';
export { runDeep, DEEP_DEFAULTS, type DeepInput, type DeepMetrics, type DeepOptions, type DeepResult } from './run.js';
export { FAST_BACKEND_ADVICE, selectBackend, type TfBackend } from './backend.js';
export { inspectTail, type TailSummary } from './inspect.js';
