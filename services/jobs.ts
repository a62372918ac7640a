/**
 * Jobs: submit (with Idempotency-Key), read, list, cancel and purge, over the job records, the queue and the
 * artifact store; and the feed of a job's changes that its event streams follow.
 */
import { createHash } from 'node:crypto';
import type { Static } from '@sinclair/typebox';
import type { ModeJobSpec } from '../workers/jobSpec.js';
import { TERMINAL_STATUSES, type JobStatus } from '../workers/ports.js';
import type { JobDocSchema } from './api/schemas.js';
import { canAccess, type Principal } from './auth.js';
import type { DatasetService, UploadUse } from './datasets.js';
import { ApiError, badRequest, conflict, isRedisUnavailable, notFound } from './errors.js';
import { isId, newId } from './ids.js';
import type { Logger } from './logger.js';
import type { JobQueue } from './queue.js';
import type { JobViews } from './jobViews.js';
import { parseJobRecord, type IdempotencyClaim, type JobRecord, type Records } from './records.js';
import type { FsStore } from './storage/fsStore.js';

const JOB_NAME = 'immunize';
const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** JSON with object keys sorted, so that the same body always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.keys(value as object)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const jobNotFound = (id: string) => notFound(`no job with id ${JSON.stringify(id)}`);

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** A job as the API shows it (GET /v1/jobs/:id, the list, the event stream). */
export type JobDoc = Static<typeof JobDocSchema>;

/** A job spec at submit: parsed at the edge (the route), with the body it came from. */
export interface Submission {
  spec: ModeJobSpec;
  /** The request body as sent: an Idempotency-Key is bound to it. */
  body: unknown;
  idempotencyKey?: string;
}

export function jobDoc(r: JobRecord): JobDoc {
  const { fraction, ...stage } = r.progress;
  const doc: JobDoc = {
    id: r.id,
    status: r.status,
    progress: r.status === 'completed' ? 1 : Math.max(0, Math.min(1, Number(fraction) || 0)),
    stage,
    attempts: r.attempts,
    createdAt: new Date(r.createdAt).toISOString(),
    artifacts: r.artifacts.map((a) => ({ name: a.name, size: a.bytes, sha256: a.sha256, contentType: a.contentType })),
    spec: r.spec,
  };
  if (r.startedAt !== null) doc.startedAt = new Date(r.startedAt).toISOString();
  if (r.finishedAt !== null) doc.finishedAt = new Date(r.finishedAt).toISOString();
  if (r.metrics) doc.metrics = r.metrics;
  if (r.error) doc.error = r.error;
  if (r.lastError && r.status !== 'completed') doc.lastError = r.lastError;
  if (r.cancelRequested && !TERMINAL_STATUSES.has(r.status)) doc.cancelRequested = true;
  return doc;
}

/** What a job's feed tells the streams that follow it, after each read of the record. */
export type FeedEvent =
  /** The job document as JSON (`data`) and an id for it: a digest of the document, equal for equal documents. */
  | { kind: 'state'; status: JobStatus; data: string; eventId: string }
  /** The record is gone (purged). */
  | { kind: 'gone' }
  /** The read failed (Redis is not answering, `redis` true, or something else); the feed keeps trying. */
  | { kind: 'unavailable'; redis: boolean; message: string };

export type FeedListener = (e: FeedEvent) => void;

/** How often a feed reads the record even without a queue event (a missed event, or Redis coming back). */
export const FEED_POLL_MS = 2000;

/** The id an event stream gives the job document `data`. */
export function docEventId(data: string): string {
  return createHash('sha1').update(data).digest('base64url').slice(0, 16);
}

/**
 * One job's changes, read once for all the streams of this process that follow it: on each queue event about the
 * job and every FEED_POLL_MS, the record is read (one read at a time; a change during a read triggers one more)
 * and the result handed to every listener. A listener gets only the reads that started after it joined, so that it
 * never sees a state older than the one it began with. The feed stops when the job ends or its last listener
 * leaves.
 */
class JobFeed {
  /** Each listener, with the number of the first read it may be given. */
  private readonly listeners = new Map<FeedListener, number>();
  private reads = 0;
  private reading = false;
  private again = false;
  private stopped = false;
  private readonly offQueue: () => void;
  private readonly poll: NodeJS.Timeout;

