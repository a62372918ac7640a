/**
 * Job and dataset records in Redis hashes, so that they outlive API and worker restarts.
 *
 * Keys, under the configured prefix P:
 *   P:job:<id>                 hash: the job record
 *   P:jobs:<tenant>            sorted set (all scores 0, ordered by id, hence by creation time): the tenant's jobs
 *   P:finished                 sorted set, score = finish time: what the retention sweep looks at
 *   P:ds:<id>                  hash: a dataset or backbone record
 *   P:datasets:<tenant>        sorted set: the tenant's datasets and backbones
 *   P:idem:<tenant>:<sha256>   string: an Idempotency-Key's body hash and job id, claimed by the script that writes
 *                              the job's record; the record names the key (field idemKey) so that deleting the job
 *                              releases it
 *   P:cancel                   pub/sub channel: ids of jobs to cancel
 *
 * Status changes go through Lua scripts so that a finished job never changes again.
 *
 * The API's reads of records and its job creation go through a CommandBatch: under load, the commands that requests
 * issue in one turn of the event loop leave for Redis together (one socket write and a few replies for all of them
 * rather than one each, which is most of what a read costs the API).
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { StoredArtifact } from '../workers/staging.js';
import type { QueueEntry } from './queue.js';
import { scriptFrame, UNFRAME_LUA } from './scriptFrame.js';
import { TERMINAL_STATUSES, type JobError, type JobProgress, type JobRecordView, type JobStatus, type WorkerRecords } from '../workers/ports.js';

export interface JobRecord {
  id: string;
  tenant: string;
  name: string;
  status: JobStatus;
  progress: JobProgress;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  attempts: number;
  worker: string | null;
  spec: unknown;
  metrics: Record<string, unknown> | null;
  artifacts: StoredArtifact[];
  error: JobError | null;
  lastError: JobError | null;
  cancelRequested: boolean;
  purgeRequested: boolean;
}

/** A job's record as submitted. */
export interface NewJob {
  id: string;
  tenant: string;
  name: string;
  spec: unknown;
  createdAt: number;
}

/** An Idempotency-Key (its sha256) to claim for a new job, with the hash of the body it is bound to. */
export interface IdempotencyClaim {
  keyHash: string;
  bodyHash: string;
  ttlSeconds: number;
}

export type SubmitOutcome =
  /** The record is written (and the key, if any, claimed for it). */
  | { kind: 'created' }
  /** The key stands for this job, submitted with the same body; its status and its spec as stored. */
  | { kind: 'replay'; jobId: string; status: JobStatus }
  /** The key stands for this job, submitted with another body. */
  | { kind: 'conflict'; jobId: string }
  /** Nothing was written: the job may not be created and no key answers for it. */
  | { kind: 'refused' }
  /** Nothing was written: the upload the submission names at this index (from 0) is gone. */
  | { kind: 'missing'; index: number }
  /** Nothing is left written: the queue's add failed (its reason), and the record and the key's claim were taken back. */
  | { kind: 'unqueued'; reason: string };

export interface DatasetRecord {
  id: string;
  tenant: string;
  kind: 'dataset' | 'backbone';
  format: 'npy' | 'csv' | 'tar' | 'onnx';
  sha256: string;
  bytes: number;
  createdAt: number;
  /** The client's file name, for display only. */
  filename: string;
  rows?: number;
  cols?: number;
  /** npy: dtype and shape; csv: header; tar (images): the class folders, when the images sit in them. */
  dtype?: string;
  shape?: number[];
  header?: string[];
  classes?: string[];
  inputs?: unknown[];
  outputs?: unknown[];
}

const QUEUED_PROGRESS: JobProgress = { fraction: 0, phase: 'queued' };
const QUEUED_PROGRESS_JSON = JSON.stringify(QUEUED_PROGRESS);

/** A Lua string literal of `text`. */
const luaString = (text: string) => `'${text.replace(/[\\']/g, (c) => `\\${c}`)}'`;

