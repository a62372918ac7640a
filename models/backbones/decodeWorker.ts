/**
 * The decode thread: image files become preprocessed float32 batches here, so that decoding overlaps inference
 * (onnxruntime-node runs a batch synchronously on the calling thread, which would hold every decode callback).
 * Batch buffers travel by transfer, never by copy.
 */
import { parentPort } from 'node:worker_threads';
import { DataError } from '../io/index.js';
import { decodeBatch, ItemReader, type EncodedItem, type Preprocess } from './decode.js';
import { BackboneError } from './errors.js';

export interface DecodeRequest {
  id: number;
  items: EncodedItem[];
  pre: Preprocess;
  channels: number;
  buffer: ArrayBuffer;
}

export type DecodeReply =
  { id: number; buffer: ArrayBuffer } | { id: number; buffer: ArrayBuffer; error: { kind: 'backbone' | 'data' | 'other'; code: string; message: string } };

const port = parentPort;
if (!port) throw new Error('decodeWorker must run in a worker thread');
const reader = new ItemReader();

port.on('message', async (req: DecodeRequest | 'close') => {
  if (req === 'close') {
    await reader.close();
    port.close();
    return;
  }
  try {
    await decodeBatch(req.items, reader, req.pre, req.channels, new Float32Array(req.buffer));
    port.postMessage({ id: req.id, buffer: req.buffer } satisfies DecodeReply, [req.buffer]);
  } catch (err) {
    const kind = err instanceof BackboneError ? 'backbone' : err instanceof DataError ? 'data' : 'other';
    const code = err instanceof BackboneError ? err.reason : err instanceof DataError ? err.code : 'ERROR';
    const message = err instanceof Error ? err.message : String(err);
    port.postMessage({ id: req.id, buffer: req.buffer, error: { kind, code, message } } satisfies DecodeReply, [req.buffer]);
  }
});
