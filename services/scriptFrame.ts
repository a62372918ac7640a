/**
 * A script's keys and arguments sent as one argument: a MessagePack array of strings, which the script unpacks with
 * Redis's own cmsgpack. The client builds a command that holds any binary argument in a mode that copies every
 * argument into a buffer several times over; one frame, written once, costs a fraction of that for a command with
 * dozens of arguments. Items are written as MessagePack str (cmsgpack reads no bin type; a str carries any bytes).
 */

/** Lua that replaces KEYS and ARGV by the frame's, for a script called with no keys and the frame as ARGV[1]. */
export const UNFRAME_LUA = `local frame = cmsgpack.unpack(ARGV[1])
local frameKeys = tonumber(frame[1])
local KEYS, ARGV = {unpack(frame, 2, 1 + frameKeys)}, {unpack(frame, 2 + frameKeys)}
`;

function strHeaderSize(n: number): number {
  return n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** Writes the header of a MessagePack str of `n` bytes at `o`; returns the offset after it. */
export function writeStrHeader(out: Buffer, o: number, n: number): number {
  if (n < 32) out[o++] = 0xa0 | n;
  else if (n < 0x100) {
    out[o++] = 0xd9;
    out[o++] = n;
  } else if (n < 0x10000) {
    out[o++] = 0xda;
    o = out.writeUInt16BE(n, o);
  } else {
    out[o++] = 0xdb;
    o = out.writeUInt32BE(n, o);
  }
  return o;
}

/** The frame of `keys` and `args` (strings as UTF-8, buffers as they are). */
export function scriptFrame(keys: readonly string[], args: ReadonlyArray<string | Buffer>): Buffer {
  const items: Array<string | Buffer> = [String(keys.length), ...keys, ...args];
  const sizes = items.map((it) => (typeof it === 'string' ? Buffer.byteLength(it) : it.length));
  const count = items.length;
  let total = count < 16 ? 1 : count < 0x10000 ? 3 : 5;
  for (const n of sizes) total += strHeaderSize(n) + n;
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  if (count < 16) out[o++] = 0x90 | count;
  else if (count < 0x10000) {
    out[o++] = 0xdc;
    o = out.writeUInt16BE(count, o);
  } else {
    out[o++] = 0xdd;
    o = out.writeUInt32BE(count, o);
  }
  for (let i = 0; i < count; i++) {
    o = writeStrHeader(out, o, sizes[i]);
    const it = items[i];
    o += typeof it === 'string' ? out.write(it, o) : it.copy(out, o);
  }
  return out;
}
