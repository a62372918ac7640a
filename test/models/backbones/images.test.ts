import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { encodeNpy } from '../../../models/io/npy.js';
import { imageSize } from '../../../models/backbones/decode.js';
import { openImages, resizedSize, resolvePreprocess, type InputGeometry } from '../../../models/backbones/images.js';
import { rejects, rejectsData, tarOf } from '../../helpers/backbones.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'immunize-images-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
const fixed = (s: number): InputGeometry => ({ channels: 3, height: s, width: s });

/** An RGB image whose columns left of `split` are `left`, the rest `right`. */
function twoTone(width: number, height: number, split: number, left: number[], right: number[]): Buffer {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) px.set(x < split ? left : right, (y * width + x) * 3);
  return px;
}

const png = (raw: Buffer, width: number, height: number) =>
  sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();

describe('ImageNet preprocessing', () => {
  it('defaults: resize 256 / crop 224 with the ImageNet mean and std; scaled for a model fixed at another size', () => {
    assert.deepEqual(resolvePreprocess(undefined, { channels: 3, height: null, width: null }, 'm'), { resize: 256, crop: 224, mean: MEAN, std: STD });
    assert.deepEqual(resolvePreprocess(undefined, fixed(224), 'm'), { resize: 256, crop: 224, mean: MEAN, std: STD });
    assert.equal(resolvePreprocess(undefined, fixed(32), 'm').resize, 37);
    assert.deepEqual(resolvePreprocess({ resize: 40, mean: [0, 0, 0], std: [1, 1, 1] }, fixed(32), 'm'), {
      resize: 40,
      crop: 32,
      mean: [0, 0, 0],
      std: [1, 1, 1],
    });
  });

  it('reads PNG and JPEG sizes from their headers', async () => {
    const raw = twoTone(30, 20, 0, [0, 0, 0], [1, 2, 3]);
    const img = sharp(raw, { raw: { width: 30, height: 20, channels: 3 } });
    assert.deepEqual(imageSize(await img.clone().png().toBuffer()), { width: 30, height: 20 });
    assert.deepEqual(imageSize(await img.clone().jpeg().toBuffer()), { width: 30, height: 20 });
    assert.deepEqual(imageSize(await img.clone().jpeg({ progressive: true }).toBuffer()), { width: 30, height: 20 });
    assert.equal(imageSize(Buffer.from('not an image')), null);
  });

  it('resizes the shorter side and truncates the longer, as torchvision does', () => {
    assert.deepEqual(resizedSize(500, 375, 256), { width: 341, height: 256 });
    assert.deepEqual(resizedSize(375, 500, 256), { width: 256, height: 341 });
    assert.deepEqual(resizedSize(300, 300, 256), { width: 256, height: 256 });
  });

  it('refuses settings the model cannot take', async () => {
    await rejects(() => resolvePreprocess({ crop: 28 }, fixed(32), 'm.onnx'), 'IMAGE_SIZE', /28×28 images but the model takes 32×32/);
    await rejects(() => resolvePreprocess({ resize: 20 }, fixed(32), 'm.onnx'), 'PREPROCESS', /no smaller than/);
    await rejects(() => resolvePreprocess({ mean: [0.5] }, fixed(32), 'm.onnx'), 'PREPROCESS', /3 values each/);
  });

  it('normalizes pixel values exactly and crops the centre', async () => {
    // 64×32 (w×h): shorter side 32 → resize 37 gives 74×37; crop 32 starts at x = 21. Columns < 32 of the source
    // (< 37 after resizing) are red, the rest blue, with a resampled seam in between.
    const red = [200, 10, 0];
    const blue = [0, 20, 250];
    const root = join(dir, 'centre');
    await mkdir(root);
    await writeFile(join(root, 'a.png'), await png(twoTone(64, 32, 32, red, blue), 64, 32));
    const src = await openImages(root, fixed(32));
    assert.equal(src.count, 1);
    const out = await src.read(0, 1, new Float32Array(3 * 32 * 32));
    const at = (c: number, y: number, x: number) => out[c * 1024 + y * 32 + x];
    for (let c = 0; c < 3; c++) {
      const expectRed = (red[c] / 255 - MEAN[c]) / STD[c];
      const expectBlue = (blue[c] / 255 - MEAN[c]) / STD[c];
      for (const y of [0, 15, 31]) {
        for (let x = 0; x <= 13; x++) assert.ok(Math.abs(at(c, y, x) - expectRed) < 1e-5, `channel ${c} (${y}, ${x}): ${at(c, y, x)} vs red ${expectRed}`);
        for (let x = 18; x < 32; x++) assert.ok(Math.abs(at(c, y, x) - expectBlue) < 1e-5, `channel ${c} (${y}, ${x}): ${at(c, y, x)} vs blue ${expectBlue}`);
      }
    }
    await src.close();
  });
});

