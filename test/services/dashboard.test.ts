/**
 * The browser side of the API without a browser: session sign-in and sign-out, the cookie accepted where EventSource
 * and links need it, CSRF on cookie-authenticated changes, the report route, the dashboard's files (its script's
 * job links drawn on a stand-in document) and bull-board behind the admin key.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createContext, runInContext } from 'node:vm';
import type { FastifyInstance } from 'fastify';
import { ApiKeys } from '../../services/auth.js';
import { ConfigError, loadConfig } from '../../services/config.js';
import type { RunningServer } from '../../services/server.js';
import { SessionStore } from '../../services/sessions.js';
import { REPORT_CSP } from '../../services/api/routes/report.js';
import {
  ADMIN,
  ADMIN_KEY,
  ALICE,
  ALICE_KEY,
  BOB,
  BOB_KEY,
  cleanup,
  eventually,
  multipart,
  randomNpy,
  readSse,
  requireRedis,
  start,
  type TestEnv,
  testEnv,
} from '../helpers/service.js';

// Without a Redis this file fails (it never skips).
await requireRedis();

let t: TestEnv;
let srv: RunningServer;
let api: FastifyInstance;

before(async () => {
  t = await testEnv();
  srv = await start('all', t);
  api = srv.api!;
});

after(async () => {
  await srv?.close();
  if (t) await cleanup(t);
});

interface SignedIn {
  cookie: string;
  setCookie: string;
  csrf: string;
  body: { signedIn: boolean; tenant: string; admin: boolean; via: string; csrfToken: string; expiresAt: string };
}

async function signIn(apiKey: string, headers: Record<string, string> = {}): Promise<SignedIn> {
  const r = await api.inject({ method: 'POST', url: '/v1/session', headers, payload: { apiKey } });
  assert.equal(r.statusCode, 200, r.body);
  const setCookie = String(r.headers['set-cookie']);
  const m = /^immunize_session=([^;]+);/.exec(setCookie);
  assert.ok(m, `no session cookie in ${setCookie}`);
  const body = r.json() as SignedIn['body'];
  return { cookie: `immunize_session=${m[1]}`, setCookie, csrf: body.csrfToken, body };
}

function expectError(r: { statusCode: number; body: string }, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, code, r.body);
}

async function uploadWith(headers: Record<string, string>, name: string, rows: number, seed: number) {
  const body = multipart(name, randomNpy(rows, 6, seed));
  return api.inject({ method: 'POST', url: '/v1/datasets', headers: { ...headers, ...body.headers }, payload: body.payload });
}

async function waitDone(headers: Record<string, string>, id: string) {
  return eventually(
    `job ${id} to finish`,
    async () => {
      const d = (await api.inject({ url: `/v1/jobs/${id}`, headers })).json() as { status: string; artifacts: Array<{ name: string }> };
      return ['completed', 'failed', 'cancelled'].includes(d.status) ? d : undefined;
    },
    60_000,
  );
}

/** Just enough of a DOM element for the dashboard script to build a job's entry. */
class StandInElement {
  className = '';
  textContent = '';
  href = '';
  target = '';
  rel = '';
  download = '';
  title = '';
  type = '';
  value: unknown = '';
  max = 0;
  hidden = false;
  disabled = false;
  readonly dataset: Record<string, string> = {};
  readonly attributes: Record<string, string> = {};
  children: StandInElement[] = [];
  readonly classList = { toggle: () => undefined, add: () => undefined, remove: () => undefined };
  constructor(readonly tagName: string) {}
  append(...nodes: StandInElement[]): void {
    this.children.push(...nodes);
  }
  prepend(...nodes: StandInElement[]): void {
    this.children.unshift(...nodes);
  }
  replaceChildren(...nodes: StandInElement[]): void {
    this.children = nodes;
  }
  get childElementCount(): number {
    return this.children.length;
  }
  setAttribute(name: string, value: string): void {
    this.attributes[name] = value;
  }
  addEventListener(): void {}
  focus(): void {}
  querySelector(): StandInElement {
    return new StandInElement('button');
  }
  /** Every element below this one, depth first. */
  all(): StandInElement[] {
    return this.children.flatMap((c) => [c, ...c.all()]);
  }
}

