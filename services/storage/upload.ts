/** Streams an upload to a file, computing its sha256 on the way and stopping at a size limit. */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { storageError } from '../../workers/artifacts.js';

export class UploadTooLargeError extends Error {
  readonly code = 'payload_too_large';
  constructor(readonly limit: number) {
    super(`the upload is larger than the limit of ${limit} bytes (IMMUNIZE_MAX_UPLOAD_BYTES)`);
  }
}

export interface StreamedFile {
  bytes: number;
  sha256: string;
}

const createFile = (path: string): Writable => createWriteStream(path, { flags: 'wx', mode: 0o600 });

/**
 * Writes `source` to a new file at `path` (through `open`, the store's seam). On any failure the file is removed; a
 * failed write to the disk (a full disk, an I/O error) is the error table's storage.NO_SPACE or storage.IO_ERROR.
 */
export async function streamToFile(source: Readable, path: string, limit: number, open: (path: string) => Writable = createFile): Promise<StreamedFile> {
  const hash = createHash('sha256');
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > limit) {
        done(new UploadTooLargeError(limit));
        return;
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  let sink: Writable | null = null;
  // The first stream to fail: a failure of one makes the pipeline destroy the others with the same error.
  const failed: { first: 'source' | 'sink' | null } = { first: null };
  source.on('error', () => (failed.first ??= 'source'));
  meter.on('error', () => (failed.first ??= 'source'));
  try {
    sink = open(path);
    sink.on('error', () => (failed.first ??= 'sink'));
    await pipeline(source, meter, sink);
  } catch (err) {
    await rm(path, { force: true });
    const code = (err as { code?: string }).code;
    // @fastify/multipart ends an oversized part with its own error.
    if (err instanceof UploadTooLargeError || code === 'FST_REQ_FILE_TOO_LARGE') throw new UploadTooLargeError(limit);
    // The disk refused the bytes (rather than the client stopping sending them).
    if (sink === null || failed.first === 'sink') throw storageError(err, 'storing the upload');
    throw err;
  }
  if ((source as Readable & { truncated?: boolean }).truncated) {
    await rm(path, { force: true });
    throw new UploadTooLargeError(limit);
  }
  return { bytes, sha256: hash.digest('hex') };
}
