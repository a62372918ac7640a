export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : 0.5 * (s[mid - 1] + s[mid]);
}

export interface Timed<T> {
  /** Seconds per timed repetition. */
  seconds: number[];
  median: number;
  /** Result of the last repetition. */
  result: T;
}

/** Runs fn `warmup` untimed times, then `reps` timed times. */
export function timeReps<T>(fn: () => T, reps: number, warmup = 0): Timed<T> {
  let result: T | undefined;
  for (let i = 0; i < warmup; i++) result = fn();
  const seconds: number[] = [];
  for (let i = 0; i < Math.max(1, reps); i++) {
    const t0 = performance.now();
    result = fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return { seconds, median: median(seconds), result: result as T };
}