/**
 * Loads the served dashboard script into a fresh context with a stand-in document and returns its renderJob. The
 * script's start-up asks /v1/session, which never answers here, so nothing else runs.
 */
async function dashboardRenderer(script: string): Promise<(job: unknown) => StandInElement> {
  const byId = new Map<string, StandInElement>();
  const document = {
    body: new StandInElement('body'),
    getElementById: (id: string) => byId.get(id) ?? byId.set(id, new StandInElement('div')).get(id)!,
    createElement: (tag: string) => new StandInElement(tag),
  };
  const context = createContext({ document, fetch: () => new Promise(() => undefined), Headers, EventSource: class {}, console });
  // The compiled file ends with `export {};` (it is served as a module script); a classic script is the same code.
  runInContext(script.replace(/^export \{\};\s*$/m, ''), context, { filename: 'dashboard.js' });
  const render = (context as { renderJob?: (job: unknown) => StandInElement }).renderJob;
  assert.equal(typeof render, 'function', 'the dashboard script has a renderJob');
  return render!;
}

describe('sessions', () => {
  it('trades a valid key for an HttpOnly, SameSite=Strict cookie and refuses a wrong one', async () => {
    expectError(await api.inject({ method: 'POST', url: '/v1/session', payload: { apiKey: 'not-a-key-0123456789' } }), 401, 'unauthorized');
    expectError(await api.inject({ method: 'POST', url: '/v1/session', payload: {} }), 400, 'invalid_request');
    const text = await api.inject({
      method: 'POST',
      url: '/v1/session',
      headers: { 'content-type': 'text/plain' },
      payload: JSON.stringify({ apiKey: ALICE_KEY }),
    });
    assert.equal(text.statusCode, 400, 'a plain-text body (what a cross-site form can send) is not a sign-in');
    const cross = await api.inject({ method: 'POST', url: '/v1/session', headers: { 'sec-fetch-site': 'cross-site' }, payload: { apiKey: ALICE_KEY } });
    expectError(cross, 403, 'forbidden');

    const s = await signIn(ALICE_KEY);
    assert.match(s.setCookie, /HttpOnly/);
    assert.match(s.setCookie, /SameSite=Strict/);
    assert.match(s.setCookie, /Path=\//);
    assert.doesNotMatch(s.setCookie, /Secure/, 'plain http: no Secure attribute');
    assert.equal(s.body.tenant, 'alice');
    assert.equal(s.body.admin, false);
    assert.equal(s.body.via, 'session');
    assert.ok(Date.parse(s.body.expiresAt) > Date.now() + 11 * 3600_000);
    assert.match(s.csrf, /^[A-Za-z0-9_-]{43}$/);

    const secure = await signIn(ALICE_KEY, { 'x-forwarded-proto': 'https' });
    assert.match(secure.setCookie, /Secure/);

    const who = await api.inject({ url: '/v1/session', headers: { cookie: s.cookie } });
    assert.deepEqual(
      { ...(who.json() as Record<string, unknown>), expiresAt: undefined },
      { signedIn: true, tenant: 'alice', admin: false, via: 'session', csrfToken: s.csrf, expiresAt: undefined },
    );
    assert.equal(who.headers['cache-control'], 'no-store');
    assert.deepEqual((await api.inject('/v1/session')).json(), { signedIn: false });
    assert.deepEqual((await api.inject({ url: '/v1/session', headers: BOB })).json(), { signedIn: true, tenant: 'bob', admin: false, via: 'bearer' });
  });

  it('refuses a tampered or unsigned cookie and clears it', async () => {
    const s = await signIn(ALICE_KEY);
    const value = s.cookie.split('=')[1];
    const tampered = `immunize_session=${value.slice(0, -2)}${value.endsWith('AA') ? 'BB' : 'AA'}`;
    const r = await api.inject({ url: '/v1/jobs', headers: { cookie: tampered } });
    expectError(r, 401, 'unauthorized');
    assert.match(String(r.headers['set-cookie']), /immunize_session=;.*Expires=Thu, 01 Jan 1970/);
    expectError(await api.inject({ url: '/v1/jobs', headers: { cookie: `immunize_session=${value.split('.')[0]}` } }), 401, 'unauthorized');
  });

  it('needs the CSRF token for cookie-authenticated changes, and not for Bearer ones', async () => {
    const s = await signIn(ALICE_KEY);
    expectError(await uploadWith({ cookie: s.cookie }, 'a.npy', 20, 1), 403, 'csrf_failed');
    expectError(await uploadWith({ cookie: s.cookie, 'x-csrf-token': 'x'.repeat(43) }, 'a.npy', 20, 1), 403, 'csrf_failed');
    const other = await signIn(ALICE_KEY);
    expectError(await uploadWith({ cookie: s.cookie, 'x-csrf-token': other.csrf }, 'a.npy', 20, 1), 403, 'csrf_failed');
    const ok = await uploadWith({ cookie: s.cookie, 'x-csrf-token': s.csrf }, 'a.npy', 20, 1);
    assert.equal(ok.statusCode, 201, ok.body);
    assert.equal((await uploadWith(ALICE, 'b.npy', 20, 2)).statusCode, 201);
    const submit = await api.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: { cookie: s.cookie },
      payload: { benign: { dataset: ok.json().id }, harmful: { dataset: ok.json().id } },
    });
    expectError(submit, 403, 'csrf_failed');
    assert.equal((await api.inject({ url: '/v1/jobs', headers: { cookie: s.cookie } })).statusCode, 200, 'reads need no token');
  });

  it('signs out: the session ends for every copy of the cookie', async () => {
    const s = await signIn(ALICE_KEY);
    expectError(await api.inject({ method: 'DELETE', url: '/v1/session', headers: { cookie: s.cookie } }), 403, 'csrf_failed');
    const out = await api.inject({ method: 'DELETE', url: '/v1/session', headers: { cookie: s.cookie, 'x-csrf-token': s.csrf } });
    assert.equal(out.statusCode, 204, out.body);
    assert.match(String(out.headers['set-cookie']), /immunize_session=;/);
    expectError(await api.inject({ url: '/v1/jobs', headers: { cookie: s.cookie } }), 401, 'unauthorized');
    assert.deepEqual((await api.inject({ url: '/v1/session', headers: { cookie: s.cookie } })).json(), { signedIn: false });
    assert.equal((await api.inject({ method: 'DELETE', url: '/v1/session' })).statusCode, 204, 'signing out without a session is harmless');
  });

  it('ends a session whose key left the configuration', async () => {
    const config = loadConfig(t.env);
    const keys = new ApiKeys(config.apiKeys, config.adminKey);
    const store = new SessionStore(srv.services.redis, config, keys);
    const session = await store.create(ALICE_KEY, keys.verify(ALICE_KEY)!);
    assert.deepEqual((await store.get(session.id))?.principal, { tenant: 'alice', admin: false });
    const withoutAlice = new SessionStore(
      srv.services.redis,
      config,
      new ApiKeys(
        config.apiKeys.filter((k) => k.tenant !== 'alice'),
        config.adminKey,
      ),
    );
    assert.equal(await withoutAlice.get(session.id), null);
    assert.equal(await store.get(session.id), null, 'and it is gone from Redis');
    const keyHash = createHash('sha256').update(session.id).digest('base64url');
    assert.equal(await srv.services.redis.exists(`${t.prefix}:session:${keyHash}`), 0);
  });
});

