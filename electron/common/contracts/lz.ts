// A byte-level LZ77 code in the LZ4 block format (sequences of literals then a
// back-reference, 64 KiB window), the console's second stage over RLE24: a text
// screen's RLE24 is mostly literal glyph rows that repeat (the same letters, the
// same row of a cell), which run-length coding cannot shrink and a window match
// can. Greedy, one hash probe per position: fast in JavaScript at both ends
// (the encoder touches each input byte a few times, the decoder copies), not the
// best ratio. The format, so any LZ4 block decoder reads it:
//   a token byte: high nibble literal count, low nibble match length - 4
//     (15 in either: more length bytes follow, each added, until one is < 255);
//   the literals; a 2-byte little-endian offset (1..65535) back into the output;
//   the match (may overlap its own output). The last sequence has literals only,
//   and ends the block; the last 5 bytes are always literals and no match starts
//   in the last 12 bytes (the LZ4 block rules).
// The decoder checks every length and offset against the input and the output
// size it was told, and refuses anything that would read or write outside them.
import { StreamError } from './stream-error';

const MIN_MATCH = 4;
const LAST_LITERALS = 5;
const MF_LIMIT = 12;
const HASH_BITS = 14;
const MAX_OFFSET = 65535;

let table = new Int32Array(1 << HASH_BITS);
let scratch = new Uint8Array(0);

/** The most bytes lzCompress writes for n input bytes. */
export function lzBound(n: number): number {
  return n + Math.ceil(n / 255) + 16;
}

const read32 = (s: Uint8Array, i: number) => (s[i]! | (s[i + 1]! << 8) | (s[i + 2]! << 16) | (s[i + 3]! << 24)) >>> 0;
const hash = (v: number) => Math.imul(v, 2654435761) >>> (32 - HASH_BITS);

/**
 * Compresses `src` (all of it). Returns a view of a scratch buffer that the next call
 * overwrites: copy it out before calling again.
 */
export function lzCompress(src: Uint8Array): Uint8Array {
  const n = src.byteLength;
  const need = lzBound(n);
  if (scratch.byteLength < need) scratch = new Uint8Array(Math.max(need, scratch.byteLength * 2));
  const out = scratch;
  let o = 0;
  const putLength = (len: number) => {
    while (len >= 255) {
      out[o++] = 255;
      len -= 255;
    }
    out[o++] = len;
  };
  const sequence = (litStart: number, litEnd: number, offset: number, matchLen: number) => {
    const lit = litEnd - litStart;
    const tokenAt = o++;
    let token = (lit >= 15 ? 15 : lit) << 4;
    if (lit >= 15) putLength(lit - 15);
    if (lit > 32) {
      out.set(src.subarray(litStart, litEnd), o);
      o += lit;
    } else for (let k = litStart; k < litEnd; k++) out[o++] = src[k]!;
    if (matchLen) {
      out[o++] = offset & 0xff;
      out[o++] = offset >>> 8;
      const m = matchLen - MIN_MATCH;
      token |= m >= 15 ? 15 : m;
      if (m >= 15) putLength(m - 15);
    }
    out[tokenAt] = token;
  };
  table.fill(-1);
  let anchor = 0;
  let i = 0;
  const matchLimit = n - MF_LIMIT; // no match starts at or after this
  const copyLimit = n - LAST_LITERALS; // no match extends past this
  let misses = 0;
  while (i < matchLimit) {
    const v = read32(src, i);
    const h = hash(v);
    const ref = table[h]!;
    table[h] = i;
    if (ref < 0 || i - ref > MAX_OFFSET || read32(src, ref) !== v) {
      // Incompressible stretches are crossed faster the longer they go on (as LZ4 does).
      i += 1 + (misses++ >> 6);
      continue;
    }
    misses = 0;
    // Extend backwards over pending literals, then forwards.
    let start = i;
    let back = ref;
    while (start > anchor && back > 0 && src[start - 1] === src[back - 1]) start--, back--;
    let end = i + MIN_MATCH;
    let from = ref + MIN_MATCH;
    while (end < copyLimit && src[end] === src[from]) end++, from++;
    sequence(anchor, start, start - back, end - start);
    anchor = end;
    // Keep the table warm inside the match (one position), then go on after it.
    if (end - 2 > i) table[hash(read32(src, end - 2))] = end - 2;
    i = end;
  }
  sequence(anchor, n, 0, 0);
  return out.subarray(0, o);
}

/** Decompresses an LZ4 block that must expand to exactly `size` bytes. */
export function lzDecompress(p: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const len = p.byteLength;
  let i = 0;
  let o = 0;
  const early = () => new StreamError('compressed pixels end early');
  for (;;) {
    if (i >= len) throw early();
    const token = p[i++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b;
      do {
        if (i >= len) throw early();
        b = p[i++]!;
        lit += b;
      } while (b === 255);
    }
    if (lit > len - i || lit > size - o) throw new StreamError('compressed literals overrun');
    if (lit > 32) {
      out.set(p.subarray(i, i + lit), o);
      i += lit;
      o += lit;
    } else for (const end = i + lit; i < end; ) out[o++] = p[i++]!;
    if (i === len) break; // the last sequence: literals only
    if (i + 2 > len) throw early();
    const offset = p[i]! | (p[i + 1]! << 8);
    i += 2;
    if (offset === 0 || offset > o) throw new StreamError('compressed match points before the start');
    let m = token & 15;
    if (m === 15) {
      let b;
      do {
        if (i >= len) throw early();
        b = p[i++]!;
        m += b;
      } while (b === 255);
    }
    m += MIN_MATCH;
    if (m > size - o) throw new StreamError('compressed match overruns');
    let from = o - offset;
    if (offset >= m && m > 32) {
      out.copyWithin(o, from, from + m);
      o += m;
    } else for (const end = o + m; o < end; ) out[o++] = out[from++]!;
  }
  if (o !== size) throw new StreamError(`compressed pixels give ${o} bytes, not ${size}`);
  return out;
}