/**
 * A submission, in one step: the Idempotency-Key's claim, the job record, the tenant's index and (when given) the
 * queue entry are written together or not at all, so that a crash never leaves a key standing for a job with no
 * record (or a record its key does not name), nor a record without its queue entry. The uploads the spec names must
 * still exist: their records were checked before, perhaps from an earlier read (they never change), and one may
 * have been deleted since.
 *
 * Called with the keys and arguments in one frame (scriptFrame). KEYS: job, tenant's jobs, the submission's
 * Idempotency-Key ('' when it has none), the m upload records, then the queue's add keys. ARGV: job id, '1' when the job may be created (its spec passed the checks), the prefix of job
 * keys, the claim (JSON), its TTL in seconds, the body hash, m, the record's tenant, name, createdAt and spec (JSON),
 * the Idempotency-Key's sha256 ('' when none), then the queue's add arguments. A new record's other fields are
 * the same for every job, and written by the script as they are.
 * Returns {'created'}; {'replay', id, status} when the key stands for a job that still has its record (marked
 * replayed while it has not finished); {'conflict', id} when it does so for another body; {'refused'} when the job
 * may not be created; {'missing', i} when the i-th upload is gone; {'unqueued', reason} when the queue's add failed,
 * after taking back what was written. A claim whose job has no record any more is taken over.
 */
function submitScript(queueAdd: string | null): string {
  const queue =
    queueAdd === null
      ? ''
      : `local ok, added = pcall(addToQueue, {unpack(KEYS, 4 + m)}, {unpack(ARGV, 13)})
if not ok or type(added) ~= 'string' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  if claimKey then redis.call('DEL', claimKey) end
  return {'unqueued', type(added) == 'table' and tostring(added.err) or tostring(added)}
end
`;
  const header = queueAdd === null ? '' : `local function addToQueue(KEYS, ARGV)\n${queueAdd}\nend\n`;
  return `${header}${UNFRAME_LUA}local claimKey = KEYS[3] ~= '' and KEYS[3] or nil
if claimKey then
  local v = redis.call('GET', claimKey)
  local ok, claim = pcall(cjson.decode, v or '')
  if ok and type(claim) == 'table' and type(claim.jobId) == 'string' then
    local job = ARGV[3] .. claim.jobId
    local status = redis.call('HGET', job, 'status')
    if status then
      if claim.bodyHash ~= ARGV[6] then return {'conflict', claim.jobId} end
      if status == 'queued' or status == 'running' then redis.call('HSET', job, 'replayed', '1') end
      return {'replay', claim.jobId, status}
    end
  end
end
if ARGV[2] ~= '1' then return {'refused'} end
local m = tonumber(ARGV[7])
for i = 1, m do
  if redis.call('EXISTS', KEYS[3 + i]) == 0 then return {'missing', tostring(i)} end
end
local record = {'id', ARGV[1], 'tenant', ARGV[8], 'name', ARGV[9], 'status', 'queued', 'progress', ${luaString(QUEUED_PROGRESS_JSON)},
  'createdAt', ARGV[10], 'attempts', '0', 'spec', ARGV[11], 'artifacts', '[]'}
if claimKey then
  redis.call('SET', claimKey, ARGV[4], 'EX', ARGV[5])
  record[#record + 1] = 'idemKey'
  record[#record + 1] = ARGV[12]
end
redis.call('HSET', KEYS[1], unpack(record))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
${queue}return {'created'}`;
}

const SUBMIT_JOB = submitScript(null);

const TERMINAL_LUA = `local s = redis.call('HGET', KEYS[1], 'status')
if not s then return -1 end
if s == 'completed' or s == 'failed' or s == 'cancelled' then return 0 end`;

/** KEYS: job, finished. ARGV: status, now, then field/value pairs. Returns 1, 2 (purge requested), 0 (already final), -1 (gone). */
const FINISH = `${TERMINAL_LUA}
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finishedAt', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], ARGV[2], redis.call('HGET', KEYS[1], 'id'))
if redis.call('HGET', KEYS[1], 'purgeRequested') == '1' then return 2 end
return 1`;

