/**
 * Format checks on an upload that has reached the disk: the file is parsed for real (.npy header and data, the
 * CSV table, the ONNX protobuf). The parse runs in a short-lived worker thread so that a large file does not
 * stall the API's event loop.
 */
import { readFile } from 'node:fs/promises';
import { describeImageArchive, inspectBackbone, isBackboneError, type BackboneSummary } from '../../models/backbones/index.js';
import { isDeepError } from '../../models/deep/errors.js';
import { inspectTail } from '../../models/deep/inspect.js';
import { Worker } from 'node:worker_threads';
import { prepareCsv, readCsvTable } from '../../models/io/index.js';
import { DataError } from '../../models/io/index.js';
import { formatShape, readNpy } from '../../models/io/index.js';
import { CodedError, errorClass, reasonOf, type ErrorReason } from '../../workers/errorTable.js';
import { inspectOnnx, type OnnxInfo } from './onnx.js';

export type DatasetInfo =
  | { format: 'npy'; rows: number; cols: number; dtype: string; shape: number[]; kind: 'features' | 'labels' | 'images' }
  | { format: 'csv'; rows: number; cols: number; header: string[]; kind: 'features' | 'labels' }
  | { format: 'tar'; rows: number; classes: string[] | null; kind: 'images' };

/**
 * Why an upload or a backbone is refused: a reason of the error table (its code is there for reading). Plain data,
 * so that it crosses the thread boundary; the caller raises `new CodedError(reason, message)`.
 */
export interface Refusal {
  ok: false;
  reason: ErrorReason;
  code: string;
  message: string;
}

function refusal(reason: ErrorReason, message: string): Refusal {
  return { ok: false, reason, code: errorClass(reason).code, message };
}

export type InspectResult = { ok: true; dataset?: DatasetInfo; backbone?: OnnxInfo } | Refusal;

const NPY_EXPECTED = 'expected a 2-D N×D float32/float64 feature array, a 4-D N×C×H×W image array, or a 1-D label vector';

/** A bad number is the same failure wherever it is found; anything else makes the file an invalid upload of its format. */
function uploadReason(e: DataError, format: 'upload.NPY' | 'upload.CSV'): ErrorReason {
  return e.code === 'NON_FINITE' ? 'data.NON_FINITE' : format;
}

async function inspectNpy(path: string, name: string): Promise<DatasetInfo> {
  let arr;
  try {
    arr = await readNpy(path, { allowInt: true });
  } catch (e) {
    if (e instanceof DataError) throw new CodedError(uploadReason(e, 'upload.NPY'), e.message.split(path).join(name), { cause: e });
    throw e;
  }
  const { shape, dtype } = arr;
  const integer = dtype !== 'f4' && dtype !== 'f8';
  if (shape.length === 1 || (shape.length === 2 && shape[1] === 1 && integer)) {
    if (shape[0] < 1) throw new CodedError('upload.NPY', `${name}: the label vector is empty`);
    return { format: 'npy', rows: shape[0], cols: 1, dtype, shape, kind: 'labels' };
  }
  if (shape.length === 4 && !integer && shape.every((d) => d > 0)) {
    // Images for a backbone job, already preprocessed; each row is one C×H×W image.
    return { format: 'npy', rows: shape[0], cols: shape[1] * shape[2] * shape[3], dtype, shape, kind: 'images' };
  }
  if (shape.length !== 2) {
    throw new CodedError('upload.NPY', `${name}: shape ${formatShape(shape)} (${shape.length}-D); ${NPY_EXPECTED}`);
  }
  if (integer) {
    throw new CodedError('upload.NPY', `${name}: integer dtype ${dtype} is accepted only for label vectors; ${NPY_EXPECTED}`);
  }
  if (shape[0] < 1 || shape[1] < 1) {
    throw new CodedError('upload.NPY', `${name}: shape ${formatShape(shape)} holds no values; ${NPY_EXPECTED}`);
  }
  return { format: 'npy', rows: shape[0], cols: shape[1], dtype, shape, kind: shape[1] === 1 ? 'labels' : 'features' };
}

