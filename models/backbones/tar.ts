/**
 * An index of the regular files in an uncompressed tar archive (POSIX ustar, with pax and GNU long names), read by
 * walking the 512-byte headers; file contents are then read in place by offset, so an archive of any size costs
 * memory only for the entries' names.
 */
import type { FileHandle } from 'node:fs/promises';
import { BackboneError } from './errors.js';

export interface TarEntry {
  path: string;
  offset: number;
  size: number;
}

const BLOCK = 512;

function text(block: Buffer, start: number, length: number): string {
  const raw = block.subarray(start, start + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? raw.length : end).toString('utf8');
}

function octal(block: Buffer, start: number, length: number, label: string): number {
  // GNU base-256 for sizes of 8 GiB and more: the high bit of the first byte is set.
  if (block[start] & 0x80) {
    let v = block[start] & 0x7f;
    for (let i = 1; i < length; i++) v = v * 256 + block[start + i];
    return v;
  }
  const s = text(block, start, length).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s))
    throw new BackboneError('TAR_MALFORMED', `${label}: not a tar archive (bad numeric field "${s}"); expected an uncompressed .tar of PNG/JPEG images`);
  return parseInt(s, 8);
}

function checksumOk(block: Buffer): boolean {
  const stored = text(block, 148, 8).trim();
  if (!/^[0-7]+$/.test(stored)) return false;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : block[i];
  return sum === parseInt(stored, 8);
}

function paxPath(data: Buffer): string | null {
  let pos = 0;
  let found: string | null = null;
  while (pos < data.length) {
    const space = data.indexOf(32, pos);
    if (space < 0) break;
    const len = parseInt(data.subarray(pos, space).toString('ascii'), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const record = data.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0 && record.slice(0, eq) === 'path') found = record.slice(eq + 1);
    pos += len;
  }
  return found;
}

export async function indexTar(fh: FileHandle, fileSize: number, label: string): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const block = Buffer.alloc(BLOCK);
  let pos = 0;
  let longName: string | null = null;
  while (pos + BLOCK <= fileSize) {
    await fh.read(block, 0, BLOCK, pos);
    if (block.every((b) => b === 0)) break;
    if (!checksumOk(block)) {
      throw new BackboneError(
        'TAR_MALFORMED',
        `${label}: not a readable tar archive (header checksum mismatch at byte ${pos}); expected an uncompressed .tar of PNG/JPEG images`,
      );
    }
    const size = octal(block, 124, 12, label);
    const type = String.fromCharCode(block[156] || 48);
    const dataStart = pos + BLOCK;
    if (dataStart + size > fileSize)
      throw new BackboneError('TAR_MALFORMED', `${label}: the tar archive is truncated (an entry runs past the end of the file)`);
    if (type === 'x' || type === 'L') {
      const data = Buffer.alloc(size);
      await fh.read(data, 0, size, dataStart);
      longName = type === 'x' ? paxPath(data) : text(data, 0, size);
    } else if (type === '0' || type === '7') {
      const prefix = block.subarray(257, 262).toString('ascii') === 'ustar' ? text(block, 345, 155) : '';
      const name = text(block, 0, 100);
      entries.push({ path: longName ?? (prefix ? `${prefix}/${name}` : name), offset: dataStart, size });
      longName = null;
    } else if (type !== 'g') {
      longName = null;
    }
    pos = dataStart + Math.ceil(size / BLOCK) * BLOCK;
  }
  return entries;
}
