/**
 * Datasets and backbones: streamed uploads, format checks, per-tenant records, deletion of the bytes, the
 * submit-time checks of a job spec against the upload metadata, and the worker's id → path resolution.
 */
import { rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { JobSpec, DataRefSpec } from '../workers/jobSpec.js';
import { CodedError, errorClass, type ErrorReason } from '../workers/errorTable.js';
import { PermanentJobError, type DatasetRef, type DatasetResolver } from '../workers/ports.js';
import { canAccess, type Principal } from './auth.js';
import { ApiError, notFound } from './errors.js';
import { isId, newId } from './ids.js';
import type { DatasetRecord, Records } from './records.js';
import type { BlobFormat, FsStore } from './storage/fsStore.js';
import { checkBackboneInThread, inspectInThread, type BackboneCheck } from './storage/inspect.js';
import { streamToFile, UploadTooLargeError } from './storage/upload.js';

type Kind = 'dataset' | 'backbone';

const ACCEPTED: Record<Kind, BlobFormat[]> = { dataset: ['npy', 'csv', 'tar'], backbone: ['onnx'] };

/** An empty upload is an invalid file of its format: the reason its format check would give. */
const EMPTY_UPLOAD: Record<BlobFormat, ErrorReason> = {
  npy: 'upload.NPY',
  csv: 'upload.CSV',
  tar: 'backbone.TAR_MALFORMED',
  onnx: 'backbone.ONNX_MALFORMED',
};

/** The client's file name reduced to something safe to show (it is never used as a path). */
export function displayName(filename: string | undefined): string {
  const base = (filename ?? '').split(/[\\/]/).pop() ?? '';
  const clean = base.replace(/[^\w.+-]/g, '_').slice(0, 128);
  return clean || 'upload';
}

function formatOf(filename: string, kind: Kind): BlobFormat {
  const m = /\.([A-Za-z0-9]+)$/.exec(filename);
  const ext = m ? m[1].toLowerCase() : '';
  const accepted = ACCEPTED[kind];
  if ((accepted as string[]).includes(ext)) return ext as BlobFormat;
  const expected = kind === 'dataset' ? '.npy (numpy.save), .csv (with a header row) or .tar (PNG/JPEG images)' : '.onnx';
  throw new CodedError('data.UNSUPPORTED_EXTENSION', `${filename}: the file name must end in ${expected}; got ${ext ? `.${ext}` : 'no extension'}`);
}

/**
 * A failed write of an upload (a full disk: 507 insufficient_storage; another I/O error: 500 io_error), answered with
 * the table's status and code; both are worth a retry later. Other errors are returned unchanged.
 */
function storageAnswer(err: unknown, name: string): unknown {
  if (!(err instanceof CodedError) || (err.reason !== 'storage.NO_SPACE' && err.reason !== 'storage.IO_ERROR')) return err;
  const { status, code } = errorClass(err.reason);
  return new ApiError(status, code, `${name}: ${err.message}; try again later`);
}

export interface UploadedFile {
  filename: string;
  stream: Readable;
}

/**
 * The per-image shape (C×H×W) of an image dataset for a backbone job; null for an archive of image files, which are
 * resized and cropped to the model's input.
 */
function imageShape(field: string, ds: DatasetRecord): string | null {
  if (ds.format === 'tar') return null;
  if (ds.format !== 'npy' || ds.shape?.length !== 4) {
    throw new CodedError(
      'spec.INVALID',
      `${field}: with a backbone the data are images; dataset ${ds.id} is not an N×C×H×W .npy or a .tar of images (it is ${ds.format === 'npy' ? `shape (${ds.shape?.join(', ')})` : `.${ds.format}`})`,
    );
  }
  return ds.shape.slice(1).join('×');
}

/** Whether images of shape C×H×W fit a model input whose fixed dims (numbers) must match; named dims are free. */
function fitsInput(imageShape: number | string, input: Array<number | string | null>): boolean {
  const dims = String(imageShape).split('×').map(Number);
  return dims.length === input.length && input.every((d, i) => typeof d !== 'number' || d <= 0 || d === dims[i]);
}

/** The feature dimension a data reference gives, from the upload's metadata. */
function featureDim(field: string, ref: DataRefSpec, ds: DatasetRecord): number {
  if (ds.format === 'tar') throw new CodedError('spec.INVALID', `${field}: dataset ${ds.id} is an archive of images; give the job a backbone`);
  if (ds.format === 'npy') {
    if (ref.labelColumn !== undefined || (ref.dropColumns?.length ?? 0) > 0) {
      throw new CodedError(
        'spec.INVALID',
        `${field}: labelColumn and dropColumns apply only to .csv datasets; ${ds.id} is .npy (pass labels as a separate dataset)`,
      );
    }
    if (!ds.shape || ds.shape.length !== 2) {
      const what = ds.shape?.length === 4 ? 'images (give the job a backbone)' : 'a label vector';
      throw new CodedError('spec.INVALID', `${field}: dataset ${ds.id} of shape (${ds.shape?.join(', ')}) is ${what}; expected a 2-D N×D feature array`);
    }
    return ds.cols!;
  }
  const header = ds.header ?? [];
  const named = [...(ref.labelColumn !== undefined ? [ref.labelColumn] : []), ...(ref.dropColumns ?? [])];
  for (const col of named) {
    if (!header.includes(col)) {
      const shown = header.length > 12 ? `${header.slice(0, 12).join(', ')}, …` : header.join(', ');
      throw new CodedError('data.MISSING_COLUMN', `${field}: dataset ${ds.id} has no column named ${JSON.stringify(col)}; its columns are ${shown}`);
    }
  }
  const d = header.length - new Set(named).size;
  if (d < 1) throw new CodedError('spec.INVALID', `${field}: no feature columns are left in dataset ${ds.id} once the label and dropped columns are removed`);
  return d;
}

const BACKBONE_CHECKS_KEPT = 64;

/** How many upload records the spec checks remember. */
const CHECKED_RECORDS_KEPT = 4096;

/** An upload a spec's checks relied on: the job may be created only while it still exists. */
export interface UploadUse {
  id: string;
  kind: Kind;
  /** The spec field that names it. */
  field: string;
}

export class DatasetService implements DatasetResolver {
  private readonly backboneChecks = new Map<string, BackboneCheck>();
  /**
   * Upload records read by the spec checks, by id. A record never changes once written; it can only be deleted,
   * which the submission itself checks (see Records.submitJob), so a remembered record never goes stale.
   */
  private readonly checkedRecords = new Map<string, DatasetRecord>();

  constructor(
    private readonly records: Records,
    private readonly store: FsStore,
    readonly maxUploadBytes: number,
  ) {}

  async ingest(principal: Principal, kind: Kind, file: UploadedFile): Promise<DatasetRecord> {
    const name = displayName(file.filename);
    const format = formatOf(name, kind);
    const temp = this.store.tempUploadPath();
    let adopted: string | null = null;
    try {
      let streamed;
      try {
        streamed = await streamToFile(file.stream, temp, this.maxUploadBytes, (path) => this.store.uploadStream(path));
      } catch (err) {
        if (err instanceof UploadTooLargeError) throw new ApiError(413, 'payload_too_large', `${name}: ${err.message}`);
        throw storageAnswer(err, name);
      }
      if (streamed.bytes === 0) throw new CodedError(EMPTY_UPLOAD[format], `${name} is empty`);
      const inspected = await inspectInThread(temp, format, name);
      if (!inspected.ok) throw new CodedError(inspected.reason, inspected.message);
      const id = newId(kind);
      adopted = await this.store.adoptUpload(temp, kind, id, format).catch((err: unknown) => Promise.reject(storageAnswer(err, name)));
      const record: DatasetRecord = {
        id,
        tenant: principal.tenant,
        kind,
        format,
        sha256: streamed.sha256,
        bytes: streamed.bytes,
        createdAt: Date.now(),
        filename: name,
      };
      const d = inspected.dataset;
      if (d) {
        record.rows = d.rows;
        if (d.format === 'npy') {
          record.cols = d.cols;
          record.dtype = d.dtype;
          record.shape = d.shape;
        } else if (d.format === 'csv') {
          record.cols = d.cols;
          record.header = d.header;
        } else if (d.classes) record.classes = d.classes;
      }
      if (inspected.backbone) {
        record.inputs = inspected.backbone.inputs;
        record.outputs = inspected.backbone.outputs;
      }
      await this.records.createDataset(record);
      adopted = null;
      return record;
    } finally {
      // Whatever happened, no partial file stays under uploads/, and no blob stays without its record.
      await this.store.dropUpload(temp);
      if (adopted) await rm(adopted, { force: true });
    }
  }

  /** The record, if it exists, is of this kind and the principal may see it; otherwise a 404. */
  async mustGet(principal: Principal, kind: Kind, id: string, field?: string): Promise<DatasetRecord> {
    const what = field ? `${field}: ` : '';
    if (!isId(kind, id)) throw notFound(`${what}no ${kind} with id ${JSON.stringify(id)}`);
    const r = await this.records.getDataset(id);
    if (!r || r.kind !== kind || !canAccess(principal, r.tenant)) throw notFound(`${what}no ${kind} with id ${id}`);
    return r;
  }

  /** mustGet for the spec checks: a record read before is used again (whether it still exists is checked later). */
  private async mustGetChecked(principal: Principal, kind: Kind, id: string, field: string, uses: UploadUse[]): Promise<DatasetRecord> {
    uses.push({ id, kind, field });
    const known = this.checkedRecords.get(id);
    const r = known && known.kind === kind && canAccess(principal, known.tenant) ? known : await this.mustGet(principal, kind, id, field);
    if (!known) {
      if (this.checkedRecords.size >= CHECKED_RECORDS_KEPT) this.checkedRecords.delete(this.checkedRecords.keys().next().value!);
      this.checkedRecords.set(id, r);
    }
    return r;
  }

  /** The answer to a submission that named an upload deleted since its record was read: mustGet's. */
  gone(use: UploadUse): ApiError {
    return notFound(`${use.field}: no ${use.kind} with id ${use.id}`);
  }

  async remove(principal: Principal, kind: Kind, id: string): Promise<void> {
    const r = await this.mustGet(principal, kind, id);
    this.checkedRecords.delete(r.id);
    await this.store.removeBlob(kind, r.id, r.format);
    await this.records.deleteDataset(r.id, r.tenant);
  }

  /**
   * Checks a spec's dataset references against the upload metadata: ownership, columns, labels, and D. Returns the
   * uploads it relied on, in the order their answers are given; the job may be created only while they all exist.
   */
  async checkSpec(principal: Principal, spec: JobSpec): Promise<UploadUse[]> {
    const backboneUse: UploadUse[] = [];
    const uses: UploadUse[] = [];
    // Every record the spec names is read at once; each is then checked in the order the answers would be given.
    const lookups = new Map<string, Promise<DatasetRecord>>();
    for (const side of ['benign', 'harmful', 'benignTest'] as const) {
      const ref = spec[side];
      if (!ref) continue;
      lookups.set(`${side}.dataset`, this.mustGetChecked(principal, 'dataset', ref.dataset, `${side}.dataset`, uses));
      if (ref.labels) lookups.set(`${side}.labels`, this.mustGetChecked(principal, 'dataset', ref.labels, `${side}.labels`, uses));
    }
    // A lookup that fails is answered when its turn comes, or never when an earlier check fails first.
    for (const lookup of lookups.values()) lookup.catch(() => undefined);
    const lastBlock = spec.mode === 'last-block' ? { cutTensor: spec.cutTensor } : undefined;
    const modelInput = spec.backbone ? await this.checkBackbone(principal, spec.backbone, spec.featureTensor, lastBlock, backboneUse) : null;
    const dims: Array<{ field: string; d: number | string }> = [];
    for (const side of ['benign', 'harmful', 'benignTest'] as const) {
      const ref = spec[side];
      if (!ref) continue;
      const ds = await lookups.get(`${side}.dataset`)!;
      // With a backbone, D is the backbone's feature size: the images must at least share their shape.
      const d = spec.backbone ? imageShape(`${side}.dataset`, ds) : featureDim(`${side}.dataset`, ref, ds);
      const rows = Math.min(ds.rows ?? 0, ref.rowLimit ?? Number.POSITIVE_INFINITY);
      if (rows < 2) throw new CodedError('data.TOO_FEW_ROWS', `${side}.dataset: ${rows} row${rows === 1 ? '' : 's'} would be used; at least 2 are needed`);
      if (ref.labels) {
        const labels = await lookups.get(`${side}.labels`)!;
        const vector = labels.format === 'npy' ? labels.shape?.length === 1 || labels.shape?.[1] === 1 : labels.cols === 1;
        if (!vector) {
          throw new CodedError(
            'labels.NOT_VECTOR',
            `${side}.labels: dataset ${labels.id} is not a label vector; expected a 1-D .npy, an N×1 .npy or a single-column .csv`,
          );
        }
        if (labels.rows !== ds.rows) {
          throw new CodedError('labels.COUNT', `${side}.labels: ${labels.rows} labels for ${ds.rows} rows in ${side}.dataset; expected one label per row`);
        }
      }
      if (d === null) continue; // image files: resized and cropped to the model's input by the job
      if (modelInput && !fitsInput(d, modelInput)) {
        throw new CodedError(
          'backbone.IMAGE_SIZE',
          `${side}.dataset: images of ${d} do not fit the backbone's input ${modelInput.map((x) => x ?? '?').join('×')} (C×H×W after the batch axis); preprocess them to that size`,
        );
      }
      dims.push({ field: `${side}.dataset`, d });
    }
    const [benign, ...others] = dims;
    for (const o of others) {
      if (o.d !== benign.d) {
        const what = spec.backbone ? 'image shape mismatch' : 'feature dimension mismatch';
        const unit = spec.backbone ? 'images of ' : 'D=';
        throw new CodedError('data.DIM_MISMATCH', `${what}: ${benign.field} has ${unit}${benign.d} but ${o.field} has ${unit}${o.d}; both must be the same`);
      }
    }
    return [...backboneUse, ...uses];
  }

  /**
   * The backbone as a job would find it: its feature tensor (found, or the one named) must exist, and in last-block
   * mode its tail must convert (cut tensor found, every operator supported). Answers the
   * model's input shape after the batch axis. Outcomes are remembered per backbone and tensor name.
   */
  private async checkBackbone(
    principal: Principal,
    id: string,
    featureTensor: string | undefined,
    lastBlock: { cutTensor?: string } | undefined,
    uses: UploadUse[],
  ): Promise<Array<number | string | null> | null> {
    const r = await this.mustGetChecked(principal, 'backbone', id, 'backbone', uses);
    const key = JSON.stringify([r.id, featureTensor ?? null, lastBlock ? (lastBlock.cutTensor ?? '') : null]);
    let check = this.backboneChecks.get(key);
    if (!check) {
      check = await checkBackboneInThread(this.store.blobPath('backbone', r.id, r.format), r.filename ?? `${r.id}.onnx`, featureTensor, lastBlock);
      if (this.backboneChecks.size >= BACKBONE_CHECKS_KEPT) this.backboneChecks.delete(this.backboneChecks.keys().next().value!);
      this.backboneChecks.set(key, check);
    }
    if (!check.ok) throw new CodedError(check.reason, `backbone ${r.id}: ${check.message}`);
    return check.summary.input.shape?.slice(1) ?? null;
  }

  /** For workers: each referenced upload's local path, provided it still exists and belongs to the tenant. */
  async resolve(tenant: string, refs: DatasetRef[]): Promise<Record<string, string>> {
    const paths: Record<string, string> = {};
    for (const ref of refs) {
      const kind = ref.role === 'backbone' ? 'backbone' : 'dataset';
      const r = isId(kind, ref.id) ? await this.records.getDataset(ref.id) : null;
      if (!r || r.kind !== kind || r.tenant !== tenant) {
        throw new PermanentJobError('not_found', `${ref.field}: ${kind} ${ref.id} does not exist (deleted?)`);
      }
      paths[ref.id] = this.store.blobPath(kind, r.id, r.format);
    }
    return paths;
  }
}

/** The public form of a dataset or backbone record. */
export function datasetDoc(r: DatasetRecord): Record<string, unknown> {
  const base = { id: r.id, sha256: r.sha256, format: r.format, bytes: r.bytes, filename: r.filename, createdAt: new Date(r.createdAt).toISOString() };
  if (r.kind === 'backbone') return { ...base, inputs: r.inputs ?? [], outputs: r.outputs ?? [] };
  return { ...base, rows: r.rows, cols: r.cols, ...(r.dtype ? { dtype: r.dtype, shape: r.shape } : {}), ...(r.header ? { header: r.header } : {}) };
}
