export interface Warning {
  field: string;
  reason: string;
}

/**
 * JSON has no NaN or Infinity: each such number becomes null and leaves a warning naming its field and why.
 */
export function sanitize<T>(value: T, warnings: Warning[], reasons: Record<string, string> = {}, path = ''): T {
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value;
    warnings.push({ field: path, reason: reasons[path] ?? (Number.isNaN(value) ? 'not a number (undefined quantity)' : 'infinite (a zero denominator)') });
    return null as T;
  }
  if (Array.isArray(value)) return value.map((v, i) => sanitize(v, warnings, reasons, `${path}[${i}]`)) as T;
  if (value && typeof value === 'object' && !(value instanceof Float64Array)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = sanitize(v, warnings, reasons, path ? `${path}.${k}` : k);
    return out as T;
  }
  return value;
}

/** At most `limit` points, log-spaced so that the early, fast part of a curve keeps its detail. */
export function subsample(curve: ArrayLike<number>, limit = 500): Array<[number, number]> {
  const n = curve.length;
  if (n <= limit) return Array.from({ length: n }, (_, i) => [i, curve[i]] as [number, number]);
  const picks = new Set<number>([0, n - 1]);
  for (let k = 0; picks.size < limit && k < limit * 4; k++) {
    picks.add(Math.min(n - 1, Math.round(Math.expm1((Math.log(n) * k) / (limit * 4)))));
  }
  return [...picks]
    .sort((a, b) => a - b)
    .slice(0, limit)
    .map((i) => [i, curve[i]] as [number, number]);
}
