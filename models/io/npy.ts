/**
 * NumPy .npy reader/writer (format versions 1.0, 2.0 and 3.0).
 *
 * Feature matrices must be little-endian float32 or float64 in C order; label vectors may
 * additionally be uint8/int32/int64. Everything is returned as float64.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { Mat } from '../linalg/types.js';
import { DataError, fsError, type DataErrorCode } from './errors.js';

export type NpyDtype = 'f4' | 'f8' | 'u1' | 'i4' | 'i8';

export interface NpyArray {
  shape: number[];
  dtype: NpyDtype;
  data: Float64Array;
}

export interface ParseNpyOptions {
  /** Accept '|u1', '<i4' and '<i8' as well (label vectors only). Default false. */
  allowInt?: boolean;
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"
const ITEMSIZE: Record<NpyDtype, number> = { f4: 4, f8: 8, u1: 1, i4: 4, i8: 8 };
const DESCR: Record<NpyDtype, string> = { f4: '<f4', f8: '<f8', u1: '|u1', i4: '<i4', i8: '<i8' };
// '|u1' is what numpy writes; '<u1' is the same thing spelled differently.
const ACCEPTED_DESCR: Record<string, NpyDtype> = { '<f8': 'f8', '<f4': 'f4', '|u1': 'u1', '<u1': 'u1', '<i4': 'i4', '<i8': 'i8' };
const HOST_LE = endianness() === 'LE';

const FLOAT_EXPECTED = "'<f4' (float32) or '<f8' (float64)";
const LABEL_EXPECTED = "'<f4', '<f8', '|u1', '<i4' or '<i8'";

export function formatShape(shape: readonly number[]): string {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
}

// ---------------------------------------------------------------------------------------------
// Header dict parsing: a tiny parser for the Python literal subset numpy writes
// (dict, tuple, list, str, int, True/False/None). Never evaluates anything.

type PyValue = string | number | boolean | null | PyValue[] | PyDict;
interface PyDict {
  kind: 'dict';
  entries: Map<string, PyValue>;
}

class HeaderParser {
  private pos = 0;
  constructor(
    private readonly src: string,
    private readonly name: string,
  ) {}

  fail(what: string): never {
    throw npyError(
      'BAD_FORMAT',
      `${this.name}: malformed .npy header (${what} at character ${this.pos}); expected a Python dict ` +
        `like {'descr': '<f8', 'fortran_order': False, 'shape': (N, D)}`,
    );
  }

  private skipWs(): void {
    while (this.pos < this.src.length && /\s/.test(this.src[this.pos])) this.pos++;
  }

  parseTop(): PyValue {
    const v = this.parseValue(0);
    this.skipWs();
    if (this.pos !== this.src.length) this.fail('unexpected trailing characters');
    return v;
  }

  private parseValue(depth: number): PyValue {
    if (depth > 16) this.fail('nesting too deep');
    this.skipWs();
    const c = this.src[this.pos];
    if (c === undefined) this.fail('unexpected end of header');
    if (c === '{') return this.parseDict(depth);
    if (c === '(') return this.parseSeq(')', depth);
    if (c === '[') return this.parseSeq(']', depth);
    if (c === "'" || c === '"') return this.parseString();
    if (c === '-' || c === '+' || (c >= '0' && c <= '9')) return this.parseInt();
    for (const [word, value] of [
      ['True', true],
      ['False', false],
      ['None', null],
    ] as const) {
      if (this.src.startsWith(word, this.pos) && !/[A-Za-z0-9_]/.test(this.src[this.pos + word.length] ?? '')) {
        this.pos += word.length;
        return value;
      }
    }
    this.fail(`unexpected character ${JSON.stringify(c)}`);
  }

