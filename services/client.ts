/**
 * A client of the REST API, for command-line tools and scripts: upload, submit, status, watch (SSE) and download
 * (streamed to disk, checked against the sha256 the job record lists).
 */
import { createHash } from 'node:crypto';
import { createWriteStream, openAsBlob } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sseBlocks } from './sse.js';

export interface ClientJob {
  id: string;
  status: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
  progress: number;
  stage: Record<string, unknown>;
  attempts: number;
  metrics?: Record<string, unknown>;
  artifacts: Array<{ name: string; size: number; sha256: string; contentType: string }>;
  error?: { code: string; message: string };
}

/** An error answer of the API: its HTTP status and its stable code. */
export class ApiClientError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiClientError';
  }
}

export interface ClientOptions {
  baseUrl: string;
  apiKey: string;
}

async function failure(res: Response): Promise<ApiClientError> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (body.error?.code) return new ApiClientError(res.status, body.error.code, body.error.message ?? text);
  } catch {
    // not JSON
  }
  return new ApiClientError(res.status, 'http_error', `HTTP ${res.status}: ${text.slice(0, 200)}`);
}

export class ImmunizeClient {
  private readonly base: string;
  private readonly auth: Record<string, string>;

  constructor(opts: ClientOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.auth = { authorization: `Bearer ${opts.apiKey}` };
  }

  private async json<T>(path: string, init: RequestInit = {}, expected = [200]): Promise<T> {
    const res = await fetch(`${this.base}${path}`, { ...init, headers: { ...this.auth, ...(init.headers as Record<string, string>) } });
    if (!expected.includes(res.status)) throw await failure(res);
    return (await res.json()) as T;
  }

  /** Uploads a dataset (.npy, .csv) or, with kind 'backbone', an .onnx file. */
  async upload(path: string, kind: 'dataset' | 'backbone' = 'dataset'): Promise<Record<string, unknown> & { id: string; sha256: string }> {
    // A file-backed Blob: the body is read from disk as it is sent, not loaded whole (a ViT-B/16 is 346 MB).
    // openAsBlob's own error names no path, so the file is checked first.
    if (!(await stat(path)).isFile()) throw new Error(`${path} is not a file`);
    const form = new FormData();
    form.append('file', await openAsBlob(path), basename(path));
    return this.json(`/v1/${kind}s`, { method: 'POST', body: form }, [201]);
  }

  async submit(spec: unknown, idempotencyKey?: string): Promise<{ id: string; status: ClientJob['status'] }> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
    return this.json('/v1/jobs', { method: 'POST', body: JSON.stringify(spec), headers }, [202]);
  }

  status(id: string): Promise<ClientJob> {
    return this.json(`/v1/jobs/${encodeURIComponent(id)}`);
  }

  cancel(id: string, purge = false): Promise<{ id: string; status: ClientJob['status']; purged?: boolean }> {
    return this.json(`/v1/jobs/${encodeURIComponent(id)}${purge ? '?purge=true' : ''}`, { method: 'DELETE' }, [202]);
  }

  /** Follows the job's event stream, calling `onEvent` for each event; resolves with the final job document. */
  async watch(id: string, onEvent: (event: string, job: ClientJob) => void = () => undefined, signal?: AbortSignal): Promise<ClientJob> {
    const res = await fetch(`${this.base}/v1/jobs/${encodeURIComponent(id)}/events`, { headers: this.auth, signal });
    if (res.status !== 200 || !res.body) throw await failure(res);
    let last: ClientJob | null = null;
    for await (const { event, data } of sseBlocks(res.body as unknown as AsyncIterable<Uint8Array>)) {
      if (!data) continue;
      last = JSON.parse(data) as ClientJob;
      onEvent(event, last);
    }
    if (!last) throw new ApiClientError(502, 'stream_ended', `the event stream of job ${id} ended without an event`);
    return last;
  }

  /** Streams an artifact to `dest` (through a temporary file), checking its sha256 against the job record. */
  async download(id: string, name: string, dest: string): Promise<{ bytes: number; sha256: string }> {
    const job = await this.status(id);
    const listed = job.artifacts.find((a) => a.name === name);
    if (!listed) throw new ApiClientError(404, 'not_found', `job ${id} has no artifact ${name} (it is ${job.status})`);
    const res = await fetch(`${this.base}/v1/jobs/${encodeURIComponent(id)}/artifacts/${encodeURIComponent(name)}`, { headers: this.auth });
    if (res.status !== 200 || !res.body) throw await failure(res);
    const hash = createHash('sha256');
    let bytes = 0;
    const temp = `${dest}.${process.pid}.part`;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]), meter, createWriteStream(temp));
      const sha256 = hash.digest('hex');
      if (sha256 !== listed.sha256)
        throw new ApiClientError(502, 'checksum_mismatch', `${name}: sha256 ${sha256} does not match the job record's ${listed.sha256}`);
      await rename(temp, dest);
      return { bytes, sha256 };
    } finally {
      await rm(temp, { force: true });
    }
  }
}
