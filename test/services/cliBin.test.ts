import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// npx, `npm install -g` and node_modules/.bin start the CLI through symlinks: the package folder is linked into
// node_modules (global installs of a folder) and .bin/immunize links to the package's bin file. The CLI must run
// when started that way, not only as `node dist/services/cli/main.js`.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const MAIN = join(ROOT, 'dist', 'services', 'cli', 'main.js');

function run(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    // The kernel runs `#!/usr/bin/env node <script>` for an executable script; passing the link to node directly
    // gives the program the same argv[1] (the link's path) without needing the execute bit on the build output.
    execFile(process.execPath, [script, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

async function linkedLikeNpm(): Promise<{ dir: string; bin: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'immunize-bin-'));
  await mkdir(join(dir, 'node_modules', '.bin'), { recursive: true });
  await symlink(ROOT, join(dir, 'node_modules', 'immunize'), 'dir');
  const bin = join(dir, 'node_modules', '.bin', 'immunize');
  await symlink(join('..', 'immunize', 'dist', 'services', 'cli', 'main.js'), bin);
  return { dir, bin };
}

test('the bin file starts with a node shebang', async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'));
  assert.equal(pkg.bin.immunize, 'dist/services/cli/main.js');
  const first = (await readFile(MAIN, 'utf8')).split('\n', 1)[0];
  assert.equal(first, '#!/usr/bin/env node');
});

test('through a bin symlink, --help prints the usage and exits 0', async () => {
  const { dir, bin } = await linkedLikeNpm();
  try {
    const r = await run(bin, ['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage:/m);
    assert.match(r.stdout, /immunize run/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('through a bin symlink, an unknown command fails with an error on stderr', async () => {
  const { dir, bin } = await linkedLikeNpm();
  try {
    const r = await run(bin, ['bogus']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^immunize: .*bogus/m);
    assert.equal(r.stdout, '');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('through a direct symlink to the bin file, --help runs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'immunize-bin-'));
  try {
    const link = join(dir, 'immunize');
    await symlink(MAIN, link);
    const r = await run(link, ['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage:/m);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a reader that stops early (| head) stops the CLI with exit code 141 and no stack trace', async () => {
  const out = await mkdtemp(join(tmpdir(), 'immunize-pipe-'));
  try {
    const child = spawn(process.execPath, [MAIN, 'demo', 'house-price', '--json', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    // Like `head -n 1`: the first line, then the reader goes away.
    child.stdout.once('data', () => child.stdout.destroy());
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    assert.equal(signal, null);
    assert.equal(code, 141, stderr);
    assert.doesNotMatch(stderr, /EPIPE|\n\s+at /, 'no error and no stack trace');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
