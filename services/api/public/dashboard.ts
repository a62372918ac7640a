/**
 * The dashboard's script, run by the browser (tsc compiles it to plain JavaScript with no imports). It signs in
 * with an API key, lists the caller's jobs with live progress from each job's event stream, uploads two datasets
 * and submits a job. Everything goes to this origin; the session cookie authenticates, and the session's CSRF
 * token goes with every request that changes state.
 */

type Status = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

interface Artifact {
  name: string;
  size: number;
}

interface Job {
  id: string;
  status: Status;
  progress: number;
  stage: Record<string, unknown>;
  createdAt: string;
  finishedAt?: string;
  metrics?: Record<string, unknown>;
  artifacts: Artifact[];
  error?: { code: string; message: string };
  cancelRequested?: boolean;
  spec?: unknown;
}

interface SessionInfo {
  signedIn: boolean;
  tenant?: string;
  admin?: boolean;
  via?: 'session' | 'bearer';
  csrfToken?: string;
}

const TERMINAL: ReadonlySet<Status> = new Set(['completed', 'failed', 'cancelled']);
const REPORT_ARTIFACT = 'report.html';

const state = {
  session: null as SessionInfo | null,
  jobs: new Map<string, Job>(),
  streams: new Map<string, EventSource>(),
  tenant: '',
};

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

function make<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function notify(message: string, error = false): void {
  const n = el('notice');
  n.textContent = message;
  n.classList.toggle('error', error);
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  const method = (init.method ?? 'GET').toUpperCase();
  if (method !== 'GET' && method !== 'HEAD' && state.session?.csrfToken) headers.set('x-csrf-token', state.session.csrfToken);
  const res = await fetch(path, { ...init, headers, credentials: 'same-origin' });
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    try {
      const body = (await res.json()) as { error?: { message?: string } };
      if (body.error?.message) message = body.error.message;
    } catch {
      // not JSON
    }
    if (res.status === 401 && state.session?.signedIn) showSignIn('Your session has ended; sign in again.');
    throw new HttpError(res.status, message);
  }
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

// ---- signing in and out ----

function showSignIn(message?: string): void {
  closeStreams();
  state.session = null;
  state.jobs.clear();
  el('job-list').replaceChildren();
  el('who').hidden = true;
  el('app').hidden = true;
  el('sign-in').hidden = false;
  if (message) notify(message, true);
  el<HTMLInputElement>('api-key').focus();
}

function showApp(session: SessionInfo): void {
  state.session = session;
  el('sign-in').hidden = true;
  el('app').hidden = false;
  el('who').hidden = false;
  el('who-name').textContent = session.admin ? 'admin' : (session.tenant ?? '');
  el('queues-link').hidden = !session.admin;
  // The admin key reads every tenant's jobs, one tenant at a time, and cannot submit.
  el('new-job').hidden = session.admin === true;
  el('tenant-form').hidden = session.admin !== true;
  void refresh();
}

async function signIn(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const input = el<HTMLInputElement>('api-key');
  const button = (event.target as HTMLFormElement).querySelector('button')!;
  button.disabled = true;
  try {
    const session = await api<SessionInfo>('/v1/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiKey: input.value.trim() }),
    });
    input.value = '';
    notify('');
    showApp({ ...session, signedIn: true });
  } catch (err) {
    notify(`Sign-in failed: ${(err as Error).message}`, true);
  } finally {
    button.disabled = false;
  }
}

async function signOut(): Promise<void> {
  try {
    await api<void>('/v1/session', { method: 'DELETE' });
  } catch (err) {
    notify(`Sign-out failed: ${(err as Error).message}`, true);
    return;
  }
  showSignIn();
  notify('Signed out.');
}

// ---- the job list ----

function fmtNumber(v: unknown): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e4 || a < 1e-2) ? v.toExponential(2) : String(Number(v.toPrecision(3)));
}

function stageText(job: Job): string {
  if (job.status === 'queued') return job.cancelRequested ? 'cancelling…' : 'waiting for a worker';
  if (job.status !== 'running') return '';
  const s = job.stage;
  const parts: string[] = [];
  if (typeof s.phase === 'string') parts.push(s.phase);
  if (typeof s.step === 'number') parts.push(typeof s.of === 'number' ? `step ${s.step} of ${s.of}` : `step ${s.step}`);
  if (typeof s.message === 'string') parts.push(s.message);
  if (job.cancelRequested) parts.push('cancelling…');
  return parts.join(' · ');
}

