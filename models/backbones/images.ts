/**
 * Image inputs for a backbone, read batch by batch into a caller's Float32Array (N×C×H×W, C order):
 * - .npy, float32 N×C×H×W, already preprocessed: read straight from the file into the batch buffer;
 * - a folder or an uncompressed .tar of PNG/JPEG files, decoded with sharp and preprocessed the ImageNet way:
 *   shorter side resized to 256 (bilinear), centre crop 224, scaled to [0, 1], normalized by the ImageNet mean
 *   and std. A model with a fixed input size S×S gets crop S and resize round(S·256/224) instead. All four
 *   settings can be overridden.
 * Files are taken in path order. Images in class subfolders (root/CLASS/…) are labelled by their sorted class index.
 */
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { extname, join, relative, sep } from 'node:path';
import { Worker } from 'node:worker_threads';
import { DataError, fsError } from '../io/index.js';
import { decodeBatch, ItemReader, loadSharp, type EncodedItem, type Preprocess } from './decode.js';
import type { DecodeReply, DecodeRequest } from './decodeWorker.js';
import { BackboneError, type BackboneErrorReason } from './errors.js';
import { indexTar, type TarEntry } from './tar.js';

export { resizedSize, type Preprocess } from './decode.js';

export interface PreprocessSpec {
  resize?: number;
  crop?: number;
  mean?: number[];
  std?: number[];
}

export const IMAGENET_PREPROCESS: Preprocess = { resize: 256, crop: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/** C, H, W as the model declares them; null where a dimension is symbolic. */
export interface InputGeometry {
  channels: number | null;
  height: number | null;
  width: number | null;
}

export interface ImageSource {
  readonly label: string;
  readonly kind: 'npy' | 'folder' | 'tar';
  readonly count: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** Class indices from the folder layout, with the class names; absent when the images are not in class folders. */
  readonly labels?: Float64Array;
  readonly classes?: string[];
  /** The preprocessing applied, for image files (null for .npy, which comes preprocessed). */
  readonly preprocess: Preprocess | null;
  /**
   * Writes images [start, start + n) into `out` from element 0 and returns the filled array: `out` itself, or
   * (image files) a new view of the same memory after its round trip through the decode thread, which detaches `out`.
   */
  read(start: number, n: number, out: Float32Array): Promise<Float32Array>;
  close(): Promise<void>;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);
const IMAGES_EXPECTED = 'expected an .npy file (float32 N×C×H×W), a folder of PNG/JPEG images or an uncompressed .tar of them';

export function resolvePreprocess(spec: PreprocessSpec | undefined, geometry: InputGeometry, label: string): Preprocess {
  const channels = geometry.channels ?? 3;
  const { height, width } = geometry;
  if (height !== null && width !== null && height !== width && spec?.crop === undefined) {
    throw new BackboneError(
      'PREPROCESS',
      `${label}: the model takes ${height}×${width} images; square centre crops cannot fill that, so pass preprocessed .npy images`,
    );
  }
  const fixed = height ?? width;
  const crop = spec?.crop ?? fixed ?? IMAGENET_PREPROCESS.crop;
  if (fixed !== null && (crop !== (height ?? crop) || crop !== (width ?? crop))) {
    throw new BackboneError(
      'IMAGE_SIZE',
      `${label}: preprocess.crop ${crop} makes ${crop}×${crop} images but the model takes ${height ?? '?'}×${width ?? '?'}`,
    );
  }
  const resize = spec?.resize ?? Math.round((crop * IMAGENET_PREPROCESS.resize) / IMAGENET_PREPROCESS.crop);
  if (!(Number.isInteger(crop) && crop > 0 && Number.isInteger(resize) && resize >= crop)) {
    throw new BackboneError('PREPROCESS', `${label}: preprocess.resize (${resize}) must be an integer no smaller than preprocess.crop (${crop})`);
  }
  const mean = spec?.mean ?? (channels === 3 ? IMAGENET_PREPROCESS.mean : undefined);
  const std = spec?.std ?? (channels === 3 ? IMAGENET_PREPROCESS.std : undefined);
  if (!mean || !std || mean.length !== channels || std.length !== channels) {
    throw new BackboneError(
      'PREPROCESS',
      `${label}: the model takes ${channels}-channel images; give preprocess.mean and preprocess.std with ${channels} values each`,
    );
  }
  if (std.some((s) => !(s > 0)) || mean.some((m) => !Number.isFinite(m))) {
    throw new BackboneError('PREPROCESS', `${label}: preprocess.std must be positive and preprocess.mean finite`);
  }
  return { resize, crop, mean: [...mean], std: [...std] };
}

/** The first path component names the class; labels only when every image has one and there are two or more. */
function classLabels(paths: string[]): { labels: Float64Array; classes: string[] } | null {
  const parts = paths.map((p) => p.split('/'));
  if (parts.some((p) => p.length < 2)) return null;
  const classes = [...new Set(parts.map((p) => p[0]))].sort();
  if (classes.length < 2) return null;
  const index = new Map(classes.map((c, i) => [c, i]));
  return { labels: Float64Array.from(parts, (p) => index.get(p[0])!), classes };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function walk(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (dir: string) => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) await visit(p);
      else if (e.isFile() && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) out.push(relative(root, p).split(sep).join('/'));
    }
  };
  await visit(root);
  return out.sort(compare);
}

