/**
 * safetensors checkpoints: an 8-byte little-endian header length N, N bytes of JSON header
 * (space-padded so the data starts 8-byte aligned), then the raw tensor bytes.
 * We write float64 only; we read float64 and float32 (widened to float64).
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { endianness } from 'node:os';
import { DataError, fsError } from './errors.js';

export interface TensorIn {
  shape: readonly number[];
  data: Float64Array;
}

export interface Tensor {
  shape: number[];
  dtype: string;
  data: Float64Array;
}

export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata?: Record<string, string>;
}

const METADATA_KEY = '__metadata__';
// Same ceiling as the reference implementation; protects against absurd length fields.
const MAX_HEADER_BYTES = 100_000_000;
const READ_DTYPES: Record<string, number> = { F64: 8, F32: 4 };
const HOST_LE = endianness() === 'LE';

function shapeCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function validShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0);
}

export function encodeSafetensors(tensors: Record<string, TensorIn>, metadata?: Record<string, string>, name = 'safetensors'): Buffer {
  const names = Object.keys(tensors).sort();
  const header = Object.create(null) as Record<string, unknown>;
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new DataError('BAD_ARGUMENT', `${name}: metadata value for ${JSON.stringify(k)} must be a string, got ${typeof v}`);
      }
    }
    header[METADATA_KEY] = { ...metadata };
  }
  let offset = 0;
  for (const key of names) {
    if (key === METADATA_KEY) throw new DataError('BAD_ARGUMENT', `${name}: "${METADATA_KEY}" cannot be used as a tensor name`);
    const t = tensors[key];
    if (!validShape(t.shape)) {
      throw new DataError('BAD_SHAPE', `${name}: tensor ${JSON.stringify(key)} has shape ${JSON.stringify(t.shape)}; expected non-negative integers`);
    }
    const count = shapeCount(t.shape);
    if (t.data.length !== count) {
      throw new DataError('BAD_SHAPE', `${name}: tensor ${JSON.stringify(key)} of shape [${t.shape.join(', ')}] needs ${count} values, got ${t.data.length}`);
    }
    for (let i = 0; i < count; i++) {
      if (!Number.isFinite(t.data[i])) {
        throw new DataError(
          'NON_FINITE',
          `${name}: tensor ${JSON.stringify(key)} holds a non-finite value ${t.data[i]} at flat index ${i}; refusing to write it`,
        );
      }
    }
    header[key] = { dtype: 'F64', shape: [...t.shape], data_offsets: [offset, offset + count * 8] };
    offset += count * 8;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);

  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const key of names) {
    const data = tensors[key].data;
    if (HOST_LE) {
      Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, pos);
      pos += data.byteLength;
    } else {
      for (let i = 0; i < data.length; i++, pos += 8) out.writeDoubleLE(data[i], pos);
    }
  }
  return out;
}

/** Writes the checkpoint atomically: to a temporary file in the same folder, fsynced, then renamed. */
export async function writeSafetensors(path: string, tensors: Record<string, TensorIn>, metadata?: Record<string, string>): Promise<void> {
  const bytes = encodeSafetensors(tensors, metadata, path);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let renamed = false;
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    renamed = true;
  } catch (err) {
    if (err instanceof DataError) throw err;
    const detail = err instanceof Error ? err.message : String(err);
    throw new DataError('IO_ERROR', `${path}: could not write the checkpoint: ${detail}`, { cause: err });
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

function bad(name: string, what: string): DataError {
  return new DataError('BAD_FORMAT', `${name}: invalid safetensors file: ${what}`);
}

export function parseSafetensors(buf: Buffer, name: string): SafetensorsFile {
  const { header, dataStart } = readHeader(buf, name);
  const dataLen = buf.length - dataStart;
  let metadata: Record<string, string> | undefined;
  const entries: Entry[] = [];
  for (const [key, raw] of Object.entries(header)) {
    if (key === METADATA_KEY) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
        throw bad(name, `"${METADATA_KEY}" must be an object of string values`);
      }
      metadata = Object.assign(Object.create(null) as Record<string, string>, raw);
      continue;
    }
    entries.push(headerEntry(name, key, raw, dataLen));
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  checkContiguous(name, entries, dataLen);
  const tensors = Object.create(null) as Record<string, Tensor>;
  for (const e of entries) tensors[e.key] = decodeTensor(name, buf.subarray(dataStart + e.begin, dataStart + e.end), e);
  return metadata === undefined ? { tensors } : { tensors, metadata };
}

