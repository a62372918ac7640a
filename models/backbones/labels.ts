import { extname } from 'node:path';
import { readCsvTable } from '../io/index.js';
import { DataError } from '../io/index.js';
import { readNpyLabels } from '../io/index.js';

/** A labels file for image inputs: .npy (N or N×1) or a one-column .csv with a header, one label per image. */
export async function readLabelFile(path: string): Promise<Float64Array> {
  const ext = extname(path).toLowerCase();
  if (ext === '.npy') return readNpyLabels(path);
  if (ext !== '.csv')
    throw new DataError('UNSUPPORTED_EXTENSION', `${path}: unsupported labels file "${ext || '(none)'}"; expected .npy (N or N×1) or a one-column .csv`);
  const table = await readCsvTable(path);
  if (table.header.length !== 1)
    throw new DataError('BAD_SHAPE', `${path}: labels CSV has ${table.header.length} columns; expected one column with a header row`);
  return Float64Array.from(table.rows, (row, i) => {
    const v = Number(row[0].trim());
    if (row[0].trim() === '' || !Number.isFinite(v))
      throw new DataError('BAD_FORMAT', `${path}: label at data row ${i} is ${JSON.stringify(row[0])}; expected a finite number`);
    return v;
  });
}