describe('the cookie where a browser needs it, and the report', () => {
  let jobId: string;
  let alice: SignedIn;

  before(async () => {
    alice = await signIn(ALICE_KEY);
    const headers = { cookie: alice.cookie, 'x-csrf-token': alice.csrf };
    const benign = (await uploadWith(headers, 'benign.npy', 60, 3)).json().id as string;
    const harmful = (await uploadWith(headers, 'harmful.npy', 70, 4)).json().id as string;
    const r = await api.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers,
      payload: { benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form' },
    });
    assert.equal(r.statusCode, 202, r.body);
    jobId = r.json().id;
  });

  it('follows the job over SSE with the cookie alone', async () => {
    const events = await readSse(`${srv.url}/v1/jobs/${jobId}/events`, { cookie: alice.cookie }, (e) => e.event !== 'progress');
    assert.equal(events[events.length - 1].event, 'completed', JSON.stringify(events[events.length - 1].data));
  });

  it('lists and downloads with the cookie', async () => {
    const list = await api.inject({ url: '/v1/jobs', headers: { cookie: alice.cookie } });
    assert.ok((list.json().items as Array<{ id: string }>).some((j) => j.id === jobId));
    const dl = await api.inject({ url: `/v1/jobs/${jobId}/artifacts/metrics.json`, headers: { cookie: alice.cookie } });
    assert.equal(dl.statusCode, 200);
    assert.equal(dl.json().dim, 6);
  });

  it("serves report.html inline with a strict CSP, to the job's tenant only", async () => {
    const doc = await waitDone(ALICE, jobId);
    assert.equal(doc.status, 'completed');
    const listed = (doc as unknown as { artifacts: Array<{ name: string; sha256: string }> }).artifacts.find((a) => a.name === 'report.html');
    assert.ok(listed, 'the job lists report.html');
    for (const headers of [ALICE, { cookie: alice.cookie }]) {
      const r = await api.inject({ url: `/v1/jobs/${jobId}/report`, headers });
      assert.equal(r.statusCode, 200, r.body);
      assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
      assert.equal(r.headers['content-security-policy'], "default-src 'none'; style-src 'unsafe-inline'");
      assert.equal(REPORT_CSP, r.headers['content-security-policy']);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.equal(r.headers['content-disposition'], undefined, 'shown, not downloaded');
      assert.equal(createHash('sha256').update(r.rawPayload).digest('hex'), listed.sha256);
      assert.match(r.body, /<svg[^>]+data-chart="spectra"/);
    }
    const again = await api.inject({ url: `/v1/jobs/${jobId}/report`, headers: { ...ALICE, 'if-none-match': `"${listed.sha256}"` } });
    assert.equal(again.statusCode, 304);
    assert.equal(again.body, '');
    expectError(await api.inject({ url: `/v1/jobs/${jobId}/report`, headers: BOB }), 404, 'not_found');
    const bob = await signIn(BOB_KEY);
    expectError(await api.inject({ url: `/v1/jobs/${jobId}/report`, headers: { cookie: bob.cookie } }), 404, 'not_found');
    expectError(await api.inject({ url: `/v1/jobs/${jobId}/report` }), 401, 'unauthorized');
    assert.equal((await api.inject({ url: `/v1/jobs/${jobId}/report`, headers: ADMIN })).statusCode, 200);
    expectError(await api.inject({ url: '/v1/jobs/j0000000000000000000000000/report', headers: ALICE }), 404, 'not_found');
  });
});

