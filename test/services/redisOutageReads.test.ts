/**
 * Reads during a Redis outage. The test runs a Redis of its own (never the shared one), with an append-only file so
 * that the records survive a SIGKILL, kills it under a running API and starts it again:
 *
 * - while it is down, GET /v1/jobs/:id and GET /v1/jobs/:id/events answer 503 redis_unavailable with Retry-After,
 *   never 404 or 500, also for requests already on their way when it went;
 * - a stream that was open is told (event unavailable, with the retry hint) and stays open, and once Redis is back
 *   it sends the job's current state again and follows it on;
 * - a new request, with Last-Event-ID or without, starts with the job's current state.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { newId } from '../../services/ids.js';
import { docEventId } from '../../services/jobs.js';
import type { RunningServer } from '../../services/server.js';
import { sseBlocks } from '../../services/sse.js';
import { ALICE, BOB, eventually, multipart, randomNpy, start, testEnv, type TestEnv } from '../helpers/service.js';
import { freePort } from '../../scripts/privateRedis.js';

/** A redis-server of this test's own on `port`, its append-only file in `dir` (fsync at every write). */
class OwnRedis {
  private proc: ChildProcess | null = null;
  constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'];
    const proc = spawn('redis-server', [...args, '--daemonize', 'no'], { stdio: 'ignore' });
    this.proc = proc;
    const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await eventually(
        `redis-server on port ${this.port}`,
        async () => {
          if (proc.exitCode !== null) throw new Error(`redis-server exited with code ${proc.exitCode} (is Debian's redis-server installed?)`);
          if (client.status !== 'ready') await client.connect().catch(() => undefined);
          return client.status === 'ready' && (await client.ping()) === 'PONG' ? true : undefined;
        },
        15_000,
        50,
      );
    } finally {
      client.disconnect();
    }
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null;
  }

  /** SIGKILL: no shutdown, no save; what survives is what the append-only file holds. */
  async kill(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((ok) => proc.once('exit', () => ok()));
    proc.kill('SIGKILL');
    await exited;
  }
}

interface StreamEvent {
  event: string;
  id: string | null;
  retry: number | null;
  data: Record<string, unknown>;
}

/** An event stream read as it comes, so that a test can wait for the next event while doing other things. */
class OpenStream {
  readonly events: StreamEvent[] = [];
  ended = false;
  private readonly controller = new AbortController();

  /** Every stream opened, so that a failed test still closes them (the API waits for open connections at close). */
  static readonly all = new Set<OpenStream>();

  static async open(url: string, headers: Record<string, string>): Promise<OpenStream> {
    const s = new OpenStream();
    OpenStream.all.add(s);
    const res = await fetch(url, { headers, signal: s.controller.signal });
    assert.equal(res.status, 200, `the stream answered ${res.status}`);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    void s.read(res.body as unknown as AsyncIterable<Uint8Array>);
    return s;
  }

  private async read(body: AsyncIterable<Uint8Array>): Promise<void> {
    try {
      for await (const b of sseBlocks(body)) this.events.push({ ...b, data: JSON.parse(b.data) as Record<string, unknown> });
    } catch {
      // aborted by close()
    } finally {
      this.ended = true;
    }
  }

  /** The first event from index `from` on that `match` accepts. */
  next(what: string, match: (e: StreamEvent) => boolean, from = 0, timeoutMs = 20_000): Promise<StreamEvent> {
    return eventually(
      what,
      async () => {
        const e = this.events.slice(from).find(match);
        if (e) return e;
        if (this.ended) throw new Error(`the stream ended; events: ${this.events.map((x) => x.event).join(', ')}`);
        return undefined;
      },
      timeoutMs,
      20,
    );
  }

  close(): void {
    this.controller.abort();
  }
}

const stageStep = (e: StreamEvent) => (e.data.stage as { step?: number } | undefined)?.step;

let dir: string;
let redis: OwnRedis;
let t: TestEnv;
let srv: RunningServer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'immunize-redis-outage-'));
  redis = new OwnRedis(await freePort(), dir);
  await redis.start();
  t = await testEnv({ REDIS_URL: redis.url });
  srv = await start('api', t);
});

