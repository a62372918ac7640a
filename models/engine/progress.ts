export interface StepEvent {
  phase: 'load' | 'statistics' | 'optimize' | 'evaluate' | 'attacks' | 'done';
  step?: number;
  of?: number;
  kappaBenign?: number;
  kappaHarmful?: number;
  message?: string;
}

export type StepObserver = (event: StepEvent) => void;

export class CancelledError extends Error {
  readonly code = 'CANCELLED';
  constructor() {
    super('the job was cancelled');
  }
}

export function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new CancelledError();
}
