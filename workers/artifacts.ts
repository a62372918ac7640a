import { createHash } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CodedError } from './errorTable.js';

export interface ArtifactRecord {
  name: string;
  bytes: number;
  sha256: string;
  contentType: string;
}

/** Where a job's outputs go: a directory for the CLI, the artifact store for the service. */
export interface ArtifactSink {
  put(name: string, body: Buffer, contentType: string): Promise<ArtifactRecord>;
}

/**
 * A failed write of one of our files (an artifact, an upload, a manifest) as a failure of the error table: a full
 * disk is storage.NO_SPACE (insufficient_storage), any other system error storage.IO_ERROR (io_error); both are
 * retryable. The message says what was being written, never where. An error that is not a system error is returned
 * unchanged.
 */
export function storageError(err: unknown, what: string): unknown {
  if (err instanceof CodedError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) return err;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new CodedError('storage.NO_SPACE', `${what}: no space left on the storage device`, { cause: err });
  return new CodedError('storage.IO_ERROR', `${what}: I/O error (${code})`, { cause: err });
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Writes each artifact under a temporary name and renames it, so a reader never sees half a file; a failed write
 * (a full disk) removes its temporary file and fails with the error table's storage reason.
 */
export class DirectorySink implements ArtifactSink {
  constructor(private readonly dir: string) {}

  async put(name: string, body: Buffer, contentType: string): Promise<ArtifactRecord> {
    if (!SAFE_NAME.test(name)) throw new Error(`invalid artifact name ${JSON.stringify(name)}`);
    const target = join(this.dir, name);
    const temp = join(this.dir, `.${name}.${process.pid}.${Date.now()}.tmp`);
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFile(temp, body);
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true }).catch(() => undefined);
      throw storageError(err, `writing ${name}`);
    }
    return { name, bytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), contentType };
  }
}
