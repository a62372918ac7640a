#!/usr/bin/env node
/**
 * API benchmark, as ratios that hold across machines. autocannon drives a local API process (role api, rate limit
 * raised for the run, log level warn: no access line a request) and, beside it, a bare Fastify process started the
 * same way (the same node, the same environment) that serves a hello route; each figure is printed next to the bare
 * process's from the same run.
 *
 * - GET /v1/jobs/:id and POST /v1/jobs at N connections: requests per second counting 2xx answers only, p50, p99
 *   and the serving process's CPU time per answer, beside the bare GET /hello at the same connections. The routes
 *   are measured in turn, in slices of about 2 s, so that the machine's other load weighs on each alike.
 * - Event streams: S open SSE streams (GET /v1/jobs/:id/events) spread over K running jobs. Each job gets a progress
 *   write every interval, written as a worker writes it (the job record and the queue's progress event, together),
 *   and the delay from the write to each stream receiving it is measured (p50, p99). The bare process holds as many
 *   plain SSE streams and writes to them what it gets on a Redis channel; the same writes, published there, are
 *   measured the same way.
 *
 *   npm run bench:api [-- --connections 100 --duration 10 --streams 500 --stream-jobs 50 --rounds 20 --interval 250]
 *
 * Needs Redis (REDIS_URL, default redis://127.0.0.1:6379); uses a private key prefix and removes it after.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { encodeNpy } from '../models/io/index.js';
import { Records } from '../services/records.js';
import { deleteByPrefix } from '../services/redis.js';
import { handleUsage } from './usage.js';
import { freePort } from './privateRedis.js';

const SERVER = fileURLToPath(new URL('../services/server.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
/** argv[2] of the bare process this script starts (the same file, as a child). */
const BARE_ROLE = '--serve-bare';

/** Targets on the reference machine class (2 vCPU): fractions of the bare route's req/s, and the SSE delay. */
const TARGETS = { get: 0.5, post: 0.25, sseP99Ms: 250 };

function arg(name: string, fallback: number): number {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

function matrix(rows: number, cols: number, seed: number): Buffer {
  let s = seed;
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return encodeNpy({ rows, cols, data });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- the bare process: Fastify with a hello route and plain SSE streams -------------------------------------------

async function serveBare(): Promise<void> {
  const app = Fastify({ logger: false });
  const topics = new Map<string, Set<ServerResponse>>();
  app.get('/hello', async () => ({ hello: 'world' }));
  app.get<{ Params: { topic: string } }>('/events/:topic', (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    res.write(': connected\n\n');
    const set = topics.get(req.params.topic) ?? new Set<ServerResponse>();
    topics.set(req.params.topic, set);
    set.add(res);
    res.on('close', () => set.delete(res));
  });
  // A write reaches it as the API's do, through Redis: a message {topic, round} on a channel, sent to the topic's streams.
  const sub = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  sub.on('message', (_channel: string, message: string) => {
    const { topic } = JSON.parse(message) as { topic: string };
    for (const res of topics.get(topic) ?? []) res.write(`event: progress\ndata: ${message}\n\n`);
  });
  await sub.subscribe(process.env.BENCH_CHANNEL ?? 'bench');
  await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
  process.on('SIGTERM', () => {
    sub.disconnect();
    void app.close().then(() => process.exit(0));
  });
}

// ---- child processes -----------------------------------------------------------------------------------------

interface Child {
  url: string;
  proc: ChildProcess;
  exited: Promise<void>;
}

function startChild(args: string[], env: Record<string, string>, port: number): Child {
  const proc = spawn(process.execPath, [...process.execArgv, ...args], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { url: `http://127.0.0.1:${port}`, proc, exited: new Promise<void>((ok) => proc.once('exit', () => ok())) };
}

async function waitUp(child: Child, path: string, what: string): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    const up = await fetch(`${child.url}${path}`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (up) return;
    if (child.proc.exitCode !== null) throw new Error(`${what} exited with code ${child.proc.exitCode}`);
    if (Date.now() > until) throw new Error(`${what} did not answer in 30 s${what === 'the API' ? ' (is Redis running?)' : ''}`);
    await sleep(200);
  }
}

async function stopChild(child: Child | null): Promise<void> {
  if (!child || child.proc.exitCode !== null) return;
  child.proc.kill('SIGTERM');
  await child.exited;
}

// ---- HTTP routes ---------------------------------------------------------------------------------------------

interface HttpFigures {
  label: string;
  okPerSecond: number;
  p50: number;
  p99: number;
  ok: number;
  other: number;
  errors: number;
  /** CPU time of the serving process per 2xx answer, in µs (null where /proc cannot be read). */
  cpuMicros: number | null;
}

/** User + system CPU time of a process in µs, from /proc (Linux); null elsewhere. */
async function cpuMicros(pid: number | undefined): Promise<number | null> {
  if (pid === undefined) return null;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime), counted from the state field (3): indexes 11 and 12 here.
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** Linux's USER_HZ, the unit of /proc/PID/stat's times, is 100 on every common build. */
const CLOCK_TICKS = 100;

interface Route {
  label: string;
  opts: autocannon.Options;
  /** The process that serves it, whose CPU time is counted. */
  pid: number | undefined;
}

interface Tally {
  ok: number;
  other: number;
  errors: number;
  seconds: number;
  cpu: number | null;
  latencies: number[];
}

/** One autocannon run; the latency of every 2xx answer is kept, so that slices can be merged exactly. */
function cannon(opts: autocannon.Options, into: Tally): Promise<void> {
  return new Promise((ok, fail) => {
    const tracker = autocannon(opts, (err, r) => {
      if (err) return fail(err instanceof Error ? err : new Error(String(err)));
      into.ok += r['2xx'];
      into.other += r.non2xx;
      into.errors += r.errors + r.timeouts;
      into.seconds += r.duration;
      ok();
    });
    tracker.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status >= 200 && status < 300) into.latencies.push(ms);
    });
  });
}

