/**
 * What a queue worker needs from the outside, as interfaces: the service supplies the Redis-backed job records,
 * the artifact store and the dataset resolver when it starts a worker, so this layer stays free of them.
 */
import type { StoredArtifact } from './staging.js';

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'cancelled']);

export interface JobError {
  /** Stable, lower_snake_case. */
  code: string;
  message: string;
}

export interface JobProgress {
  /** 0 to 1, never decreasing within an attempt. */
  fraction: number;
  phase: string;
  step?: number;
  of?: number;
  kappaBenign?: number;
  kappaHarmful?: number;
  message?: string;
}

/** The part of a job record a worker reads before it starts. */
export interface JobRecordView {
  id: string;
  tenant: string;
  status: JobStatus;
  cancelRequested: boolean;
  /** The spec as submitted (null when the record has none). */
  spec: unknown;
}

export interface WorkerRecords {
  get(jobId: string): Promise<JobRecordView | null>;
  /** Marks the job running for this attempt; returns the number of attempts started so far, this one included. */
  startAttempt(jobId: string, workerId: string): Promise<number>;
  progress(jobId: string, progress: JobProgress): Promise<void>;
  complete(jobId: string, metrics: Record<string, unknown>, artifacts: StoredArtifact[]): Promise<void>;
  /** final=false: the job will be retried, so it goes back to queued with the error kept as lastError. */
  fail(jobId: string, error: JobError, final: boolean): Promise<void>;
  cancelled(jobId: string): Promise<void>;
  isCancelRequested(jobId: string): Promise<boolean>;
  /** Calls `handler` with the id of each job whose cancellation is requested; resolves to an unsubscribe function. */
  onCancel(handler: (jobId: string) => void): Promise<() => Promise<void>>;
}

/** What a committed attempt leaves beside its artifacts, so that its completion can be recorded again. */
export interface CommitManifest {
  metrics: Record<string, unknown>;
  artifacts: StoredArtifact[];
}

export interface AttemptStore {
  /** Creates and returns a fresh local directory for one attempt's outputs. */
  stagingDir(jobId: string, attemptId: string): Promise<string>;
  /**
   * Makes the attempt's files, with the manifest, the job's artifacts in one step; false when another attempt
   * already did.
   */
  commit(jobId: string, attemptId: string, manifest: CommitManifest): Promise<boolean>;
  /** The manifest of the committed attempt, or null when none has committed. */
  committed(jobId: string): Promise<CommitManifest | null>;
  /** Removes the attempt's directory, or with no attemptId every uncommitted attempt's. */
  discard(jobId: string, attemptId?: string): Promise<void>;
}

export interface DatasetRef {
  field: string;
  id: string;
  /** features: a feature matrix, or images when the job has a backbone; backbone: an uploaded .onnx. */
  role: 'features' | 'labels' | 'backbone';
}

export interface DatasetResolver {
  /** Maps each referenced dataset or backbone id to a readable local path; throws a PermanentJobError when one is gone. */
  resolve(tenant: string, refs: DatasetRef[]): Promise<Record<string, string>>;
}

export interface WorkerMetrics {
  jobFinished(outcome: 'completed' | 'failed' | 'cancelled' | 'retried', seconds: number): void;
  engineSteps(phase: string, seconds: number[]): void;
}

export interface WorkerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** A failure that retrying cannot fix: bad input, a missing dataset. */
export class PermanentJobError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'PermanentJobError';
  }
}

/**
 * What a job carries in the queue: its tenant. The job id is the record id, and the record holds the spec (entries
 * queued by earlier versions carried a copy of it, which is not read).
 */
export interface QueuedJobData {
  tenant: string;
}