/** A worker thread that decodes batches; see decodeWorker.ts. */
class DecodeThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (a: Float32Array) => void; reject: (e: unknown) => void }>();
  private next = 0;
  private failure: Error | null = null;

  constructor() {
    this.worker = new Worker(new URL('./decodeWorker.js', import.meta.url));
    this.worker.unref();
    this.worker.on('message', (reply: DecodeReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (!('error' in reply)) return p.resolve(new Float32Array(reply.buffer));
      const { kind, code, message } = reply.error;
      p.reject(
        kind === 'backbone'
          ? new BackboneError(code as BackboneErrorReason, message)
          : kind === 'data'
            ? new DataError(code as DataError['code'], message)
            : new Error(message),
      );
    });
    const fail = (err: Error) => {
      this.failure = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', () => fail(new Error('the image decode thread exited')));
  }

  decode(items: EncodedItem[], pre: Preprocess, channels: number, out: Float32Array): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (out.byteOffset !== 0 || out.byteLength !== out.buffer.byteLength || !(out.buffer instanceof ArrayBuffer)) {
      throw new RangeError('decode buffers must be whole, unshared ArrayBuffers (they are transferred)');
    }
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const req: DecodeRequest = { id, items, pre, channels, buffer: out.buffer as ArrayBuffer };
      this.worker.postMessage(req, [req.buffer]);
    });
  }

  /** Lets the thread close its archive handles and exit; terminates it if it has not within a second. */
  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage('close');
    const timer = setTimeout(() => void this.worker.terminate(), 1000);
    await exited;
    clearTimeout(timer);
  }
}

class EncodedImages implements ImageSource {
  readonly count: number;
  readonly labels?: Float64Array;
  readonly classes?: string[];
  readonly height: number;
  readonly width: number;
  private thread: DecodeThread | null = null;
  private readonly reader = new ItemReader();

  constructor(
    readonly label: string,
    readonly kind: 'folder' | 'tar',
    /** Paths relative to the folder or archive root, for the class labels. */
    names: string[],
    private readonly items: EncodedItem[],
    readonly preprocess: Preprocess,
    readonly channels: number,
    private readonly inThread: boolean,
  ) {
    this.count = items.length;
    this.height = preprocess.crop;
    this.width = preprocess.crop;
    const labelled = classLabels(names);
    if (labelled) {
      this.labels = labelled.labels;
      this.classes = labelled.classes;
    }
  }

  async read(start: number, n: number, out: Float32Array): Promise<Float32Array> {
    const items = this.items.slice(start, start + n);
    if (this.inThread) {
      await decodeBatch(items, this.reader, this.preprocess, this.channels, out);
      return out;
    }
    if (!this.thread) {
      // sharp's libraries must be loaded by this thread before a worker uses them (lovell/sharp#2263).
      await loadSharp();
      this.thread ??= new DecodeThread();
    }
    return this.thread.decode(items, this.preprocess, this.channels, out);
  }

  async close(): Promise<void> {
    await this.reader.close();
    await this.thread?.close();
    this.thread = null;
  }
}

const HOST_LE = endianness() === 'LE';

class NpyImages implements ImageSource {
  readonly kind = 'npy';
  readonly preprocess = null;

  constructor(
    readonly label: string,
    private readonly fh: FileHandle,
    private readonly dataOffset: number,
    readonly count: number,
    readonly channels: number,
    readonly height: number,
    readonly width: number,
  ) {}