/**
 * Measures the routes in turn, in slices of about 2 s (route A, B, C, A, B, C, …), so that a change in the
 * machine's load during the run weighs on every route alike and the ratios between them hold.
 */
async function measureInTurn(routes: Route[], connections: number, duration: number): Promise<HttpFigures[]> {
  const slices = Math.max(1, Math.round(duration / 2));
  const tallies = routes.map<Tally>(() => ({ ok: 0, other: 0, errors: 0, seconds: 0, cpu: 0, latencies: [] }));
  for (let slice = 0; slice < slices; slice++) {
    for (const [i, route] of routes.entries()) {
      const t = tallies[i];
      const before = await cpuMicros(route.pid);
      await cannon({ ...route.opts, connections, duration: duration / slices }, t);
      const spent = await cpuMicros(route.pid);
      t.cpu = before === null || spent === null || t.cpu === null ? null : t.cpu + spent - before;
    }
  }
  return routes.map((route, i) => {
    const t = tallies[i];
    const sorted = Float64Array.from(t.latencies).sort();
    return {
      label: route.label,
      okPerSecond: t.ok / t.seconds,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      ok: t.ok,
      other: t.other,
      errors: t.errors,
      cpuMicros: t.cpu === null || t.ok === 0 ? null : t.cpu / t.ok,
    };
  });
}

// ---- event streams -------------------------------------------------------------------------------------------

interface SseFigures {
  label: string;
  streams: number;
  /** Streams still open at the end that received every write. */
  held: number;
  delivered: number;
  expected: number;
  p50: number;
  p99: number;
  max: number;
}

interface Delivery {
  /** The stream's topic (a job id) and the round its event carries. */
  topic: string;
  round: number;
}

/**
 * Opens `count` SSE streams (stream i follows topics[i % topics.length]); `decode` reads the topic and round from
 * an event's data (null for events that are not a progress write). Resolves once every stream has its first event.
 */
