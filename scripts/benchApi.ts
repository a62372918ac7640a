#!/usr/bin/env node
/**
 * API benchmark: autocannon against a local API process (role api, rate limit raised for the run), for
 * GET /v1/jobs/:id and POST /v1/jobs. Prints requests per second counting 2xx answers only, and p99 latency.
 *
 *   npm run bench:api [-- --connections 100 --duration 10]
 *
 * Needs Redis (REDIS_URL, default redis://127.0.0.1:6379); uses a private key prefix and removes it after.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { encodeNpy } from '../models/io/index.js';
import { deleteByPrefix } from '../services/redis.js';
import { handleUsage } from './usage.js';

const SERVER = fileURLToPath(new URL('../services/server.js', import.meta.url));

function arg(name: string, fallback: number): number {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
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

interface Figures {
  label: string;
  okPerSecond: number;
  p50: number;
  p99: number;
  ok: number;
  other: number;
  errors: number;
}

async function measure(label: string, opts: autocannon.Options): Promise<Figures> {
  const r = await autocannon(opts);
  return {
    label,
    okPerSecond: r['2xx'] / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    ok: r['2xx'],
    other: r.non2xx,
    errors: r.errors + r.timeouts,
  };
}

const USAGE = `usage: npm run bench:api -- [--connections N] [--duration S]
  starts the API on a free port against Redis (REDIS_URL) and measures GET /v1/jobs/:id and POST /v1/jobs`;

async function main(): Promise<void> {
  if (!handleUsage(process.argv.slice(2), { values: ['connections', 'duration'] }, USAGE)) return;
  const connections = arg('connections', 100);
  const duration = arg('duration', 10);
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const tag = randomBytes(5).toString('hex');
  const prefix = `immunize-bench-${tag}`;
  const key = `bench-${randomBytes(12).toString('hex')}`;
  const dataDir = await mkdtemp(join(tmpdir(), 'immunize-bench-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const headers = { authorization: `Bearer ${key}` };
  const child = spawn(process.execPath, [SERVER, '--role', 'api'], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: redisUrl,
      IMMUNIZE_REDIS_PREFIX: prefix,
      IMMUNIZE_QUEUE: `bench-${tag}`,
      IMMUNIZE_DATA_DIR: dataDir,
      IMMUNIZE_API_KEYS: `bench:${key}`,
      IMMUNIZE_RATE_LIMIT: '100000000',
      IMMUNIZE_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  try {
    const until = Date.now() + 30_000;
    for (;;) {
      const ready = await fetch(`${url}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) break;
      if (child.exitCode !== null) throw new Error(`the API exited with code ${child.exitCode}`);
      if (Date.now() > until) throw new Error('the API did not become ready in 30 s (is Redis running?)');
      await new Promise((r) => setTimeout(r, 200));
    }
    const upload = async (name: string, bytes: Buffer) => {
      const form = new FormData();
      form.append('file', new Blob([new Uint8Array(bytes)]), name);
      const res = await fetch(`${url}/v1/datasets`, { method: 'POST', headers, body: form });
      if (res.status !== 201) throw new Error(`upload: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    };
    const benign = await upload('b.npy', matrix(50, 8, 1));
    const harmful = await upload('h.npy', matrix(50, 8, 2));
    const body = JSON.stringify({ benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form' });
    const submitted = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body });
    const jobId = ((await submitted.json()) as { id: string }).id;

    // A short warm-up, then the measured runs.
    await autocannon({ url: `${url}/v1/jobs/${jobId}`, headers, connections, duration: 3 });
    const results = [
      await measure(`GET  /v1/jobs/:id`, { url: `${url}/v1/jobs/${jobId}`, headers, connections, duration }),
      await measure(`POST /v1/jobs`, {
        url: `${url}/v1/jobs`,
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body,
        connections,
        duration,
      }),
    ];
    process.stdout.write(`immunize API benchmark: ${connections} connections, ${duration} s per route, 2xx answers only\n`);
    for (const r of results) {
      process.stdout.write(
        `${r.label.padEnd(20)} ${r.okPerSecond.toFixed(0).padStart(7)} req/s   p50 ${String(r.p50).padStart(4)} ms   p99 ${String(r.p99).padStart(4)} ms   ` +
          `(${r.ok} ok, ${r.other} non-2xx, ${r.errors} errors)\n`,
      );
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
    const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    await deleteByPrefix(client, prefix).catch(() => undefined);
    client.disconnect();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench:api: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
