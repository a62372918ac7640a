/**
 * The dashboard's page and style sheet. They are TypeScript constants so that the build carries them into dist/
 * with the server; the page's script is dashboard.ts, compiled next to this file.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>immunize · jobs</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard.css">
<script type="module" src="/dashboard.js"></script>
</head>
<body>
<header class="top">
  <h1>immunize <span class="sub">jobs</span></h1>
  <div id="who" class="who" hidden>
    <span id="who-name"></span>
    <a id="queues-link" href="/admin/queues" hidden>Queues</a>
    <a href="/docs">API docs</a>
    <button id="sign-out" type="button">Sign out</button>
  </div>
</header>
<main>
  <p id="notice" class="notice" role="status" aria-live="polite"></p>

  <section id="sign-in" class="panel" hidden>
    <h2>Sign in</h2>
    <form id="sign-in-form" class="sign-in">
      <label>API key
        <input id="api-key" name="apiKey" type="password" autocomplete="current-password" required minlength="16" spellcheck="false">
      </label>
      <button type="submit">Sign in</button>
    </form>
    <p class="hint">The key is sent once; this browser then keeps an HttpOnly session cookie until you sign out.</p>
  </section>

  <div id="app" hidden>
    <section id="new-job" class="panel">
      <h2>New job</h2>
      <form id="job-form" novalidate data-kind="features" data-mode="linear-head">
        <fieldset class="kind">
          <legend>What you bring</legend>
          <label class="choice"><input type="radio" name="kind" value="features" checked> Features <span class="hint">(.csv or .npy, one row per sample)</span></label>
          <label class="choice"><input type="radio" name="kind" value="backbone"> A backbone <span class="hint">(.onnx) and images</span></label>
        </fieldset>
        <div class="sides for-backbone" hidden>
          <fieldset>
            <legend>Backbone</legend>
            <label>Model (.onnx)
              <input id="backbone-file" name="backboneFile" type="file" accept=".onnx">
            </label>
            <label>Mode
              <select id="mode" name="mode">
                <option value="linear-head" selected>linear head (θ on the features)</option>
                <option value="last-block">last block (train the backbone's last block)</option>
              </select>
            </label>
            <label class="for-linear-head">Feature tensor <span class="hint">(empty: the input of the classifier)</span>
              <input id="feature-tensor" name="featureTensor" spellcheck="false">
            </label>
            <label class="for-last-block" hidden>Cut tensor <span class="hint">(empty: the input of the last stage or block)</span>
              <input id="cut-tensor" name="cutTensor" spellcheck="false">
            </label>
            <label class="for-last-block" hidden>Time budget <span class="hint">(seconds; empty: 1800)</span>
              <input id="time-budget" name="timeBudgetSeconds" type="number" min="1" step="any" inputmode="decimal">
            </label>
            <label class="for-last-block check" hidden><input id="allow-slow" name="allowSlowBackend" type="checkbox"> Run even when the estimate exceeds the budget</label>
          </fieldset>
          <fieldset>
            <legend>Preprocessing <span class="hint">(PNG/JPEG in a .tar; .npy images come preprocessed)</span></legend>
            <label>Resize <span class="hint">(shorter side; empty: 256, or the model's size ×256/224)</span>
              <input id="pre-resize" name="resize" type="number" min="1" max="4096" step="1" inputmode="numeric">
            </label>
            <label>Crop <span class="hint">(centre square; empty: 224, or the model's input size)</span>
              <input id="pre-crop" name="crop" type="number" min="1" max="4096" step="1" inputmode="numeric">
            </label>
            <label>Mean <span class="hint">(per channel, on [0, 1] pixels)</span>
              <input id="pre-mean" name="mean" placeholder="0.485, 0.456, 0.406" spellcheck="false">
            </label>
            <label>Std <span class="hint">(per channel)</span>
              <input id="pre-std" name="std" placeholder="0.229, 0.224, 0.225" spellcheck="false">
            </label>
          </fieldset>
        </div>
        <div class="sides">
          <fieldset>
            <legend>Benign data <span class="hint">(the task to keep)</span></legend>
            <label>File <span class="hint for-features">(.csv or .npy)</span><span class="hint for-backbone" hidden>(.tar of PNG/JPEG, or an N×C×H×W .npy)</span>
              <input id="benign-file" name="benignFile" type="file" accept=".csv,.npy">
            </label>
            <label>Labels
              <select id="benign-labels-from" name="benignLabelsFrom">
                <option value="column" class="for-features" selected>a column of the .csv</option>
                <option value="folders" class="for-backbone" hidden disabled>class folders inside the .tar (no file)</option>
                <option value="file">a labels file (.npy or one-column .csv)</option>
                <option value="none">none</option>
              </select>
            </label>
            <label class="for-labels-column">Label column
              <input id="benign-label" name="benignLabel" placeholder="e.g. LotArea" spellcheck="false">
            </label>
            <label class="for-labels-file" hidden>Labels file <span class="hint">(one label per row, in the order of the data)</span>
              <input id="benign-labels-file" name="benignLabelsFile" type="file" accept=".npy,.csv">
            </label>
            <label class="for-features">Drop columns
              <input id="benign-drop" name="benignDrop" placeholder="comma-separated, e.g. SalePrice" spellcheck="false">
            </label>
          </fieldset>
          <fieldset>
            <legend>Harmful data <span class="hint">(the task to resist)</span></legend>
            <label>File <span class="hint for-features">(.csv or .npy)</span><span class="hint for-backbone" hidden>(.tar of PNG/JPEG, or an N×C×H×W .npy)</span>
              <input id="harmful-file" name="harmfulFile" type="file" accept=".csv,.npy">
            </label>
            <label>Labels
              <select id="harmful-labels-from" name="harmfulLabelsFrom">
                <option value="column" class="for-features" selected>a column of the .csv</option>
                <option value="folders" class="for-backbone" hidden disabled>class folders inside the .tar (no file)</option>
                <option value="file">a labels file (.npy or one-column .csv)</option>
                <option value="none">none</option>
              </select>
            </label>
            <label class="for-labels-column">Label column
              <input id="harmful-label" name="harmfulLabel" placeholder="e.g. SalePrice" spellcheck="false">
            </label>
            <label class="for-labels-file" hidden>Labels file <span class="hint">(one label per row, in the order of the data)</span>
              <input id="harmful-labels-file" name="harmfulLabelsFile" type="file" accept=".npy,.csv">
            </label>
            <label class="for-features">Drop columns
              <input id="harmful-drop" name="harmfulDrop" placeholder="comma-separated, e.g. LotArea" spellcheck="false">
            </label>
          </fieldset>
          <fieldset>
            <legend>Options</legend>
            <label id="method-field" class="for-linear-head">Method
              <select id="method" name="method">
                <option value="gradient" selected>gradient</option>
                <option value="closed-form">closed-form</option>
                <option value="paper">paper</option>
              </select>
            </label>
            <label>Row limit <span class="hint">(each side; empty: all rows)</span>
              <input id="row-limit" name="rowLimit" type="number" min="2" step="1" inputmode="numeric">
            </label>
            <label>Steps <span class="hint">(empty: the method's default)</span>
              <input id="steps" name="steps" type="number" min="1" step="1" inputmode="numeric">
            </label>
          </fieldset>
        </div>
        <ol id="uploads" class="uploads" aria-label="Uploads" hidden></ol>
        <div class="actions">
          <button id="submit-job" type="submit">Upload and submit</button>
          <span id="submit-state" class="hint" aria-live="polite"></span>
        </div>
      </form>
    </section>

    <section id="jobs" class="panel">
      <div class="jobs-head">
        <h2>Jobs</h2>
        <form id="tenant-form" class="tenant" hidden>
          <label>Tenant <input id="tenant" name="tenant" spellcheck="false" required></label>
          <button type="submit">List</button>
        </form>
        <button id="refresh" type="button">Refresh</button>
      </div>
      <p id="empty" class="hint">No jobs yet.</p>
      <ol id="job-list" class="job-list"></ol>
    </section>
  </div>
</main>
</body>
</html>
`;

export const DASHBOARD_CSS = `
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --panel: #fff; --ink: #1c2330; --muted: #5d6878; --line: #d9dee6; --accent: #2357c6;
  --ok: #1c7c43; --bad: #b3261e; --warn: #8a5a00;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 16px; line-height: 1.45;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #12161c; --panel: #1b2129; --ink: #e4e8ee; --muted: #9aa5b4; --line: #303946; --accent: #7aa2ff;
    --ok: #5cc48a; --bad: #ff8a80; --warn: #e0b050; }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); color: var(--ink); }
header.top { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; justify-content: space-between;
  padding: .75rem 1.25rem; background: var(--panel); border-bottom: 1px solid var(--line); }
h1 { font-size: 1.25rem; margin: 0; }
h1 .sub { color: var(--muted); font-weight: 400; }
h2 { font-size: 1.1rem; margin: 0 0 .75rem; }
.who { display: flex; flex-wrap: wrap; gap: .4rem .9rem; align-items: center; min-width: 0; }
#who-name { font-weight: 600; overflow-wrap: anywhere; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: .5rem; padding: 1rem; margin-bottom: 1rem; }
.hint { color: var(--muted); font-size: .875rem; font-weight: 400; }
.notice:empty { display: none; }
.notice { padding: .6rem .8rem; border-radius: .4rem; border: 1px solid var(--line); background: var(--panel); margin: 0 0 1rem; }
.notice.error { border-color: var(--bad); color: var(--bad); }
a { color: var(--accent); }
label { display: flex; flex-direction: column; gap: .25rem; font-size: .9rem; margin-bottom: .65rem; min-width: 0; }
input, select, button { font: inherit; max-width: 100%; }
input:not([type=file]), select { width: 100%; padding: .4rem .5rem; border: 1px solid var(--line); border-radius: .3rem;
  background: var(--bg); color: var(--ink); }
input[type=file] { width: 100%; }
button { padding: .45rem .9rem; border-radius: .3rem; border: 1px solid var(--accent); background: var(--accent); color: #fff;
  cursor: pointer; }
button:disabled { opacity: .6; cursor: progress; }
button.quiet { background: transparent; color: var(--accent); }
.sign-in { display: flex; flex-wrap: wrap; gap: .75rem; align-items: flex-end; }
.sign-in label { flex: 1 1 16rem; margin: 0; }
.sides { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 17rem), 1fr)); gap: 1rem; }
fieldset { border: 1px solid var(--line); border-radius: .4rem; margin: 0; padding: .75rem; min-width: 0; }
legend { font-weight: 600; padding: 0 .3rem; }
.actions { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin-top: .5rem; }
.jobs-head { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; margin-bottom: .5rem; }
.jobs-head h2 { margin: 0; margin-right: auto; }
.tenant { display: flex; gap: .5rem; align-items: flex-end; }
.tenant label { flex-direction: row; align-items: center; margin: 0; }
.job-list { list-style: none; margin: 0; padding: 0; display: grid; gap: .75rem; }
.job { border: 1px solid var(--line); border-radius: .4rem; padding: .75rem; min-width: 0; }
.job-top { display: flex; flex-wrap: wrap; gap: .3rem .75rem; align-items: baseline; }
.job-id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9rem; overflow-wrap: anywhere; }
.when { color: var(--muted); font-size: .85rem; margin-left: auto; }
.status { font-size: .8rem; font-weight: 600; text-transform: uppercase; letter-spacing: .03em; padding: .05rem .45rem;
  border-radius: 1rem; border: 1px solid currentColor; }
.status.s-completed { color: var(--ok); }
.status.s-failed { color: var(--bad); }
.status.s-cancelled { color: var(--muted); }
.status.s-running, .status.s-queued { color: var(--warn); }
.bar { display: flex; gap: .6rem; align-items: center; margin: .5rem 0 .25rem; }
.bar progress { flex: 1; height: .7rem; min-width: 0; accent-color: var(--accent); }
.pct { font-variant-numeric: tabular-nums; font-size: .85rem; min-width: 3.2rem; text-align: right; }
.stage, .spec, .summary, .error { margin: .2rem 0; font-size: .875rem; overflow-wrap: anywhere; }
.stage, .spec { color: var(--muted); }
.error { color: var(--bad); }
.links { display: flex; flex-wrap: wrap; gap: .35rem .9rem; margin-top: .4rem; font-size: .9rem; align-items: center; }
.links .report { font-weight: 600; }
fieldset.kind { display: flex; flex-wrap: wrap; gap: .25rem 1.5rem; margin-bottom: 1rem; }
label.choice, label.check { flex-direction: row; align-items: baseline; gap: .45rem; margin: .2rem 0; }
label.choice input, label.check input { flex: none; width: auto; }
.sides + .sides { margin-top: 1rem; }
.uploads { list-style: none; margin: 1rem 0 0; padding: 0; display: grid; gap: .4rem; }
.upload { display: grid; grid-template-columns: minmax(0, 14rem) minmax(4rem, 1fr) 3.2rem; gap: .15rem .6rem; align-items: center;
  font-size: .875rem; }
.upload .file { overflow-wrap: anywhere; }
.upload progress { width: 100%; height: .6rem; accent-color: var(--accent); }
.upload .note { grid-column: 1 / -1; color: var(--muted); overflow-wrap: anywhere; }
.upload[data-state=failed] .note { color: var(--bad); }
.upload[data-state=done] .note { color: var(--ok); }
@media (max-width: 30rem) { .upload { grid-template-columns: minmax(0, 1fr) 3.2rem; } .upload progress { grid-column: 1 / -1; grid-row: 2; } }
.phases { list-style: none; display: flex; flex-wrap: wrap; gap: .3rem; margin: .4rem 0 .2rem; padding: 0; font-size: .8rem; }
.phases li { padding: .05rem .5rem; border-radius: 1rem; border: 1px solid var(--line); color: var(--muted); }
.phases li[data-state=done] { color: var(--ok); border-color: currentColor; }
.phases li[data-state=current] { color: var(--accent); border-color: currentColor; font-weight: 600; }
.phase { font-weight: 600; color: var(--ink); }
`;