async function openStreams(
  count: number,
  topics: string[],
  url: (topic: string) => string,
  headers: Record<string, string>,
  decode: (event: string, data: unknown) => Delivery | null,
  onDelivery: (stream: number, d: Delivery, at: number) => void,
): Promise<{ open: () => number; close: () => void }> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const responses: IncomingMessage[] = [];
  let open = 0;
  const first: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const topic = topics[i % topics.length];
    first.push(
      new Promise<void>((ok, fail) => {
        const req = request(url(topic), { agent, headers }, (res) => {
          if (res.statusCode !== 200) {
            fail(new Error(`stream ${i}: status ${res.statusCode}`));
            res.resume();
            return;
          }
          open++;
          responses.push(res);
          res.setEncoding('utf8');
          let buffer = '';
          res.on('data', (chunk: string) => {
            const at = performance.now();
            buffer += chunk;
            let cut: number;
            while ((cut = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              ok(); // the first block (a comment or the job's state) says the stream is open
              let event = 'message';
              let data = '';
              for (const line of block.split('\n')) {
                if (line.startsWith('event: ')) event = line.slice(7);
                else if (line.startsWith('data: ')) data += line.slice(6);
              }
              if (!data) continue;
              const d = decode(event, JSON.parse(data));
              if (d) onDelivery(i, d, at);
            }
          });
          res.on('close', () => open--);
        });
        req.on('error', fail);
        req.end();
      }),
    );
  }
  await Promise.all(first);
  return {
    open: () => open,
    close: () => {
      for (const r of responses) r.destroy();
      agent.destroy();
    },
  };
}

function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/**
 * Runs `rounds` rounds of writes over `topics` (within a round, topic j is written at j·interval/K, so that the
 * writes are spread as independent workers spread them) and measures each stream's delay to receive each write.
 */
async function streamRun(
  label: string,
  opts: {
    streams: number;
    topics: string[];
    rounds: number;
    intervalMs: number;
    url: (topic: string) => string;
    headers: Record<string, string>;
    decode: (event: string, data: unknown) => Delivery | null;
    write: (topic: string, round: number) => Promise<unknown>;
  },
): Promise<SseFigures> {
  const sentAt = new Map<string, number>();
  const delays: number[] = [];
  const seen = new Set<string>();
  const perStream = new Array<number>(opts.streams).fill(0);
  const streams = await openStreams(opts.streams, opts.topics, opts.url, opts.headers, opts.decode, (i, d, at) => {
    const key = `${d.topic}:${d.round}`;
    const t0 = sentAt.get(key);
    if (t0 === undefined || seen.has(`${i}:${key}`)) return;
    seen.add(`${i}:${key}`);
    perStream[i]++;
    delays.push(at - t0);
  });
  try {
    await sleep(500); // let the streams settle on their first event
    const writes: Promise<unknown>[] = [];
    const k = opts.topics.length;
    const start = performance.now();
    for (let round = 1; round <= opts.rounds; round++) {
      for (let j = 0; j < k; j++) {
        const due = start + (round - 1) * opts.intervalMs + (j * opts.intervalMs) / k;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        const topic = opts.topics[j];
        sentAt.set(`${topic}:${round}`, performance.now());
        writes.push(opts.write(topic, round));
      }
    }
    await Promise.all(writes);
    // Stragglers: wait until every stream has every write, or 5 s.
    const expected = opts.streams * opts.rounds;
    const until = performance.now() + 5000;
    while (delays.length < expected && performance.now() < until) await sleep(50);
    delays.sort((a, b) => a - b);
    return {
      label,
      streams: opts.streams,
      held: Math.min(streams.open(), perStream.filter((n) => n === opts.rounds).length),
      delivered: delays.length,
      expected,
      p50: percentile(delays, 50),
      p99: percentile(delays, 99),
      max: delays[delays.length - 1] ?? NaN,
    };
  } finally {
    streams.close();
  }
}

// ---- the report ----------------------------------------------------------------------------------------------

const ms = (v: number) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(1) : v.toFixed(0)} ms` : '-');
const pct = (v: number) => `${(100 * v).toFixed(0)}%`;

function httpLine(r: HttpFigures, bare?: HttpFigures, target?: number): string {
  let line =
    `${r.label.padEnd(24)} ${r.okPerSecond.toFixed(0).padStart(7)} req/s   p50 ${ms(r.p50).padStart(7)}   p99 ${ms(r.p99).padStart(7)}   ` +
    `${r.cpuMicros === null ? '' : `${r.cpuMicros.toFixed(0).padStart(4)} µs CPU/answer   `}(${r.ok} ok, ${r.other} non-2xx, ${r.errors} errors)`;
  if (bare && target !== undefined) {
    const ratio = r.okPerSecond / bare.okPerSecond;
    const cpu = r.cpuMicros !== null && bare.cpuMicros !== null ? `; its CPU per answer is ${(r.cpuMicros / bare.cpuMicros).toFixed(1)}× the bare route's` : '';
    line += `\n${''.padEnd(24)} ${pct(ratio).padStart(7)} of the bare route's req/s (target ≥ ${pct(target)}: ${ratio >= target ? 'met' : 'MISSED'})${cpu}`;
  }
  return line;
}