describe("the dashboard's job links", () => {
  it('shows report.html as one Report link, and the other artifacts as downloads', async () => {
    const benign = (await uploadWith(ALICE, 'links-b.npy', 40, 11)).json().id as string;
    const harmful = (await uploadWith(ALICE, 'links-h.npy', 45, 12)).json().id as string;
    const r = await api.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: ALICE,
      payload: { benign: { dataset: benign }, harmful: { dataset: harmful }, method: 'closed-form' },
    });
    assert.equal(r.statusCode, 202, r.body);
    const id = r.json().id as string;
    const done = await waitDone(ALICE, id);
    assert.equal(done.status, 'completed');
    const names = done.artifacts.map((a) => a.name);
    assert.ok(names.includes('report.html'), `the job lists report.html: ${names.join(', ')}`);

    const renderJob = await dashboardRenderer((await api.inject('/dashboard.js')).body);
    const job = (await api.inject({ url: `/v1/jobs/${id}`, headers: ALICE })).json() as { artifacts: Array<{ name: string }> };
    const anchors = renderJob(job)
      .all()
      .filter((e) => e.tagName === 'a');
    const reports = anchors.filter((a) => /report/i.test(`${a.textContent} ${a.href}`));
    assert.deepEqual(
      reports.map((a) => [a.className, a.textContent, a.href]),
      [['report', 'Report', `/v1/jobs/${id}/report`]],
      'one link to the report, and no download link to report.html',
    );
    assert.equal(reports[0].target, '_blank');
    const downloads = anchors.filter((a) => a.className === 'artifact');
    assert.deepEqual(
      downloads.map((a) => a.textContent),
      names.filter((n) => n !== 'report.html'),
    );
    for (const a of downloads) {
      assert.equal(a.href, `/v1/jobs/${id}/artifacts/${a.textContent}`);
      assert.equal(a.download, a.textContent);
    }

    // A job without a report lists every artifact it has, and no Report link.
    const bare = renderJob({ ...job, artifacts: job.artifacts.filter((a) => a.name !== 'report.html') })
      .all()
      .filter((e) => e.tagName === 'a');
    assert.deepEqual(
      bare.map((a) => a.className),
      downloads.map(() => 'artifact'),
    );
  });
});

