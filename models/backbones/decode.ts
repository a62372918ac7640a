/**
 * Decoding and preprocessing of PNG/JPEG files into C×S×S float32 planes, shared by the decode worker and the
 * in-thread fallback.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import type { Sharp, SharpOptions } from 'sharp';
import { BackboneError } from './errors.js';

export interface Preprocess {
  resize: number;
  crop: number;
  mean: number[];
  std: number[];
}

/** One encoded image: a whole file, or `size` bytes at `offset` inside one (a tar member). */
export interface EncodedItem {
  /** For messages: the folder path and file, or the archive and member. */
  name: string;
  file: string;
  offset?: number;
  size?: number;
}

type SharpFactory = (input: Buffer, options?: SharpOptions) => Sharp;
let sharpModule: Promise<SharpFactory> | null = null;

export function loadSharp(): Promise<SharpFactory> {
  sharpModule ??= import('sharp').then((m) => {
    const factory = ((m as unknown as { default?: SharpFactory }).default ?? m) as unknown as SharpFactory & {
      cache(on: boolean): void;
      concurrency(n: number): number;
    };
    // Every image is decoded once: libvips's operation cache would only hold memory.
    factory.cache(false);
    // Images are decoded several at a time while onnxruntime's threads run the previous batch; libvips threads
    // inside each small image would only compete with those.
    factory.concurrency(1);
    return factory;
  });
  return sharpModule;
}

/** Python's round(): halves go to the even neighbour (torchvision's centre crop uses it). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Resized size with the shorter side = `size`, the longer scaled and truncated, as torchvision's Resize(int). */
export function resizedSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.floor((size * height) / width) };
  return { width: Math.floor((size * width) / height), height: size };
}

const SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/** Width and height from a PNG's IHDR or a JPEG's start-of-frame segment, without decoding; null otherwise. */
export function imageSize(b: Buffer): { width: number; height: number } | null {
  if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47 && b.toString('latin1', 12, 16) === 'IHDR') {
    return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
  }
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  let pos = 2;
  while (pos + 4 <= b.length) {
    if (b[pos] !== 0xff) return null;
    const marker = b[pos + 1];
    if (marker === 0xff) {
      pos++;
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) {
      pos += 2;
      continue;
    }
    const length = b.readUInt16BE(pos + 2);
    if (SOF.has(marker)) return pos + 9 <= b.length ? { height: b.readUInt16BE(pos + 5), width: b.readUInt16BE(pos + 7) } : null;
    pos += 2 + length;
  }
  return null;
}

/** Decodes and preprocesses one image into `out` at `offset` (C×S×S floats). */
export async function decodeImage(bytes: Buffer, name: string, pre: Preprocess, channels: number, out: Float32Array, offset: number): Promise<void> {
  const sharp = await loadSharp();
  let data: Buffer;
  let info: { width: number; height: number; channels: number };
  try {
    const dims = imageSize(bytes) ?? (await sharp(bytes, { failOn: 'error' }).metadata());
    if (!dims.width || !dims.height) throw new Error('no image size in the header');
    const size = resizedSize(dims.width, dims.height, pre.resize);
    const left = roundHalfEven((size.width - pre.crop) / 2);
    const top = roundHalfEven((size.height - pre.crop) / 2);
    const pipeline = sharp(bytes, { failOn: 'error' })
      .resize(size.width, size.height, { fit: 'fill', kernel: 'linear' })
      .extract({ left, top, width: pre.crop, height: pre.crop })
      .removeAlpha()
      .toColourspace(channels === 1 ? 'b-w' : 'srgb');
    ({ data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true }));
  } catch (err) {
    const detail = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new BackboneError('IMAGE_UNREADABLE', `${name}: not a readable PNG/JPEG image (${detail})`, { cause: err });
  }
  if (info.channels !== channels || info.width !== pre.crop || info.height !== pre.crop) {
    throw new BackboneError(
      'IMAGE_UNREADABLE',
      `${name}: decoded to ${info.width}×${info.height}×${info.channels}; expected ${pre.crop}×${pre.crop}×${channels}`,
    );
  }
  const plane = pre.crop * pre.crop;
  for (let c = 0; c < channels; c++) {
    const scale = 1 / (255 * pre.std[c]);
    const shift = -pre.mean[c] / pre.std[c];
    const base = offset + c * plane;
    for (let p = 0, q = c; p < plane; p++, q += channels) out[base + p] = data[q] * scale + shift;
  }
}

/** Reads encoded items; archive handles stay open until close(). */
export class ItemReader {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  async read(item: EncodedItem): Promise<Buffer> {
    if (item.offset === undefined) return readFile(item.file);
    let fh = this.handles.get(item.file);
    if (!fh) {
      fh = open(item.file, 'r');
      this.handles.set(item.file, fh);
    }
    const buf = Buffer.alloc(item.size ?? 0);
    await (await fh).read(buf, 0, buf.length, item.offset);
    return buf;
  }

  async close(): Promise<void> {
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map(async (h) => (await h).close().catch(() => undefined)));
  }
}

/** Fills `out` (n×C×S×S) with the items' images; the first failure wins after every decode settles. */
export async function decodeBatch(items: EncodedItem[], reader: ItemReader, pre: Preprocess, channels: number, out: Float32Array): Promise<void> {
  const size = channels * pre.crop * pre.crop;
  const results = await Promise.allSettled(
    items.map((item, k) => reader.read(item).then((bytes) => decodeImage(bytes, item.name, pre, channels, out, k * size))),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
