/**
 * The Kaggle House Prices setup from the condition-number immunization paper:
 *   benign  = D1.csv, label LotArea;   harmful = D2.csv, label SalePrice.
 * Features are every other column (79, Id included; both files contain both label columns,
 * and both are left out of the features). Each file is preprocessed on its own over all of its
 * rows (see prepareCsv), then rows 0–199 form the training split and rows 200–299 the test split.
 */
import { join } from 'node:path';
import type { Mat } from '../linalg/types.js';
import { DataError } from './errors.js';
import { prepareCsv, readCsvTable } from './csv.js';

export interface LabeledSplit {
  X: Mat;
  y: Float64Array;
}

export interface HousePriceData {
  benign: LabeledSplit;
  harmful: LabeledSplit;
  benignTest: LabeledSplit;
  harmfulTest: LabeledSplit;
  featureNames: string[];
}

export const HOUSE_PRICE_TRAIN_ROWS = 200;
export const HOUSE_PRICE_TEST_ROWS = 100;

function split(X: Mat, y: Float64Array, from: number, to: number): LabeledSplit {
  return {
    X: { rows: to - from, cols: X.cols, data: X.data.slice(from * X.cols, to * X.cols) },
    y: y.slice(from, to),
  };
}

async function loadOne(path: string, label: string, other: string): Promise<{ train: LabeledSplit; test: LabeledSplit; names: string[] }> {
  const table = await readCsvTable(path);
  const need = HOUSE_PRICE_TRAIN_ROWS + HOUSE_PRICE_TEST_ROWS;
  if (table.rows.length < need) {
    throw new DataError('TOO_FEW_ROWS', `${path}: ${table.rows.length} data rows; expected at least ${need} (200 train + 100 test)`);
  }
  const p = prepareCsv(table, { labelColumn: label, dropColumns: [other], rowLimit: need });
  if (p.labelNames !== undefined) {
    throw new DataError('BAD_FORMAT', `${path}: label column ${label} is not numeric; expected numbers`);
  }
  const y = p.labels!;
  return {
    train: split(p.features, y, 0, HOUSE_PRICE_TRAIN_ROWS),
    test: split(p.features, y, HOUSE_PRICE_TRAIN_ROWS, need),
    names: p.featureNames,
  };
}

export async function loadHousePrice(dataDir: string): Promise<HousePriceData> {
  const d1 = join(dataDir, 'D1.csv');
  const d2 = join(dataDir, 'D2.csv');
  const benign = await loadOne(d1, 'LotArea', 'SalePrice');
  const harmful = await loadOne(d2, 'SalePrice', 'LotArea');
  if (benign.names.join('\u0000') !== harmful.names.join('\u0000')) {
    throw new DataError(
      'DIM_MISMATCH',
      `${d1} and ${d2} have different feature columns (${benign.names.length} vs ${harmful.names.length}); expected identical headers`,
    );
  }
  return {
    benign: benign.train,
    harmful: harmful.train,
    benignTest: benign.test,
    harmfulTest: harmful.test,
    featureNames: benign.names,
  };
}
