/**
 * The dashboard's script, run by the browser (tsc compiles it to plain JavaScript with no imports). It signs in
 * with an API key, lists the caller's jobs with live progress (and a running job's phase) from each job's event
 * stream, uploads the job's files with a progress bar each (features as .csv/.npy, or an ONNX backbone with image
 * sets and labels files) and submits the job. Everything goes to this origin; the session cookie authenticates,
 * and the session's CSRF token goes with every request that changes state.
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
  syncForm();
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

/**
 * The phases a running job's card shows, in order. The worker publishes finer ones (load, statistics, optimize,
 * evaluate, attacks, done); phaseIndex maps each to one of these.
 */
const PHASES = ['features', 'optimise', 'attacks', 'export'] as const;

/** Where a running job stands among PHASES: 0–3, or -1 when it has not started one. */
function phaseIndex(job: Job): number {
  switch (job.stage.phase) {
    case 'starting':
    case 'load':
    case 'statistics':
      return 0;
    case 'optimize':
      return 1;
    // The engine evaluates θ before the attacks (at 72%); a backbone job checks immunized.onnx after them.
    case 'evaluate':
      return job.progress >= 0.75 ? 3 : 1;
    case 'attacks':
      return 2;
    case 'done':
      return 3;
    default:
      return -1;
  }
}

/** The details of the worker's latest progress event: step, message, κ's. */
function stageDetails(job: Job): string {
  const s = job.stage;
  const parts: string[] = [];
  if (typeof s.step === 'number') parts.push(typeof s.of === 'number' && s.of > 0 ? `step ${s.step} of ${s.of}` : `step ${s.step}`);
  if (typeof s.message === 'string') parts.push(s.message);
  if (typeof s.kappaHarmful === 'number') parts.push(`κ harmful ${fmtNumber(s.kappaHarmful)}`);
  if (typeof s.kappaBenign === 'number') parts.push(`κ benign ${fmtNumber(s.kappaBenign)}`);
  if (job.cancelRequested) parts.push('cancelling…');
  return parts.join(' · ');
}

/** A running job's phases as a row of steps (done, current, to do) and a line naming the current one. */
function renderPhases(job: Job, item: HTMLElement): void {
  const at = phaseIndex(job);
  if (at >= 0) item.dataset.phase = PHASES[at];
  const steps = make('ol', 'phases');
  steps.setAttribute('aria-label', `phases of ${job.id}`);
  PHASES.forEach((name, i) => {
    const step = make('li', undefined, name);
    step.dataset.state = i < at ? 'done' : i === at ? 'current' : 'todo';
    if (i === at) step.setAttribute('aria-current', 'step');
    steps.append(step);
  });
  item.append(steps);
  const line = make('p', 'stage');
  line.append(make('span', 'phase', at >= 0 ? PHASES[at] : 'starting'));
  const details = stageDetails(job);
  if (details) line.append(make('span', 'details', ` · ${details}`));
  item.append(line);
}