/** KEYS: job. ARGV: now, worker, progress. Returns the attempt number, 0 (already final), -1 (gone). */
const START = `${TERMINAL_LUA}
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'startedAt', ARGV[1], 'worker', ARGV[2], 'progress', ARGV[3])
return n`;

/** KEYS: job. ARGV: field/value pairs, set only while the job runs. */
const WHILE_RUNNING = `if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1`;

/** KEYS: job. ARGV: lastError. Back to queued for a retry, unless final. */
const REQUEUE = `${TERMINAL_LUA}
redis.call('HSET', KEYS[1], 'status', 'queued', 'lastError', ARGV[1])
return 1`;

/**
 * KEYS: job, tenant's jobs, finished and, when the job was submitted with one, its Idempotency-Key. ARGV: job id,
 * and '1' to leave a job alone that a replayed submission has answered for. Deletes the job and releases its
 * Idempotency-Key, unless the key has meanwhile come to stand for another job. Returns 1, or 0 when left alone.
 */
const DELETE_JOB = `if ARGV[2] == '1' and redis.call('HGET', KEYS[1], 'replayed') == '1' then return 0 end
local v = KEYS[4] and redis.call('GET', KEYS[4])
if v then
  local ok, claim = pcall(cjson.decode, v)
  if ok and type(claim) == 'table' and claim.jobId == ARGV[1] then redis.call('DEL', KEYS[4]) end
end
redis.call('UNLINK', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1`;

/** KEYS: job. ARGV: purge flag. Returns the status, or nil when the job is gone. */
const REQUEST_CANCEL = `local s = redis.call('HGET', KEYS[1], 'status')
if not s then return nil end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'purgeRequested', '1') end
if s == 'queued' or s == 'running' then redis.call('HSET', KEYS[1], 'cancelRequested', '1') end
return s`;

function json<T>(value: string | undefined, fallback: T): T {
  if (value === undefined || value === '') return fallback;
  try {
    return JSON.parse(value) as T;
  } catch {
    return fallback;
  }
}

function num(value: string | undefined): number | null {
  return value === undefined || value === '' ? null : Number(value);
}

type Command = [name: string, ...args: Array<string | number | Buffer>];

/**
 * The scripts the batch sends are commands defined on the client: each is sent by its sha1 (EVALSHA), its body only
 * the first time on a connection, rather than the whole text with every call.
 */
type ScriptCall = (...args: Array<string | number | Buffer>) => Promise<unknown>;

interface Waiting {
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * KEYS: hashes. Returns each one's HGETALL as one JSON object (field to value; '{}' for a missing key), or an error
 * on its own. One string a hash, not two a field: the client turns every string of a reply into a buffer and then
 * into text, and a record has dozens of them; and JSON.parse makes the object at once, with no pairs to walk.
 */
const READ_HASHES = `local out = {}
for i, key in ipairs(KEYS) do
  local h = redis.pcall('HGETALL', key)
  if h.err then out[i] = h else
    local fields = {}
    for j = 1, #h, 2 do fields[h[j]] = h[j + 1] end
    out[i] = cjson.encode(fields)
  end
end
return out`;

/**
 * Sends commands together under load. A command issued while none of the batch's is waiting for Redis leaves at
 * once, alone; the others issued within the same turn of the event loop wait for the end of that turn (setImmediate
 * runs once the sockets that were ready have been read) and leave together: the hash reads as one script call that
 * reads them all, the other commands beside it, in one socket write. So a turn that brings in 40 requests costs one
 * socket write and a handful of replies, not 40 of each, and a quiet service answers as it would without the batch.
 * Each command still answers (or fails) on its own. Errors are the client's own: while Redis is away a command
 * fails at once, as a direct one would.
 */
export class CommandBatch {
  private reads: Array<Waiting & { key: string }> = [];
  private commands: Array<Waiting & { command: Command }> = [];
  private scheduled = false;
  /** Commands sent and waiting for their answer. */
  private inFlight = 0;
  /** The names of the scripts this batch has defined on the client, by their Lua. */
  private readonly scripts = new Map<string, string>();
  private readonly scriptNames = new Set<string>();