function sseLine(r: SseFigures): string {
  return (
    `${r.label.padEnd(24)} held ${`${r.held}/${r.streams}`.padStart(7)}   events ${`${r.delivered}/${r.expected}`.padStart(11)}` +
    `   p50 ${ms(r.p50).padStart(6)}   p99 ${ms(r.p99).padStart(6)}   max ${ms(r.max).padStart(6)}`
  );
}

const USAGE = `usage: npm run bench:api -- [--connections N] [--duration S] [--streams N] [--stream-jobs K] [--rounds R] [--interval MS]
  starts the API on a free port against Redis (REDIS_URL) and a bare Fastify process beside it, then measures
  GET /v1/jobs/:id and POST /v1/jobs (N connections, S seconds each) against the bare GET /hello, and N SSE streams
  over K running jobs (R progress writes per job, MS apart) against as many bare SSE streams fed through Redis`;

async function main(): Promise<void> {
  const values = ['connections', 'duration', 'streams', 'stream-jobs', 'rounds', 'interval'];
  if (!handleUsage(process.argv.slice(2), { values }, USAGE)) return;
  const connections = arg('connections', 100);
  const duration = arg('duration', 10);
  const streamCount = arg('streams', 500);
  const streamJobs = Math.min(streamCount, arg('stream-jobs', 50));
  const rounds = arg('rounds', 20);
  const intervalMs = arg('interval', 250);
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const tag = randomBytes(5).toString('hex');
  const prefix = `immunize-bench-${tag}`;
  const channel = `${prefix}:bare`;
  const key = `bench-${randomBytes(12).toString('hex')}`;
  const dataDir = await mkdtemp(join(tmpdir(), 'immunize-bench-'));
  const headers = { authorization: `Bearer ${key}` };
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  // Queue events and progress writes under the service's prefixes (BullMQ's is P:q, as services/context.ts sets it).
  const queue = new Queue(`bench-${tag}`, { connection: redis, prefix: `${prefix}:q` });
  const records = new Records(redis, prefix);
  let api: Child | null = null;
  let bare: Child | null = null;
  try {
    api = startChild(
      [SERVER, '--role', 'api'],
      {
        REDIS_URL: redisUrl,
        IMMUNIZE_REDIS_PREFIX: prefix,
        IMMUNIZE_QUEUE: `bench-${tag}`,
        IMMUNIZE_DATA_DIR: dataDir,
        IMMUNIZE_API_KEYS: `bench:${key}`,
        IMMUNIZE_RATE_LIMIT: '100000000',
        IMMUNIZE_LOG_LEVEL: 'warn',
      },
      await freePort(),
    );
    bare = startChild([SELF, BARE_ROLE], { REDIS_URL: redisUrl, BENCH_CHANNEL: channel }, await freePort());
    await waitUp(api, '/readyz', 'the API');
    await waitUp(bare, '/hello', 'the bare process');
    const apiUrl = api.url;
    const bareUrl = bare.url;

    const upload = async (name: string, bytes: Buffer) => {
      const form = new FormData();
      form.append('file', new Blob([new Uint8Array(bytes)]), name);
      const res = await fetch(`${apiUrl}/v1/datasets`, { method: 'POST', headers, body: form });
      if (res.status !== 201) throw new Error(`upload: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    };
    const benign = await upload('b.npy', matrix(50, 8, 1));
    const harmful = await upload('h.npy', matrix(50, 8, 2));
    const body = JSON.stringify({ benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form' });
    const submit = async () => {
      const res = await fetch(`${apiUrl}/v1/jobs`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body });
      if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    };
    // GET cycles through 100 jobs (each connection in turn; the requests are built once, as the bare route's is).
    const readIds: string[] = [];
    for (let i = 0; i < 100; i++) readIds.push(await submit());
    const getOpts: autocannon.Options = { url: `${apiUrl}/v1/jobs/${readIds[0]}`, headers, requests: readIds.map((id) => ({ path: `/v1/jobs/${id}` })) };

    // A short warm-up of each process, then the measured runs in turn.
    await autocannon({ url: `${bareUrl}/hello`, connections, duration: 2 });
    await autocannon({ ...getOpts, duration: 3 });
    const [hello, get, post] = await measureInTurn(
      [
        { label: 'bare GET /hello', opts: { url: `${bareUrl}/hello` }, pid: bare.proc.pid },
        { label: 'GET  /v1/jobs/:id', opts: getOpts, pid: api.proc.pid },
        {
          label: 'POST /v1/jobs',
          opts: { url: `${apiUrl}/v1/jobs`, method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body },
          pid: api.proc.pid,
        },
      ],
      connections,
      duration,
    );

    // Event streams: K jobs, marked running as a worker marks them, S streams over them.
    const jobs: string[] = [];
    for (let i = 0; i < streamJobs; i++) {
      const id = await submit();
      await records.startAttempt(id, 'bench');
      jobs.push(id);
    }
    const bullJobs = new Map(await Promise.all(jobs.map(async (id) => [id, await queue.getJob(id)] as const)));
    const progressOf = (round: number) => ({ fraction: round / (rounds + 1), phase: 'optimise', step: round, of: rounds });
    const sseApi = await streamRun('GET /v1/jobs/:id/events', {
      streams: streamCount,
      topics: jobs,
      rounds,
      intervalMs,
      url: (id) => `${apiUrl}/v1/jobs/${id}/events`,
      headers,
      decode: (event, data) => {
        const doc = data as { id?: string; stage?: { step?: number } };
        return event === 'progress' && doc.id && typeof doc.stage?.step === 'number' ? { topic: doc.id, round: doc.stage.step } : null;
      },
      // As the worker writes progress: the record and the queue's progress event together.
      write: (id, round) => Promise.all([records.progress(id, progressOf(round)), bullJobs.get(id)?.updateProgress(progressOf(round))]),
    });
    const sseBare = await streamRun('bare SSE via Redis', {
      streams: streamCount,
      topics: jobs,
      rounds,
      intervalMs,
      url: (topic) => `${bareUrl}/events/${topic}`,
      headers: {},
      decode: (event, data) => {
        const d = data as { topic?: string; round?: number };
        return event === 'progress' && d.topic && typeof d.round === 'number' ? { topic: d.topic, round: d.round } : null;
      },
      write: (topic, round) => redis.publish(channel, JSON.stringify({ topic, round })),
    });

    const out = [
      `immunize API benchmark: ${connections} connections, ${duration} s per route, 2xx answers only; ` +
        `the bare route is a hello route on a bare Fastify process started the same way, measured in the same run`,
      httpLine(hello),
      httpLine(get, hello, TARGETS.get),
      httpLine(post, hello, TARGETS.post),
      '',
      `event streams: ${streamCount} SSE streams over ${streamJobs} running jobs, ${rounds} progress writes per job ${intervalMs} ms apart; ` +
        `delay from the write to the stream receiving it`,
      sseLine(sseBare),
      sseLine(sseApi),
      `${''.padEnd(24)} p99 ${ms(sseApi.p99)} beside the bare ${ms(sseBare.p99)}; target: all ${streamCount} held and p99 ≤ ${TARGETS.sseP99Ms} ms: ` +
        `${sseApi.held === streamCount && sseApi.p99 <= TARGETS.sseP99Ms ? 'met' : 'MISSED'}`,
    ];
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    await stopChild(api);
    await stopChild(bare);
    await queue.close().catch(() => undefined);
    await deleteByPrefix(redis, prefix).catch(() => undefined);
    redis.disconnect();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === SELF) {
  const run = process.argv[2] === BARE_ROLE ? serveBare : main;
  run().catch((err: unknown) => {
    process.stderr.write(`bench:api: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