async function inspectCsv(path: string, name: string): Promise<DatasetInfo> {
  try {
    const table = await readCsvTable(path);
    if (table.rows.length === 0) throw new DataError('TOO_FEW_ROWS', `${path}: a header row but no data rows; expected at least one data row`);
    if (table.header.some((h) => h.trim() === '')) throw new DataError('BAD_FORMAT', `${path}: the header row has an empty column name`);
    // Numeric columns must hold finite numbers; categorical ones are label-encoded by the engine.
    prepareCsv(table, { standardize: false });
    return { format: 'csv', rows: table.rows.length, cols: table.header.length, header: table.header, kind: table.header.length === 1 ? 'labels' : 'features' };
  } catch (e) {
    if (e instanceof DataError) {
      throw new CodedError(uploadReason(e, 'upload.CSV'), e.message.split(path).join(name), { cause: e });
    }
    throw e;
  }
}

/** An uploaded .tar of PNG/JPEG images (for backbone jobs): its entries are indexed, the images are not decoded. */
async function inspectTar(path: string, name: string): Promise<DatasetInfo> {
  try {
    const { images, classes } = await describeImageArchive(path, name);
    return { format: 'tar', rows: images, classes, kind: 'images' };
  } catch (e) {
    // TAR_MALFORMED (invalid_tar) or IMAGES_EMPTY (images_empty): the codes a job reading the archive would give.
    if (isBackboneError(e)) throw new CodedError(reasonOf(e)!, e.message, { cause: e });
    throw e;
  }
}

/** Parses the file at `path`; `name` stands for it in messages. Never throws for bad content: it says so. */
export async function inspectFile(path: string, format: 'npy' | 'csv' | 'tar' | 'onnx', name: string): Promise<InspectResult> {
  try {
    if (format === 'onnx') return { ok: true, backbone: inspectOnnx(await readFile(path), name) };
    if (format === 'tar') return { ok: true, dataset: await inspectTar(path, name) };
    return { ok: true, dataset: format === 'npy' ? await inspectNpy(path, name) : await inspectCsv(path, name) };
  } catch (e) {
    // Not an ONNX model at all (inspectOnnx: backbone.ONNX_MALFORMED, the reason a job loading it would give).
    if (e instanceof CodedError) return refusal(e.reason, e.message);
    throw e;
  }
}

export type BackboneCheck = { ok: true; summary: BackboneSummary } | Refusal;

/**
 * What a job with this backbone would find before it runs: the feature tensor (found, or the one named) and the
 * model input. A model without a recognisable classifier or an unknown tensor is refused with the candidates.
 */
export async function checkBackboneFile(path: string, name: string, featureTensor?: string, lastBlock?: { cutTensor?: string }): Promise<BackboneCheck> {
  try {
    const bytes = await readFile(path);
    const summary = inspectBackbone(bytes, name, featureTensor);
    // Last-block mode also converts the tail: its cut tensor must exist and every operator in it be supported.
    if (lastBlock) inspectTail(bytes, name, { cutTensor: lastBlock.cutTensor, featureTensor });
    return { ok: true, summary };
  } catch (e) {
    // The reason (and so the code) a job meeting this backbone would fail with.
    if (isBackboneError(e) || isDeepError(e)) return refusal(reasonOf(e)!, e.message);
    throw e;
  }
}

export type ThreadTask =
  | { task: 'inspect'; path: string; format: 'npy' | 'csv' | 'tar' | 'onnx'; name: string }
  | { task: 'backbone'; path: string; name: string; featureTensor?: string; lastBlock?: { cutTensor?: string } };

const THREAD_FILE = new URL('./inspectThread.js', import.meta.url);

/** inspectFile in a worker thread. */
export function inspectInThread(path: string, format: 'npy' | 'csv' | 'tar' | 'onnx', name: string): Promise<InspectResult> {
  return runInThread<InspectResult>({ task: 'inspect', path, format, name });
}

/** checkBackboneFile in a worker thread: a large model's protobuf is parsed off the event loop. */
export function checkBackboneInThread(path: string, name: string, featureTensor?: string, lastBlock?: { cutTensor?: string }): Promise<BackboneCheck> {
  return runInThread<BackboneCheck>({ task: 'backbone', path, name, featureTensor, lastBlock });
}

function runInThread<T>(workerData: ThreadTask): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(THREAD_FILE, { workerData });
    let settled = false;
    worker.once('message', (m: { result?: T; error?: string }) => {
      settled = true;
      if (m.result) resolve(m.result);
      else reject(new Error(m.error ?? 'inspection failed'));
    });
    worker.once('error', (e) => {
      settled = true;
      reject(e);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`the inspection thread exited with code ${code}`));
    });
  });
}