function specText(spec: unknown): string {
  if (!spec || typeof spec !== 'object') return '';
  type Side = { labelColumn?: string; labels?: string; rowLimit?: number };
  const s = spec as { backbone?: string; mode?: string; method?: string; featureTensor?: string; benign?: Side; harmful?: Side };
  const parts: string[] = [];
  if (s.backbone) parts.push(`backbone ${s.backbone}`, s.mode === 'last-block' ? 'last block' : 'linear head');
  if (s.method) parts.push(s.method);
  if (s.featureTensor) parts.push(`features from ${s.featureTensor}`);
  for (const side of ['benign', 'harmful'] as const) {
    if (s[side]?.labelColumn) parts.push(`${side} label ${s[side].labelColumn}`);
    else if (s[side]?.labels) parts.push(`${side} labels ${s[side].labels}`);
  }
  if (s.benign?.rowLimit) parts.push(`≤ ${s.benign.rowLimit} rows`);
  return parts.join(' · ');
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

  if (job.status === 'queued') item.append(make('p', 'stage', job.cancelRequested ? 'cancelling…' : 'waiting for a worker'));
  else if (job.status === 'running') renderPhases(job, item);
  const spec = specText(job.spec);
  if (spec) item.append(make('p', 'spec', spec));
  if (job.metrics && job.status === 'completed') {
    const m = job.metrics;
    item.append(
      make(
        'p',
        'summary',
        `verdict ${String(m.verdict ?? '–')} · RIR ${fmtNumber(m.rir)} · harmful κ ×${fmtNumber(m.harmfulRatio)} · benign κ ×${fmtNumber(m.benignRatio)}`,
      ),
    );
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
      el('job-list')
        .querySelector(`li.job[data-job-id="${CSS.escape(id)}"]`)
        ?.remove();
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

// ---- the form: what the user brings decides which fields show ----

type Kind = 'features' | 'backbone';
type Side = 'benign' | 'harmful';
type LabelsFrom = 'column' | 'folders' | 'file' | 'none';

function formKind(): Kind {
  return el<HTMLFormElement>('job-form').querySelector<HTMLInputElement>('input[name=kind]:checked')?.value === 'backbone' ? 'backbone' : 'features';
}

function showAll(selector: string, root: ParentNode, show: boolean): void {
  for (const node of Array.from(root.querySelectorAll<HTMLElement>(selector))) {
    node.hidden = !show;
    if (node instanceof HTMLOptionElement) node.disabled = !show;
  }
}

/** Shows the fields that apply to the chosen input kind, mode and label sources, and hides the rest. */
function syncForm(): void {
  const form = el<HTMLFormElement>('job-form');
  const kind = formKind();
  const mode = kind === 'backbone' ? el<HTMLSelectElement>('mode').value : 'linear-head';
  form.dataset.kind = kind;
  form.dataset.mode = mode;
  showAll('.for-features', form, kind === 'features');
  showAll('.for-backbone', form, kind === 'backbone');
  showAll('.for-linear-head', form, mode !== 'last-block');
  showAll('.for-last-block', form, mode === 'last-block');
  for (const side of ['benign', 'harmful'] as const) {
    const file = el<HTMLInputElement>(`${side}-file`);
    file.accept = kind === 'backbone' ? '.tar,.npy' : '.csv,.npy';
    const from = el<HTMLSelectElement>(`${side}-labels-from`);
    // A label column exists only in a .csv, class folders only in a .tar of images.
    if (kind === 'backbone' && from.value === 'column') from.value = 'folders';
    if (kind === 'features' && from.value === 'folders') from.value = 'column';
    const fieldset = from.closest('fieldset')!;
    showAll('.for-labels-column', fieldset, from.value === 'column');
    showAll('.for-labels-file', fieldset, from.value === 'file');
  }
}

/** An .npy of images has no class folders: its labels come from a file or not at all. */
function pickedImages(input: HTMLInputElement): void {
  const file = input.files?.[0];
  const from = el<HTMLSelectElement>(input.id.replace(/-file$/, '-labels-from'));
  if (file && formKind() === 'backbone' && extension(file) === 'npy' && from.value === 'folders') {
    from.value = 'none';
    syncForm();
  }
}

// ---- uploading, with progress per file ----

interface UploadAnswer {
  id: string;
  sha256: string;
  format?: string;
  rows?: number;
  cols?: number;
  classes?: string[];
  inputs?: Array<{ name?: string; shape?: Array<number | string | null> }>;
}

/** One file's line in the upload list: its name, a progress bar and what happened. */
class UploadRow {
  readonly item: HTMLLIElement;
  private readonly bar: HTMLProgressElement;
  private readonly pct: HTMLSpanElement;
  private readonly note: HTMLParagraphElement;

  constructor(
    readonly what: string,
    readonly file: File,
  ) {
    this.item = make('li', 'upload');
    this.item.dataset.file = what;
    this.item.dataset.state = 'waiting';
    this.bar = make('progress');
    this.bar.max = 1;
    this.bar.value = 0;
    this.bar.setAttribute('aria-label', `upload of ${file.name}`);
    this.pct = make('span', 'pct', '0%');
    this.note = make('p', 'note', `waiting · ${fmtBytes(file.size)}`);
    this.item.append(make('span', 'file', `${what}: ${file.name}`), this.bar, this.pct, this.note);
  }

  progress(loaded: number, total: number): void {
    const f = total > 0 ? Math.min(1, loaded / total) : 0;
    this.item.dataset.state = 'uploading';
    this.bar.value = f;
    this.pct.textContent = `${Math.floor(f * 100)}%`;
    this.note.textContent = `${fmtBytes(Math.min(loaded, this.file.size))} of ${fmtBytes(this.file.size)}`;
  }

  /** Every byte is out; the service now checks the file (hashing it, reading its header or indexing the archive). */
  sent(): void {
    this.progress(1, 1);
    this.item.dataset.state = 'checking';
    this.note.textContent = `${fmtBytes(this.file.size)} sent; the service is checking it…`;
  }

  done(note: string): void {
    this.progress(1, 1);
    this.item.dataset.state = 'done';
    this.note.textContent = note;
  }

  failed(message: string): void {
    this.item.dataset.state = 'failed';
    this.note.textContent = message;
  }
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function errorMessage(status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: string } };
    if (body.error?.message) return body.error.message;
  } catch {
    // not JSON
  }
  return `HTTP ${status}`;
}