function specText(spec: unknown): string {
  if (!spec || typeof spec !== 'object') return '';
  const s = spec as { method?: string; benign?: { labelColumn?: string; rowLimit?: number }; harmful?: { labelColumn?: string } };
  const parts = [s.method ?? ''];
  if (s.benign?.labelColumn) parts.push(`benign label ${s.benign.labelColumn}`);
  if (s.harmful?.labelColumn) parts.push(`harmful label ${s.harmful.labelColumn}`);
  if (s.benign?.rowLimit) parts.push(`≤ ${s.benign.rowLimit} rows`);
  return parts.filter(Boolean).join(' · ');
}

function renderJob(job: Job): HTMLLIElement {
  const item = make('li', 'job');
  item.dataset.jobId = job.id;
  item.dataset.status = job.status;

  const top = make('div', 'job-top');
  top.append(make('code', 'job-id', job.id), make('span', `status s-${job.status}`, job.status));
  top.append(make('time', 'when', new Date(job.createdAt).toLocaleString()));
  item.append(top);

  const bar = make('div', 'bar');
  const progress = make('progress');
  progress.max = 1;
  progress.value = job.progress;
  progress.setAttribute('aria-label', `progress of ${job.id}`);
  bar.append(progress, make('span', 'pct', `${Math.round(job.progress * 100)}%`));
  item.append(bar);

  const stage = stageText(job);
  if (stage) item.append(make('p', 'stage', stage));
  const spec = specText(job.spec);
  if (spec) item.append(make('p', 'spec', spec));
  if (job.metrics && job.status === 'completed') {
    const m = job.metrics;
    item.append(make('p', 'summary', `verdict ${String(m.verdict ?? '–')} · RIR ${fmtNumber(m.rir)} · harmful κ ×${fmtNumber(m.harmfulRatio)} · benign κ ×${fmtNumber(m.benignRatio)}`));
  }
  if (job.error) item.append(make('p', 'error', `${job.error.code}: ${job.error.message}`));

  const links = make('div', 'links');
  const base = `/v1/jobs/${encodeURIComponent(job.id)}`;
  // report.html gets one link, "Report", which opens it in the browser; the other artifacts are downloads.
  const hasReport = job.artifacts.some((a) => a.name === REPORT_ARTIFACT);
  if (hasReport) {
    const report = make('a', 'report', 'Report');
    report.href = `${base}/report`;
    report.target = '_blank';
    report.rel = 'noopener';
    links.append(report);
  }
  for (const a of job.artifacts) {
    if (a.name === REPORT_ARTIFACT) continue;
    const link = make('a', 'artifact', a.name);
    link.href = `${base}/artifacts/${encodeURIComponent(a.name)}`;
    link.download = a.name;
    link.title = `${a.size} bytes`;
    links.append(link);
  }
  if (!TERMINAL.has(job.status) && !job.cancelRequested && !state.session?.admin) {
    const cancel = make('button', 'quiet cancel', 'Cancel');
    cancel.type = 'button';
    cancel.addEventListener('click', () => void cancelJob(job.id, cancel));
    links.append(cancel);
  }
  if (links.childElementCount > 0) item.append(links);
  return item;
}

function upsert(job: Job, prepend = false): void {
  state.jobs.set(job.id, job);
  const list = el('job-list');
  const node = renderJob(job);
  const existing = list.querySelector<HTMLElement>(`li.job[data-job-id="${CSS.escape(job.id)}"]`);
  if (existing) existing.replaceWith(node);
  else if (prepend) list.prepend(node);
  else list.append(node);
  el('empty').hidden = state.jobs.size > 0;
  if (TERMINAL.has(job.status)) closeStream(job.id);
  else follow(job.id);
}

async function refresh(): Promise<void> {
  if (!state.session) return;
  if (state.session.admin && !state.tenant) {
    el('empty').textContent = 'Name a tenant to list its jobs.';
    el('empty').hidden = false;
    return;
  }
  const query = new URLSearchParams({ limit: '50' });
  if (state.session.admin) query.set('tenant', state.tenant);
  try {
    const page = await api<{ items: Job[] }>(`/v1/jobs?${query}`);
    closeStreams();
    state.jobs.clear();
    el('job-list').replaceChildren();
    for (const job of page.items) upsert(job);
    el('empty').textContent = 'No jobs yet.';
    el('empty').hidden = page.items.length > 0;
  } catch (err) {
    if (state.session) notify(`Could not list the jobs: ${(err as Error).message}`, true);
  }
}

