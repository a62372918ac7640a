/**
 * The artifact store on the local filesystem (the default; an object store can implement the same methods).
 *
 * Layout under the root:
 *   uploads/<random>.part              uploads while they stream in
 *   datasets/<id>.<format>             datasets and backbones, named by id (never by a client's file name)
 *   jobs/<jobId>/attempts/<attempt>/   one directory per attempt, written by the engine
 *   jobs/<jobId>/artifacts/            the committed attempt (artifacts and manifest.json), moved there by one rename
 * Every path is built from a validated id and a stored file name of our own; no client string becomes a path.
 */
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AttemptStore, CommitManifest } from '../../workers/ports.js';
import { STORED_FILE } from '../../workers/staging.js';
import { isId, type IdKind } from '../ids.js';

export type BlobFormat = 'npy' | 'csv' | 'tar' | 'onnx';
const FORMATS: ReadonlySet<string> = new Set(['npy', 'csv', 'tar', 'onnx']);
const ATTEMPT = /^[0-9]{1,6}-[0-9a-f]{8}$/;
/** Written by the store itself beside the artifacts; never an artifact name, never served. */
const MANIFEST = 'manifest.json';

/** The parts of the store the API uses besides those of a worker. */
export interface ArtifactStore extends AttemptStore {
  openArtifact(jobId: string, file: string): Promise<{ stream: ReadStream; size: number }>;
  purgeJob(jobId: string): Promise<void>;
}

function assertId(kind: IdKind, id: string): void {
  if (!isId(kind, id)) throw new Error(`invalid ${kind} id ${JSON.stringify(id)}`);
}

async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export class FsStore implements ArtifactStore {
  constructor(readonly root: string) {}

  async init(): Promise<void> {
    for (const d of ['uploads', 'datasets', 'jobs']) await mkdir(join(this.root, d), { recursive: true, mode: 0o700 });
  }

  /** Checks that the root can be written (for /readyz). */
  async writable(): Promise<boolean> {
    try {
      const probe = join(this.root, 'uploads', `.probe-${randomBytes(4).toString('hex')}`);
      const h = await open(probe, 'w');
      await h.close();
      await rm(probe, { force: true });
      return true;
    } catch {
      return false;
    }
  }

  // ---- uploads and datasets ------------------------------------------------------------------------------

  tempUploadPath(): string {
    return join(this.root, 'uploads', `${randomBytes(12).toString('hex')}.part`);
  }

  blobPath(kind: 'dataset' | 'backbone', id: string, format: BlobFormat): string {
    assertId(kind, id);
    if (!FORMATS.has(format)) throw new Error(`invalid format ${JSON.stringify(format)}`);
    return join(this.root, 'datasets', `${id}.${format}`);
  }

  /** Moves a finished upload to its permanent name. */
  async adoptUpload(tempPath: string, kind: 'dataset' | 'backbone', id: string, format: BlobFormat): Promise<string> {
    const target = this.blobPath(kind, id, format);
    await rename(tempPath, target);
    await fsyncDir(join(this.root, 'datasets'));
    return target;
  }

  async removeBlob(kind: 'dataset' | 'backbone', id: string, format: BlobFormat): Promise<void> {
    await rm(this.blobPath(kind, id, format), { force: true });
  }

  // ---- job artifacts ---------------------------------------------------------------------------------------

  private jobDir(jobId: string): string {
    assertId('job', jobId);
    return join(this.root, 'jobs', jobId);
  }

  private attemptDir(jobId: string, attemptId: string): string {
    if (!ATTEMPT.test(attemptId)) throw new Error(`invalid attempt id ${JSON.stringify(attemptId)}`);
    return join(this.jobDir(jobId), 'attempts', attemptId);
  }

  async stagingDir(jobId: string, attemptId: string): Promise<string> {
    const dir = this.attemptDir(jobId, attemptId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  async commit(jobId: string, attemptId: string, manifest: CommitManifest): Promise<boolean> {
    const from = this.attemptDir(jobId, attemptId);
    const to = join(this.jobDir(jobId), 'artifacts');
    const h = await open(join(from, MANIFEST), 'wx', 0o600);
    try {
      await h.writeFile(JSON.stringify(manifest));
      await h.sync();
    } finally {
      await h.close();
    }
    try {
      // A directory rename is atomic, and it fails when another attempt's files are already there.
      await rename(from, to);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
      throw err;
    }
    await fsyncDir(this.jobDir(jobId));
    return true;
  }

  async committed(jobId: string): Promise<CommitManifest | null> {
    try {
      return JSON.parse(await readFile(join(this.jobDir(jobId), 'artifacts', MANIFEST), 'utf8')) as CommitManifest;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw err;
    }
  }

  async discard(jobId: string, attemptId?: string): Promise<void> {
    const dir = attemptId === undefined ? join(this.jobDir(jobId), 'attempts') : this.attemptDir(jobId, attemptId);
    await rm(dir, { recursive: true, force: true });
  }

  async openArtifact(jobId: string, file: string): Promise<{ stream: ReadStream; size: number }> {
    if (!STORED_FILE.test(file)) throw new Error(`invalid stored file name ${JSON.stringify(file)}`);
    const path = join(this.jobDir(jobId), 'artifacts', file);
    const info = await stat(path);
    return { stream: createReadStream(path), size: info.size };
  }

  async purgeJob(jobId: string): Promise<void> {
    await rm(this.jobDir(jobId), { recursive: true, force: true });
  }
}