describe("the dashboard's job cards", () => {
  let renderJob: (job: unknown) => StandInElement;
  const job = (over: Record<string, unknown>) => ({
    id: 'j0000000000000000000000001',
    status: 'running',
    progress: 0,
    stage: {},
    createdAt: new Date(0).toISOString(),
    artifacts: [],
    ...over,
  });
  const byClass = (root: StandInElement, className: string) => root.all().filter((e) => e.className === className);

  before(async () => {
    renderJob = await dashboardRenderer((await api.inject('/dashboard.js')).body);
  });

  it("shows a running job's phase among features, optimise, attacks and export, from the worker's progress events", () => {
    const card = renderJob(job({ progress: 0.25, stage: { phase: 'optimize', step: 3, of: 20, kappaHarmful: 123456.7 } }));
    assert.equal(card.dataset.phase, 'optimise');
    const [steps] = byClass(card, 'phases');
    assert.deepEqual(
      steps.children.map((li) => [li.textContent, li.dataset.state]),
      [
        ['features', 'done'],
        ['optimise', 'current'],
        ['attacks', 'todo'],
        ['export', 'todo'],
      ],
    );
    assert.equal(steps.children[1].attributes['aria-current'], 'step');
    const [line] = byClass(card, 'stage');
    assert.deepEqual(
      line.children.map((c) => c.textContent),
      ['optimise', ' · step 3 of 20 · κ harmful 1.23e+5'],
    );
    // The worker's phases (workers/queueWorker.ts progressTracker) at the fractions it gives them.
    const cases: Array<[string, number, string, string]> = [
      ['starting', 0, 'features', ''],
      ['load', 0.02, 'features', 'loading the backbone'],
      ['statistics', 0.05, 'features', 'features benign'],
      ['optimize', 0.7, 'optimise', ''],
      ['evaluate', 0.72, 'optimise', ''],
      ['attacks', 0.77, 'attacks', 'gd on harmful'],
      ['done', 0.99, 'export', ''],
      ['evaluate', 0.99, 'export', 'checking immunized.onnx against the original'],
    ];
    for (const [phase, progress, shown, message] of cases) {
      const c = renderJob(job({ progress, stage: message ? { phase, message } : { phase } }));
      assert.equal(c.dataset.phase, shown, `${phase} at ${progress}`);
      assert.equal(byClass(c, 'phase')[0].textContent, shown);
      if (message) assert.match(byClass(c, 'details')[0].textContent, new RegExp(message));
    }
  });

  it('shows no phases for a queued or finished job', () => {
    const queued = renderJob(job({ status: 'queued', stage: { phase: 'queued' } }));
    assert.deepEqual(byClass(queued, 'phases'), []);
    assert.equal(byClass(queued, 'stage')[0].textContent, 'waiting for a worker');
    const done = renderJob(
      job({ status: 'completed', progress: 1, stage: { phase: 'done' }, metrics: { verdict: 'weak', rir: 3, harmfulRatio: 1.5, benignRatio: 0.9 } }),
    );
    assert.deepEqual(byClass(done, 'phases'), []);
    assert.equal(done.dataset.phase, undefined);
    assert.match(byClass(done, 'summary')[0].textContent, /^verdict weak · /);
  });

  it("offers a backbone job's immunized.onnx as a download and names the backbone and mode", () => {
    const artifacts = ['metrics.json', 'curves.json', 'theta.safetensors', 'report.html', 'immunized.onnx'].map((name) => ({
      name,
      size: 100,
      sha256: '0'.repeat(64),
    }));
    const spec = {
      backbone: 'b0000000000000000000000001',
      mode: 'last-block',
      method: 'gradient',
      benign: { dataset: 'd1', labels: 'd2' },
      harmful: { dataset: 'd3' },
    };
    const card = renderJob(job({ status: 'completed', progress: 1, artifacts, spec }));
    const downloads = byClass(card, 'artifact');
    const onnx = downloads.find((a) => a.textContent === 'immunized.onnx');
    assert.ok(onnx, `downloads: ${downloads.map((a) => a.textContent).join(', ')}`);
    assert.equal(onnx.href, '/v1/jobs/j0000000000000000000000001/artifacts/immunized.onnx');
    assert.equal(onnx.download, 'immunized.onnx');
    assert.equal(byClass(card, 'spec')[0].textContent, 'backbone b0000000000000000000000001 · last block · gradient · benign labels d2');
  });
});

