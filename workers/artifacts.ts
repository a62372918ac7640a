import { createHash } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Writes each artifact under a temporary name and renames it, so a reader never sees half a file. */
export class DirectorySink implements ArtifactSink {
  constructor(private readonly dir: string) {}

  async put(name: string, body: Buffer, contentType: string): Promise<ArtifactRecord> {
    if (!SAFE_NAME.test(name)) throw new Error(`invalid artifact name ${JSON.stringify(name)}`);
    await mkdir(this.dir, { recursive: true });
    const target = join(this.dir, name);
    const temp = join(this.dir, `.${name}.${process.pid}.${Date.now()}.tmp`);
    await writeFile(temp, body);
    await rename(temp, target);
    return { name, bytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), contentType };
  }
}
