/**
 * CSV tables and the tabular preprocessing used for the House Price experiments.
 *
 * prepareCsv reproduces the reference preprocessing, applied per file over ALL of its rows:
 *   1. A cell is missing when, after trimming whitespace, it is empty or the string 'NA'.
 *   2. A column is categorical when any non-missing cell is not a decimal number.
 *   3. Numeric columns: missing → 0.
 *      Categorical columns: missing → the category '0', as a fill with 0 followed by a cast to text
 *      gives (it sorts before the letters). Each column is label-encoded
 *      by the index of its value in the JS default sort (UTF-16 code unit order) of the column's
 *      distinct values.
 *   4. Every feature column (categorical codes included) and the label column when numeric are
 *      standardized: (x − mean) / std with the sample std (ddof = 1); a std of 0 is replaced by 1.
 *      A column whose values are all identical therefore becomes exactly 0.
 *   5. Only then are the first `rowLimit` rows kept (all rows when the file has fewer).
 * Cells such as 'nan', 'inf' or '1e999' are rejected as non-finite instead of being guessed at.
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'csv-parse/sync';
import type { Mat } from '../linalg/types.js';
import { DataError, fsError } from './errors.js';

export interface CsvTable {
  header: string[];
  rows: string[][];
  /** Where the table came from, for error messages (the path when read by readCsvTable). */
  source?: string;
  /** 1-based line number in the source file at which each row ends. */
  lines?: number[];
}

export interface PrepareCsvOptions {
  labelColumn?: string;
  dropColumns?: string[];
  rowLimit?: number;
  /** Default true. */
  standardize?: boolean;
}

export interface PreparedCsv {
  features: Mat;
  featureNames: string[];
  /** Feature columns that were label-encoded (in featureNames order). */
  categoricalColumns: string[];
  labels?: Float64Array;
  /** Category names (index = code) when the label column is categorical. */
  labelNames?: string[];
}

interface ParsedRecord {
  record: string[];
  info: { lines: number };
}

/** Bytes that are not a CSV table: the upload check refuses the same file as invalid_csv. */
function csvError(message: string): DataError {
  return new DataError('BAD_FORMAT', message, { dataReason: 'CSV_MALFORMED' });
}

export async function readCsvTable(path: string): Promise<CsvTable> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw fsError(err, path, 'a .csv file with a header row');
  }
  let records: ParsedRecord[];
  try {
    records = parse(text, {
      bom: true,
      info: true,
      relax_column_count: true,
      // Blank lines are skipped, as pandas.read_csv does.
      skip_empty_lines: true,
    }) as unknown as ParsedRecord[];
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new DataError('BAD_FORMAT', `${path}: not valid CSV (${detail}); expected comma-separated values with a header row`, {
      cause: err,
      dataReason: 'CSV_MALFORMED',
    });
  }
  if (records.length === 0) {
    throw csvError(`${path}: the file is empty; expected a header row followed by data rows`);
  }
  const header = records[0].record;
  const seen = new Set<string>();
  for (const name of header) {
    if (seen.has(name)) {
      throw csvError(`${path}: duplicate column name ${JSON.stringify(name)} in the header; expected unique names`);
    }
    seen.add(name);
  }
  const rows: string[][] = [];
  const lines: number[] = [];
  for (let i = 1; i < records.length; i++) {
    const { record, info } = records[i];
    if (record.length !== header.length) {
      throw csvError(
        `${path}: line ${info.lines} has ${record.length} field${record.length === 1 ? '' : 's'}; ` + `expected ${header.length} (as in the header row)`,
      );
    }
    rows.push(record);
    lines.push(info.lines);
  }
  return { header, rows, source: path, lines };
}

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const NON_FINITE_WORD = /^[+-]?(?:nan|inf|infinity)$/i;

const MISSING_CATEGORY = '0';

function isMissing(cell: string): boolean {
  const t = cell.trim();
  return t === '' || t === 'NA';
}

function describeColumns(header: readonly string[]): string {
  return header.map((h) => JSON.stringify(h)).join(', ');
}

interface EncodedColumn {
  values: Float64Array;
  categories?: string[];
}

function encodeColumn(table: CsvTable, j: number, where: (i: number) => string): EncodedColumn {
  const n = table.rows.length;
  const name = table.header[j];
  // Words like 'nan'/'inf' make a column neither numeric nor (on their own) categorical:
  // in an otherwise numeric column they are an error, in a categorical one just categories.
  let categorical = false;
  for (let i = 0; i < n && !categorical; i++) {
    const cell = table.rows[i][j];
    if (isMissing(cell)) continue;
    const t = cell.trim();
    if (!DECIMAL.test(t) && !NON_FINITE_WORD.test(t)) categorical = true;
  }
  const values = new Float64Array(n);
  if (!categorical) {
    for (let i = 0; i < n; i++) {
      const cell = table.rows[i][j];
      if (isMissing(cell)) continue; // stays 0
      const v = Number(cell.trim());
      if (!Number.isFinite(v)) {
        throw new DataError(
          'NON_FINITE',
          `${where(i)}, column ${JSON.stringify(name)}: value ${JSON.stringify(cell)} is not a finite number; expected finite numbers in a numeric column`,
        );
      }
      values[i] = v;
    }
    return { values };
  }
  const cells = table.rows.map((r) => (isMissing(r[j]) ? MISSING_CATEGORY : r[j]));
  const categories = [...new Set(cells)].sort();
  const code = new Map(categories.map((c, k) => [c, k]));
  for (let i = 0; i < n; i++) values[i] = code.get(cells[i])!;
  return { values, categories };
}