  async read(start: number, n: number, out: Float32Array): Promise<Float32Array> {
    const per = this.channels * this.height * this.width;
    const bytes = n * per * 4;
    const view = Buffer.from(out.buffer, out.byteOffset, bytes);
    const { bytesRead } = await this.fh.read(view, 0, bytes, this.dataOffset + start * per * 4);
    if (bytesRead !== bytes) throw new DataError('TRUNCATED', `${this.label}: the file ended early while reading image ${start}`, NPY_MALFORMED);
    for (let i = 0; i < n * per; i++) {
      if (!Number.isFinite(out[i])) {
        const image = start + Math.floor(i / per);
        throw new DataError('NON_FINITE', `${this.label}: image ${image} holds a non-finite value (${out[i]}); expected finite float32 pixels`);
      }
    }
    return out;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** A file that is not a readable .npy array: the upload check refuses the same bytes as invalid_npy. */
const NPY_MALFORMED = { dataReason: 'NPY_MALFORMED' } as const;

async function openNpy(path: string, geometry: InputGeometry, limit: number | undefined): Promise<NpyImages> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw fsError(err, path, 'an .npy file of float32 N×C×H×W images');
  }
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(Math.min(size, 65_536 + 12));
    await fh.read(head, 0, head.length, 0);
    if (head.length < 10 || head.subarray(0, 6).toString('latin1') !== '\x93NUMPY') {
      throw new DataError('BAD_FORMAT', `${path}: not an .npy file (missing the "\\x93NUMPY" magic string); ${IMAGES_EXPECTED}`, NPY_MALFORMED);
    }
    const major = head[6];
    const lenBytes = major === 1 ? 2 : 4;
    const headerLen = major === 1 ? head.readUInt16LE(8) : head.readUInt32LE(8);
    const dataOffset = 8 + lenBytes + headerLen;
    if (dataOffset > head.length) throw new DataError('TRUNCATED', `${path}: the .npy header runs past the end of the file`, NPY_MALFORMED);
    const header = head.subarray(8 + lenBytes, dataOffset).toString('latin1');
    const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
    const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
    const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
    if (descr === undefined || fortran === undefined || shapeText === undefined) {
      throw new DataError('BAD_FORMAT', `${path}: malformed .npy header; ${IMAGES_EXPECTED}`, NPY_MALFORMED);
    }
    const shape = shapeText
      .split(',')
      .map((s) => s.trim().replace(/L$/, ''))
      .filter((s) => s !== '')
      .map(Number);
    if (descr !== '<f4') {
      throw new BackboneError(
        'IMAGES_DTYPE',
        `${path}: images are stored as '${descr}'; expected float32 ('<f4') N×C×H×W, already preprocessed (convert with arr.astype(np.float32))`,
      );
    }
    if (fortran === 'True') throw new BackboneError('IMAGES_SHAPE', `${path}: the array is in Fortran order; save np.ascontiguousarray(arr)`);
    if (shape.length !== 4 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      const hint = shape.length === 2 ? ' (a 2-D array holds precomputed features: run without a backbone for those)' : '';
      // Features (2-D) or a label vector (1-D) are arrays of another kind; any other rank is no array this project takes.
      const wrongKind = shape.length === 2 || shape.length === 1 ? ({ dataReason: 'WRONG_KIND' } as const) : undefined;
      throw new BackboneError('IMAGES_SHAPE', `${path}: images have shape (${shape.join(', ')}); expected a 4-D N×C×H×W array${hint}`, wrongKind);
    }
    const [n, c, h, w] = shape;
    const want = [geometry.channels, geometry.height, geometry.width];
    if ([c, h, w].some((d, i) => want[i] !== null && want[i] !== d)) {
      throw new BackboneError(
        'IMAGE_SIZE',
        `${path}: images are ${c}×${h}×${w} (C×H×W) but the model takes ${want.map((d) => d ?? 'any').join('×')}; resize and crop them to the model's input size`,
      );
    }
    if (size - dataOffset !== n * c * h * w * 4) {
      throw new DataError(
        'TRUNCATED',
        `${path}: shape (${shape.join(', ')}) of float32 needs ${n * c * h * w * 4} data bytes but the file holds ${size - dataOffset}`,
        NPY_MALFORMED,
      );
    }
    if (!HOST_LE) throw new DataError('BAD_FORMAT', `${path}: reading float32 images needs a little-endian host`);
    if (n === 0) throw new BackboneError('IMAGES_EMPTY', `${path}: the array holds no images (N = 0)`);
    return new NpyImages(path, fh, dataOffset, limit === undefined ? n : Math.min(n, limit), c, h, w);
  } catch (err) {
    await fh.close();
    throw err;
  }
}

