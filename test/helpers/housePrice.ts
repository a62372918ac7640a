/** Shared House Price fixture for the engine tests (not a test file itself). */
import { fileURLToPath } from 'node:url';
import { loadHousePrice, type HousePriceData } from '../../models/io/housePrice.js';
import type { Mat } from '../../models/linalg/index.js';

// dist/test/models/engine/ → repository root
export const HOUSE_PRICE_DIR = fileURLToPath(new URL('../../../data/house_price', import.meta.url));

let cached: Promise<HousePriceData> | null = null;

export function housePrice(): Promise<HousePriceData> {
  cached ??= loadHousePrice(HOUSE_PRICE_DIR);
  return cached;
}

/** Columns of X that are exactly zero in every row. */
export function zeroColumns(X: Mat): number[] {
  const out: number[] = [];
  for (let j = 0; j < X.cols; j++) {
    let zero = true;
    for (let i = 0; i < X.rows && zero; i++) if (X.data[i * X.cols + j] !== 0) zero = false;
    if (zero) out.push(j);
  }
  return out;
}
