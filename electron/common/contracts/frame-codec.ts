// The console's pixel codec (stream.ts frames): RLE24, a run-length code over 24-bit
// pixels, cheap enough to run on every frame in JavaScript at both ends (one pass each
// way; zlib is several times slower) and paying where screens are flat: desktop
// backgrounds, terminals, dialogs. Incompressible content costs 3 bytes a pixel (the
// X byte of BGRX is never sent), so it is never bigger than 3/4 of raw BGRX plus a few
// token bytes.
//
// A rect's payload is a sequence of tokens over its w*h pixels in row order:
//   varint v (LEB128, at most 4 bytes); count = (v >>> 1) + 1 pixels (at most 2^24);
//   v & 1 = 1: a run, followed by one pixel (R, G, B) repeated count times;
//   v & 1 = 0: a literal, followed by count pixels (R, G, B each).
// The decoder refuses tokens that overrun the rect, a payload that ends early or runs
// past the last pixel, and over-long varints; it writes only inside the rect.
import { StreamError } from './stream-error';

export const ENC_RLE24 = 1;
/** RLE24, then lz.ts over its bytes: payload = u32 LE length of the RLE24 bytes, then the LZ block. */
export const ENC_RLE24_LZ = 2;
/** No pixels: payload = source x, y (u16 LE each); the rect is copied from there on the screen as it was (scrolling). */
export const ENC_COPY = 3;
const MAX_TOKEN = 1 << 24;
/** Runs shorter than this go into literals (a run token is 4 bytes; 3 literal pixels are 9). */
const MIN_RUN = 3;

let scratch = new Uint8Array(0);

/** The most bytes encodeRle24 writes for n pixels (every token costs at most 4 bytes a pixel). */
export function rle24Bound(n: number): number {
  return 4 * n + 8;
}

/**
 * Encodes w*h BGRX pixels (4 bytes each, X ignored). Returns a view of a scratch buffer
 * that the next call overwrites: copy it out (encodeFrame does) before calling again.
 */
export function encodeRle24(src: Uint8Array, n: number): Uint8Array {
  if (src.byteLength < n * 4) throw new StreamError('rect data shorter than w*h*4');
  const aligned = src.byteOffset % 4 === 0 ? src : new Uint8Array(src);
  const s = new Uint32Array(aligned.buffer, aligned.byteOffset, n);
  const need = rle24Bound(n);
  if (scratch.byteLength < need) scratch = new Uint8Array(Math.max(need, scratch.byteLength * 2));
  const out = scratch;
  let o = 0;
  const token = (count: number, run: number) => {
    let v = (count - 1) * 2 + run;
    while (v >= 0x80) {
      out[o++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    out[o++] = v;
  };
  const literal = (from: number, to: number) => {
    while (from < to) {
      const end = Math.min(to, from + MAX_TOKEN);
      token(end - from, 0);
      for (let k = from; k < end; k++) {
        const v = s[k]!;
        out[o] = (v >>> 16) & 0xff;
        out[o + 1] = (v >>> 8) & 0xff;
        out[o + 2] = v & 0xff;
        o += 3;
      }
      from = end;
    }
  };
  let lit = 0;
  let i = 0;
  while (i < n) {
    const v = s[i]! & 0xffffff;
    let j = i + 1;
    while (j < n && (s[j]! & 0xffffff) === v) j++;
    if (j - i >= MIN_RUN) {
      if (lit < i) literal(lit, i);
      for (let k = i; k < j; ) {
        const c = Math.min(j - k, MAX_TOKEN);
        token(c, 1);
        out[o] = (v >>> 16) & 0xff;
        out[o + 1] = (v >>> 8) & 0xff;
        out[o + 2] = v & 0xff;
        o += 3;
        k += c;
      }
      lit = j;
    }
    i = j;
  }
  if (lit < n) literal(lit, n);
  return out.subarray(0, o);
}

/**
 * Decodes an RLE24 payload for a w x h rect into `dst` (RGBA pixels as little-endian
 * 32-bit words, `stride` pixels a row) at (x, y). Throws StreamError on corrupt input
 * (pixels already written stay; the next full frame repaints them).
 */
export function decodeRle24(p: Uint8Array, w: number, h: number, dst: Uint32Array, stride: number, x: number, y: number): void {
  if (x + w > stride || (y + h) * stride > dst.length) throw new StreamError('rect outside the screen');
  const n = w * h;
  let o = 0;
  let done = 0;
  let row = y * stride + x;
  let col = 0;
  const len = p.byteLength;
  while (done < n) {
    let v = 0;
    let shift = 0;
    for (;;) {
      if (o >= len) throw new StreamError('short pixel data');
      const b = p[o++]!;
      v |= (b & 0x7f) << shift;
      if (!(b & 0x80)) break;
      shift += 7;
      if (shift > 21) throw new StreamError('bad pixel token');
    }
    const count = (v >>> 1) + 1;
    if (count > n - done) throw new StreamError('pixel token runs past the rect');
    if (v & 1) {
      if (o + 3 > len) throw new StreamError('short pixel data');
      const px = (0xff000000 | (p[o + 2]! << 16) | (p[o + 1]! << 8) | p[o]!) >>> 0;
      o += 3;
      let left = count;
      while (left > 0) {
        const k = Math.min(left, w - col);
        dst.fill(px, row + col, row + col + k);
        left -= k;
        col += k;
        if (col === w) {
          col = 0;
          row += stride;
        }
      }
    } else {
      if (o + count * 3 > len) throw new StreamError('short pixel data');
      let left = count;
      while (left > 0) {
        const k = Math.min(left, w - col);
        let d = row + col;
        const end = d + k;
        while (d < end) {
          dst[d++] = 0xff000000 | (p[o + 2]! << 16) | (p[o + 1]! << 8) | p[o]!;
          o += 3;
        }
        left -= k;
        col += k;
        if (col === w) {
          col = 0;
          row += stride;
        }
      }
    }
    done += count;
  }
  if (o !== len) throw new StreamError('trailing bytes after pixel data');
}
