/** Plain-text table and number formatting for the bench report. */

export type Align = 'left' | 'right';

/** Column-aligned table: the first column left-aligned, the rest right-aligned unless `align` says otherwise. */
export function table(headers: string[], rows: string[][], align?: Align[]): string[] {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const alignOf = (c: number): Align => align?.[c] ?? (c === 0 ? 'left' : 'right');
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (alignOf(c) === 'left' ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => line(headers.map((_, c) => r[c] ?? '')))];
}

/** `digits` significant digits, thousands separators, exponent form beyond 1e7; '—' for null. */
export function num(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined) return '—';
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '-∞';
  if (x === 0) return '0';
  const ax = Math.abs(x);
  if (ax >= 1e7 || ax < 1e-4) return x.toExponential(Math.max(0, digits - 1));
  if (ax >= 10 ** digits) return Math.round(x).toLocaleString('en-US');
  return x.toLocaleString('en-US', { maximumSignificantDigits: digits, useGrouping: true });
}

export function seconds(s: number | null | undefined, digits = 3): string {
  return s === null || s === undefined ? '—' : `${num(s, digits)} s`;
}

export function ms(s: number | null | undefined, digits = 3): string {
  return s === null || s === undefined ? '—' : num(s * 1000, digits);
}

export function sci(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined) return '—';
  if (x === 0) return '0';
  return x.toExponential(digits);
}

export function heading(title: string): string[] {
  return ['', title, '='.repeat(title.length)];
}
