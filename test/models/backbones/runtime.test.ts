import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createSession, cudaAvailability } from '../../../models/backbones/runtime.js';
import { smallResnet } from '../../helpers/backbones.js';

it('picks the CPU when CUDA is not installed, says why, and falls back when CUDA is asked for', async (t) => {
  const cuda = cudaAvailability();
  if (cuda.installed && cuda.gpu) {
    t.skip('this host has the CUDA execution provider and a GPU');
    return;
  }
  const model = smallResnet().model.bytes;
  const logs: string[] = [];
  const auto = await createSession(model, { log: (m) => logs.push(m), threads: 1 });
  assert.equal(auto.provider, 'cpu');
  assert.match(auto.note, /CPU execution provider \((no CUDA|a GPU is present but|no NVIDIA GPU)/);
  assert.match(logs[0], /^onnxruntime: CPU execution provider .*1 threads$/);
  await auto.session.release();
  const asked = await createSession(model, { executionProvider: 'cuda', log: (m) => logs.push(m) });
  assert.equal(asked.provider, 'cpu');
  assert.ok(
    logs.some((m) => /CUDA was asked for but .*; using the CPU/.test(m)),
    logs.join('\n'),
  );
  await asked.session.release();
});