  private parseDict(depth: number): PyDict {
    this.pos++; // {
    const entries = new Map<string, PyValue>();
    for (;;) {
      this.skipWs();
      if (this.src[this.pos] === '}') {
        this.pos++;
        return { kind: 'dict', entries };
      }
      const key = this.parseValue(depth + 1);
      if (typeof key !== 'string') this.fail('dict key is not a string');
      if (entries.has(key)) this.fail(`duplicate key '${key}'`);
      this.skipWs();
      if (this.src[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      entries.set(key, this.parseValue(depth + 1));
      this.skipWs();
      const sep = this.src[this.pos];
      if (sep === ',') this.pos++;
      else if (sep !== '}') this.fail("expected ',' or '}'");
    }
  }

  private parseSeq(close: ')' | ']', depth: number): PyValue[] {
    this.pos++;
    const items: PyValue[] = [];
    for (;;) {
      this.skipWs();
      if (this.src[this.pos] === close) {
        this.pos++;
        return items;
      }
      items.push(this.parseValue(depth + 1));
      this.skipWs();
      const sep = this.src[this.pos];
      if (sep === ',') this.pos++;
      else if (sep !== close) this.fail(`expected ',' or '${close}'`);
    }
  }

  private parseString(): string {
    const quote = this.src[this.pos++];
    let out = '';
    for (;;) {
      const c = this.src[this.pos++];
      if (c === undefined || c === '\n') this.fail('unterminated string');
      if (c === quote) return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.src[this.pos++];
      const simple: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', n: '\n', t: '\t', r: '\r', '0': '\0' };
      if (e !== undefined && e in simple) out += simple[e];
      else if (e === 'x' || e === 'u') {
        const len = e === 'x' ? 2 : 4;
        const hex = this.src.slice(this.pos, this.pos + len);
        if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) this.fail('bad escape in string');
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += len;
      } else this.fail('unsupported escape in string');
    }
  }

  private parseInt(): number {
    // Python 2 era files wrote shapes like (3L, 4L).
    const m = /^[+-]?\d+L?/.exec(this.src.slice(this.pos));
    if (!m) this.fail('bad number');
    const text = m[0].replace(/L$/, '');
    this.pos += m[0].length;
    if (/^[.eEjJ]/.test(this.src[this.pos] ?? '')) this.fail('only integers are allowed in an .npy header');
    const v = Number(text);
    if (!Number.isSafeInteger(v)) this.fail(`integer ${text} is too large`);
    return v;
  }
}

function isDict(v: PyValue): v is PyDict {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && v.kind === 'dict';
}

// ---------------------------------------------------------------------------------------------

function parseDescr(descr: PyValue, name: string, allowInt: boolean): NpyDtype {
  const expected = allowInt ? LABEL_EXPECTED : FLOAT_EXPECTED;
  if (typeof descr !== 'string') {
    throw npyError('BAD_DTYPE', `${name}: structured/record dtypes are not supported; expected a plain dtype ${expected}`);
  }
  const m = /^([<>|=])([a-zA-Z])(\d+)$/.exec(descr);
  if (m && m[1] === '>' && Number(m[3]) > 1) {
    throw npyError(
      'BAD_DTYPE',
      `${name}: big-endian dtype '${descr}' is not supported; expected little-endian ${expected} ` + `(convert with arr.astype(arr.dtype.newbyteorder('<')))`,
    );
  }
  const dtype: NpyDtype | undefined = Object.hasOwn(ACCEPTED_DESCR, descr) ? ACCEPTED_DESCR[descr] : undefined;
  if (dtype === undefined) {
    throw npyError('BAD_DTYPE', `${name}: unsupported dtype '${descr}'; expected ${expected}`);
  }
  if (!allowInt && dtype !== 'f4' && dtype !== 'f8') {
    throw npyError('BAD_DTYPE', `${name}: integer dtype '${descr}' is only accepted for label files; feature arrays must be ${FLOAT_EXPECTED}`);
  }
  return dtype;
}

function parseShape(shape: PyValue, name: string): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    throw npyError('BAD_FORMAT', `${name}: malformed .npy header: 'shape' must be a tuple of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  return shape as number[];
}

/** Multi-index of flat element `flat` in a C-order array of `shape`, phrased for messages. */
function describePosition(flat: number, shape: readonly number[]): string {
  if (shape.length === 2) return `row ${Math.floor(flat / shape[1])}, column ${flat % shape[1]}`;
  if (shape.length === 1) return `index ${flat}`;
  const idx: number[] = new Array(shape.length).fill(0);
  let rest = flat;
  for (let k = shape.length - 1; k >= 0; k--) {
    idx[k] = rest % shape[k];
    rest = Math.floor(rest / shape[k]);
  }
  return `index ${formatShape(idx)}`;
}

function decodeData(bytes: Buffer, dtype: NpyDtype, count: number, name: string): Float64Array {
  const out = new Float64Array(count);
  if (!HOST_LE) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) {
      switch (dtype) {
        case 'f8':
          out[i] = dv.getFloat64(i * 8, true);
          break;
        case 'f4':
          out[i] = dv.getFloat32(i * 4, true);
          break;
        case 'u1':
          out[i] = dv.getUint8(i);
          break;
        case 'i4':
          out[i] = dv.getInt32(i * 4, true);
          break;
        case 'i8':
          out[i] = checkedInt64(dv.getBigInt64(i * 8, true), i, name);
          break;
      }
    }
    return out;
  }
  // Copy into a fresh (hence aligned) buffer so typed-array views are always legal.
  const aligned = new Uint8Array(bytes.byteLength);
  aligned.set(bytes);
  switch (dtype) {
    case 'f8':
      return new Float64Array(aligned.buffer, 0, count);
    case 'f4':
      out.set(new Float32Array(aligned.buffer, 0, count));
      return out;
    case 'u1':
      out.set(aligned);
      return out;
    case 'i4':
      out.set(new Int32Array(aligned.buffer, 0, count));
      return out;
    case 'i8': {
      const src = new BigInt64Array(aligned.buffer, 0, count);
      for (let i = 0; i < count; i++) out[i] = checkedInt64(src[i], i, name);
      return out;
    }
  }
}

const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);
function checkedInt64(v: bigint, i: number, name: string): number {
  if (v > MAX_EXACT || v < -MAX_EXACT) {
    throw npyError('BAD_DTYPE', `${name}: int64 value ${v} at index ${i} cannot be represented exactly as float64; expected |value| <= 2^53-1`);
  }
  return Number(v);
}

/** A file that is not an .npy array this project reads: the upload check refuses the same bytes as invalid_npy. */
function npyError(code: DataErrorCode, message: string): DataError {
  return new DataError(code, message, { dataReason: 'NPY_MALFORMED' });
}

/** Parses an in-memory .npy file; `name` is used in error messages. */
export function parseNpy(buf: Buffer, name: string, opts: ParseNpyOptions = {}): NpyArray {
  const allowInt = opts.allowInt ?? false;
  if (buf.length < MAGIC.length || !buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw npyError('BAD_FORMAT', `${name}: not an .npy file (missing the "\\x93NUMPY" magic string); expected a file written by numpy.save`);
  }
  if (buf.length < 8) throw npyError('TRUNCATED', `${name}: file ends inside the .npy preamble; expected at least 10 bytes`);
  const major = buf[6];
  const minor = buf[7];
  if (![1, 2, 3].includes(major) || minor !== 0) {
    throw npyError('BAD_FORMAT', `${name}: unsupported .npy format version ${major}.${minor}; expected 1.0, 2.0 or 3.0`);
  }
  const lenBytes = major === 1 ? 2 : 4;
  if (buf.length < 8 + lenBytes) {
    throw npyError('TRUNCATED', `${name}: file ends inside the .npy header length field`);
  }
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const headerStart = 8 + lenBytes;
  const dataStart = headerStart + headerLen;
  if (dataStart > buf.length) {
    throw npyError('TRUNCATED', `${name}: .npy header claims ${headerLen} bytes but only ${buf.length - headerStart} remain in the file`);
  }
  const headerText = buf.subarray(headerStart, dataStart).toString(major === 3 ? 'utf8' : 'latin1');
  const header = new HeaderParser(headerText, name).parseTop();
  if (!isDict(header)) {
    throw npyError('BAD_FORMAT', `${name}: .npy header is not a dict; expected {'descr': ..., 'fortran_order': ..., 'shape': ...}`);
  }
  const keys = [...header.entries.keys()].sort();
  if (keys.join(',') !== 'descr,fortran_order,shape') {
    throw npyError('BAD_FORMAT', `${name}: .npy header has keys [${keys.join(', ')}]; expected exactly descr, fortran_order, shape`);
  }
  const dtype = parseDescr(header.entries.get('descr')!, name, allowInt);
  const fortran = header.entries.get('fortran_order');
  if (typeof fortran !== 'boolean') {
    throw npyError('BAD_FORMAT', `${name}: .npy header 'fortran_order' must be True or False`);
  }
  const shape = parseShape(header.entries.get('shape')!, name);
  if (fortran) {
    throw npyError('BAD_FORMAT', `${name}: array is stored in Fortran (column-major) order; expected C order ` + `(save np.ascontiguousarray(arr) instead)`);
  }

  let count = 1;
  for (const d of shape) count *= d;
  const itemsize = ITEMSIZE[dtype];
  const expectedBytes = count * itemsize;
  const available = buf.length - dataStart;
  if (!Number.isSafeInteger(expectedBytes) || available < expectedBytes) {
    throw npyError(
      'TRUNCATED',
      `${name}: truncated data: shape ${formatShape(shape)} of ${DESCR[dtype]} needs ${expectedBytes} bytes ` + `but the file holds ${available}`,
    );
  }
  if (available > expectedBytes) {
    throw npyError(
      'BAD_FORMAT',
      `${name}: ${available - expectedBytes} extra trailing bytes after the data; expected exactly ${expectedBytes} ` +
        `bytes for shape ${formatShape(shape)} of ${DESCR[dtype]}`,
    );
  }
  const data = decodeData(buf.subarray(dataStart), dtype, count, name);
  if (dtype === 'f4' || dtype === 'f8') {
    for (let i = 0; i < count; i++) {
      if (!Number.isFinite(data[i])) {
        throw new DataError('NON_FINITE', `${name}: non-finite value ${data[i]} at ${describePosition(i, shape)}; expected only finite numbers`);
      }
    }
  }
  return { shape, dtype, data };
}

async function readBytes(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw fsError(err, path, what);
  }
}

export async function readNpy(path: string, opts: ParseNpyOptions = {}): Promise<NpyArray> {
  return parseNpy(await readBytes(path, 'an .npy file'), path, opts);
}

/** Reads a 2-D N×D float32/float64 array. */
export async function readNpyMatrix(path: string): Promise<Mat> {
  const arr = await readNpy(path);
  if (arr.shape.length !== 2) {
    // Images (4-D) and label vectors (1-D) are arrays of another kind; any other rank is no array this project takes.
    const dataReason = arr.shape.length === 4 || arr.shape.length === 1 ? 'WRONG_KIND' : 'NPY_MALFORMED';
    throw new DataError('BAD_SHAPE', `${path}: expected a 2-D N×D array, got shape ${formatShape(arr.shape)} (${arr.shape.length}-D)`, { dataReason });
  }
  if (arr.shape[0] < 1 || arr.shape[1] < 1) {
    throw npyError('BAD_SHAPE', `${path}: shape ${formatShape(arr.shape)} holds no values; expected a 2-D N×D array with N, D ≥ 1`);
  }
  return { rows: arr.shape[0], cols: arr.shape[1], data: arr.data };
}

/** Reads a label vector: shape (N,) or (N, 1), float or integer dtype. */
export async function readNpyLabels(path: string): Promise<Float64Array> {
  const arr = await readNpy(path, { allowInt: true });
  const ok = arr.shape.length === 1 || (arr.shape.length === 2 && arr.shape[1] === 1);
  if (!ok) {
    throw new DataError('BAD_SHAPE', `${path}: expected a label vector of shape (N,) or (N, 1), got shape ${formatShape(arr.shape)}`, {
      dataReason: 'LABELS_NOT_VECTOR',
    });
  }
  return arr.data;
}

// ---------------------------------------------------------------------------------------------

export type NpyInput = Mat | { shape: readonly number[]; data: ArrayLike<number> };

const INT_RANGE: Partial<Record<NpyDtype, [number, number]>> = {
  u1: [0, 255],
  i4: [-2147483648, 2147483647],
  i8: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

/** Serializes an array as a version 1.0 .npy file (2.0 if the header would not fit). */
export function encodeNpy(arr: NpyInput, dtype: NpyDtype = 'f8'): Buffer {
  const shape = 'rows' in arr ? [arr.rows, arr.cols] : [...arr.shape];
  const data = arr.data;
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new DataError('BAD_SHAPE', `encodeNpy: shape ${JSON.stringify(shape)} must contain non-negative integers`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) {
    throw new DataError('BAD_SHAPE', `encodeNpy: shape ${formatShape(shape)} needs ${count} values, got ${data.length}`);
  }
  if (!(dtype in ITEMSIZE)) throw new DataError('BAD_DTYPE', `encodeNpy: unsupported dtype '${dtype}'`);
  const range = INT_RANGE[dtype];
  if (range) {
    for (let i = 0; i < count; i++) {
      const v = data[i];
      if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
        throw new DataError('BAD_DTYPE', `encodeNpy: value ${v} at index ${i} does not fit dtype ${DESCR[dtype]}`);
      }
    }
  }

  const dict = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': ${formatShape(shape)}, }`;
  let major = 1;
  let prefix = 10;
  // Pad with spaces and a final newline so that the data starts on a 64-byte boundary.
  let total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
  if (total - prefix > 0xffff) {
    major = 2;
    prefix = 12;
    total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
  }
  const headerLen = total - prefix;
  const header = dict + ' '.repeat(headerLen - dict.length - 1) + '\n';

  const itemsize = ITEMSIZE[dtype];
  const out = Buffer.alloc(total + count * itemsize);
  MAGIC.copy(out, 0);
  out[6] = major;
  out[7] = 0;
  if (major === 1) out.writeUInt16LE(headerLen, 8);
  else out.writeUInt32LE(headerLen, 8);
  out.write(header, prefix, 'latin1');
  for (let i = 0, off = total; i < count; i++, off += itemsize) {
    const v = data[i];
    switch (dtype) {
      case 'f8':
        out.writeDoubleLE(v, off);
        break;
      case 'f4':
        out.writeFloatLE(v, off);
        break;
      case 'u1':
        out.writeUInt8(v, off);
        break;
      case 'i4':
        out.writeInt32LE(v, off);
        break;
      case 'i8':
        out.writeBigInt64LE(BigInt(v), off);
        break;
    }
  }
  return out;
}

export async function writeNpy(path: string, arr: NpyInput, dtype: NpyDtype = 'f8'): Promise<void> {
  await writeFile(path, encodeNpy(arr, dtype));
}