/**
 * POSTs one file as multipart/form-data with XMLHttpRequest, whose upload events give the progress that fetch
 * cannot. The session cookie goes with it (same origin), and the CSRF token as a header.
 */
function sendFile(url: string, row: UploadRow): Promise<UploadAnswer> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    if (state.session?.csrfToken) xhr.setRequestHeader('x-csrf-token', state.session.csrfToken);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) row.progress(e.loaded, e.total);
    });
    xhr.upload.addEventListener('load', () => row.sent());
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText) as UploadAnswer);
        } catch {
          reject(new Error(`${row.file.name}: the service's answer was not JSON`));
        }
        return;
      }
      if (xhr.status === 401 && state.session?.signedIn) showSignIn('Your session has ended; sign in again.');
      reject(new HttpError(xhr.status, errorMessage(xhr.status, xhr.responseText)));
    });
    xhr.addEventListener('error', () => reject(new Error(`${row.file.name}: the upload did not reach the service`)));
    xhr.addEventListener('abort', () => reject(new Error(`${row.file.name}: the upload was stopped`)));
    const form = new FormData();
    form.append('file', row.file, row.file.name);
    xhr.send(form);
  });
}

/** What the service read from an upload, in words: for `what` the file stands for. */
function uploadNote(answer: UploadAnswer, what: 'backbone' | 'images' | 'labels' | 'features'): string {
  const parts = [`uploaded as ${answer.id}`];
  const input = answer.inputs?.[0];
  if (what === 'backbone' && input?.shape) {
    const shape = input.shape.map((d) => (typeof d === 'number' && d > 0 ? String(d) : 'N')).join('×');
    parts.push(`input ${input.name ? `${JSON.stringify(input.name)} ` : ''}${shape}`);
  }
  if (answer.rows !== undefined) {
    if (what === 'images') parts.push(`${answer.rows} images`);
    else if (what === 'labels') parts.push(`${answer.rows} labels`);
    else if (what === 'features') parts.push(answer.cols !== undefined ? `${answer.rows} rows × ${answer.cols} columns` : `${answer.rows} rows`);
  }
  if (answer.classes?.length) parts.push(`classes ${answer.classes.join(', ')}`);
  return parts.join(' · ');
}

// ---- reading the form ----

function columns(text: string): string[] | undefined {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return list.length ? list : undefined;
}

function positiveInt(input: HTMLInputElement, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const text = input.value.trim();
  if (!text) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`${what} must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ' up'}`);
  return n;
}

/** "0.5, 0.5, 0.5" (or spaces) as 1–4 finite numbers; positive ones only when `positive`. */
function numberList(input: HTMLInputElement, what: string, positive: boolean): number[] | undefined {
  const text = input.value.trim();
  if (!text) return undefined;
  const parts = text.split(/[\s,]+/).filter(Boolean);
  const values = parts.map(Number);
  if (values.length < 1 || values.length > 4 || values.some((v) => !Number.isFinite(v) || (positive && v <= 0))) {
    throw new Error(`${what} takes 1 to 4 ${positive ? 'positive ' : ''}numbers, one per channel (e.g. 0.5, 0.5, 0.5); got ${JSON.stringify(text)}`);
  }
  return values;
}

function extension(file: File): string {
  const m = /\.([^.]+)$/.exec(file.name);
  return m ? m[1].toLowerCase() : '';
}

function requireExtension(file: File, allowed: string[], what: string): void {
  if (!allowed.includes(extension(file))) throw new Error(`${what}: ${file.name} must be ${allowed.map((e) => `.${e}`).join(' or ')}`);
}

function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

interface SidePlan {
  side: Side;
  data: File;
  labelsFrom: LabelsFrom;
  labels?: File;
  labelColumn?: string;
  dropColumns?: string[];
}

