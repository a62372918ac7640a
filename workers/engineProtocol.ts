/** Messages between a queue worker and its engine threads. */
import type { StepEvent } from '../models/engine/index.js';
import type { DescribedError } from './jobErrors.js';
import type { JobName, JobPayload } from './registry.js';
import type { StoredArtifact } from './staging.js';

export interface ThreadRequest {
  type: 'run';
  id: number;
  name: string;
  /** Validated by the sender; a structured clone of plain JSON data, so it arrives as it was parsed. */
  payload: JobPayload<JobName>;
  /** dataset id → local path */
  paths: Record<string, string>;
  stagingDir: string;
}

export type ThreadMessage =
  | { type: 'ready' }
  | { type: 'progress'; id: number; event: StepEvent | null; timings: Array<[string, number]> }
  | { type: 'done'; id: number; metrics: Record<string, unknown>; artifacts: StoredArtifact[] }
  | { type: 'error'; id: number; error: DescribedError };
