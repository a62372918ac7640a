/**
 * The ONNX protobuf schema (onnx.proto, IR version 10) written out for protobufjs, and the few helpers the
 * graph code needs to read and build tensors.
 *
 * Messages this project never looks inside (functions, training info, sparse tensors, non-tensor types,
 * quantization annotations) are declared as raw bytes: a length-delimited field decodes to its bytes and
 * encodes back unchanged, so a model survives decode → edit → encode with those parts intact.
 */
import protobuf from 'protobufjs';

const unpacked = { packed: false };
const packed = { packed: true };

const SCHEMA = {
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
            producerName: { type: 'string', id: 2 },
            producerVersion: { type: 'string', id: 3 },
            domain: { type: 'string', id: 4 },
            modelVersion: { type: 'int64', id: 5 },
            docString: { type: 'string', id: 6 },
            graph: { type: 'GraphProto', id: 7 },
            metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 14 },
            trainingInfo: { rule: 'repeated', type: 'bytes', id: 20 },
            functions: { rule: 'repeated', type: 'bytes', id: 25 },
            configuration: { rule: 'repeated', type: 'bytes', id: 26 },
          },
        },
        OperatorSetIdProto: { fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } } },
        StringStringEntryProto: { fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            sparseInitializer: { rule: 'repeated', type: 'bytes', id: 15 },
            docString: { type: 'string', id: 10 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
            valueInfo: { rule: 'repeated', type: 'ValueInfoProto', id: 13 },
            quantizationAnnotation: { rule: 'repeated', type: 'bytes', id: 14 },
            metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 16 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            domain: { type: 'string', id: 7 },
            overload: { type: 'string', id: 8 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
            docString: { type: 'string', id: 6 },
            metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 9 },
            deviceConfigurations: { rule: 'repeated', type: 'bytes', id: 10 },
          },
        },
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            refAttrName: { type: 'string', id: 21 },
            docString: { type: 'string', id: 13 },
            type: { type: 'int32', id: 20 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            s: { type: 'bytes', id: 4 },
            t: { type: 'TensorProto', id: 5 },
            g: { type: 'GraphProto', id: 6 },
            sparseTensor: { type: 'bytes', id: 22 },
            tp: { type: 'bytes', id: 14 },
            floats: { rule: 'repeated', type: 'float', id: 7, options: unpacked },
            ints: { rule: 'repeated', type: 'int64', id: 8, options: unpacked },
            strings: { rule: 'repeated', type: 'bytes', id: 9 },
            tensors: { rule: 'repeated', type: 'TensorProto', id: 10 },
            graphs: { rule: 'repeated', type: 'GraphProto', id: 11 },
            sparseTensors: { rule: 'repeated', type: 'bytes', id: 23 },
            typeProtos: { rule: 'repeated', type: 'bytes', id: 15 },
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1, options: unpacked },
            dataType: { type: 'int32', id: 2 },
            segment: { type: 'bytes', id: 3 },
            floatData: { rule: 'repeated', type: 'float', id: 4, options: packed },
            int32Data: { rule: 'repeated', type: 'int32', id: 5, options: packed },
            stringData: { rule: 'repeated', type: 'bytes', id: 6 },
            int64Data: { rule: 'repeated', type: 'int64', id: 7, options: packed },
            name: { type: 'string', id: 8 },
            docString: { type: 'string', id: 12 },
            rawData: { type: 'bytes', id: 9 },
            externalData: { rule: 'repeated', type: 'StringStringEntryProto', id: 13 },
            dataLocation: { type: 'int32', id: 14 },
            doubleData: { rule: 'repeated', type: 'double', id: 10, options: packed },
            uint64Data: { rule: 'repeated', type: 'uint64', id: 11, options: packed },
            metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 16 },
          },
        },
        ValueInfoProto: {
          fields: {
            name: { type: 'string', id: 1 },
            type: { type: 'TypeProto', id: 2 },
            docString: { type: 'string', id: 3 },
            metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 4 },
          },
        },
        TypeProto: {
          fields: {
            tensorType: { type: 'TypeProto.Tensor', id: 1 },
            sequenceType: { type: 'bytes', id: 4 },
            mapType: { type: 'bytes', id: 5 },
            optionalType: { type: 'bytes', id: 9 },
            sparseTensorType: { type: 'bytes', id: 8 },
            denotation: { type: 'string', id: 6 },
          },
          nested: {
            Tensor: { fields: { elemType: { type: 'int32', id: 1 }, shape: { type: 'TensorShapeProto', id: 2 } } },
          },
        },
        TensorShapeProto: {
          fields: { dim: { rule: 'repeated', type: 'TensorShapeProto.Dimension', id: 1 } },
          nested: {
            Dimension: {
              fields: { dimValue: { type: 'int64', id: 1 }, dimParam: { type: 'string', id: 2 }, denotation: { type: 'string', id: 3 } },
            },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(SCHEMA);
const ModelType = root.lookupType('onnx.ModelProto');

/** int64 fields decode to Long objects (protobufjs ships long.js); new ones may be plain numbers. */
export type Int64 = number | { toNumber(): number };

export interface Dimension {
  dimValue?: Int64;
  dimParam?: string;
  denotation?: string;
}

export interface TypeProto {
  tensorType?: { elemType?: number; shape?: { dim?: Dimension[] } };
  [other: string]: unknown;
}

export interface ValueInfoProto {
  name?: string;
  type?: TypeProto;
  docString?: string;
}

export interface TensorProto {
  dims?: Int64[];
  dataType?: number;
  name?: string;
  rawData?: Uint8Array;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: Int64[];
  doubleData?: number[];
  dataLocation?: number;
  externalData?: Array<{ key?: string; value?: string }>;
  [other: string]: unknown;
}

export interface AttributeProto {
  name?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  floats?: number[];
  ints?: Int64[];
  [other: string]: unknown;
}

export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  opType?: string;
  domain?: string;
  attribute?: AttributeProto[];
  [other: string]: unknown;
}

export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  input?: ValueInfoProto[];
  output?: ValueInfoProto[];
  valueInfo?: ValueInfoProto[];
  [other: string]: unknown;
}