/** Reads and checks one side's fields before anything is uploaded. */
function planSide(side: Side, kind: Kind): SidePlan {
  const data = el<HTMLInputElement>(`${side}-file`).files?.[0];
  if (!data) throw new Error(`Choose the ${side} ${kind === 'backbone' ? 'images' : 'file'}.`);
  requireExtension(data, kind === 'backbone' ? ['tar', 'npy'] : ['csv', 'npy'], `${side} data`);
  const labelsFrom = el<HTMLSelectElement>(`${side}-labels-from`).value as LabelsFrom;
  const plan: SidePlan = { side, data, labelsFrom };
  if (labelsFrom === 'file') {
    const labels = el<HTMLInputElement>(`${side}-labels-file`).files?.[0];
    if (!labels) throw new Error(`Choose the ${side} labels file, or another label source.`);
    requireExtension(labels, ['npy', 'csv'], `${side} labels`);
    plan.labels = labels;
  } else if (labelsFrom === 'folders' && extension(data) !== 'tar') {
    throw new Error(`${side}: class folders come from a .tar of images; ${data.name} is not one. Choose a labels file or none.`);
  } else if (labelsFrom === 'column') {
    const column = el<HTMLInputElement>(`${side}-label`).value.trim();
    if (column) {
      if (extension(data) !== 'csv') throw new Error(`${side}: a label column needs a .csv; ${data.name} is not one. Choose a labels file or none.`);
      plan.labelColumn = column;
    }
  }
  if (kind === 'features') plan.dropColumns = columns(el<HTMLInputElement>(`${side}-drop`).value);
  return plan;
}

// ---- submitting ----

/** What the form asks for, checked before the first byte goes out. */
interface JobPlan {
  kind: Kind;
  /** The spec so far; the uploads add the backbone and dataset ids. */
  spec: Record<string, unknown>;
  backbone?: File;
  sides: SidePlan[];
  rowLimit?: number;
}

/** The image preprocessing fields, or undefined when all are left empty. */
function planPreprocess(): Record<string, unknown> | undefined {
  const preprocess: Record<string, unknown> = {};
  const resize = positiveInt(el<HTMLInputElement>('pre-resize'), 'Resize', 1, 4096);
  const crop = positiveInt(el<HTMLInputElement>('pre-crop'), 'Crop', 1, 4096);
  const mean = numberList(el<HTMLInputElement>('pre-mean'), 'Mean', false);
  const std = numberList(el<HTMLInputElement>('pre-std'), 'Std', true);
  if (resize !== undefined) preprocess.resize = resize;
  if (crop !== undefined) preprocess.crop = crop;
  if (mean) preprocess.mean = mean;
  if (std) preprocess.std = std;
  return Object.keys(preprocess).length > 0 ? preprocess : undefined;
}

/** A backbone job's own fields (the mode and its options, the preprocessing) into `spec`; returns the backbone file. */
function planBackbone(spec: Record<string, unknown>): File {
  const file = el<HTMLInputElement>('backbone-file').files?.[0];
  if (!file) throw new Error('Choose the backbone (.onnx).');
  requireExtension(file, ['onnx'], 'backbone');
  const mode = el<HTMLSelectElement>('mode').value;
  spec.mode = mode;
  if (mode === 'last-block') {
    const cut = el<HTMLInputElement>('cut-tensor').value.trim();
    if (cut) spec.cutTensor = cut;
    const budget = el<HTMLInputElement>('time-budget').value.trim();
    if (budget) {
      const seconds = Number(budget);
      if (!(seconds > 0) || !Number.isFinite(seconds)) throw new Error('Time budget must be a positive number of seconds');
      spec.timeBudgetSeconds = seconds;
    }
    if (el<HTMLInputElement>('allow-slow').checked) spec.allowSlowBackend = true;
  } else {
    const tensor = el<HTMLInputElement>('feature-tensor').value.trim();
    if (tensor) spec.featureTensor = tensor;
  }
  const preprocess = planPreprocess();
  if (preprocess) spec.preprocess = preprocess;
  return file;
}

/** Reads and checks the whole form; throws an Error that says what to fix. */
function planJob(kind: Kind): JobPlan {
  const spec: Record<string, unknown> = {};
  const backbone = kind === 'backbone' ? planBackbone(spec) : undefined;
  // Last-block mode trains by gradient steps only; the service fills that in.
  if (spec.mode !== 'last-block') spec.method = el<HTMLSelectElement>('method').value;
  const rowLimit = positiveInt(el<HTMLInputElement>('row-limit'), 'Row limit', 2);
  const steps = positiveInt(el<HTMLInputElement>('steps'), 'Steps', 1, 1_000_000);
  if (steps !== undefined) spec.steps = steps;
  const sides = [planSide('benign', kind), planSide('harmful', kind)];
  const npy = sides.find((p) => extension(p.data) === 'npy');
  if (spec.preprocess && npy) {
    throw new Error(
      `Preprocessing applies to image files only: the ${npy.side} images (${npy.data.name}) are an .npy, which comes preprocessed. ` +
        'Clear resize, crop, mean and std, or upload a .tar of images.',
    );
  }
  return { kind, spec, backbone, sides, rowLimit };
}

