/**
 * Shape arithmetic in plain integers. torch.onnx.export writes the reshapes of a dynamic-batch graph as small
 * subgraphs (Shape → Gather → Unsqueeze → Concat → Reshape, Mul for batch × heads); the tail interpreter runs them
 * here, on the shapes of the tensors it actually has, and hands the results to Reshape, Expand and the like as if
 * they were constants.
 */
import { attribute, int, intAttribute, intValues, type NodeProto } from '../backbones/onnxProto.js';
import { DeepError } from './errors.js';

/** An integer tensor: its values, row-major, and its dims ([] for a scalar). */
export interface IntValue {
  values: number[];
  dims: number[];
}

const INTEGER_TYPES = new Set([2, 3, 4, 5, 6, 7, 9, 12, 13]); // uint8…int64, bool, uint32, uint64

function count(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function axisOf(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function attrInts(node: NodeProto, name: string): number[] | null {
  const a = attribute(node, name);
  return a?.ints && a.ints.length > 0 ? a.ints.map(int) : null;
}

function unsupported(node: NodeProto, what: string): never {
  throw new DeepError('UNSUPPORTED_OPERATOR', `${node.opType} "${node.name ?? ''}" on shape values: ${what} is not supported in last-block mode`);
}

/** Elementwise with numpy broadcasting between a scalar or a vector and a scalar or a vector of the same length. */
function elementwise(node: NodeProto, a: IntValue, b: IntValue, f: (x: number, y: number) => number): IntValue {
  const n = Math.max(a.values.length, b.values.length);
  if (a.values.length !== n && a.values.length !== 1) unsupported(node, `operands of ${a.values.length} and ${b.values.length} values`);
  if (b.values.length !== n && b.values.length !== 1) unsupported(node, `operands of ${a.values.length} and ${b.values.length} values`);
  const values = Array.from({ length: n }, (_, i) => f(a.values[a.values.length === 1 ? 0 : i], b.values[b.values.length === 1 ? 0 : i]));
  return { values, dims: a.dims.length >= b.dims.length ? a.dims : b.dims };
}

/** The Shape operator (with opset 15's start/end) on a tensor of known shape. */
export function shapeValue(node: NodeProto, shape: readonly number[]): IntValue {
  const rank = shape.length;
  const clamp = (v: number) => Math.max(0, Math.min(rank, v < 0 ? v + rank : v));
  const start = clamp(intAttribute(node, 'start', 0));
  const endAttr = attribute(node, 'end');
  const end = endAttr ? clamp(intAttribute(node, 'end', rank)) : rank;
  const values = shape.slice(start, Math.max(start, end)).map(Number);
  return { values, dims: [values.length] };
}

type ShapeOp = (node: NodeProto, x: IntValue[]) => IntValue | null;

/**
 * Integer versions of the operators that shape subgraphs use; null means "not an integer result" (a Cast to float,
 * say), and the tensor version runs instead.
 */
export const SHAPE_OPS: Record<string, ShapeOp> = {
  Identity: (_node, [x]) => x,
  Cast: (node, [x]) => (INTEGER_TYPES.has(intAttribute(node, 'to', 1)) ? x : null),
  Add: (node, [a, b]) => elementwise(node, a, b, (x, y) => x + y),
  Sub: (node, [a, b]) => elementwise(node, a, b, (x, y) => x - y),
  Mul: (node, [a, b]) => elementwise(node, a, b, (x, y) => x * y),
  // Integer Div truncates toward zero in ONNX.
  Div: (node, [a, b]) => elementwise(node, a, b, (x, y) => (y === 0 ? unsupported(node, 'division by zero') : Math.trunc(x / y))),
  Equal: (node, [a, b]) => elementwise(node, a, b, (x, y) => (x === y ? 1 : 0)),
  Where: (node, [c, a, b]) => {
    const n = Math.max(c.values.length, a.values.length, b.values.length);
    if ([c, a, b].some((v) => v.values.length !== n && v.values.length !== 1)) unsupported(node, 'operands of different lengths');
    const at = (v: IntValue, i: number) => v.values[v.values.length === 1 ? 0 : i];
    const dims = [c, a, b].reduce((best, v) => (v.dims.length > best.length ? v.dims : best), [] as number[]);
    return { values: Array.from({ length: n }, (_, i) => (at(c, i) ? at(a, i) : at(b, i))), dims };
  },
  Gather: (node, [data, indices]) => {
    if (data.dims.length !== 1) unsupported(node, `data of rank ${data.dims.length}`);
    const n = data.values.length;
    const values = indices.values.map((i) => {
      const k = i < 0 ? i + n : i;
      if (k < 0 || k >= n) throw new DeepError('TAIL_SHAPE', `Gather "${node.name ?? ''}": index ${i} is out of range for ${n} shape values`);
      return data.values[k];
    });
    return { values, dims: indices.dims };
  },
  Unsqueeze: (node, [x, axesInput]) => {
    const axes = attrInts(node, 'axes') ?? axesInput?.values ?? unsupported(node, 'no axes');
    const rank = x.dims.length + axes.length;
    const dims = [...x.dims];
    for (const a of axes.map((v) => axisOf(v, rank)).sort((p, q) => p - q)) dims.splice(a, 0, 1);
    return { values: x.values, dims };
  },
  Squeeze: (node, [x, axesInput]) => {
    const axes = (attrInts(node, 'axes') ?? axesInput?.values)?.map((a) => axisOf(a, x.dims.length));
    const dims = x.dims.filter((d, i) => (axes ? !axes.includes(i) : d !== 1));
    return { values: x.values, dims };
  },
  Concat: (node, parts) => {
    if (parts.some((p) => p.dims.length !== 1)) unsupported(node, 'operands that are not vectors');
    const values = parts.flatMap((p) => p.values);
    return { values, dims: [values.length] };
  },
  Slice: (node, [x, starts, ends, axes, steps]) => {
    if (x.dims.length !== 1) unsupported(node, `data of rank ${x.dims.length}`);
    if ((axes && axes.values.some((a) => axisOf(a, 1) !== 0)) || (steps && steps.values.some((s) => s !== 1)))
      unsupported(node, 'axes or steps other than 0 and 1');
    const n = x.values.length;
    const clamp = (v: number) => Math.max(0, Math.min(n, v < 0 ? v + n : v));
    const values = x.values.slice(clamp(starts.values[0]), Math.max(clamp(starts.values[0]), clamp(ends.values[0])));
    return { values, dims: [values.length] };
  },
  Range: (node, [start, limit, delta]) => {
    const [s, l, d] = [start.values[0], limit.values[0], delta.values[0]];
    if (d === 0) unsupported(node, 'a zero step');
    const values: number[] = [];
    for (let v = s; d > 0 ? v < l : v > l; v += d) values.push(v);
    return { values, dims: [values.length] };
  },
  ConstantOfShape: (node, [shape]) => {
    const value = attribute(node, 'value')?.t;
    if (value && !INTEGER_TYPES.has(value.dataType ?? 1)) return null;
    const fill = value ? (intValues(value)?.[0] ?? unsupported(node, 'an unreadable value')) : 0;
    return { values: new Array(count(shape.values)).fill(fill), dims: shape.values };
  },
};