  constructor(private readonly redis: Redis) {
    this.script('immunizeReadHashes', READ_HASHES);
  }

  /**
   * The name of a command that runs this script (defined on the client the first time): `purpose` and the script's
   * digest, since batches that share a client may hold different scripts for one purpose.
   */
  script(purpose: string, lua: string): string {
    let name = this.scripts.get(lua);
    if (name === undefined) {
      name = `${purpose}_${createHash('sha1').update(lua).digest('hex')}`;
      if (typeof (this.redis as unknown as Record<string, unknown>)[name] !== 'function') this.redis.defineCommand(name, { lua });
      this.scripts.set(lua, name);
      this.scriptNames.add(name);
    }
    return name;
  }

  /** A hash's fields (an empty object for a missing key), as HGETALL reads it. */
  hgetall(key: string): Promise<Record<string, string>> {
    return this.hashText(key).then(asHash);
  }

  /** A hash's fields as the JSON text of one object (field to value; '{}' for a missing key). */
  hashText(key: string): Promise<string> {
    return new Promise<unknown>((resolve, reject) => {
      this.reads.push({ key, resolve, reject });
      this.schedule();
    }).then(String);
  }

  send<T>(...command: Command): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.commands.push({ command, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    if (this.inFlight === 0) {
      this.flush();
      return;
    }
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    const { reads, commands } = this;
    this.reads = [];
    this.commands = [];
    this.scheduled = false;
    const all: Array<{ command: Command } & Waiting> = [...commands];
    if (reads.length > 0) {
      all.push({
        command: [this.script('immunizeReadHashes', READ_HASHES), reads.length, ...reads.map((r) => r.key)],
        resolve: (hashes) =>
          reads.forEach((r, i) => {
            const h = (hashes as unknown[])[i];
            if (h instanceof Error) r.reject(h);
            else r.resolve(h);
          }),
        reject: (err) => reads.forEach((r) => r.reject(err)),
      });
    }
    if (all.length === 0) return;
    // Corked, the batch's commands leave in one socket write, without a pipeline's own bookkeeping.
    const socket = all.length > 1 && this.redis.status === 'ready' ? this.redis.stream : undefined;
    socket?.cork();
    for (const { command, resolve, reject } of all) {
      const [name, ...args] = command;
      this.inFlight++;
      const sent = this.scriptNames.has(name)
        ? (this.redis as unknown as Record<string, ScriptCall>)[name](...args)
        : this.redis.call(name, ...(args as Array<string | number>));
      // One reaction for both outcomes, rather than finally() and then(): two promises fewer a command.
      sent.then(
        (value) => {
          this.inFlight--;
          resolve(value);
        },
        (err: unknown) => {
          this.inFlight--;
          reject(err);
        },
      );
    }
    socket?.uncork();
  }
}

/** A hash as READ_HASHES answers it: a JSON object of its fields ('{}' when it has none). */
function asHash(text: string): Record<string, string> {
  const h: unknown = JSON.parse(text);
  return h !== null && typeof h === 'object' && !Array.isArray(h) ? (h as Record<string, string>) : {};
}

/** A job record from its hash's text (CommandBatch.hashText); null when the hash is missing or is not a job's. */
export function parseJobRecord(text: string): JobRecord | null {
  const h = asHash(text);
  if (!h.id) return null;
  return {
    id: h.id,
    tenant: h.tenant,
    name: h.name,
    status: h.status as JobStatus,
    progress: json(h.progress, QUEUED_PROGRESS),
    createdAt: Number(h.createdAt),
    startedAt: num(h.startedAt),
    finishedAt: num(h.finishedAt),
    attempts: Number(h.attempts ?? 0),
    worker: h.worker ?? null,
    spec: json(h.spec, null),
    metrics: json(h.metrics, null),
    artifacts: json(h.artifacts, []),
    error: json(h.error, null),
    lastError: json(h.lastError, null),
    cancelRequested: h.cancelRequested === '1',
    purgeRequested: h.purgeRequested === '1',
  };
}

export class Records implements WorkerRecords {
  /** Called after a job reaches a final state while a purge was asked for. */
  purgeHook: ((jobId: string) => Promise<void>) | null = null;
  private readonly batch: CommandBatch;
  private queuedSubmit: { queueAdd: string; name: string } | null = null;

