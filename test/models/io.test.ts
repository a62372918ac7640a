import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DataError } from '../../models/io/errors.js';
import { encodeNpy, parseNpy, readNpy, readNpyLabels, readNpyMatrix, writeNpy } from '../../models/io/npy.js';
import { prepareCsv, readCsvTable } from '../../models/io/csv.js';
import { parseSafetensors, readSafetensors, readSafetensorsFile, writeSafetensors } from '../../models/io/safetensors.js';
import { checkPair, loadDataset } from '../../models/io/dataset.js';
import { loadHousePrice } from '../../models/io/housePrice.js';

const HOUSE_DIR = fileURLToPath(new URL('../../../data/house_price/', import.meta.url));

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'immunize-io-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const p = (name: string): string => join(dir, name);

async function expectDataError(action: Promise<unknown> | (() => unknown), code: string, message?: RegExp): Promise<DataError> {
  let caught: unknown;
  try {
    if (typeof action === 'function') await action();
    else await action;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DataError, `expected DataError ${code}, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

/** Builds .npy bytes by hand so malformed variants can be produced. */
function rawNpy(header: string, data: Buffer, major = 1): Buffer {
  const prefix = major === 1 ? 10 : 12;
  const total = Math.ceil((prefix + header.length + 1) / 64) * 64;
  const hdr = header + ' '.repeat(total - prefix - header.length - 1) + '\n';
  const pre = Buffer.alloc(prefix);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]).copy(pre);
  pre[6] = major;
  if (major === 1) pre.writeUInt16LE(hdr.length, 8);
  else pre.writeUInt32LE(hdr.length, 8);
  return Buffer.concat([pre, Buffer.from(hdr, major === 3 ? 'utf8' : 'latin1'), data]);
}

function f64Bytes(values: number[], bigEndian = false): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => (bigEndian ? b.writeDoubleBE(v, i * 8) : b.writeDoubleLE(v, i * 8)));
  return b;
}

const dict = (descr: string, shape: string, fortran = 'False'): string => `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;

// ---------------------------------------------------------------------------------------------

describe('npy', () => {
  it('round-trips float64 matrices exactly', async () => {
    const m = { rows: 3, cols: 4, data: Float64Array.from({ length: 12 }, (_, i) => (i - 5) / 7 + 1e-300 * i) };
    await writeNpy(p('a8.npy'), m);
    const r = await readNpy(p('a8.npy'));
    assert.deepEqual(r.shape, [3, 4]);
    assert.equal(r.dtype, 'f8');
    assert.deepEqual([...r.data], [...m.data]);
    const mat = await readNpyMatrix(p('a8.npy'));
    assert.equal(mat.rows, 3);
    assert.equal(mat.cols, 4);
  });

  it('round-trips float32 (values rounded to single precision)', async () => {
    const data = Float64Array.from([0.1, -2.5, 1e-3, 12345.678, 0, -0]);
    await writeNpy(p('a4.npy'), { shape: [2, 3], data }, 'f4');
    const r = await readNpy(p('a4.npy'));
    assert.equal(r.dtype, 'f4');
    assert.deepEqual(r.shape, [2, 3]);
    assert.deepEqual([...r.data], [...data].map(Math.fround));
  });

  it('writes byte-for-byte what numpy.save writes', () => {
    // np.save(f, np.array([[1.5, -2.0, 0.25]], dtype='<f4')) with numpy 2.4
    const numpy = Buffer.from(
      'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDEsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAMA/AAAAwAAAgD4=',
      'base64',
    );
    const ours = encodeNpy({ rows: 1, cols: 3, data: Float64Array.from([1.5, -2, 0.25]) }, 'f4');
    assert.deepEqual(ours, numpy);
    const parsed = parseNpy(numpy, 'numpy.npy');
    assert.deepEqual(parsed.shape, [1, 3]);
    assert.deepEqual([...parsed.data], [1.5, -2, 0.25]);
  });

  it('reads numpy-written int64 labels', async () => {
    // np.save(f, np.array([1, 2, 3], dtype='<i8'))
    const numpy = Buffer.from(
      'k05VTVBZAQB2AHsnZGVzY3InOiAnPGk4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoBAAAAAAAAAAIAAAAAAAAAAwAAAAAAAAA=',
      'base64',
    );
    await writeFile(p('np_i8.npy'), numpy);
    assert.deepEqual([...(await readNpyLabels(p('np_i8.npy')))], [1, 2, 3]);
  });

  it('accepts format versions 2.0 and 3.0 and odd but valid header spellings', () => {
    const data = f64Bytes([1, 2, 3, 4, 5, 6]);
    for (const major of [2, 3]) {
      const r = parseNpy(rawNpy(dict('<f8', '(2, 3)'), data, major), `v${major}.npy`);
      assert.deepEqual(r.shape, [2, 3]);
      assert.deepEqual([...r.data], [1, 2, 3, 4, 5, 6]);
    }
    const odd = `{"shape":(2L,3L),"fortran_order":False,"descr":"<f8"}`;
    assert.deepEqual(parseNpy(rawNpy(odd, data), 'odd.npy').shape, [2, 3]);
    const scalar = parseNpy(rawNpy(dict('<f8', '()'), f64Bytes([7])), 'scalar.npy');
    assert.deepEqual(scalar.shape, []);
    assert.deepEqual([...scalar.data], [7]);
  });

  it('reads label vectors of int and float types, 1-D or N×1', async () => {
    await writeNpy(p('l_u1.npy'), { shape: [3], data: [0, 1, 255] }, 'u1');
    await writeNpy(p('l_i4.npy'), { shape: [3, 1], data: [-1, 0, 7] }, 'i4');
    await writeNpy(p('l_i8.npy'), { shape: [2], data: [-(2 ** 40), 5] }, 'i8');
    await writeNpy(p('l_f4.npy'), { shape: [2, 1], data: [0.5, -1] }, 'f4');
    assert.deepEqual([...(await readNpyLabels(p('l_u1.npy')))], [0, 1, 255]);
    assert.deepEqual([...(await readNpyLabels(p('l_i4.npy')))], [-1, 0, 7]);
    assert.deepEqual([...(await readNpyLabels(p('l_i8.npy')))], [-(2 ** 40), 5]);
    assert.deepEqual([...(await readNpyLabels(p('l_f4.npy')))], [0.5, -1]);
    // int dtypes are only for labels
    await expectDataError(readNpy(p('l_i8.npy')), 'BAD_DTYPE', /only accepted for label files/);
    await expectDataError(readNpyMatrix(p('l_i4.npy')), 'BAD_DTYPE');
    await writeNpy(p('l_2d.npy'), { shape: [2, 2], data: [1, 2, 3, 4] });
    await expectDataError(readNpyLabels(p('l_2d.npy')), 'BAD_SHAPE', /\(N,\) or \(N, 1\).*\(2, 2\)/);
  });

  it('rejects int64 labels that float64 cannot hold exactly', async () => {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(2n ** 60n);
    await writeFile(p('l_big.npy'), rawNpy(dict('<i8', '(1,)'), b));
    await expectDataError(readNpyLabels(p('l_big.npy')), 'BAD_DTYPE', /2\^53/);
  });

  it('rejects bad magic', async () => {
    const good = encodeNpy({ rows: 1, cols: 1, data: Float64Array.of(1) });
    const bad = Buffer.from(good);
    bad[1] = 0x58;
    await expectDataError(() => parseNpy(bad, 'x.npy'), 'BAD_FORMAT', /x\.npy.*magic/);
  });

  it('rejects an unsupported format version', async () => {
    const b = rawNpy(dict('<f8', '(1,)'), f64Bytes([1]));
    b[6] = 4;
    await expectDataError(() => parseNpy(b, 'v4.npy'), 'BAD_FORMAT', /version 4\.0.*1\.0, 2\.0 or 3\.0/);
  });

  it('rejects truncated data and a truncated header', async () => {
    const full = encodeNpy({ rows: 4, cols: 3, data: new Float64Array(12) });
    await writeFile(p('trunc.npy'), full.subarray(0, full.length - 5));
    const e = await expectDataError(readNpy(p('trunc.npy')), 'TRUNCATED', /\(4, 3\).*96 bytes.*91/);
    assert.ok(e.message.includes(p('trunc.npy')), 'message names the file');
    await expectDataError(() => parseNpy(full.subarray(0, 40), 'h.npy'), 'TRUNCATED', /header/);
  });

  it('rejects extra trailing bytes', async () => {
    const full = encodeNpy({ rows: 2, cols: 2, data: new Float64Array(4) });
    await expectDataError(() => parseNpy(Buffer.concat([full, Buffer.alloc(3)]), 't.npy'), 'BAD_FORMAT', /3 extra trailing bytes/);
  });

  it('rejects big-endian data', async () => {
    await writeFile(p('be.npy'), rawNpy(dict('>f8', '(2,)'), f64Bytes([1, 2], true)));
    await expectDataError(readNpy(p('be.npy')), 'BAD_DTYPE', /big-endian.*'>f8'|'>f8'.*big-endian/);
    await expectDataError(() => parseNpy(rawNpy(dict('>i8', '(1,)'), Buffer.alloc(8)), 'bi.npy', { allowInt: true }), 'BAD_DTYPE', /big-endian/);
  });

  it('rejects Fortran-ordered arrays', async () => {
    await writeFile(p('fo.npy'), rawNpy(dict('<f8', '(2, 3)', 'True'), f64Bytes([1, 2, 3, 4, 5, 6])));
    await expectDataError(readNpy(p('fo.npy')), 'BAD_FORMAT', /Fortran.*C order/);
  });

  it('rejects unsupported dtypes', () => {
    for (const descr of ['<f2', '<c16', '<u8', '|b1', '|S4', 'O']) {
      const r = () => parseNpy(rawNpy(dict(descr, '(1,)'), Buffer.alloc(2)), 'd.npy', { allowInt: true });
      assert.throws(r, (e: unknown) => e instanceof DataError && e.code === 'BAD_DTYPE' && e.message.includes(descr));
    }
    const structured = `{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }`;
    assert.throws(
      () => parseNpy(rawNpy(structured, Buffer.alloc(8)), 's.npy'),
      (e: unknown) => e instanceof DataError && e.code === 'BAD_DTYPE' && /structured/.test(e.message),
    );
  });

  it('reports the first non-finite value with its row and column', async () => {
    const m = { rows: 3, cols: 4, data: new Float64Array(12) };
    m.data[1 * 4 + 2] = Number.NaN;
    m.data[2 * 4 + 0] = Number.POSITIVE_INFINITY;
    await writeNpy(p('nan.npy'), m);
    await expectDataError(readNpy(p('nan.npy')), 'NON_FINITE', /NaN at row 1, column 2/);
    await writeNpy(p('inf4.npy'), { shape: [3], data: [0, 0, Number.NEGATIVE_INFINITY] }, 'f4');
    await expectDataError(readNpy(p('inf4.npy')), 'NON_FINITE', /-Infinity at index 2/);
  });

  it('parses the header without evaluating it', () => {
    const cases = [
      `{'descr': __import__('os').system('x'), 'fortran_order': False, 'shape': (1,), }`,
      `{'descr': '<f8', 'fortran_order': False, }`,
      `{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1}`,
      `{'descr': '<f8', 'fortran_order': 0, 'shape': (1,), }`,
      `{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }`,
      `{'descr': '<f8', 'fortran_order': False, 'shape': (1.5,), }`,
      `['descr', '<f8']`,
      `{'descr': '<f8', 'fortran_order': False, 'shape': (1,)`,
    ];
    for (const h of cases) {
      assert.throws(
        () => parseNpy(rawNpy(h, f64Bytes([1])), 'h.npy'),
        (e: unknown) => e instanceof DataError && e.code === 'BAD_FORMAT' && e.message.startsWith('h.npy'),
        h,
      );
    }
  });

  it('requires 2-D for matrices and reports missing files', async () => {
    await writeNpy(p('v.npy'), { shape: [3], data: [1, 2, 3] });
    await expectDataError(readNpyMatrix(p('v.npy')), 'BAD_SHAPE', /2-D N×D.*\(3,\)/);
    await expectDataError(readNpy(p('nope.npy')), 'NOT_FOUND', /nope\.npy/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('csv', () => {
  it('reads a header and rows, honouring quotes and a BOM', async () => {
    await writeFile(p('t.csv'), '\ufeffa,b,c\n1,"x, y",3\n\n4,"multi\nline",6\n');
    const t = await readCsvTable(p('t.csv'));
    assert.deepEqual(t.header, ['a', 'b', 'c']);
    assert.deepEqual(t.rows, [
      ['1', 'x, y', '3'],
      ['4', 'multi\nline', '6'],
    ]);
  });

  it('rejects ragged rows with the line number', async () => {
    await writeFile(p('ragged.csv'), 'a,b,c\n1,2,3\n4,5\n7,8,9\n');
    await expectDataError(readCsvTable(p('ragged.csv')), 'BAD_FORMAT', /ragged\.csv: line 3 has 2 fields; expected 3/);
    await writeFile(p('long.csv'), 'a,b\n1,2\n3,4,5\n');
    await expectDataError(readCsvTable(p('long.csv')), 'BAD_FORMAT', /line 3 has 3 fields; expected 2/);
  });

  it('rejects empty files, broken quoting, duplicate names and missing files', async () => {
    await writeFile(p('empty.csv'), '');
    await expectDataError(readCsvTable(p('empty.csv')), 'BAD_FORMAT', /empty.csv.*empty.*header row/);
    await writeFile(p('quote.csv'), 'a,b\n1,"2\n');
    await expectDataError(readCsvTable(p('quote.csv')), 'BAD_FORMAT', /quote\.csv/);
    await writeFile(p('dup.csv'), 'a,a\n1,2\n');
    await expectDataError(readCsvTable(p('dup.csv')), 'BAD_FORMAT', /duplicate column name "a"/);
    await expectDataError(readCsvTable(p('absent.csv')), 'NOT_FOUND', /absent\.csv/);
  });

  it('header-only files parse but cannot be prepared', async () => {
    await writeFile(p('hdr.csv'), 'a,b\n');
    const t = await readCsvTable(p('hdr.csv'));
    assert.deepEqual(t.rows, []);
    await expectDataError(() => prepareCsv(t), 'TOO_FEW_ROWS', /hdr\.csv.*at least 2/);
  });

  it('preprocesses exactly as specified (hand-computed)', () => {
    const table = {
      header: ['num', 'cat', 'lab', 'drop'],
      rows: [
        ['1', 'b', '10', 'x'],
        ['', 'a', '20', 'y'],
        ['3', '', '30', 'z'],
        ['NA', 'b', '40', 'w'],
        ['6', 'NA', '50', 'v'],
      ],
      source: 'hand.csv',
    };
    const out = prepareCsv(table, { labelColumn: 'lab', dropColumns: ['drop'], rowLimit: 3 });
    assert.deepEqual(out.featureNames, ['num', 'cat']);
    assert.deepEqual(out.categoricalColumns, ['cat']);
    assert.equal(out.features.rows, 3);
    assert.equal(out.features.cols, 2);
    // num: [1, 0, 3, 0, 6], mean 2, deviations [-1,-2,1,-2,4], ss = 26, std = sqrt(26/4)
    const sNum = Math.sqrt(26 / 4);
    // cat: categories sorted ['NA', 'a', 'b'] → codes [2, 1, 0, 2, 0], mean 1, ss = 4, std = 1
    // lab: [10..50], mean 30, ss = 1000, std = sqrt(250); stats use all 5 rows even though 3 are kept
    const sLab = Math.sqrt(250);
    const expectF = [-1 / sNum, 1, -2 / sNum, 0, 1 / sNum, -1];
    expectF.forEach((v, i) => assert.ok(Math.abs(out.features.data[i] - v) < 1e-15, `feature ${i}`));
    const expectY = [-20 / sLab, -10 / sLab, 0];
    expectY.forEach((v, i) => assert.ok(Math.abs(out.labels![i] - v) < 1e-15, `label ${i}`));
    assert.equal(out.labels!.length, 3);
    assert.equal(out.labelNames, undefined);
  });

  it('label-encodes categorical labels without standardizing them; constant columns become 0', () => {
    const table = {
      header: ['k', 'x', 'y'],
      rows: [
        ['7', 'dog', 'z'],
        ['7', 'cat', 'Zebra'],
        ['7', 'cow', ''],
      ],
    };
    const out = prepareCsv(table, { labelColumn: 'x' });
    assert.deepEqual(out.labelNames, ['cat', 'cow', 'dog']);
    assert.deepEqual([...out.labels!], [2, 0, 1]);
    // y: ['z', 'Zebra', 'NA'] sorts to ['NA', 'Zebra', 'z'] (code-unit order) → [2, 1, 0] → standardized [1, 0, -1]
    assert.deepEqual([...out.features.data], [0, 1, 0, 0, 0, -1]);
    const raw = prepareCsv(table, { standardize: false });
    assert.deepEqual([...raw.features.data], [7, 2, 2, 7, 0, 1, 7, 1, 0]);
  });

  it('rejects unknown label or drop columns, listing the available ones', async () => {
    const table = {
      header: ['a', 'b'],
      rows: [
        ['1', '2'],
        ['3', '4'],
      ],
      source: 'cols.csv',
    };
    await expectDataError(
      () => prepareCsv(table, { labelColumn: 'price' }),
      'MISSING_COLUMN',
      /cols\.csv: no column named "price"; available columns: "a", "b"/,
    );
    await expectDataError(() => prepareCsv(table, { dropColumns: ['c'] }), 'MISSING_COLUMN', /"c".*"a", "b"/);
  });

  it('rejects non-finite cells and bad row limits', () => {
    const mk = (v: string) => ({
      header: ['a', 'b'],
      rows: [
        ['1', 'x'],
        [v, 'y'],
        ['2', 'z'],
      ],
      source: 'nf.csv',
      lines: [2, 3, 4],
    });
    for (const v of ['inf', 'NaN', '-Infinity', '1e999']) {
      assert.throws(
        () => prepareCsv(mk(v)),
        (e: unknown) => e instanceof DataError && e.code === 'NON_FINITE' && /nf\.csv: data row 1 \(line 3\), column "a"/.test(e.message),
        v,
      );
    }
    // Near-overflow values overflow during standardization.
    assert.throws(
      () => prepareCsv(mk('-1.7e308')),
      (e: unknown) => e instanceof DataError && e.code === 'NON_FINITE' && /overflows/.test(e.message),
    );
    assert.throws(
      () => prepareCsv(mk('1'), { rowLimit: 0 }),
      (e: unknown) => e instanceof DataError && e.code === 'BAD_ARGUMENT',
    );
  });
});

// ---------------------------------------------------------------------------------------------

function rawSafetensors(header: unknown, data: Buffer, pad = true): Buffer {
  let json = Buffer.from(JSON.stringify(header));
  if (pad && json.length % 8) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

describe('safetensors', () => {
  it('round-trips tensors and metadata with the standard layout', async () => {
    const w = { shape: [2, 3], data: Float64Array.from([1, 2, 3, 4, 5, -6.25]) };
    const a = { shape: [3], data: Float64Array.from([0.1, 0.2, 0.3]) };
    const empty = { shape: [0, 4], data: new Float64Array(0) };
    await writeSafetensors(p('ck.safetensors'), { w, a, empty }, { format: 'immunize', step: '3' });

    const bytes = await readFile(p('ck.safetensors'));
    const n = Number(bytes.readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0, 'data starts 8-byte aligned');
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    assert.deepEqual(header.__metadata__, { format: 'immunize', step: '3' });
    // Tensors laid out in sorted name order.
    assert.deepEqual(header.a, { dtype: 'F64', shape: [3], data_offsets: [0, 24] });
    assert.deepEqual(header.empty, { dtype: 'F64', shape: [0, 4], data_offsets: [24, 24] });
    assert.deepEqual(header.w, { dtype: 'F64', shape: [2, 3], data_offsets: [24, 72] });
    assert.equal(bytes.length, 8 + n + 72);
    assert.equal(bytes.readDoubleLE(8 + n + 24 + 5 * 8), -6.25);

    const back = await readSafetensorsFile(p('ck.safetensors'));
    assert.deepEqual(Object.keys(back.tensors).sort(), ['a', 'empty', 'w']);
    assert.deepEqual([...back.tensors.w.data], [...w.data]);
    assert.deepEqual(back.tensors.w.shape, [2, 3]);
    assert.equal(back.tensors.w.dtype, 'F64');
    assert.deepEqual([...back.tensors.a.data], [...a.data]);
    assert.deepEqual(back.tensors.empty.shape, [0, 4]);
    assert.deepEqual({ ...back.metadata }, { format: 'immunize', step: '3' });

    // Overwrite in place; no temporary files are left behind.
    await writeSafetensors(p('ck.safetensors'), { w });
    assert.deepEqual(Object.keys(await readSafetensors(p('ck.safetensors'))), ['w']);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('ck.safetensors')),
      ['ck.safetensors'],
    );
  });

  it('reads F32 tensors as float64', () => {
    const data = Buffer.alloc(8);
    data.writeFloatLE(0.1, 0);
    data.writeFloatLE(-3, 4);
    const t = parseSafetensors(rawSafetensors({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data), 'f32.safetensors').tensors;
    assert.equal(t.x.dtype, 'F32');
    assert.deepEqual([...t.x.data], [Math.fround(0.1), -3]);
  });

  it('refuses to write non-finite values or mismatched shapes', async () => {
    await expectDataError(writeSafetensors(p('bad.safetensors'), { x: { shape: [2], data: Float64Array.of(1, Number.NaN) } }), 'NON_FINITE');
    await expectDataError(writeSafetensors(p('bad.safetensors'), { x: { shape: [3], data: Float64Array.of(1, 2) } }), 'BAD_SHAPE');
    await expectDataError(readSafetensors(p('bad.safetensors')), 'NOT_FOUND');
  });

  it('rejects bad headers and offsets', async () => {
    const d16 = f64Bytes([1, 2]);
    const ok = { x: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } };
    assert.ok(parseSafetensors(rawSafetensors(ok, d16), 'ok'));
    const cases: [string, Buffer, string, RegExp][] = [
      ['tiny', Buffer.alloc(5), 'TRUNCATED', /too short/],
      [
        'hugelen',
        (() => {
          const b = rawSafetensors(ok, d16);
          b.writeBigUInt64LE(2n ** 40n, 0);
          return b;
        })(),
        'BAD_FORMAT',
        /header length/,
      ],
      [
        'pastend',
        (() => {
          const b = rawSafetensors(ok, d16);
          b.writeBigUInt64LE(BigInt(b.length), 0);
          return b;
        })(),
        'TRUNCATED',
        /header length/,
      ],
      ['notjson', Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"x": 1 ')]), 'BAD_FORMAT', /not valid UTF-8 JSON/],
      ['array', rawSafetensors([1, 2], Buffer.alloc(0)), 'BAD_FORMAT', /JSON object/],
      ['outofbounds', rawSafetensors({ x: { dtype: 'F64', shape: [3], data_offsets: [0, 24] } }, d16), 'BAD_FORMAT', /outside the 16-byte data section/],
      ['reversed', rawSafetensors({ x: { dtype: 'F64', shape: [0], data_offsets: [16, 0] } }, d16), 'BAD_FORMAT', /outside/],
      ['sizemismatch', rawSafetensors({ x: { dtype: 'F64', shape: [1], data_offsets: [0, 16] } }, d16), 'BAD_FORMAT', /spans 16 bytes.*needs 8/],
      [
        'overlap',
        rawSafetensors({ x: { dtype: 'F64', shape: [2], data_offsets: [0, 16] }, y: { dtype: 'F64', shape: [1], data_offsets: [8, 16] } }, d16),
        'BAD_FORMAT',
        /overlaps/,
      ],
      ['gap', rawSafetensors({ x: { dtype: 'F64', shape: [1], data_offsets: [8, 16] } }, d16), 'BAD_FORMAT', /gap.*expected 0/],
      ['trailing', rawSafetensors(ok, Buffer.concat([d16, Buffer.alloc(8)])), 'BAD_FORMAT', /cover 16 bytes.*holds 24/],
      ['dtype', rawSafetensors({ x: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, d16), 'BAD_DTYPE', /I64.*expected F64 or F32/],
      ['shape', rawSafetensors({ x: { dtype: 'F64', shape: [-2], data_offsets: [0, 16] } }, d16), 'BAD_FORMAT', /shape/],
      ['offsets', rawSafetensors({ x: { dtype: 'F64', shape: [2], data_offsets: [0] } }, d16), 'BAD_FORMAT', /data_offsets/],
      ['metadata', rawSafetensors({ __metadata__: { a: 1 }, ...ok }, d16), 'BAD_FORMAT', /__metadata__/],
      ['nan', rawSafetensors(ok, f64Bytes([1, Number.NaN])), 'NON_FINITE', /"x".*NaN/],
    ];
    for (const [name, buf, code, re] of cases) {
      await writeFile(p(`${name}.safetensors`), buf);
      const e = await expectDataError(readSafetensors(p(`${name}.safetensors`)), code, re);
      assert.ok(e.message.includes(`${name}.safetensors`), `${name}: message names the file`);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('dataset', () => {
  it('loads .npy features with .npy or .csv labels, honouring rowLimit', async () => {
    await writeNpy(p('X.npy'), { rows: 3, cols: 2, data: Float64Array.from([1, 2, 3, 4, 5, 6]) }, 'f4');
    await writeNpy(p('y.npy'), { shape: [3], data: [0, 1, 0] }, 'u1');
    await writeFile(p('y.csv'), 'label\n0.5\n1.5\n-2\n');
    const a = await loadDataset({ dataset: p('X.npy'), labels: p('y.npy') });
    assert.deepEqual([a.X.rows, a.X.cols], [3, 2]);
    assert.deepEqual([...a.y!], [0, 1, 0]);
    assert.ok(a.source.includes('X.npy'));
    const b = await loadDataset({ dataset: p('X.npy'), labels: p('y.csv'), rowLimit: 2 });
    assert.deepEqual([...b.X.data], [1, 2, 3, 4]);
    assert.deepEqual([...b.y!], [0.5, 1.5]);
    const c = await loadDataset({ dataset: p('X.npy') });
    assert.equal(c.y, undefined);
  });

  it('loads .csv datasets through prepareCsv', async () => {
    await writeFile(p('d.csv'), 'f,g,t\n1,a,2\n2,b,4\n3,a,6\n');
    const r = await loadDataset({ dataset: p('d.csv'), labelColumn: 't', rowLimit: 2 });
    assert.deepEqual(r.featureNames, ['f', 'g']);
    assert.equal(r.X.rows, 2);
    // f: [1,2,3] → [-1,0,1]; g: codes [0,1,0], mean 1/3, sample sd sqrt(1/3)
    const s = Math.sqrt(1 / 3);
    assertClose(r.X.data, [-1, -(1 / 3) / s, 0, 2 / 3 / s], 'csv dataset');
    assert.deepEqual([...r.y!], [-1, 0]);
  });

  it('rejects unsupported extensions, saying what was expected', async () => {
    await writeFile(p('d.parquet'), 'x');
    await expectDataError(
      loadDataset({ dataset: p('d.parquet') }),
      'UNSUPPORTED_EXTENSION',
      /d\.parquet.*"\.parquet".*\.npy \(float32\/float64, 2-D N×D\) or \.csv with a header row were expected/,
    );
    await expectDataError(loadDataset({ dataset: p('X.npy'), labels: p('y.txt') }), 'UNSUPPORTED_EXTENSION', /y\.txt/);
  });

  it('rejects label counts that do not match the rows, multi-column label CSVs and missing files', async () => {
    await writeNpy(p('y2.npy'), { shape: [2], data: [1, 2] });
    await expectDataError(loadDataset({ dataset: p('X.npy'), labels: p('y2.npy') }), 'BAD_SHAPE', /2 labels.*3 rows/);
    await writeFile(p('y2.csv'), 'a,b\n1,2\n3,4\n5,6\n');
    await expectDataError(loadDataset({ dataset: p('X.npy'), labels: p('y2.csv') }), 'BAD_SHAPE', /single column/);
    await writeFile(p('y3.csv'), 'a\n1\nfoo\n3\n');
    await expectDataError(loadDataset({ dataset: p('X.npy'), labels: p('y3.csv') }), 'BAD_FORMAT', /line 3.*"foo".*expected a number/);
    await expectDataError(loadDataset({ dataset: p('missing.npy') }), 'NOT_FOUND', /missing\.npy/);
    await expectDataError(loadDataset({ dataset: p('missing.csv') }), 'NOT_FOUND', /missing\.csv/);
    await expectDataError(loadDataset({ dataset: p('d.csv'), labelColumn: 'nope' }), 'MISSING_COLUMN', /"nope".*"f", "g", "t"/);
  });

  it('checkPair enforces matching D and at least two rows', () => {
    const m = (rows: number, cols: number) => ({ rows, cols, data: new Float64Array(rows * cols) });
    checkPair(m(2, 3), m(5, 3));
    assert.throws(
      () => checkPair(m(4, 3), m(4, 5)),
      (e: unknown) => e instanceof DataError && e.code === 'DIM_MISMATCH' && /D=3/.test(e.message) && /D=5/.test(e.message),
    );
    assert.throws(
      () => checkPair(m(1, 3), m(4, 3)),
      (e: unknown) => e instanceof DataError && e.code === 'TOO_FEW_ROWS' && /benign.*1 row.*at least 2/.test(e.message),
    );
    assert.throws(
      () => checkPair(m(4, 3), m(0, 3), { harmful: 'h.npy' }),
      (e: unknown) => e instanceof DataError && e.code === 'TOO_FEW_ROWS' && /h\.npy/.test(e.message),
    );
  });
});

// ---------------------------------------------------------------------------------------------

/** Plain split-based reader: the House Price CSVs contain no quoted fields. */
async function rawColumns(file: string): Promise<{ header: string[]; rows: string[][] }> {
  const lines = (await readFile(join(HOUSE_DIR, file), 'utf8')).split('\n').filter((l) => l.length > 0);
  return { header: lines[0].split(','), rows: lines.slice(1).map((l) => l.split(',')) };
}

function zscoreByHand(values: number[]): number[] {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  return values.map((v) => (v - mean) / (sd === 0 ? 1 : sd));
}

function assertClose(actual: ArrayLike<number>, expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= 1e-12 * Math.max(1, Math.abs(expected[i])), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

describe('house price', () => {
  it('has the paper setup and matches an independent recomputation', async () => {
    const hp = await loadHousePrice(HOUSE_DIR);
    assert.equal(hp.featureNames.length, 79);
    assert.ok(!hp.featureNames.includes('LotArea') && !hp.featureNames.includes('SalePrice'));
    assert.equal(hp.featureNames[0], 'Id');
    for (const s of [hp.benign, hp.harmful]) assert.deepEqual([s.X.rows, s.X.cols, s.y.length], [200, 79, 200]);
    for (const s of [hp.benignTest, hp.harmfulTest]) assert.deepEqual([s.X.rows, s.X.cols, s.y.length], [100, 79, 100]);
    checkPair(hp.benign.X, hp.harmful.X);

    const zeroCols = hp.featureNames.filter((_, j) => {
      for (let i = 0; i < 200; i++) if (hp.benign.X.data[i * 79 + j] !== 0) return false;
      return true;
    });
    assert.equal(zeroCols.length, 3, `zero columns: ${zeroCols.join(', ')}`);

    for (const [file, split, testSplit, label] of [
      ['D1.csv', hp.benign, hp.benignTest, 'LotArea'],
      ['D2.csv', hp.harmful, hp.harmfulTest, 'SalePrice'],
    ] as const) {
      const raw = await rawColumns(file);
      const col = (name: string) => raw.rows.map((r) => r[raw.header.indexOf(name)]);
      const num = (name: string) => col(name).map((v) => (v === '' || v === 'NA' ? 0 : Number(v)));

      const y = zscoreByHand(num(label));
      assertClose(split.y, y.slice(0, 200), `${file} ${label} train`);
      assertClose(testSplit.y, y.slice(200, 300), `${file} ${label} test`);

      // LotFrontage: numeric with missing cells (→ 0).
      assert.ok(col('LotFrontage').includes(''));
      const jLf = hp.featureNames.indexOf('LotFrontage');
      const lf = zscoreByHand(num('LotFrontage'));
      assertClose(
        Array.from({ length: 200 }, (_, i) => split.X.data[i * 79 + jLf]),
        lf.slice(0, 200),
        `${file} LotFrontage`,
      );

      // Alley: categorical with missing cells (→ category '0'), label-encoded by sorted order.
      const alley = col('Alley').map((v) => (v === '' || v === 'NA' ? '0' : v));
      const cats = [...new Set(alley)].sort();
      const jAl = hp.featureNames.indexOf('Alley');
      const al = zscoreByHand(alley.map((v) => cats.indexOf(v)));
      assertClose(
        Array.from({ length: 100 }, (_, i) => testSplit.X.data[i * 79 + jAl]),
        al.slice(200, 300),
        `${file} Alley`,
      );
    }
  });
});