async function cancelJob(id: string, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    await api(`/v1/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });
    const job = await api<Job>(`/v1/jobs/${encodeURIComponent(id)}`);
    upsert(job);
  } catch (err) {
    notify(`Could not cancel ${id}: ${(err as Error).message}`, true);
    button.disabled = false;
  }
}

// ---- live progress: one EventSource per unfinished job ----

function follow(id: string): void {
  if (state.streams.has(id)) return;
  const source = new EventSource(`/v1/jobs/${encodeURIComponent(id)}/events`, { withCredentials: true });
  const onEvent = (e: MessageEvent<string>) => {
    const data = JSON.parse(e.data) as Job | { id: string; purged: true };
    if ('purged' in data) {
      closeStream(id);
      state.jobs.delete(id);
      el('job-list').querySelector(`li.job[data-job-id="${CSS.escape(id)}"]`)?.remove();
      return;
    }
    upsert(data);
  };
  for (const name of ['progress', 'completed', 'failed', 'cancelled']) source.addEventListener(name, onEvent as EventListener);
  // The browser reconnects by itself after a dropped connection; a refused one (the session ended) stays closed.
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) state.streams.delete(id);
  });
  state.streams.set(id, source);
}

function closeStream(id: string): void {
  state.streams.get(id)?.close();
  state.streams.delete(id);
}

function closeStreams(): void {
  for (const id of [...state.streams.keys()]) closeStream(id);
}

// ---- uploading and submitting ----

function columns(text: string): string[] | undefined {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return list.length ? list : undefined;
}

function positiveInt(input: HTMLInputElement, what: string, min: number): number | undefined {
  const text = input.value.trim();
  if (!text) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${what} must be a whole number of at least ${min}`);
  return n;
}

function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function upload(file: File): Promise<string> {
  const form = new FormData();
  form.append('file', file, file.name);
  const answer = await api<{ id: string }>('/v1/datasets', { method: 'POST', body: form });
  return answer.id;
}

async function submitJob(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const button = el<HTMLButtonElement>('submit-job');
  const said = el('submit-state');
  const benignFile = el<HTMLInputElement>('benign-file').files?.[0];
  const harmfulFile = el<HTMLInputElement>('harmful-file').files?.[0];
  if (!benignFile || !harmfulFile) {
    notify('Choose a benign and a harmful file.', true);
    return;
  }
  button.disabled = true;
  try {
    const rowLimit = positiveInt(el<HTMLInputElement>('row-limit'), 'Row limit', 2);
    const steps = positiveInt(el<HTMLInputElement>('steps'), 'Steps', 1);
    const side = (prefix: 'benign' | 'harmful', dataset: string) => {
      const ref: Record<string, unknown> = { dataset };
      const label = el<HTMLInputElement>(`${prefix}-label`).value.trim();
      if (label) ref.labelColumn = label;
      const drop = columns(el<HTMLInputElement>(`${prefix}-drop`).value);
      if (drop) ref.dropColumns = drop;
      if (rowLimit !== undefined) ref.rowLimit = rowLimit;
      return ref;
    };
    said.textContent = `Uploading ${benignFile.name}…`;
    const benign = await upload(benignFile);
    said.textContent = `Uploading ${harmfulFile.name}…`;
    const harmful = await upload(harmfulFile);
    said.textContent = 'Submitting…';
    const spec: Record<string, unknown> = {
      benign: side('benign', benign),
      harmful: side('harmful', harmful),
      method: el<HTMLSelectElement>('method').value,
    };
    if (steps !== undefined) spec.steps = steps;
    const submitted = await api<{ id: string }>('/v1/jobs', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': randomKey() },
      body: JSON.stringify(spec),
    });
    said.textContent = `Submitted ${submitted.id}.`;
    notify('');
    upsert(await api<Job>(`/v1/jobs/${encodeURIComponent(submitted.id)}`), true);
  } catch (err) {
    said.textContent = '';
    notify(`Could not submit the job: ${(err as Error).message}`, true);
  } finally {
    button.disabled = false;
  }
}

// ---- start ----

async function start(): Promise<void> {
  el('sign-in-form').addEventListener('submit', (e) => void signIn(e as SubmitEvent));
  el('sign-out').addEventListener('click', () => void signOut());
  el('job-form').addEventListener('submit', (e) => void submitJob(e as SubmitEvent));
  el('refresh').addEventListener('click', () => void refresh());
  el('tenant-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.tenant = el<HTMLInputElement>('tenant').value.trim();
    void refresh();
  });
  try {
    const session = await api<SessionInfo>('/v1/session');
    if (session.signedIn) showApp(session);
    else showSignIn();
  } catch (err) {
    showSignIn();
    notify(`The service did not answer: ${(err as Error).message}`, true);
  }
  document.body.dataset.ready = 'true';
}

void start();
