/**
 * Loads a feature matrix (and optional labels) from .npy or .csv, and checks that a
 * benign/harmful pair can be used together.
 *
 * Labels given through `labelColumn` are preprocessed like the CSV's other columns (see csv.ts);
 * labels given as a separate file (`labels`) are used as stored.
 */
import { extname } from 'node:path';
import type { Mat } from '../linalg/types.js';
import { DataError } from './errors.js';
import { prepareCsv, readCsvTable } from './csv.js';
import { readNpyLabels, readNpyMatrix } from './npy.js';

export interface DatasetSpec {
  dataset: string;
  labels?: string;
  labelColumn?: string;
  dropColumns?: string[];
  rowLimit?: number;
}

export interface LoadedDataset {
  X: Mat;
  y?: Float64Array;
  featureNames?: string[];
  /** Category names (index = code) when a categorical CSV label column was used. */
  labelNames?: string[];
  /** Human-readable description of where X (and y) came from. */
  source: string;
}

const DATASET_EXPECTED = '.npy (float32/float64, 2-D N×D) or .csv with a header row were expected';
const LABELS_EXPECTED = '.npy (1-D N or N×1) or .csv (a single column with a header row) were expected';

function extensionOf(path: string): string {
  return extname(path).toLowerCase();
}

async function loadLabelFile(path: string): Promise<Float64Array> {
  const ext = extensionOf(path);
  if (ext === '.npy') return readNpyLabels(path);
  if (ext !== '.csv') {
    throw new DataError('UNSUPPORTED_EXTENSION', `${path}: unsupported labels file extension "${ext || '(none)'}"; ${LABELS_EXPECTED}`);
  }
  const table = await readCsvTable(path);
  if (table.header.length !== 1) {
    throw new DataError(
      'BAD_SHAPE',
      `${path}: labels CSV has ${table.header.length} columns (${table.header.join(', ')}); expected a single column with a header row`,
      { dataReason: 'LABELS_NOT_VECTOR' },
    );
  }
  const y = new Float64Array(table.rows.length);
  for (let i = 0; i < y.length; i++) {
    const cell = table.rows[i][0].trim();
    const line = table.lines ? ` (line ${table.lines[i]})` : '';
    const v = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(cell) ? Number(cell) : Number.NaN;
    if (Number.isNaN(v)) {
      if (/^[+-]?(?:nan|inf|infinity)$/i.test(cell)) {
        throw new DataError('NON_FINITE', `${path}: label at data row ${i}${line} is ${JSON.stringify(cell)}; expected a finite number`);
      }
      throw new DataError('BAD_FORMAT', `${path}: label at data row ${i}${line} is ${JSON.stringify(cell)}; expected a number`);
    }
    if (!Number.isFinite(v)) {
      throw new DataError('NON_FINITE', `${path}: label at data row ${i}${line} (${cell}) overflows float64; expected a finite number`);
    }
    y[i] = v;
  }
  return y;
}

function takeRows(m: Mat, n: number): Mat {
  if (n >= m.rows) return m;
  return { rows: n, cols: m.cols, data: m.data.slice(0, n * m.cols) };
}

export async function loadDataset(spec: DatasetSpec): Promise<LoadedDataset> {
  const path = spec.dataset;
  const ext = extensionOf(path);
  const { rowLimit } = spec;
  if (rowLimit !== undefined && !(Number.isSafeInteger(rowLimit) && rowLimit > 0)) {
    throw new DataError('BAD_ARGUMENT', `${path}: rowLimit must be a positive integer, got ${rowLimit}`);
  }
  if (spec.labels !== undefined && spec.labelColumn !== undefined) {
    throw new DataError('BAD_ARGUMENT', `${path}: give either a labels file or a label column, not both`);
  }

  let X: Mat;
  let y: Float64Array | undefined;
  let featureNames: string[] | undefined;
  let labelNames: string[] | undefined;
  let fullRows: number;

  if (ext === '.npy') {
    if (spec.labelColumn !== undefined || (spec.dropColumns?.length ?? 0) > 0) {
      throw new DataError('BAD_ARGUMENT', `${path}: labelColumn and dropColumns apply only to .csv datasets; for .npy pass a labels file`);
    }
    const full = await readNpyMatrix(path);
    fullRows = full.rows;
    X = rowLimit === undefined ? full : takeRows(full, rowLimit);
  } else if (ext === '.csv') {
    const table = await readCsvTable(path);
    fullRows = table.rows.length;
    const prepared = prepareCsv(table, { labelColumn: spec.labelColumn, dropColumns: spec.dropColumns, rowLimit });
    X = prepared.features;
    featureNames = prepared.featureNames;
    y = prepared.labels;
    labelNames = prepared.labelNames;
  } else {
    throw new DataError('UNSUPPORTED_EXTENSION', `${path}: unsupported dataset file extension "${ext || '(none)'}"; ${DATASET_EXPECTED}`);
  }

  let source = path;
  if (spec.labels !== undefined) {
    const labels = await loadLabelFile(spec.labels);
    if (labels.length !== fullRows) {
      throw new DataError('BAD_SHAPE', `${spec.labels}: ${labels.length} labels but ${path} has ${fullRows} rows; expected one label per row`, {
        dataReason: 'LABEL_COUNT',
      });
    }
    y = labels.length > X.rows ? labels.slice(0, X.rows) : labels;
    source = `${path} (labels: ${spec.labels})`;
  } else if (spec.labelColumn !== undefined) {
    source = `${path} (label column: ${spec.labelColumn})`;
  }

  const out: LoadedDataset = { X, source };
  if (y !== undefined) out.y = y;
  if (featureNames !== undefined) out.featureNames = featureNames;
  if (labelNames !== undefined) out.labelNames = labelNames;
  return out;
}

/** Throws unless both matrices are well formed, have at least 2 rows and share the same D. */
export function checkPair(benign: Mat, harmful: Mat, names: { benign?: string; harmful?: string } = {}): void {
  const sets: [string, Mat][] = [
    [names.benign ?? 'benign dataset', benign],
    [names.harmful ?? 'harmful dataset', harmful],
  ];
  for (const [label, m] of sets) {
    if (!Number.isSafeInteger(m.rows) || !Number.isSafeInteger(m.cols) || m.rows < 0 || m.cols < 0 || m.data.length !== m.rows * m.cols) {
      throw new DataError('BAD_SHAPE', `${label}: matrix claims ${m.rows}×${m.cols} but holds ${m.data.length} values; expected rows·cols values`);
    }
    if (m.rows < 2) {
      throw new DataError('TOO_FEW_ROWS', `${label}: has ${m.rows} row${m.rows === 1 ? '' : 's'}; at least 2 rows (samples) are required`);
    }
    if (m.cols < 1) {
      throw new DataError('BAD_SHAPE', `${label}: has 0 feature columns; expected D ≥ 1`);
    }
  }
  if (benign.cols !== harmful.cols) {
    throw new DataError(
      'DIM_MISMATCH',
      `feature dimension mismatch: ${sets[0][0]} has D=${benign.cols} but ${sets[1][0]} has D=${harmful.cols}; expected both to have the same D`,
    );
  }
}
