/**
 * Queue entries made without building a BullMQ Job for each one. BullMQ's add arguments for two jobs of one queue,
 * with one name and the same options, differ only in the job id (inside the packed arguments and the packed
 * options), the creation time (inside the packed arguments) and the data (JSON). A template learned from an entry
 * BullMQ built splices those three into the bytes BullMQ wrote. It is kept only if, for a second job with another
 * id, time and data, it gives byte for byte what BullMQ gives; otherwise every entry is built by BullMQ, as before.
 * Building the Job costs about 14 µs, the largest part of a submission's own work; the template about 2.
 */
import { writeStrHeader } from './scriptFrame.js';

/** The arguments of BullMQ's standard add script for one job: its keys and its arguments, as BullMQ builds them. */
export interface BullEntry {
  keys: string[];
  args: Array<string | Buffer>;
}

/** Builds a job's entry with BullMQ itself; `timestamp` is the creation time BullMQ gave the job. */
export type BuildEntry = (jobId: string, data: unknown) => BullEntry & { timestamp: number };

type Hole = 'id' | 'time';

/** A buffer with holes: pieces[0], hole 0, pieces[1], hole 1, … pieces[n]. */
interface Pattern {
  pieces: Buffer[];
  holes: Hole[];
}

/** A str of MessagePack, as BullMQ's packer writes a string. */
export function packStr(text: string): Buffer {
  const n = Buffer.byteLength(text);
  const out = Buffer.allocUnsafe(5 + n);
  const o = writeStrHeader(out, 0, n);
  out.write(text, o);
  return out.subarray(0, o + n);
}

/** A float 64 of MessagePack, as BullMQ's packer writes a millisecond time (past 2³² it is no uint32). */
export function packTime(ms: number): Buffer {
  const out = Buffer.allocUnsafe(9);
  out[0] = 0xcb;
  out.writeDoubleBE(ms, 1);
  return out;
}

/** `bytes` cut where `marks` occur (every occurrence; none found leaves no hole); null when two overlap. */
function learnPattern(bytes: Buffer, marks: Partial<Record<Hole, Buffer>>): Pattern | null {
  const found: Array<{ at: number; hole: Hole; length: number }> = [];
  for (const [hole, mark] of Object.entries(marks) as Array<[Hole, Buffer]>) {
    for (let at = bytes.indexOf(mark); at >= 0; at = bytes.indexOf(mark, at + mark.length)) found.push({ at, hole, length: mark.length });
  }
  found.sort((a, b) => a.at - b.at);
  for (let i = 1; i < found.length; i++) if (found[i].at < found[i - 1].at + found[i - 1].length) return null;
  const pieces: Buffer[] = [];
  let from = 0;
  for (const f of found) {
    pieces.push(Buffer.from(bytes.subarray(from, f.at)));
    from = f.at + f.length;
  }
  pieces.push(Buffer.from(bytes.subarray(from)));
  return { pieces, holes: found.map((f) => f.hole) };
}

function fill(p: Pattern, values: Record<Hole, Buffer>): Buffer {
  const parts: Buffer[] = [p.pieces[0]];
  for (let i = 0; i < p.holes.length; i++) parts.push(values[p.holes[i]], p.pieces[i + 1]);
  return Buffer.concat(parts);
}

function sameEntry(a: BullEntry, b: BullEntry): boolean {
  const same = (x: string | Buffer, y: string | Buffer) => (typeof x === 'string' ? x === y : Buffer.isBuffer(y) && x.equals(y));
  return (
    a.keys.length === b.keys.length && a.keys.every((k, i) => k === b.keys[i]) && a.args.length === b.args.length && a.args.every((v, i) => same(v, b.args[i]))
  );
}

/** The job a template is learned from, and the one it is checked against. */
const PROBE = { id: 'probe-3f9c2a7e5d1b', data: { probe: 'first' } };
const CHECK = { id: 'job_check-00000000000000000000000000000000000', data: { tenant: 'check "tenant" ü' } };

export class EntryTemplate {
  private constructor(
    private readonly keys: string[],
    /** Each argument: as it is, the data's JSON, or a pattern to fill. */
    private readonly args: Array<{ fixed: string | Buffer } | { data: true } | { pattern: Pattern }>,
  ) {}

  /**
   * Learns the template from entries BullMQ builds with `build` (two of them: one to learn from, one to check);
   * null when BullMQ's entry is not laid out as expected or the check fails.
   */
  static learn(build: BuildEntry): EntryTemplate | null {
    const probe = build(PROBE.id, PROBE.data);
    const marks = { id: packStr(PROBE.id), time: packTime(probe.timestamp) };
    const dataJson = JSON.stringify(PROBE.data);
    let dataSeen = 0;
    let holesSeen = 0;
    const args: EntryTemplate['args'] = [];
    for (const arg of probe.args) {
      if (arg === dataJson) {
        dataSeen++;
        args.push({ data: true });
      } else if (typeof arg === 'string') args.push({ fixed: arg });
      else {
        const pattern = learnPattern(arg, marks);
        if (pattern === null) return null;
        holesSeen += pattern.holes.length;
        args.push(pattern.holes.length > 0 ? { pattern } : { fixed: arg });
      }
    }
    if (dataSeen !== 1 || holesSeen === 0) return null;
    const template = new EntryTemplate([...probe.keys], args);
    // The check: another id (of another length class) and other data, at the time BullMQ gave it.
    const check = build(CHECK.id, CHECK.data);
    return sameEntry(template.make(CHECK.id, check.timestamp, CHECK.data), check) ? template : null;
  }

  /** The entry of job `jobId` created at `timestamp` (ms) with `data`. */
  make(jobId: string, timestamp: number, data: unknown): BullEntry {
    const values = { id: packStr(jobId), time: packTime(timestamp) };
    const dataJson = JSON.stringify(data);
    return {
      keys: this.keys,
      args: this.args.map((a) => ('fixed' in a ? a.fixed : 'data' in a ? dataJson : fill(a.pattern, values))),
    };
  }
}