/** One upload row per file of the plan, shown in the uploads list in the order they go out. */
interface PlanRows {
  backbone: UploadRow | null;
  sides: Array<{ data: UploadRow; labels: UploadRow | null }>;
}

function showUploads(plan: JobPlan): PlanRows {
  const rows: UploadRow[] = [];
  const backbone = plan.backbone ? new UploadRow('backbone', plan.backbone) : null;
  if (backbone) rows.push(backbone);
  const sides = plan.sides.map((p) => {
    const data = new UploadRow(p.side, p.data);
    const labels = p.labels ? new UploadRow(`${p.side} labels`, p.labels) : null;
    rows.push(data, ...(labels ? [labels] : []));
    return { data, labels };
  });
  const list = el('uploads');
  list.replaceChildren(...rows.map((r) => r.item));
  list.hidden = false;
  return { backbone, sides };
}

/**
 * Where a submission stands: the file going out, or the last one sent (a failure found in its answer shows on its
 * row), and the status line.
 */
class SubmitProgress {
  current: UploadRow | null = null;

  constructor(private readonly said: HTMLElement) {}

  async upload(row: UploadRow, url: string, what: Parameters<typeof uploadNote>[1]): Promise<UploadAnswer> {
    this.current = row;
    this.said.textContent = `Uploading ${row.file.name}…`;
    const answer = await sendFile(url, row);
    row.done(uploadNote(answer, what));
    return answer;
  }

  submitting(): void {
    this.current = null;
    this.said.textContent = 'Submitting…';
  }
}

/** Uploads the plan's files, completes the spec with their ids and submits it; returns the new job's id. */
async function uploadAndSubmit(plan: JobPlan, rows: PlanRows, progress: SubmitProgress): Promise<string> {
  const { spec } = plan;
  if (rows.backbone) spec.backbone = (await progress.upload(rows.backbone, '/v1/backbones', 'backbone')).id;
  for (const [i, side] of plan.sides.entries()) {
    const answer = await progress.upload(rows.sides[i].data, '/v1/datasets', plan.kind === 'backbone' ? 'images' : 'features');
    if (side.labelsFrom === 'folders' && !answer.classes?.length) {
      throw new Error(`${side.data.name} has no class folders (two or more folders of images); choose a labels file or none for the ${side.side} labels`);
    }
    const ref: Record<string, unknown> = { dataset: answer.id };
    const labels = rows.sides[i].labels;
    if (labels) ref.labels = (await progress.upload(labels, '/v1/datasets', 'labels')).id;
    if (side.labelColumn) ref.labelColumn = side.labelColumn;
    if (side.dropColumns) ref.dropColumns = side.dropColumns;
    if (plan.rowLimit !== undefined) ref.rowLimit = plan.rowLimit;
    spec[side.side] = ref;
  }
  progress.submitting();
  const submitted = await api<{ id: string }>('/v1/jobs', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': randomKey() },
    body: JSON.stringify(spec),
  });
  return submitted.id;
}

async function submitJob(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const button = el<HTMLButtonElement>('submit-job');
  const said = el('submit-state');
  const kind = formKind();
  let plan: JobPlan;
  // Everything the form can check is checked before the first byte goes out.
  try {
    plan = planJob(kind);
  } catch (err) {
    notify((err as Error).message, true);
    return;
  }
  const rows = showUploads(plan);
  button.disabled = true;
  notify('');
  const progress = new SubmitProgress(said);
  try {
    const id = await uploadAndSubmit(plan, rows, progress);
    said.textContent = `Submitted ${id}.`;
    upsert(await api<Job>(`/v1/jobs/${encodeURIComponent(id)}`), true);
  } catch (err) {
    const message = (err as Error).message;
    progress.current?.failed(message);
    said.textContent = '';
    notify(`Could not submit the job: ${message}`, true);
  } finally {
    button.disabled = false;
  }
}

// ---- start ----

async function start(): Promise<void> {
  el('sign-in-form').addEventListener('submit', (e) => void signIn(e as SubmitEvent));
  el('sign-out').addEventListener('click', () => void signOut());
  el('job-form').addEventListener('submit', (e) => void submitJob(e as SubmitEvent));
  el('job-form').addEventListener('change', (e) => {
    const target = e.target as HTMLInputElement | HTMLSelectElement;
    if (target.name === 'benignFile' || target.name === 'harmfulFile') pickedImages(target as HTMLInputElement);
    if (target.name === 'kind' || target.name === 'mode' || /LabelsFrom$/.test(target.name)) syncForm();
  });
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
