/** Prometheus metrics: one registry per process (or per test app), never the global default. */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { WorkerMetrics } from '../workers/ports.js';

export interface ServiceMetrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  worker: WorkerMetrics;
  /** Sets the source of the queue depth gauge (read at each scrape). */
  setQueueCounts(read: () => Promise<Record<string, number>>): void;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): ServiceMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'immunize_' });
  let readCounts: (() => Promise<Record<string, number>>) | null = null;
  new Gauge({
    name: 'immunize_queue_jobs',
    help: 'Jobs in the queue by state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      if (!readCounts) return;
      try {
        const counts = await readCounts();
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      } catch {
        // Redis away: the scrape still answers, without the queue figures.
      }
    },
  });
  const httpDuration = new Histogram({
    name: 'immunize_http_request_duration_seconds',
    help: 'HTTP request durations',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  const jobDuration = new Histogram({
    name: 'immunize_job_duration_seconds',
    help: 'Job attempt durations by outcome, measured by the worker',
    labelNames: ['outcome'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [registry],
  });
  const jobs = new Counter({
    name: 'immunize_jobs_total',
    help: 'Job attempts finished by this process, by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const steps = new Histogram({
    name: 'immunize_engine_step_seconds',
    help: 'Time between two engine step events, by phase',
    labelNames: ['phase'],
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [registry],
  });
  return {
    registry,
    httpDuration,
    worker: {
      jobFinished(outcome, seconds) {
        jobDuration.observe({ outcome }, seconds);
        jobs.inc({ outcome });
      },
      engineSteps(phase, seconds) {
        for (const s of seconds) steps.observe({ phase }, s);
      },
    },
    setQueueCounts(read) {
      readCounts = read;
    },
  };
}