/**
 * In-place (x − mean) / std with ddof = 1; std 0 → 1, so constant columns become exactly 0.
 * Returns false when the mean or std overflows float64.
 */
function standardizeInPlace(x: Float64Array): boolean {
  const n = x.length;
  let constant = true;
  for (let i = 1; i < n && constant; i++) if (x[i] !== x[0]) constant = false;
  if (constant) {
    x.fill(0);
    return true;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += x[i];
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const d = x[i] - mean;
    ss += d * d;
  }
  let std = Math.sqrt(ss / (n - 1));
  if (!Number.isFinite(mean) || !Number.isFinite(std)) return false;
  if (std === 0) std = 1;
  for (let i = 0; i < n; i++) x[i] = (x[i] - mean) / std;
  return true;
}

export function prepareCsv(table: CsvTable, opts: PrepareCsvOptions = {}): PreparedCsv {
  const source = table.source ?? 'CSV table';
  const { labelColumn, rowLimit } = opts;
  const dropColumns = opts.dropColumns ?? [];
  const standardize = opts.standardize ?? true;
  const where = (i: number): string => `${source}: data row ${i}${table.lines ? ` (line ${table.lines[i]})` : ''}`;

  for (const col of labelColumn === undefined ? dropColumns : [labelColumn, ...dropColumns]) {
    if (!table.header.includes(col)) {
      throw new DataError('MISSING_COLUMN', `${source}: no column named ${JSON.stringify(col)}; available columns: ${describeColumns(table.header)}`);
    }
  }
  if (rowLimit !== undefined && !(Number.isSafeInteger(rowLimit) && rowLimit > 0)) {
    throw new DataError('BAD_ARGUMENT', `${source}: rowLimit must be a positive integer, got ${rowLimit}`);
  }
  const n = table.rows.length;
  const minRows = standardize ? 2 : 1;
  if (n < minRows) {
    throw new DataError(
      'TOO_FEW_ROWS',
      `${source}: ${n} data row${n === 1 ? '' : 's'}; expected at least ${minRows}` + (standardize ? ' (the sample standard deviation needs two)' : ''),
      // A header and no data rows is no table at all (the upload check says so); one row is a table too short to use.
      n === 0 ? { dataReason: 'CSV_MALFORMED' } : undefined,
    );
  }
  for (let i = 0; i < n; i++) {
    if (table.rows[i].length !== table.header.length) {
      throw csvError(`${where(i)} has ${table.rows[i].length} fields; expected ${table.header.length} (as in the header row)`);
    }
  }

  const excluded = new Set(dropColumns);
  if (labelColumn !== undefined) excluded.add(labelColumn);
  const featureIdx: number[] = [];
  table.header.forEach((h, j) => {
    if (!excluded.has(h)) featureIdx.push(j);
  });
  const d = featureIdx.length;
  const nOut = rowLimit === undefined ? n : Math.min(rowLimit, n);

  const features: Mat = { rows: nOut, cols: d, data: new Float64Array(nOut * d) };
  const categoricalColumns: string[] = [];
  for (let k = 0; k < d; k++) {
    const j = featureIdx[k];
    const col = encodeColumn(table, j, where);
    if (col.categories) categoricalColumns.push(table.header[j]);
    if (standardize && !standardizeInPlace(col.values)) overflow(source, table.header[j]);
    for (let i = 0; i < nOut; i++) features.data[i * d + k] = col.values[i];
  }

  const out: PreparedCsv = {
    features,
    featureNames: featureIdx.map((j) => table.header[j]),
    categoricalColumns,
  };
  if (labelColumn !== undefined) {
    const col = encodeColumn(table, table.header.indexOf(labelColumn), where);
    if (col.categories) out.labelNames = col.categories;
    else if (standardize && !standardizeInPlace(col.values)) overflow(source, labelColumn);
    out.labels = col.values.slice(0, nOut);
  }
  return out;
}

function overflow(source: string, column: string): never {
  throw new DataError(
    'NON_FINITE',
    `${source}: column ${JSON.stringify(column)} overflows float64 while computing its mean/standard deviation; expected values well inside the float64 range`,
  );
}
