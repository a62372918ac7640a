/**
 * Where the trunk's cut activations live between the trunk pass and training: in memory, or, when they would not
 * fit the memory budget, in a temporary file read back row by row (training draws random batches, so only a batch
 * is ever in memory). A ResNet-18 layer4 cut is 256×14×14 floats, 200 kB an image: 10,000 images make 2 GB.
 */
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface CutRows {
  readonly rows: number;
  /** Floats per row. */
  readonly perRow: number;
  /** The given rows, packed in that order. */
  read(rows: number[]): Float32Array;
}

export interface CutWriter extends CutRows {
  /** Appends rows (n·perRow floats) after those written so far. */
  append(data: Float32Array): void;
  readonly where: 'memory' | 'disk';
  close(): void;
}

export class MemoryCut implements CutWriter {
  readonly where = 'memory';
  private readonly data: Float32Array;
  private filled = 0;

  constructor(
    readonly rows: number,
    readonly perRow: number,
  ) {
    this.data = new Float32Array(rows * perRow);
  }

  append(data: Float32Array): void {
    this.data.set(data, this.filled);
    this.filled += data.length;
  }

  read(rows: number[]): Float32Array {
    const out = new Float32Array(rows.length * this.perRow);
    rows.forEach((r, i) => out.set(this.data.subarray(r * this.perRow, (r + 1) * this.perRow), i * this.perRow));
    return out;
  }

  close(): void {}
}

export class FileCut implements CutWriter {
  readonly where = 'disk';
  readonly path: string;
  private readonly fd: number;
  private written = 0;

  constructor(
    readonly rows: number,
    readonly perRow: number,
    dir = tmpdir(),
  ) {
    this.path = join(dir, `immunize-cut-${process.pid}-${randomBytes(6).toString('hex')}.f32`);
    this.fd = openSync(this.path, 'w+');
  }

  append(data: Float32Array): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, this.written + done);
    this.written += bytes.length;
  }

  read(rows: number[]): Float32Array {
    const rowBytes = this.perRow * 4;
    const out = new Float32Array(rows.length * this.perRow);
    const view = new Uint8Array(out.buffer);
    rows.forEach((r, i) => {
      let done = 0;
      while (done < rowBytes) {
        const n = readSync(this.fd, view, i * rowBytes + done, rowBytes - done, r * rowBytes + done);
        if (n === 0) throw new RangeError(`${this.path}: row ${r} is past the end of the cached activations`);
        done += n;
      }
    });
    return out;
  }

  close(): void {
    closeSync(this.fd);
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/** A view on some rows of another store (the training rows, the held-out rows), without copying. */
export function cutSubset(base: CutRows, rows: number[]): CutRows {
  return { rows: rows.length, perRow: base.perRow, read: (picked) => base.read(picked.map((r) => rows[r])) };
}

/** Default memory budget for cached activations: 2 GiB. */
export const CUT_MEMORY_BYTES = 2 * 1024 ** 3;

export function cutWriter(rows: number, perRow: number, memoryBytes = CUT_MEMORY_BYTES): CutWriter {
  return rows * perRow * 4 > memoryBytes ? new FileCut(rows, perRow) : new MemoryCut(rows, perRow);
}