describe('image inputs', () => {
  it('a folder of class subfolders: path order, labels by sorted class name, JPEG and PNG, grey and alpha made RGB', async () => {
    const root = join(dir, 'classes');
    await mkdir(join(root, 'dog'), { recursive: true });
    await mkdir(join(root, 'cat'), { recursive: true });
    const grey = await sharp(Buffer.alloc(40 * 40, 128), { raw: { width: 40, height: 40, channels: 1 } })
      .png()
      .toBuffer();
    const rgba = await sharp(Buffer.alloc(40 * 40 * 4, 255), { raw: { width: 40, height: 40, channels: 4 } })
      .png()
      .toBuffer();
    const jpeg = await sharp(twoTone(50, 40, 0, [0, 0, 0], [60, 120, 180]), { raw: { width: 50, height: 40, channels: 3 } })
      .jpeg({ quality: 100 })
      .toBuffer();
    await writeFile(join(root, 'dog', 'b.png'), grey);
    await writeFile(join(root, 'dog', 'a.JPG'), jpeg);
    await writeFile(join(root, 'cat', 'z.png'), rgba);
    await writeFile(join(root, 'cat', 'notes.txt'), 'ignored');
    const src = await openImages(root, fixed(32));
    assert.equal(src.count, 3);
    assert.deepEqual([...src.labels!], [0, 1, 1]);
    assert.deepEqual(src.classes, ['cat', 'dog']);
    const out = await src.read(0, 3, new Float32Array(3 * 3 * 1024));
    // The decode thread and the calling thread give the same values.
    const here = await openImages(root, fixed(32), { inThread: true });
    assert.deepEqual(await here.read(0, 3, new Float32Array(3 * 3 * 1024)), out);
    await here.close();
    const pixel = (i: number, c: number) => out[i * 3072 + c * 1024 + 16 * 32 + 16];
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs(pixel(0, c) - (1 - MEAN[c]) / STD[c]) < 1e-5, 'cat/z.png is white');
      assert.ok(Math.abs(pixel(1, c) - ([60, 120, 180][c] / 255 - MEAN[c]) / STD[c]) < 0.03, 'dog/a.JPG');
      assert.ok(Math.abs(pixel(2, c) - (128 / 255 - MEAN[c]) / STD[c]) < 1e-5, 'dog/b.png is grey');
    }
    await src.close();
  });

  it('an uncompressed tar of one folder reads like that folder', async () => {
    const a = await png(twoTone(40, 40, 0, [0, 0, 0], [10, 20, 30]), 40, 40);
    const b = await png(twoTone(40, 40, 0, [0, 0, 0], [200, 100, 50]), 40, 40);
    const path = join(dir, 'set.tar');
    await writeFile(
      path,
      tarOf([
        ['set/b/2.png', b],
        ['set/a/1.png', a],
        ['set/a/readme', Buffer.from('x')],
      ]),
    );
    const src = await openImages(path, fixed(32));
    assert.equal(src.kind, 'tar');
    assert.deepEqual(src.classes, ['a', 'b']);
    assert.deepEqual([...src.labels!], [0, 1]);
    const out = await src.read(0, 2, new Float32Array(2 * 3072));
    assert.ok(Math.abs(out[3072 + 5] - (200 / 255 - MEAN[0]) / STD[0]) < 1e-5);
    assert.ok(Math.abs(out[5] - (10 / 255 - MEAN[0]) / STD[0]) < 1e-5);
    await src.close();
  });

  it('an .npy of float32 N×C×H×W is read batch by batch as stored', async () => {
    const data = Float32Array.from({ length: 5 * 3 * 32 * 32 }, (_, i) => Math.sin(i));
    const path = join(dir, 'ok.npy');
    await writeFile(path, encodeNpy({ shape: [5, 3, 32, 32], data }, 'f4'));
    const src = await openImages(path, fixed(32), { limit: 4 });
    assert.equal(src.count, 4);
    const out = await src.read(2, 2, new Float32Array(2 * 3072));
    assert.deepEqual(out, data.subarray(2 * 3072, 4 * 3072));
    await src.close();
  });

  it('bad inputs get clear errors', async () => {
    const npy = async (name: string, shape: number[], dtype: 'f4' | 'f8' = 'f4', fill = 0) => {
      const path = join(dir, name);
      await writeFile(path, encodeNpy({ shape, data: new Float64Array(shape.reduce((a, b) => a * b, 1)).fill(fill) }, dtype));
      return path;
    };
    await rejects(openImages(await npy('f8.npy', [2, 3, 32, 32], 'f8'), fixed(32)), 'IMAGES_DTYPE', /'<f8'; expected float32/);
    await rejects(openImages(await npy('flat.npy', [2, 3072]), fixed(32)), 'IMAGES_SHAPE', /precomputed features/);
    await rejects(openImages(await npy('big.npy', [2, 3, 64, 64]), fixed(32)), 'IMAGE_SIZE', /3×64×64 \(C×H×W\) but the model takes 3×32×32/);
    await rejects(openImages(await npy('none.npy', [0, 3, 32, 32]), fixed(32)), 'IMAGES_EMPTY');
    const nan = await openImages(await npy('nan.npy', [1, 3, 32, 32], 'f4', Number.NaN), fixed(32));
    await rejectsData(nan.read(0, 1, new Float32Array(3072)), 'NON_FINITE', /image 0/);
    await nan.close();
    await mkdir(join(dir, 'empty'));
    await writeFile(join(dir, 'empty', 'list.txt'), 'no images here');
    await rejects(openImages(join(dir, 'empty'), fixed(32)), 'IMAGES_EMPTY', /no \.png, \.jpg or \.jpeg/);
    await mkdir(join(dir, 'broken'));
    await writeFile(join(dir, 'broken', 'x.png'), Buffer.from('not a png'));
    const broken = await openImages(join(dir, 'broken'), fixed(32));
    await rejects(broken.read(0, 1, new Float32Array(3072)), 'IMAGE_UNREADABLE', /broken\/x\.png: not a readable PNG\/JPEG/);
    await broken.close();
    await writeFile(join(dir, 'junk.tar'), Buffer.alloc(2048, 7));
    await rejects(openImages(join(dir, 'junk.tar'), fixed(32)), 'TAR_MALFORMED', /checksum/);
    await writeFile(join(dir, 'set.tgz'), Buffer.alloc(10));
    await rejectsData(openImages(join(dir, 'set.tgz'), fixed(32)), 'UNSUPPORTED_EXTENSION', /decompress/);
    await rejectsData(openImages(join(dir, 'missing'), fixed(32)), 'NOT_FOUND');
  });
});