export interface ModelProto {
  irVersion?: Int64;
  opsetImport?: Array<{ domain?: string; version?: Int64 }>;
  producerName?: string;
  producerVersion?: string;
  graph?: GraphProto;
  [other: string]: unknown;
}

export const DataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, FLOAT16: 10, DOUBLE: 11 } as const;

export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

const DTYPE_NAMES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
};

export function dtypeName(code: number | undefined): string {
  return code === undefined ? 'unknown' : (DTYPE_NAMES[code] ?? `type ${code}`);
}

/** Throws whatever protobufjs throws; callers turn that into a BackboneError. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  return ModelType.decode(bytes) as unknown as ModelProto;
}

export function encodeModel(model: ModelProto): Uint8Array {
  return ModelType.encode(model as unknown as protobuf.Message).finish();
}

export function int(v: Int64 | undefined | null): number {
  if (v === undefined || v === null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

/** True when a decoded message really carries the field (protobufjs keeps defaults on the prototype). */
export function has(message: object, field: string): boolean {
  return Object.prototype.hasOwnProperty.call(message, field);
}

export function dimsOf(t: TensorProto): number[] {
  return (t.dims ?? []).map(int);
}

/** The values of a FLOAT tensor, copied into an aligned Float32Array; null for another element type. */
export function floatValues(t: TensorProto): Float32Array | null {
  if (t.dataType !== DataType.FLOAT) return null;
  const count = dimsOf(t).reduce((a, b) => a * b, 1);
  if (t.rawData && t.rawData.byteLength > 0) {
    if (t.rawData.byteLength !== count * 4) return null;
    const out = new Float32Array(count);
    new Uint8Array(out.buffer).set(t.rawData);
    return out;
  }
  if (t.floatData && t.floatData.length === count) return Float32Array.from(t.floatData);
  return null;
}

/** Integer values of an INT64 or INT32 tensor (Reshape shapes, Gather indices), or null. */
export function intValues(t: TensorProto): number[] | null {
  const count = dimsOf(t).reduce((a, b) => a * b, 1);
  if (t.dataType === DataType.INT64) {
    if (t.rawData && t.rawData.byteLength === count * 8) {
      const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
      return Array.from({ length: count }, (_, i) => Number(view.getBigInt64(i * 8, true)));
    }
    return t.int64Data && t.int64Data.length === count ? t.int64Data.map(int) : null;
  }
  if (t.dataType === DataType.INT32) {
    if (t.rawData && t.rawData.byteLength === count * 4) {
      const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
      return Array.from({ length: count }, (_, i) => view.getInt32(i * 4, true));
    }
    return t.int32Data && t.int32Data.length === count ? t.int32Data : null;
  }
  return null;
}

function rawBytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

export function floatTensor(name: string, dims: number[], values: Float32Array): TensorProto {
  return { name, dims, dataType: DataType.FLOAT, rawData: rawBytes(values) };
}

export function int64Tensor(name: string, dims: number[], values: number[]): TensorProto {
  return { name, dims, dataType: DataType.INT64, rawData: rawBytes(BigInt64Array.from(values.map(BigInt))) };
}

/** A float32 value info; a string dimension is symbolic (e.g. the batch), a number fixed, null unknown. */
export function floatValueInfo(name: string, shape?: Array<number | string | null>): ValueInfoProto {
  const dims = shape?.map((d): Dimension => (typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {}));
  return { name, type: { tensorType: dims ? { elemType: DataType.FLOAT, shape: { dim: dims } } : { elemType: DataType.FLOAT } } };
}

export function shapeOf(v: ValueInfoProto | undefined): Array<number | string | null> | null {
  const shape = v?.type?.tensorType?.shape;
  if (!shape) return null;
  return (shape.dim ?? []).map((d) => (has(d, 'dimValue') ? int(d.dimValue) : has(d, 'dimParam') ? (d.dimParam ?? null) : null));
}

export function attribute(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function intAttribute(node: NodeProto, name: string, fallback: number): number {
  const a = attribute(node, name);
  return a && has(a, 'i') ? int(a.i) : fallback;
}