  constructor(
    private readonly id: string,
    private readonly records: Records,
    queue: JobQueue,
    private readonly onStop: () => void,
    private readonly logger?: Logger,
  ) {
    this.offQueue = queue.onJob(id, () => this.refresh());
    this.poll = setInterval(() => this.refresh(), FEED_POLL_MS);
  }

  add(listener: FeedListener): () => void {
    this.listeners.set(listener, this.reads + 1);
    this.refresh();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  private refresh(): void {
    if (this.stopped) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    void this.read().finally(() => {
      this.reading = false;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
  }

  private async read(): Promise<void> {
    const n = ++this.reads;
    let event: FeedEvent;
    try {
      const r = await this.records.getJob(this.id);
      if (r === null) event = { kind: 'gone' };
      else {
        const data = JSON.stringify(jobDoc(r));
        event = { kind: 'state', status: r.status, data, eventId: docEventId(data) };
      }
    } catch (err) {
      event = { kind: 'unavailable', redis: isRedisUnavailable(err), message: err instanceof Error ? err.message : String(err) };
    }
    if (this.stopped) return;
    for (const [listener, from] of this.listeners) {
      if (n < from) continue;
      try {
        listener(event);
      } catch (err) {
        this.logger?.warn({ jobId: this.id, err: err instanceof Error ? err.message : String(err) }, 'a job event listener failed');
      }
    }
    if (event.kind === 'gone' || (event.kind === 'state' && TERMINAL_STATUSES.has(event.status))) this.stop();
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.offQueue();
    clearInterval(this.poll);
    this.listeners.clear();
    this.onStop();
  }
}

export class JobService {
  /** The feeds of the jobs that streams of this process follow. */
  private readonly feeds = new Map<string, JobFeed>();

  constructor(
    private readonly records: Records,
    private readonly queue: JobQueue,
    private readonly datasets: DatasetService,
    private readonly store: FsStore,
    private readonly logger?: Logger,
  ) {}

  /** The admin key reads and cancels every tenant's jobs but submits none: jobs belong to a tenant. */
  assertMaySubmit(principal: Principal): void {
    if (principal.admin) throw new ApiError(403, 'forbidden', 'the admin key can read and cancel jobs; submit with a tenant key');
  }

  /**
   * Submits a job. The spec's checks come first; then one script claims the Idempotency-Key (if any), writes the
   * record and adds the queue entry, so that a crash leaves all of them or none (and a worker never finds the job
   * before its record), provided every upload the checks relied on still exists. A key already used answers with
   * its job, and puts it on the queue again while it has not finished: a record written apart from its queue entry
   * (as earlier versions did) may never have been queued, and adding a job id the queue holds changes nothing.
   */
  async submit(principal: Principal, { spec, body, idempotencyKey }: Submission): Promise<{ id: string; status: JobStatus; created: boolean }> {
    this.assertMaySubmit(principal);
    let claim: IdempotencyClaim | null = null;
    if (idempotencyKey !== undefined) {
      if (!IDEMPOTENCY_KEY.test(idempotencyKey)) {
        throw badRequest('invalid_idempotency_key', 'Idempotency-Key must be 1 to 255 visible ASCII characters');
      }
      claim = { keyHash: sha256(idempotencyKey), bodyHash: sha256(canonicalJson(body)), ttlSeconds: IDEMPOTENCY_TTL_SECONDS };
    }
    const tenant = principal.tenant;
    // A key already used answers with its job even when the spec no longer passes (a dataset deleted since).
    let uses: UploadUse[] = [];
    const refusal = await this.datasets.checkSpec(principal, spec).then(
      (used) => {
        uses = used;
        return null;
      },
      (err: unknown) => ({ err }),
    );
    if (refusal && !claim) throw refusal.err;
    const id = newId('job');
    const job = { id, tenant, name: JOB_NAME, spec, createdAt: Date.now() };
    const entry = refusal === null ? this.queue.entry(JOB_NAME, id, { tenant }) : undefined;
    const outcome = await this.records.submitJob(job, claim, refusal === null, { entry, uploads: uses.map((u) => u.id) });
    switch (outcome.kind) {
      case 'refused':
        throw refusal!.err;
      case 'missing':
        throw this.datasets.gone(uses[outcome.index]);
      case 'conflict':
        throw conflict('idempotency_conflict', 'this Idempotency-Key was already used with a different request body; use a new key for a new job');
      case 'replay':
        if (!TERMINAL_STATUSES.has(outcome.status)) await this.queue.add(JOB_NAME, outcome.jobId, { tenant });
        return { id: outcome.jobId, status: outcome.status, created: false };
      case 'unqueued':
        throw new Error(`job ${id} could not be queued (${outcome.reason}); nothing was kept`);
    }
    this.logger?.info({ jobId: id, tenant }, 'job submitted');
    return { id, status: 'queued', created: true };
  }

  /** The record, if the principal may see it; otherwise a 404 (another tenant's job is not found). */
  async mustGet(principal: Principal, id: string): Promise<JobRecord> {
    const r = isId('job', id) ? await this.records.getJob(id) : null;
    if (!r || !canAccess(principal, r.tenant)) throw jobNotFound(id);
    return r;
  }

  /**
   * mustGet, rendered: `render` makes a view of the record (the bytes of its document), and `views` keeps it for as
   * long as the record reads the same, so that reading an unchanged job again neither parses nor renders it.
   */
  async mustGetView(principal: Principal, id: string, views: JobViews, render: (r: JobRecord) => string): Promise<string> {
    if (!isId('job', id)) throw jobNotFound(id);
    const text = await this.records.getJobText(id);
    const kept = views.get(id, text);
    if (kept !== undefined) {
      if (!canAccess(principal, kept.tenant)) throw jobNotFound(id);
      return kept.view;
    }
    const r = parseJobRecord(text);
    if (!r || !canAccess(principal, r.tenant)) throw jobNotFound(id);
    const view = render(r);
    views.set(id, text, r.tenant, view);
    return view;
  }

  async list(principal: Principal, limit: number, cursor?: string, tenant?: string): Promise<{ items: JobDoc[]; nextCursor: string | null }> {
    if (cursor !== undefined && !isId('job', cursor)) throw badRequest('invalid_cursor', 'cursor must be the nextCursor of an earlier page');
    const owner = principal.admin ? tenant : principal.tenant;
    if (!owner) throw badRequest('invalid_request', 'the admin key lists one tenant at a time: add ?tenant=NAME');
    const { ids, next } = await this.records.listJobIds(owner, limit, cursor);
    const items = (await this.records.getJobs(ids)).map(jobDoc);
    return { items, nextCursor: next };
  }

  /**
   * Cancels a queued or running job (a running one stops at the engine's next step); with purge, the record and
   * every stored byte go too, once the job has stopped.
   */
  async cancel(principal: Principal, id: string, purge: boolean): Promise<{ id: string; status: JobStatus; purged?: boolean }> {
    const r = await this.mustGet(principal, id);
    if (TERMINAL_STATUSES.has(r.status)) {
      if (purge) {
        await this.purge(id);
        return { id, status: r.status, purged: true };
      }
      return { id, status: r.status };
    }
    const status = await this.records.requestCancel(id, purge);
    if (status === null) return { id, status: r.status, ...(purge ? { purged: true } : {}) };
    if (await this.queue.removeUnlessActive(id)) {
      // It had not started: it is cancelled now (and purged by the hook when asked for).
      await this.records.cancelled(id);
      return { id, status: 'cancelled', ...(purge ? { purged: true } : {}) };
    }
    const now = await this.records.getJob(id);
    return { id, status: now?.status ?? 'cancelled', ...(purge && !now ? { purged: true } : {}) };
  }

  /**
   * Calls `listener` with each read of the job's record (queue events and a poll trigger them) until the job ends
   * or is purged; returns the function that stops it. Streams that follow the same job share the reads.
   */
  follow(id: string, listener: FeedListener): () => void {
    let feed = this.feeds.get(id);
    if (!feed) {
      const created = new JobFeed(
        id,
        this.records,
        this.queue,
        () => {
          if (this.feeds.get(id) === created) this.feeds.delete(id);
        },
        this.logger,
      );
      this.feeds.set(id, created);
      feed = created;
    }
    return feed.add(listener);
  }

  /** Removes a job's record, its queue entry and all its files, and frees its Idempotency-Key for a new job. */
  async purge(id: string): Promise<void> {
    const r = await this.records.getJob(id);
    await this.queue.removeUnlessActive(id).catch(() => false);
    await this.store.purgeJob(id);
    if (r) await this.records.deleteJob(id, r.tenant);
    else await this.records.forgetFinished(id);
    this.logger?.info({ jobId: id }, 'job purged');
  }
}
