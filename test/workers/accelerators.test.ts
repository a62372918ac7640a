/** The start-up report of a worker's accelerators: why a GPU that was expected is not in use. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { acceleratorReport, deviceProblem, reportLines, type AcceleratorProbes } from '../../workers/accelerators.js';

const GPU_NODES = ['nvidia-uvm', 'nvidia0', 'nvidiactl'];
const SMI_OK = { ok: true as const, gpus: ['NVIDIA H200'] };
const CPU_TF = { name: 'native', note: 'native (tfjs-node-gpu is not installed; tfjs-node is not installed)' };
const CPU_ORT = { provider: 'cpu' as const, note: 'CPU execution provider (no CUDA execution provider installed and no GPU)' };

function probes(over: Partial<AcceleratorProbes> = {}): AcceleratorProbes {
  return {
    env: { IMMUNIZE_EXPECT_GPU: '1' },
    deviceNodes: async () => GPU_NODES,
    nvidiaSmi: async () => SMI_OK,
    tfBackend: async () => CPU_TF,
    ortProvider: async () => CPU_ORT,
    ...over,
  };
}

describe('accelerator report', () => {
  it('says the GPU is in use when both libraries run on it', async () => {
    const r = await acceleratorReport(
      probes({
        tfBackend: async () => ({ name: 'tfjs-node-gpu', note: 'tfjs-node-gpu' }),
        ortProvider: async () => ({ provider: 'cuda', note: 'CUDA execution provider' }),
      }),
      true,
    );
    assert.deepEqual([r.tfjs.gpu, r.onnxruntime.gpu, r.device.problem], [true, true, null]);
    assert.deepEqual(
      reportLines(r).map((l) => l.level),
      ['info', 'info'],
    );
  });

  it('names a missing library', async () => {
    const r = await acceleratorReport(probes(), false);
    assert.equal(r.tfjs.reason, 'library-missing');
    assert.match(r.tfjs.detail!, /tfjs-node-gpu is not installed/);
    assert.equal(r.onnxruntime.reason, 'library-missing');
    assert.match(r.onnxruntime.detail!, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
    const lines = reportLines(r);
    assert.deepEqual(
      lines.map((l) => l.level),
      ['warn', 'warn'],
    );
    assert.match(lines[0].message, /no GPU \(library-missing\)/);
  });

  it('names a missing device: no device node, nvidia-smi failing, or every GPU hidden', async () => {
    const loadFails = { name: 'native', note: 'native (tfjs-node-gpu failed: libcuda.so.1: cannot open shared object file)' };
    const cases: Array<[Partial<AcceleratorProbes>, RegExp]> = [
      [{ deviceNodes: async () => [] }, /no \/dev\/nvidia\* device node/],
      [
        { nvidiaSmi: async () => ({ ok: false, error: 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' }) },
        /nvidia-smi fails: .*driver/,
      ],
      [{ env: { IMMUNIZE_EXPECT_GPU: '1', CUDA_VISIBLE_DEVICES: '' } }, /CUDA_VISIBLE_DEVICES is "": every GPU is hidden/],
    ];
    for (const [over, detail] of cases) {
      const r = await acceleratorReport(probes({ tfBackend: async () => loadFails, ...over }), true);
      assert.equal(r.tfjs.reason, 'no-device', JSON.stringify(over));
      assert.match(r.tfjs.detail!, detail);
      assert.equal(r.onnxruntime.reason, 'no-device');
      assert.equal(r.expectGpu, true);
    }
  });

  it('names a version mismatch with the loader text when the device is there', async () => {
    const r = await acceleratorReport(
      probes({
        tfBackend: async () => ({
          name: 'native',
          note: 'native (tfjs-node-gpu failed: libcudnn.so.8: cannot open shared object file; tfjs-node is not installed)',
        }),
        ortProvider: async () => ({
          provider: 'cpu',
          note: 'CPU execution provider (CUDA failed to start: libcublasLt.so.12: cannot open shared object file)',
        }),
      }),
      true,
    );
    assert.equal(r.tfjs.reason, 'load-failed');
    assert.match(r.tfjs.detail!, /libcudnn\.so\.8: cannot open shared object file.*CUDA 11\.2 and cuDNN 8\.1/);
    assert.equal(r.onnxruntime.reason, 'load-failed');
    assert.match(r.onnxruntime.detail!, /libcublasLt\.so\.12.*CUDA 12 and cuDNN 9/);
  });

  it('on a CPU host nothing is expected and nothing is a warning', async () => {
    const r = await acceleratorReport(
      probes({ env: {}, deviceNodes: async () => [], nvidiaSmi: async () => ({ ok: false, error: 'spawn nvidia-smi ENOENT' }) }),
      false,
    );
    assert.equal(r.expectGpu, false);
    assert.deepEqual(
      reportLines(r).map((l) => l.level),
      ['info', 'info'],
    );
    assert.match(reportLines(r)[0].message, /tfjs backend: native/);
  });

  it('reads the device state on its own', () => {
    assert.equal(deviceProblem(GPU_NODES, SMI_OK, undefined), null);
    assert.equal(deviceProblem(GPU_NODES, SMI_OK, '0'), null);
    assert.match(deviceProblem(GPU_NODES, SMI_OK, '-1')!, /hidden/);
    assert.match(deviceProblem(['nvidiactl'], SMI_OK, undefined)!, /no \/dev\/nvidia\*/);
    assert.match(deviceProblem(GPU_NODES, { ok: true, gpus: [] }, undefined)!, /lists no GPU/);
  });
});
