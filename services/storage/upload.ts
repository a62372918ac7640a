/** Streams an upload to a file, computing its sha256 on the way and stopping at a size limit. */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

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

export async function streamToFile(source: Readable, path: string, limit: number): Promise<StreamedFile> {
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
  try {
    await pipeline(source, meter, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
  } catch (err) {
    await rm(path, { force: true });
    const code = (err as { code?: string }).code;
    // @fastify/multipart ends an oversized part with its own error.
    if (err instanceof UploadTooLargeError || code === 'FST_REQ_FILE_TOO_LARGE') throw new UploadTooLargeError(limit);
    throw err;
  }
  if ((source as Readable & { truncated?: boolean }).truncated) {
    await rm(path, { force: true });
    throw new UploadTooLargeError(limit);
  }
  return { bytes, sha256: hash.digest('hex') };
}