  constructor(
    private readonly redis: Redis,
    readonly prefix: string,
    /** For pub/sub; needed by workers only. */
    private readonly subscriberFactory?: () => Redis,
  ) {
    this.batch = new CommandBatch(redis);
  }

  jobKey(id: string): string {
    return `${this.prefix}:job:${id}`;
  }
  private tenantJobsKey(tenant: string): string {
    return `${this.prefix}:jobs:${tenant}`;
  }
  private get finishedKey(): string {
    return `${this.prefix}:finished`;
  }
  private datasetKey(id: string): string {
    return `${this.prefix}:ds:${id}`;
  }
  private tenantDatasetsKey(tenant: string): string {
    return `${this.prefix}:datasets:${tenant}`;
  }
  private idempotencyKey(tenant: string, keyHash: string): string {
    return `${this.prefix}:idem:${tenant}:${keyHash}`;
  }
  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }

  // ---- jobs: API side ----------------------------------------------------------------------------------------

  /** The submission script's command, with the queue's add script given (the same for every job) or none. */
  private submitCommand(queueAdd: string | null): string {
    if (queueAdd === null) return this.batch.script('immunizeSubmitJob', SUBMIT_JOB);
    if (this.queuedSubmit?.queueAdd !== queueAdd) this.queuedSubmit = { queueAdd, name: this.batch.script('immunizeSubmitAndQueue', submitScript(queueAdd)) };
    return this.queuedSubmit.name;
  }

  /** Writes a new job's record and adds it to its tenant's jobs. */
  async createJob(r: NewJob): Promise<void> {
    await this.submitJob(r, null, true);
  }

  /**
   * A submission in one script: with an Idempotency-Key, the key is looked up and, unless it stands for a job whose
   * record exists, claimed for the new job together with its record. `mayCreate` false only looks the key up (a
   * spec that failed its checks creates nothing, but a key already used still answers with its job). A job is
   * created only while every upload in `uploads` (ids) still exists. With `entry`, the job's queue entry is added by
   * the same script, after the record: both are written or neither is.
   */
  async submitJob(
    r: NewJob,
    claim: IdempotencyClaim | null,
    mayCreate: boolean,
    { entry, uploads = [] }: { entry?: QueueEntry; uploads?: string[] } = {},
  ): Promise<SubmitOutcome> {
    const script = this.submitCommand(entry?.script ?? null);
    const keys = [this.jobKey(r.id), this.tenantJobsKey(r.tenant), claim ? this.idempotencyKey(r.tenant, claim.keyHash) : ''];
    for (const id of uploads) keys.push(this.datasetKey(id));
    if (entry) keys.push(...entry.keys);
    const args = [
      r.id,
      mayCreate ? '1' : '0',
      this.jobKey(''),
      claim ? JSON.stringify({ bodyHash: claim.bodyHash, jobId: r.id }) : '',
      claim ? String(claim.ttlSeconds) : '0',
      claim?.bodyHash ?? '',
      String(uploads.length),
      r.tenant,
      r.name,
      String(r.createdAt),
      JSON.stringify(r.spec),
      claim?.keyHash ?? '',
      ...(entry?.args ?? []),
    ];
    const reply = await this.batch.send<string[]>(script, 0, scriptFrame(keys, args));
    switch (reply[0]) {
      case 'created':
        return { kind: 'created' };
      case 'replay':
        return { kind: 'replay', jobId: reply[1], status: reply[2] as JobStatus };
      case 'conflict':
        return { kind: 'conflict', jobId: reply[1] };
      case 'missing':
        return { kind: 'missing', index: Number(reply[1]) - 1 };
      case 'unqueued':
        return { kind: 'unqueued', reason: String(reply[1]) };
      default:
        return { kind: 'refused' };
    }
  }