export interface OpenImagesOptions {
  preprocess?: PreprocessSpec;
  /** Take only the first `limit` images. */
  limit?: number;
  /** Decode image files on the calling thread instead of a decode thread. */
  inThread?: boolean;
}

/** The PNG/JPEG entries of a tar archive in reading order, with their names relative to the image root. */
async function tarImages(fh: FileHandle, size: number, label: string, limit?: number): Promise<{ entries: TarEntry[]; names: string[] }> {
  const all = await indexTar(fh, size, label);
  const images = all.filter((e) => IMAGE_EXTENSIONS.has(extname(e.path).toLowerCase()) && !e.path.split('/').some((p) => p.startsWith('.')));
  images.sort((a, b) => compare(a.path, b.path));
  const entries = limit === undefined ? images : images.slice(0, limit);
  if (entries.length === 0) throw new BackboneError('IMAGES_EMPTY', `${label}: the archive holds no .png, .jpg or .jpeg images`);
  // An archive of one folder ("images/cat/1.png") is read as that folder.
  const paths = entries.map((e) => e.path.replace(/^\.\//, ''));
  const top = paths[0].split('/')[0];
  const nested = paths.every((p) => p.split('/').length > 2 && p.split('/')[0] === top);
  return { entries, names: nested ? paths.map((p) => p.slice(top.length + 1)) : paths };
}

/**
 * What an uploaded .tar of images holds, without decoding it: the image count and, when they sit in class folders,
 * the classes. Throws TAR_MALFORMED or IMAGES_EMPTY as a job would.
 */
export async function describeImageArchive(path: string, label: string): Promise<{ images: number; classes: string[] | null }> {
  const fh = await open(path, 'r');
  try {
    const { names } = await tarImages(fh, (await fh.stat()).size, label);
    return { images: names.length, classes: classLabels(names)?.classes ?? null };
  } finally {
    await fh.close();
  }
}

export async function openImages(path: string, geometry: InputGeometry, opts: OpenImagesOptions = {}): Promise<ImageSource> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw fsError(err, path, IMAGES_EXPECTED.replace(/^expected /, ''));
  }
  const lower = path.toLowerCase();
  const take = <T>(list: T[]) => (opts.limit === undefined ? list : list.slice(0, opts.limit));
  if (info.isDirectory()) {
    const pre = resolvePreprocess(opts.preprocess, geometry, path);
    const names = take(await walk(path));
    if (names.length === 0) throw new BackboneError('IMAGES_EMPTY', `${path}: the folder holds no .png, .jpg or .jpeg images`);
    const channels = geometry.channels ?? 3;
    const items = names.map((n) => ({ name: `${path}/${n}`, file: join(path, n) }));
    return new EncodedImages(path, 'folder', names, items, pre, channels, opts.inThread ?? false);
  }
  if (lower.endsWith('.npy')) {
    if (opts.preprocess) throw new BackboneError('PREPROCESS', `${path}: .npy images come preprocessed; preprocess settings apply only to image files`);
    return openNpy(path, geometry, opts.limit);
  }
  if (lower.endsWith('.tar')) {
    const pre = resolvePreprocess(opts.preprocess, geometry, path);
    const fh = await open(path, 'r');
    try {
      const { entries: chosen, names } = await tarImages(fh, info.size, path, opts.limit);
      await fh.close();
      const items = chosen.map((e) => ({ name: `${path}:${e.path}`, file: path, offset: e.offset, size: e.size }));
      return new EncodedImages(path, 'tar', names, items, pre, geometry.channels ?? 3, opts.inThread ?? false);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }
  const hint = /\.(tar\.gz|tgz|tar\.bz2|tar\.xz|zip)$/.test(lower) ? ' (compressed archives are not read: decompress to a plain .tar or a folder)' : '';
  throw new DataError('UNSUPPORTED_EXTENSION', `${path}: unsupported image input${hint}; ${IMAGES_EXPECTED}`);
}
