/**
 * Where one attempt of a queued job writes its artifacts: a private directory, one file per artifact, stored
 * under a file name of our own (never the artifact's name). The store commits the whole directory at once
 * when the attempt succeeds, so a reader sees all of an attempt's artifacts or none.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { storageError, type ArtifactRecord, type ArtifactSink } from './artifacts.js';

/** The artifact names a job may produce, with their content types. Anything else is refused. */
export const ARTIFACT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  'metrics.json': 'application/json',
  'curves.json': 'application/json',
  'theta.safetensors': 'application/octet-stream',
  'immunized.onnx': 'application/octet-stream',
  'report.html': 'text/html; charset=utf-8',
});

export function isArtifactName(name: string): boolean {
  return Object.hasOwn(ARTIFACT_TYPES, name);
}

/** An artifact as kept in a job record: `file` is the stored file name inside the job's artifact directory. */
export interface StoredArtifact extends ArtifactRecord {
  file: string;
}

/** Stored file names are ours: a sequence number and a fixed suffix. */
export const STORED_FILE = /^a[0-9]{1,3}\.bin$/;

/** Writes a whole file at a new path and flushes it to the disk. */
export type FileWriter = (path: string, body: Buffer) => Promise<void>;

export const writeDurably: FileWriter = async (path, body) => {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(body);
    await handle.sync();
  } finally {
    await handle.close();
  }
};

export class StagingSink implements ArtifactSink {
  private readonly written: StoredArtifact[] = [];

  /** `write` is the file write itself; a test replaces it to inject a full disk. */
  constructor(
    readonly dir: string,
    private readonly write: FileWriter = writeDurably,
  ) {}

  get artifacts(): StoredArtifact[] {
    return this.written.map((a) => ({ ...a }));
  }

  async put(name: string, body: Buffer, contentType: string): Promise<ArtifactRecord> {
    if (!isArtifactName(name)) throw new Error(`artifact name ${JSON.stringify(name)} is not one of ${Object.keys(ARTIFACT_TYPES).join(', ')}`);
    if (this.written.some((a) => a.name === name)) throw new Error(`artifact ${name} was already written by this attempt`);
    const file = `a${this.written.length}.bin`;
    const temp = join(this.dir, `${file}.part`);
    try {
      await mkdir(this.dir, { recursive: true });
      // A temporary file left by an earlier failed write of this name goes first: the write below must create it.
      await rm(temp, { force: true });
      await this.write(temp, body);
      await rename(temp, join(this.dir, file));
    } catch (err) {
      // No partial file is left behind, and nothing is recorded: the attempt fails, and a retry writes afresh.
      await rm(temp, { force: true }).catch(() => undefined);
      throw storageError(err, `writing the artifact ${name}`);
    }
    const record: StoredArtifact = {
      name,
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      contentType: ARTIFACT_TYPES[name] ?? contentType,
      file,
    };
    this.written.push(record);
    const { file: _file, ...publicRecord } = record;
    return publicRecord;
  }
}
