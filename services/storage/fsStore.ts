/**
 * The artifact store on the local filesystem (the default; an object store can implement the same methods).
 *
 * Layout under the root:
 *   uploads/<owner>-<random>.part      uploads while they stream in (owner: this host's tag and the process id)
 *   datasets/<id>.<format>             datasets and backbones, named by id (never by a client's file name)
 *   jobs/<jobId>/attempts/<attempt>/   one directory per attempt, written by the engine
 *   jobs/<jobId>/artifacts/            the committed attempt (artifacts and manifest.json), moved there by one rename
 * Every path is built from a validated id and a stored file name of our own; no client string becomes a path.
 */
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { storageError } from '../../workers/artifacts.js';
import { CodedError } from '../../workers/errorTable.js';
import type { AttemptStore, CommitManifest } from '../../workers/ports.js';
import { STORED_FILE, writeDurably, type FileWriter } from '../../workers/staging.js';
import { isId, type IdKind } from '../ids.js';

export type BlobFormat = 'npy' | 'csv' | 'tar' | 'onnx';
const FORMATS: ReadonlySet<string> = new Set(['npy', 'csv', 'tar', 'onnx']);
const ATTEMPT = /^[0-9]{1,6}-[0-9a-f]{8}$/;
/** Written by the store itself beside the artifacts; never an artifact name, never served. */
const MANIFEST = 'manifest.json';

/**
 * The writes the store makes through this seam: tests replace them to inject a full disk or an I/O error at the
 * point where the bytes go to the disk.
 */
export interface StoreWrites {
  /** The stream an upload is written to; it creates the file (and fails if it exists). */
  uploadStream(path: string): Writable;
  /** A whole small file of ours (a commit's manifest), created and flushed. */
  writeFile: FileWriter;
}

export const FS_WRITES: StoreWrites = Object.freeze({
  uploadStream: (path: string) => createWriteStream(path, { flags: 'wx', mode: 0o600 }),
  writeFile: writeDurably,
});

/** Names this host in the names of the uploads it receives (a hash: a host name may hold any character). */
const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
/** An upload's temporary file: `<host tag>-<pid>-<random>.part`. */
const UPLOAD_PART = /^([0-9a-f]{8})-([0-9]{1,10})-[0-9a-f]{24}\.part$/;
/** How long an upload's temporary file may go unwritten before a sweep takes it for abandoned, whoever wrote it. */
export const UPLOAD_IDLE_MS = 3_600_000;

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

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
  /** Where the store's writes go; replaced by tests only. */
  writes: StoreWrites = FS_WRITES;
  /** The uploads this process is receiving now (their temporary paths): never swept. */
  private readonly receiving = new Set<string>();
  /** When this process started, in ms since the epoch. */
  private readonly startedAt = performance.timeOrigin;

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

  /** A fresh temporary path for an upload this process receives; give it back with dropUpload or adoptUpload. */
  tempUploadPath(): string {
    const path = join(this.root, 'uploads', `${HOST_TAG}-${process.pid}-${randomBytes(12).toString('hex')}.part`);
    this.receiving.add(path);
    return path;
  }

  /** The stream an upload is written to (its path from tempUploadPath). */
  uploadStream(path: string): Writable {
    return this.writes.uploadStream(path);
  }

  /** Removes an upload's temporary file, if it is still there (a refused or failed upload). */
  async dropUpload(tempPath: string): Promise<void> {
    try {
      await rm(tempPath, { force: true });
    } finally {
      this.receiving.delete(tempPath);
    }
  }

  /**
   * Removes the temporary files of uploads that will never finish: those of a process on this host that is no longer
   * running (or that ran before this one with the same pid: a restarted container), last written before this process
   * started; and any, whoever wrote it, not written for `idleMs`. This process's own uploads in progress are kept.
   * Answers the number of files removed.
   */
  async sweepUploads(idleMs = UPLOAD_IDLE_MS, now = Date.now()): Promise<number> {
    const dir = join(this.root, 'uploads');
    let removed = 0;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (!entry.isFile() || this.receiving.has(path)) continue;
      let mtime: number;
      try {
        mtime = (await stat(path)).mtimeMs;
      } catch {
        continue; // gone meanwhile
      }
      const owner = UPLOAD_PART.exec(entry.name);
      const pid = owner ? Number(owner[2]) : 0;
      const deadHere = owner !== null && owner[1] === HOST_TAG && mtime < this.startedAt && (pid === process.pid || !isAlive(pid));
      if (deadHere || now - mtime > idleMs) {
        await rm(path, { force: true });
        removed++;
      }
    }
    return removed;
  }

  blobPath(kind: 'dataset' | 'backbone', id: string, format: BlobFormat): string {
    assertId(kind, id);
    if (!FORMATS.has(format)) throw new Error(`invalid format ${JSON.stringify(format)}`);
    return join(this.root, 'datasets', `${id}.${format}`);
  }

  /** Moves a finished upload to its permanent name (removed again if the move cannot be made durable). */
  async adoptUpload(tempPath: string, kind: 'dataset' | 'backbone', id: string, format: BlobFormat): Promise<string> {
    const target = this.blobPath(kind, id, format);
    try {
      await rename(tempPath, target);
      this.receiving.delete(tempPath);
      await fsyncDir(join(this.root, 'datasets'));
    } catch (err) {
      await rm(target, { force: true }).catch(() => undefined);
      throw storageError(err, `storing the ${kind}`);
    }
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
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw code === 'ENOSPC' || code === 'EDQUOT' ? storageError(err, 'creating the directory of the attempt') : err;
    }
    return dir;
  }

  /**
   * Commits an attempt: checks that each artifact of the manifest is on the disk whole (its recorded size), writes
   * the manifest, and renames the attempt's directory to the job's. A failed write (a full disk) fails the commit with
   * the error table's storage reason, and leaves nothing committed.
   */
  async commit(jobId: string, attemptId: string, manifest: CommitManifest): Promise<boolean> {
    const from = this.attemptDir(jobId, attemptId);
    const to = join(this.jobDir(jobId), 'artifacts');
    for (const a of manifest.artifacts) {
      if (!STORED_FILE.test(a.file)) throw new Error(`invalid stored file name ${JSON.stringify(a.file)}`);
      let size: number;
      try {
        size = (await stat(join(from, a.file))).size;
      } catch (err) {
        throw storageError(err, `checking the artifact ${a.name}`);
      }
      if (size !== a.bytes) throw new CodedError('storage.IO_ERROR', `the artifact ${a.name} has ${size} bytes on the disk; ${a.bytes} were written`);
    }
    try {
      await this.writes.writeFile(join(from, MANIFEST), Buffer.from(JSON.stringify(manifest)));
    } catch (err) {
      await rm(join(from, MANIFEST), { force: true }).catch(() => undefined);
      throw storageError(err, 'writing the manifest of the artifacts');
    }
    try {
      // A directory rename is atomic, and it fails when another attempt's files are already there.
      await rename(from, to);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
      throw storageError(err, 'committing the artifacts');
    }
    // Should this fail, the job's record is not updated by this attempt; the next one finds the commit and records it.
    await fsyncDir(this.jobDir(jobId)).catch((err: unknown) => Promise.reject(storageError(err, 'committing the artifacts')));
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