  /**
   * Takes back a job whose record was written but never queued (as a submission that wrote the two apart could
   * leave it): deletes the record and releases its Idempotency-Key, unless a replay of the same submission has
   * answered for the job meanwhile (that replay queues it). Returns whether the job was deleted.
   */
  async abandonJob(id: string, tenant: string, keyHash: string | null): Promise<boolean> {
    const keys = [this.jobKey(id), this.tenantJobsKey(tenant), this.finishedKey];
    if (keyHash) keys.push(this.idempotencyKey(tenant, keyHash));
    return Number(await this.redis.eval(DELETE_JOB, keys.length, ...keys, id, '1')) === 1;
  }

  async getJob(id: string): Promise<JobRecord | null> {
    return parseJobRecord(await this.getJobText(id));
  }

  /** The job's hash as the JSON text of one object ('{}' when there is none): parseJobRecord reads it. */
  getJobText(id: string): Promise<string> {
    return this.batch.hashText(this.jobKey(id));
  }

  /** The tenant's job ids, newest first, after `cursor` (an id) when given. */
  async listJobIds(tenant: string, limit: number, cursor?: string): Promise<{ ids: string[]; next: string | null }> {
    const from = cursor ? `(${cursor}` : '+';
    const ids = (await this.redis.call('ZRANGE', this.tenantJobsKey(tenant), from, '-', 'BYLEX', 'REV', 'LIMIT', '0', String(limit + 1))) as string[];
    const page = ids.slice(0, limit);
    return { ids: page, next: ids.length > limit ? page[page.length - 1] : null };
  }

  async getJobs(ids: string[]): Promise<JobRecord[]> {
    const out = await Promise.all(ids.map((id) => this.getJob(id)));
    return out.filter((r): r is JobRecord => r !== null);
  }

  /** Flags the job for cancellation (and purge) and tells the workers; returns its status, or null if gone. */
  async requestCancel(id: string, purge: boolean): Promise<JobStatus | null> {
    const status = (await this.redis.eval(REQUEST_CANCEL, 1, this.jobKey(id), purge ? '1' : '0')) as JobStatus | null;
    if (status === 'queued' || status === 'running') await this.redis.publish(this.cancelChannel, id);
    return status;
  }

  /**
   * Deletes the record and releases the Idempotency-Key it was submitted with, so that the same key submits a new
   * job; a key that stands for another job by now (it expired and was claimed again) is left alone.
   */
  async deleteJob(id: string, tenant: string): Promise<void> {
    const idemKey = await this.redis.hget(this.jobKey(id), 'idemKey');
    const keys = [this.jobKey(id), this.tenantJobsKey(tenant), this.finishedKey];
    if (idemKey) keys.push(this.idempotencyKey(tenant, idemKey));
    await this.redis.eval(DELETE_JOB, keys.length, ...keys, id);
  }

  /** Jobs that finished before `before` (ms), oldest first. */
  async finishedBefore(before: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.finishedKey, '-inf', String(before), 'LIMIT', 0, limit);
  }

  /** Drops a dangling entry of the finished set (its record is already gone). */
  async forgetFinished(id: string): Promise<void> {
    await this.redis.zrem(this.finishedKey, id);
  }

  // ---- jobs: worker side (WorkerRecords) ---------------------------------------------------------------------

  async get(jobId: string): Promise<JobRecordView | null> {
    const [id, tenant, status, cancel, spec] = await this.redis.hmget(this.jobKey(jobId), 'id', 'tenant', 'status', 'cancelRequested', 'spec');
    if (!id) return null;
    return { id, tenant: tenant!, status: status as JobStatus, cancelRequested: cancel === '1', spec: json<unknown>(spec ?? undefined, null) };
  }

