import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ORDER = ['models', 'workers', 'services'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

test('imports only go models ← workers ← services', () => {
  const violations: string[] = [];
  for (const layer of ORDER) {
    for (const file of sources(join(ROOT, layer))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/from\s+'(\.[^']+)'/g)) {
        const target = relative(ROOT, resolve(dirname(file), m[1])).split(/[\\/]/)[0];
        if (ORDER.includes(target) && ORDER.indexOf(target) > ORDER.indexOf(layer)) {
          violations.push(`${relative(ROOT, file)} imports ${m[1]}`);
        }
      }
    }
  }
  assert.deepEqual(violations, []);
});

/** Folders whose modules the rest of the project reaches only through the folder's index.ts. */
const SURFACES = ['models/engine', 'models/io'];

test('models/engine and models/io are used through their index only', () => {
  const violations: string[] = [];
  for (const layer of [...ORDER, 'scripts']) {
    for (const file of sources(join(ROOT, layer))) {
      const from = relative(ROOT, dirname(file)).split(/[\\/]/).join('/');
      for (const m of readFileSync(file, 'utf8').matchAll(/from\s+'(\.[^']+)'/g)) {
        const target = relative(ROOT, resolve(dirname(file), m[1]))
          .split(/[\\/]/)
          .join('/');
        for (const surface of SURFACES) {
          const inside = target.startsWith(surface + '/');
          if (inside && from !== surface && target !== `${surface}/index.js`) violations.push(`${relative(ROOT, file)} imports ${m[1]}`);
        }
      }
    }
  }
  assert.deepEqual(violations, []);
});