describe('the dashboard files', () => {
  it('serves the page, its script and its style sheet without a key, under a CSP that allows only this origin', async () => {
    const page = await api.inject('/');
    assert.equal(page.statusCode, 200);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /connect-src 'self'/);
    assert.match(page.body, /<script type="module" src="\/dashboard\.js"><\/script>/);
    assert.doesNotMatch(page.body, /https?:\/\//, 'nothing from the network');
    const script = await api.inject('/dashboard.js');
    assert.equal(script.statusCode, 200);
    assert.equal(script.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.match(script.body, /new EventSource\(/);
    assert.doesNotMatch(script.body, /sourceMappingURL|^\s*import\s/m);
    assert.doesNotMatch(script.body, /https?:\/\//);
    const css = await api.inject('/dashboard.css');
    assert.equal(css.statusCode, 200);
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
    assert.doesNotMatch(css.body, /@import|url\(/);
  });

  it('documents the session and report routes', async () => {
    const spec = (await api.inject('/docs/json')).json() as { paths: Record<string, unknown>; components: { securitySchemes: Record<string, unknown> } };
    for (const p of ['/v1/session', '/v1/jobs/{id}/report']) assert.ok(p in spec.paths, `OpenAPI has no ${p}`);
    assert.ok('session' in spec.components.securitySchemes);
    assert.ok(!Object.keys(spec.paths).some((p) => p.startsWith('/admin') || p === '/dashboard.js'));
  });
});

describe('bull-board at /admin/queues', () => {
  it('answers 401 without credentials and 404 to a tenant', async () => {
    const anon = await api.inject('/admin/queues');
    expectError(anon, 401, 'unauthorized');
    assert.equal(anon.headers['www-authenticate'], 'Bearer');
    expectError(await api.inject({ url: '/admin/queues', headers: { authorization: 'Bearer not-a-key-0123456789' } }), 401, 'unauthorized');
    expectError(await api.inject({ url: '/admin/queues', headers: ALICE }), 404, 'not_found');
    expectError(await api.inject({ url: '/admin/queues/api/queues', headers: ALICE }), 404, 'not_found');
    const alice = await signIn(ALICE_KEY);
    expectError(await api.inject({ url: '/admin/queues/api/queues', headers: { cookie: alice.cookie } }), 404, 'not_found');
  });

  it('shows the queue to the admin key, as Bearer or as a session', async () => {
    const page = await api.inject({ url: '/admin/queues', headers: ADMIN });
    assert.equal(page.statusCode, 200, page.body);
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(page.body, /<base href="\/admin\/queues\/"/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
    const admin = await signIn(ADMIN_KEY);
    assert.equal(admin.body.admin, true);
    const queues = await api.inject({ url: '/admin/queues/api/queues', headers: { cookie: admin.cookie } });
    assert.equal(queues.statusCode, 200, queues.body);
    const names = (queues.json() as { queues: Array<{ name: string; readOnlyMode: boolean }> }).queues;
    assert.deepEqual(
      names.map((q) => [q.name, q.readOnlyMode]),
      [[t.env.IMMUNIZE_QUEUE, true]],
    );
  });
});

describe('session configuration', () => {
  const KEYS = `alice:${ALICE_KEY},bob:${BOB_KEY}`;
  const problems = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env);
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  };

  it('derives a secret from the keys unless one is given, and checks a given one', () => {
    const a = loadConfig({ IMMUNIZE_API_KEYS: KEYS });
    assert.equal(a.sessionSecretGiven, false);
    assert.equal(loadConfig({ IMMUNIZE_API_KEYS: KEYS }).sessionSecret, a.sessionSecret, 'the same keys, the same secret');
    assert.notEqual(loadConfig({ IMMUNIZE_API_KEYS: `alice:${ALICE_KEY}` }).sessionSecret, a.sessionSecret);
    assert.notEqual(loadConfig({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_ADMIN_KEY: ADMIN_KEY }).sessionSecret, a.sessionSecret);
    assert.ok(!a.sessionSecret.includes(ALICE_KEY));
    const given = 's'.repeat(40);
    assert.equal(loadConfig({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_SESSION_SECRET: given }).sessionSecret, given);
    assert.match(problems({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_SESSION_SECRET: 'short' }).join(), /IMMUNIZE_SESSION_SECRET: must be at least 32/);
    assert.match(
      problems({ IMMUNIZE_API_KEYS: `alice:${'k'.repeat(40)}`, IMMUNIZE_SESSION_SECRET: 'k'.repeat(40) }).join(),
      /IMMUNIZE_SESSION_SECRET: must differ/,
    );
  });

  it('reads the session length and the Secure setting', () => {
    const c = loadConfig({ IMMUNIZE_API_KEYS: KEYS });
    assert.equal(c.sessionTtlSeconds, 12 * 3600);
    assert.equal(c.cookieSecure, 'auto');
    assert.equal(loadConfig({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_SESSION_HOURS: '2', IMMUNIZE_COOKIE_SECURE: 'true' }).sessionTtlSeconds, 7200);
    assert.equal(loadConfig({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_COOKIE_SECURE: 'false' }).cookieSecure, 'never');
    assert.match(problems({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_COOKIE_SECURE: 'sometimes' }).join(), /IMMUNIZE_COOKIE_SECURE/);
    assert.match(problems({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_COOKIE_SECURE: 'constructor' }).join(), /IMMUNIZE_COOKIE_SECURE/);
    assert.match(problems({ IMMUNIZE_API_KEYS: KEYS, IMMUNIZE_SESSION_HOURS: '0' }).join(), /IMMUNIZE_SESSION_HOURS/);
  });
});