  async startAttempt(jobId: string, workerId: string): Promise<number> {
    const progress = JSON.stringify({ fraction: 0, phase: 'starting' } satisfies JobProgress);
    const n = Number(await this.redis.eval(START, 1, this.jobKey(jobId), String(Date.now()), workerId, progress));
    if (n === -1) throw new Error(`job ${jobId} has no record`);
    if (n === 0) throw new Error(`job ${jobId} is already finished`);
    return n;
  }

  async progress(jobId: string, progress: JobProgress): Promise<void> {
    await this.redis.eval(WHILE_RUNNING, 1, this.jobKey(jobId), 'progress', JSON.stringify(progress));
  }

  private async finish(jobId: string, status: JobStatus, fields: Record<string, string>): Promise<boolean> {
    const args = Object.entries(fields).flat();
    const r = Number(await this.redis.eval(FINISH, 2, this.jobKey(jobId), this.finishedKey, status, String(Date.now()), ...args));
    if (r === 2 && this.purgeHook) await this.purgeHook(jobId);
    return r >= 1;
  }

  async complete(jobId: string, metrics: Record<string, unknown>, artifacts: StoredArtifact[]): Promise<void> {
    await this.finish(jobId, 'completed', {
      metrics: JSON.stringify(metrics),
      artifacts: JSON.stringify(artifacts),
      progress: JSON.stringify({ fraction: 1, phase: 'done' } satisfies JobProgress),
    });
  }

  async fail(jobId: string, error: JobError, final: boolean): Promise<void> {
    if (final) await this.finish(jobId, 'failed', { error: JSON.stringify(error) });
    else await this.redis.eval(REQUEUE, 1, this.jobKey(jobId), JSON.stringify(error));
  }

  async cancelled(jobId: string): Promise<void> {
    await this.finish(jobId, 'cancelled', { error: JSON.stringify({ code: 'cancelled', message: 'the job was cancelled' }) });
  }

  async isCancelRequested(jobId: string): Promise<boolean> {
    return (await this.redis.hget(this.jobKey(jobId), 'cancelRequested')) === '1';
  }

  async onCancel(handler: (jobId: string) => void): Promise<() => Promise<void>> {
    if (!this.subscriberFactory) throw new Error('this Records instance cannot subscribe');
    const sub = this.subscriberFactory();
    sub.on('message', (channel: string, message: string) => {
      if (channel === this.cancelChannel) handler(message);
    });
    await sub.subscribe(this.cancelChannel);
    return async () => {
      sub.disconnect();
    };
  }

  // ---- datasets and backbones --------------------------------------------------------------------------------

  async createDataset(r: DatasetRecord): Promise<void> {
    const fields: Record<string, string> = {};
    for (const [k, v] of Object.entries(r)) if (v !== undefined) fields[k] = typeof v === 'string' ? v : JSON.stringify(v);
    await this.redis.multi().hset(this.datasetKey(r.id), fields).zadd(this.tenantDatasetsKey(r.tenant), 0, r.id).exec();
  }

  async getDataset(id: string): Promise<DatasetRecord | null> {
    const h = await this.batch.hgetall(this.datasetKey(id));
    if (!h.id) return null;
    const r: DatasetRecord = {
      id: h.id,
      tenant: h.tenant,
      kind: h.kind as DatasetRecord['kind'],
      format: h.format as DatasetRecord['format'],
      sha256: h.sha256,
      bytes: Number(h.bytes),
      createdAt: Number(h.createdAt),
      filename: h.filename ?? '',
    };
    for (const k of ['rows', 'cols'] as const) if (h[k] !== undefined) r[k] = Number(h[k]);
    if (h.dtype !== undefined) r.dtype = h.dtype;
    for (const k of ['shape', 'header', 'classes', 'inputs', 'outputs'] as const)
      if (h[k] !== undefined) (r as unknown as Record<string, unknown>)[k] = json(h[k], undefined);
    return r;
  }

  async deleteDataset(id: string, tenant: string): Promise<void> {
    await this.redis.multi().unlink(this.datasetKey(id)).zrem(this.tenantDatasetsKey(tenant), id).exec();
  }
}

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}
