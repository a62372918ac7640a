/** Readers and writers of the formats the project takes and writes (.npy, .csv, .safetensors), and their errors. */
export { prepareCsv, readCsvTable } from './csv.js';
export { checkPair, loadDataset } from './dataset.js';
export { DataError, fsError, type DataErrorCode, type DataErrorReason } from './errors.js';
export { loadHousePrice } from './housePrice.js';
export { encodeNpy, formatShape, readNpy, readNpyLabels } from './npy.js';
export { encodeSafetensors, readSafetensors } from './safetensors.js';