after(async () => {
  for (const s of OpenStream.all) s.close();
  // A test that failed mid-outage: bring Redis back so that the API closes as it normally does.
  if (redis && !redis.running) await redis.start().catch(() => undefined);
  await srv?.close();
  await redis?.kill();
  if (t) await rm(t.dataDir, { recursive: true, force: true });
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('reads while Redis is down', () => {
  it('answer 503 with Retry-After; open streams are told, stay open and resume; a new request gets the current state', async () => {
    const api = srv.api!;
    const records = srv.services.records;
    const upload = async (seed: number) => {
      const body = multipart('x.npy', randomNpy(10, 3, seed));
      const r = await api.inject({ method: 'POST', url: '/v1/datasets', headers: { ...ALICE, ...body.headers }, payload: body.payload });
      assert.equal(r.statusCode, 201, r.body);
      return r.json<{ id: string }>().id;
    };
    const spec = { benign: { dataset: await upload(1) }, harmful: { dataset: await upload(2) }, method: 'closed-form' };
    const submitted = await api.inject({ method: 'POST', url: '/v1/jobs', headers: ALICE, payload: spec });
    assert.equal(submitted.statusCode, 202, submitted.body);
    const id = submitted.json<{ id: string }>().id;
    // No worker runs here: the test moves the job along as a worker would, through the records.
    await records.startAttempt(id, 'test-worker');
    await records.progress(id, { fraction: 0.25, phase: 'optimise', step: 1, of: 4 });

    const eventsUrl = `${srv.url}/v1/jobs/${id}/events`;
    const stream = await OpenStream.open(eventsUrl, ALICE);
    const first = await stream.next('the current state', (e) => e.event === 'progress');
    assert.equal(first.data.status, 'running');
    assert.equal(stageStep(first), 1);
    assert.equal(first.id, docEventId(JSON.stringify(first.data)), 'a state event is identified by its document');
    // Another tenant's job stays not found while Redis is up (the 503s below are not hiding a 404).
    assert.equal((await api.inject({ url: `/v1/jobs/${id}`, headers: BOB })).statusCode, 404);

    // Requests keep coming while Redis is killed under them: each answers 200 (before) or 503 (after), nothing else.
    const seen = new Map<number, number>();
    const unexpected: string[] = [];
    let hammering = true;
    const hammer = (async () => {
      while (hammering) {
        const r = await api.inject({ url: `/v1/jobs/${id}`, headers: ALICE });
        seen.set(r.statusCode, (seen.get(r.statusCode) ?? 0) + 1);
        if (r.statusCode !== 200 && r.statusCode !== 503) unexpected.push(`${r.statusCode} ${r.body}`);
        await new Promise((ok) => setImmediate(ok));
      }
    })();
    await new Promise((ok) => setTimeout(ok, 100));
    await redis.kill();
    await eventually('a 503 from GET /v1/jobs/:id', async () => ((seen.get(503) ?? 0) > 0 ? true : undefined), 10_000).finally(() => (hammering = false));
    await hammer;
    assert.deepEqual(unexpected, [], 'around the outage, GET answered only 200 or 503');
    assert.ok((seen.get(200) ?? 0) > 0, 'GET answered 200 before the outage');

    // While it is down: 503 redis_unavailable with Retry-After, for the document and for a new stream.
    const started = Date.now();
    const doc = await api.inject({ url: `/v1/jobs/${id}`, headers: ALICE });
    assert.ok(Date.now() - started < 5000, 'a read fails fast while Redis is down');
    assert.equal(doc.statusCode, 503, doc.body);
    assert.equal(doc.json().error.code, 'redis_unavailable');
    assert.ok(Number(doc.headers['retry-after']) > 0, `Retry-After: ${doc.headers['retry-after']}`);
    const refused = await fetch(eventsUrl, { headers: { ...ALICE, 'last-event-id': first.id! } });
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
    assert.match(refused.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'redis_unavailable');
    // Unknown ids and other tenants' jobs cannot be told from known ones without Redis: 503 too, never 404 or 500.
    // (An id that is not even well-formed is a 404 whatever Redis does.)
    for (const [url, headers] of [
      [`/v1/jobs/${id}`, BOB],
      [`/v1/jobs/${newId('job')}`, ALICE],
      [`/v1/jobs/${id}/events`, BOB],
    ] as const) {
      const r = await api.inject({ url, headers });
      assert.equal(r.statusCode, 503, `${url}: ${r.body}`);
      assert.equal(r.json().error.code, 'redis_unavailable');
    }

    // The open stream is told, with the retry hint and the last state it had, and stays open.
    const told = await stream.next('the unavailable event', (e) => e.event === 'unavailable');
    const unavailable = told.data.unavailable as { code: string; retryAfter: number };
    assert.equal(unavailable.code, 'redis_unavailable');
    assert.ok(unavailable.retryAfter > 0);
    assert.ok(told.retry !== null && told.retry > 0, 'the event carries an SSE retry hint');
    assert.equal(told.data.id, id);
    assert.equal(told.data.status, 'running');
    assert.equal(stream.ended, false);
    assert.equal(stream.events.filter((e) => e.event === 'unavailable').length, 1, 'told once per outage');

    // Redis comes back with the records (append-only file); the job moves on.
    const afterOutage = stream.events.length;
    await redis.start();
    const recovering: string[] = [];
    await eventually(
      'GET /v1/jobs/:id to answer again',
      async () => {
        const r = await api.inject({ url: `/v1/jobs/${id}`, headers: ALICE });
        if (r.statusCode !== 200 && r.statusCode !== 503) recovering.push(`${r.statusCode} ${r.body}`);
        return r.statusCode === 200 ? true : undefined;
      },
      20_000,
    );
    assert.deepEqual(recovering, [], 'while Redis came back, GET answered only 200 or 503');
    const resumed = await stream.next('the state again after the outage', (e) => e.event === 'progress', afterOutage);
    assert.equal(resumed.data.status, 'running');
    assert.equal(stageStep(resumed), 1);
    await records.progress(id, { fraction: 0.5, phase: 'optimise', step: 2, of: 4 });
    const moved = await stream.next('the next progress', (e) => e.event === 'progress' && stageStep(e) === 2, afterOutage);
    assert.equal(moved.data.progress, 0.5);
    assert.equal(stream.events.filter((e) => e.event === 'unavailable').length, 1);

    // A client that reconnects (with Last-Event-ID) starts from the current state.
    const again = await OpenStream.open(eventsUrl, { ...ALICE, 'last-event-id': first.id! });
    const current = await again.next('the current state on reconnect', (e) => e.event === 'progress');
    assert.equal(stageStep(current), 2);
    assert.equal(current.id, moved.id);

    // Both streams follow the job to its end, and end with it.
    await records.complete(id, { verdict: 'immunized' }, []);
    for (const s of [stream, again]) {
      const done = await s.next('completed', (e) => e.event === 'completed');
      assert.equal(done.data.status, 'completed');
      await eventually('the stream to end', async () => (s.ended ? true : undefined), 10_000);
    }
    stream.close();
    again.close();
  });
});
