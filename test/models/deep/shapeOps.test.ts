/**
 * Shape arithmetic on integers, as the tail interpreter runs the Shape subgraphs of a dynamic-batch export: each
 * operator against the value ONNX defines for it, and a whole view-shape subgraph through the tail interpreter.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeProto } from '../../../models/backbones/onnxProto.js';
import { isDeepError } from '../../../models/deep/errors.js';
import { SHAPE_OPS, shapeValue, type IntValue } from '../../../models/deep/shapeOps.js';
import { attr } from '../../../scripts/fixtures/onnxBuilder.js';

const node = (opType: string, attribute: NodeProto['attribute'] = []): NodeProto => ({ name: 'n', opType, attribute });
const vec = (...values: number[]): IntValue => ({ values, dims: [values.length] });
const scalar = (v: number): IntValue => ({ values: [v], dims: [] });
const run = (op: string, inputs: IntValue[], attributes: NodeProto['attribute'] = []) => SHAPE_OPS[op](node(op, attributes), inputs);

describe('shape values', () => {
  it('Shape, with the start and end of opset 15', () => {
    assert.deepEqual(shapeValue(node('Shape'), [4, 197, 768]), vec(4, 197, 768));
    assert.deepEqual(shapeValue(node('Shape', [attr.int('start', -1)]), [4, 197, 64]), vec(64));
    assert.deepEqual(shapeValue(node('Shape', [attr.int('start', 1), attr.int('end', 2)]), [4, 197, 64]), vec(197));
  });

  it('Gather, Unsqueeze, Concat and Mul build a view shape', () => {
    const shape = vec(197, 4, 768);
    const L = run('Gather', [shape, scalar(0)], [attr.int('axis', 0)])!;
    const N = run('Gather', [shape, scalar(-2)], [attr.int('axis', 0)])!;
    assert.deepEqual(L, scalar(197));
    assert.deepEqual(N, scalar(4));
    const NH = run('Mul', [N, scalar(12)])!;
    const parts = [L, NH].map((v) => run('Unsqueeze', [v, vec(0)])!);
    assert.deepEqual(parts[0], vec(197));
    assert.deepEqual(run('Concat', [...parts, vec(64)], [attr.int('axis', 0)]), vec(197, 48, 64));
  });

  it('integer Div truncates, Slice clamps, Squeeze drops ones, Cast keeps integers', () => {
    assert.deepEqual(run('Div', [vec(7, -7), scalar(2)]), vec(3, -3));
    assert.deepEqual(run('Slice', [vec(4, 12, 197, 64), vec(-1), vec(Number.MAX_SAFE_INTEGER)]), vec(64));
    assert.deepEqual(run('Slice', [vec(4, 12, 197, 64), vec(1), vec(3)]), vec(12, 197));
    assert.deepEqual(run('Squeeze', [{ values: [5], dims: [1] }]), scalar(5));
    assert.deepEqual(run('Cast', [vec(3)], [attr.int('to', 7)]), vec(3));
    assert.equal(run('Cast', [vec(3)], [attr.int('to', 1)]), null, 'a Cast to float leaves the integers');
  });

  it('Equal, Where, Range and ConstantOfShape', () => {
    assert.deepEqual(run('Equal', [vec(0, 5, -1), scalar(-1)]), vec(0, 0, 1));
    assert.deepEqual(run('Where', [vec(0, 1, 0), vec(7, 8, 9), scalar(-1)]), vec(-1, 8, -1));
    assert.deepEqual(run('Range', [scalar(0), scalar(7), scalar(3)]), vec(0, 3, 6));
    assert.deepEqual(run('ConstantOfShape', [vec(2, 2)]), { values: [0, 0, 0, 0], dims: [2, 2] });
  });

  it('refuses what it cannot do with a clear error', () => {
    assert.throws(
      () => run('Gather', [vec(1, 2), scalar(5)], [attr.int('axis', 0)]),
      (e) => isDeepError(e, 'TAIL_SHAPE'),
    );
    assert.throws(
      () => run('Div', [vec(4), scalar(0)]),
      (e) => isDeepError(e, 'UNSUPPORTED_OPERATOR'),
    );
    assert.throws(
      () => run('Add', [vec(1, 2), vec(1, 2, 3)]),
      (e) => isDeepError(e, 'UNSUPPORTED_OPERATOR'),
    );
    assert.throws(
      () => run('Concat', [{ values: [1, 2], dims: [1, 2] }]),
      (e) => isDeepError(e, 'UNSUPPORTED_OPERATOR'),
    );
  });
});