interface Entry {
  key: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** The JSON header as an object, and where the data section starts. */
function readHeader(buf: Buffer, name: string): { header: Record<string, unknown>; dataStart: number } {
  if (buf.length < 8)
    throw new DataError('TRUNCATED', `${name}: ${buf.length} bytes is too short for a safetensors file; expected an 8-byte header length first`);
  const n64 = buf.readBigUInt64LE(0);
  if (n64 === 0n || n64 > BigInt(MAX_HEADER_BYTES)) {
    throw bad(name, `header length ${n64} is out of range; expected 1..${MAX_HEADER_BYTES} bytes`);
  }
  const n = Number(n64);
  if (8 + n > buf.length) {
    throw new DataError('TRUNCATED', `${name}: header length field says ${n} bytes but only ${buf.length - 8} follow it`);
  }
  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n));
    header = JSON.parse(text);
  } catch (err) {
    throw bad(name, `the header is not valid UTF-8 JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw bad(name, 'the header must be a JSON object mapping tensor names to {dtype, shape, data_offsets}');
  }
  return { header: header as Record<string, unknown>, dataStart: 8 + n };
}

/** One tensor's header entry, checked: a readable dtype, a shape, and offsets inside the data section that fit both. */
function headerEntry(name: string, key: string, raw: unknown, dataLen: number): Entry {
  const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
  if (typeof info !== 'object' || info === null) throw bad(name, `entry ${JSON.stringify(key)} is not an object`);
  const { dtype, shape, data_offsets: offs } = info;
  if (typeof dtype !== 'string') throw bad(name, `tensor ${JSON.stringify(key)} has no string "dtype"`);
  if (!Object.hasOwn(READ_DTYPES, dtype)) {
    throw new DataError('BAD_DTYPE', `${name}: tensor ${JSON.stringify(key)} has dtype ${dtype}; expected F64 or F32`);
  }
  if (!validShape(shape)) throw bad(name, `tensor ${JSON.stringify(key)} has shape ${JSON.stringify(shape)}; expected an array of non-negative integers`);
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw bad(name, `tensor ${JSON.stringify(key)} has data_offsets ${JSON.stringify(offs)}; expected [begin, end] non-negative integers`);
  }
  const [begin, end] = offs as [number, number];
  if (begin > end || end > dataLen) {
    throw bad(name, `tensor ${JSON.stringify(key)} has data_offsets [${begin}, ${end}] outside the ${dataLen}-byte data section`);
  }
  const expected = shapeCount(shape) * READ_DTYPES[dtype];
  if (end - begin !== expected) {
    throw bad(name, `tensor ${JSON.stringify(key)} spans ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${expected}`);
  }
  return { key, dtype, shape, begin, end };
}

/** The entries, sorted by offset, must tile the data section exactly: no overlap, no gap, nothing left over. */
function checkContiguous(name: string, entries: Entry[], dataLen: number): void {
  let cursor = 0;
  for (const e of entries) {
    if (e.begin !== cursor) {
      throw bad(
        name,
        e.begin < cursor
          ? `tensor ${JSON.stringify(e.key)} at [${e.begin}, ${e.end}] overlaps the previous tensor (which ends at ${cursor})`
          : `gap in the data section: tensor ${JSON.stringify(e.key)} starts at ${e.begin}, expected ${cursor}`,
      );
    }
    cursor = e.end;
  }
  if (cursor !== dataLen) {
    throw bad(name, `the tensors cover ${cursor} bytes but the data section holds ${dataLen}; expected them to match`);
  }
}

/** A tensor's little-endian bytes widened to float64, refusing non-finite weights. */
function decodeTensor(name: string, raw: Buffer, e: Entry): Tensor {
  const count = shapeCount(e.shape);
  const itemsize = READ_DTYPES[e.dtype];
  const bytes = new Uint8Array(count * itemsize);
  bytes.set(raw);
  let data: Float64Array;
  if (!HOST_LE) {
    const dv = new DataView(bytes.buffer);
    data = new Float64Array(count);
    for (let i = 0; i < count; i++) data[i] = itemsize === 8 ? dv.getFloat64(i * 8, true) : dv.getFloat32(i * 4, true);
  } else if (itemsize === 8) {
    data = new Float64Array(bytes.buffer);
  } else {
    data = Float64Array.from(new Float32Array(bytes.buffer));
  }
  for (let i = 0; i < count; i++) {
    if (!Number.isFinite(data[i])) {
      throw new DataError(
        'NON_FINITE',
        `${name}: tensor ${JSON.stringify(e.key)} holds a non-finite value ${data[i]} at flat index ${i}; expected finite weights`,
      );
    }
  }
  return { shape: e.shape, dtype: e.dtype, data };
}

export async function readSafetensorsFile(path: string): Promise<SafetensorsFile> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw fsError(err, path, 'a .safetensors checkpoint');
  }
  return parseSafetensors(buf, path);
}

export async function readSafetensors(path: string): Promise<Record<string, Tensor>> {
  return (await readSafetensorsFile(path)).tensors;
}
