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
/** Tiles of 64x64, each solid, palette-packed (2-16 colours, 1/2/4 bits a pixel) or RLE24: see encodeTiles. */
export const ENC_TILES = 4;
const MAX_TOKEN = 1 << 24;
/** Runs shorter than this go into literals (a run token is 4 bytes; 3 literal pixels are 9). */
const MIN_RUN = 3;

let scratch = new Uint8Array(0);

/** The most bytes encodeRle24 writes for n pixels (every token costs at most 4 bytes a pixel). */
export function rle24Bound(n: number): number {
  return 4 * n + 8;
}

/** The n BGRX pixels of `src` as 32-bit words (copied first when `src` is not 4-byte aligned). */
function pixelWords(src: Uint8Array, n: number): Uint32Array {
  if (src.byteLength < n * 4) throw new StreamError('rect data shorter than w*h*4');
  const aligned = src.byteOffset % 4 === 0 ? src : new Uint8Array(src);
  return new Uint32Array(aligned.buffer, aligned.byteOffset, n);
}

/** Writes v as a varint (LEB128) at out[o]; returns the offset after it. */
function writeVarint(out: Uint8Array, o: number, v: number): number {
  while (v >= 0x80) {
    out[o++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[o++] = v;
  return o;
}

/**
 * Encodes w*h BGRX pixels (4 bytes each, X ignored). Returns a view of a scratch buffer
 * that the next call overwrites: copy it out (encodeFrame does) before calling again.
 */
export function encodeRle24(src: Uint8Array, n: number): Uint8Array {
  const s = pixelWords(src, n);
  const need = rle24Bound(n);
  if (scratch.byteLength < need) scratch = new Uint8Array(Math.max(need, scratch.byteLength * 2));
  const out = scratch;
  let o = 0;
  const token = (count: number, run: number) => {
    o = writeVarint(out, o, (count - 1) * 2 + run);
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

// The offset just past the varint readVarint read last: a module variable rather than a
// returned pair, so the decoders' hot loops allocate nothing.
let varintEnd = 0;

/**
 * Reads a varint (LEB128, at most 4 bytes: values below 2^28) at p[o] and sets varintEnd
 * past it. Throws StreamError(`short`) when p ends inside it, StreamError(`tooLong`) past
 * 4 bytes.
 */
function readVarint(p: Uint8Array, o: number, short: string, tooLong: string): number {
  const len = p.byteLength;
  let v = 0;
  let shift = 0;
  for (;;) {
    if (o >= len) throw new StreamError(short);
    const b = p[o++]!;
    v |= (b & 0x7f) << shift;
    if (!(b & 0x80)) break;
    shift += 7;
    if (shift > 21) throw new StreamError(tooLong);
  }
  varintEnd = o;
  return v;
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
    // Most tokens are one byte: read those here, longer ones in readVarint.
    let v = o < len ? p[o]! : 0x80;
    if (v < 0x80) o++;
    else {
      v = readVarint(p, o, 'short pixel data', 'bad pixel token');
      o = varintEnd;
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

// ---- ENC_TILES ---------------------------------------------------------------------------
// Text and most of a desktop use a few colours per small area (a terminal's cell: its
// background and its glyph; a dialog: face, border, label), where RLE24 still pays ~4
// bytes a run and a run ends at every glyph stroke. As in VNC's ZRLE (without its zlib),
// the rect is cut into 64x64 tiles in row order (the last column and row narrower), and
// each tile is sent the cheapest of three ways:
//   type 1: solid, then R, G, B;
//   type P = 2..16: a palette of P colours (R, G, B each), then the tile's rows of colour
//     indices packed MSB first at 1 bit a pixel (P = 2), 2 (P <= 4) or 4 (P <= 16), each
//     row padded to a whole byte;
//   type 0: a varint (LEB128) byte length, then RLE24 over the tile's pixels in row order.
// A 2-colour text screen costs 1 bit a pixel instead of RLE24's ~3.7 (measured on bench/app's
// page), and the encoder still reads each pixel once more only for tiles it packs.
// The decoder refuses an unknown type, an index past the palette, short data and trailing
// bytes, and writes only inside the rect.
const TILE = 64;
const tilePx = new Uint32Array(TILE * TILE);
const tilePxBytes = new Uint8Array(tilePx.buffer);
const palette = new Uint32Array(16);
const tileIdx = new Uint8Array(TILE * TILE);
const decodePalette = new Uint32Array(16);
let tilesScratch = new Uint8Array(0);

/** The most bytes encodeTiles writes for a w x h rect. */
export function tilesBound(w: number, h: number): number {
  const tiles = Math.ceil(w / TILE) * Math.ceil(h / TILE);
  return tiles * (1 + 4 + 8) + 4 * w * h;
}

/**
 * Encodes w x h BGRX pixels (4 bytes each, X ignored) as ENC_TILES. Returns a view of a
 * scratch buffer that the next call overwrites.
 */
export function encodeTiles(src: Uint8Array, w: number, h: number): Uint8Array {
  const s = pixelWords(src, w * h);
  const need = tilesBound(w, h);
  if (tilesScratch.byteLength < need) tilesScratch = new Uint8Array(Math.max(need, tilesScratch.byteLength * 2));
  const out = tilesScratch;
  let o = 0;
  const rgb = (v: number) => {
    out[o] = (v >>> 16) & 0xff;
    out[o + 1] = (v >>> 8) & 0xff;
    out[o + 2] = v & 0xff;
    o += 3;
  };
  for (let ty = 0; ty < h; ty += TILE) {
    const th = Math.min(TILE, h - ty);
    for (let tx = 0; tx < w; tx += TILE) {
      const tw = Math.min(TILE, w - tx);
      // One pass: the tile's colours (up to 17: more means "not a palette tile"), each
      // pixel's index among them, and what RLE24 would cost (a run of 3+ is one ~5-byte
      // token, shorter ones 3 bytes a pixel). The palette is searched only where the colour
      // changes.
      // First the run of the tile's first colour (all of it where the tile is solid, as most
      // of a desktop's are), without the bookkeeping.
      const first = s[ty * w + tx]! & 0xffffff;
      let y = 0;
      let x = 0;
      solid: for (; y < th; y++) {
        const row = (ty + y) * w + tx;
        for (x = 0; x < tw; x++) if ((s[row + x]! & 0xffffff) !== first) break solid;
      }
      if (y === th) {
        out[o++] = 1;
        rgb(first);
        continue;
      }
      palette[0] = first;
      let np = 1;
      let prev = first;
      let k = 0;
      let run = y * tw + x;
      let rle = 0;
      let i = run;
      tileIdx.fill(0, 0, i);
      scan: for (; y < th; y++, x = 0) {
        const row = (ty + y) * w + tx;
        for (; x < tw; x++) {
          const v = s[row + x]! & 0xffffff;
          if (v !== prev) {
            rle += run >= 3 ? 5 : 3 * run;
            run = 0;
            prev = v;
            k = 0;
            while (k < np && palette[k] !== v) k++;
            if (k === np) {
              if (np === 16) {
                np = 17; // too many colours: RLE24 (below), no need to look further
                break scan;
              }
              palette[np++] = v;
            }
          }
          run++;
          tileIdx[i++] = k;
        }
      }
      rle += run >= 3 ? 5 : 3 * run;
      const bits = np === 2 ? 1 : np <= 4 ? 2 : 4;
      const rowBytes = (tw * bits + 7) >>> 3;
      if (np <= 16 && np * 3 + th * rowBytes <= rle) {
        out[o++] = np;
        for (let c = 0; c < np; c++) rgb(palette[c]!);
        const perByte = 8 / bits;
        i = 0;
        if (bits === 1) {
          // Two colours (text): eight pixels a byte, unrolled.
          for (let y = 0; y < th; y++) {
            const end = i + tw;
            for (; i + 8 <= end; i += 8) {
              out[o++] = (tileIdx[i]! << 7) | (tileIdx[i + 1]! << 6) | (tileIdx[i + 2]! << 5) | (tileIdx[i + 3]! << 4) |
                (tileIdx[i + 4]! << 3) | (tileIdx[i + 5]! << 2) | (tileIdx[i + 6]! << 1) | tileIdx[i + 7]!;
            }
            if (i < end) {
              let acc = 0;
              const n = end - i;
              while (i < end) acc = (acc << 1) | tileIdx[i++]!;
              out[o++] = acc << (8 - n);
            }
          }
          continue;
        }
        for (let y = 0; y < th; y++) {
          const end = i + tw;
          while (i < end) {
            let acc = 0;
            let n = 0;
            while (n < perByte && i < end) {
              acc = (acc << bits) | tileIdx[i++]!;
              n++;
            }
            out[o++] = acc << ((perByte - n) * bits);
          }
        }
        continue;
      }
      // RLE24 over the tile's pixels, copied together first.
      for (let y = 0; y < th; y++) tilePx.set(s.subarray((ty + y) * w + tx, (ty + y) * w + tx + tw), y * tw);
      const r = encodeRle24(tilePxBytes, tw * th);
      out[o++] = 0;
      o = writeVarint(out, o, r.byteLength);
      out.set(r, o);
      o += r.byteLength;
    }
  }
  return out.subarray(0, o);
}

/**
 * Decodes an ENC_TILES payload for a w x h rect into `dst` (RGBA pixels as little-endian
 * 32-bit words, `stride` pixels a row) at (x, y). Throws StreamError on corrupt input.
 */
export function decodeTiles(p: Uint8Array, w: number, h: number, dst: Uint32Array, stride: number, x: number, y: number): void {
  if (x + w > stride || (y + h) * stride > dst.length) throw new StreamError('rect outside the screen');
  const len = p.byteLength;
  let o = 0;
  const px = () => (0xff000000 | (p[o + 2]! << 16) | (p[o + 1]! << 8) | p[o]!) >>> 0;
  for (let ty = 0; ty < h; ty += TILE) {
    const th = Math.min(TILE, h - ty);
    for (let tx = 0; tx < w; tx += TILE) {
      const tw = Math.min(TILE, w - tx);
      if (o >= len) throw new StreamError('short tile data');
      const type = p[o++]!;
      const base = (y + ty) * stride + x + tx;
      if (type === 1) {
        if (o + 3 > len) throw new StreamError('short tile data');
        const v = px();
        o += 3;
        // A plain loop: for 64 pixels it beats a fill() call (a flat screen is 192 tiles of 64 rows).
        for (let r = 0; r < th; r++) {
          let d = base + r * stride;
          const e = d + tw;
          while (d < e) dst[d++] = v;
        }
      } else if (type >= 2 && type <= 16) {
        const np = type;
        const bits = np === 2 ? 1 : np <= 4 ? 2 : 4;
        const rowBytes = (tw * bits + 7) >>> 3;
        if (o + np * 3 + th * rowBytes > len) throw new StreamError('short tile data');
        for (let k = 0; k < np; k++, o += 3) decodePalette[k] = px();
        if (bits === 1) {
          // Two colours (text): eight pixels a byte; every index is a colour.
          const c0 = decodePalette[0]!;
          const c1 = decodePalette[1]!;
          for (let r = 0; r < th; r++) {
            let d = base + r * stride;
            let ob = o;
            let c = 0;
            for (; c + 8 <= tw; c += 8, d += 8) {
              const b = p[ob++]!;
              dst[d] = b & 0x80 ? c1 : c0;
              dst[d + 1] = b & 0x40 ? c1 : c0;
              dst[d + 2] = b & 0x20 ? c1 : c0;
              dst[d + 3] = b & 0x10 ? c1 : c0;
              dst[d + 4] = b & 0x08 ? c1 : c0;
              dst[d + 5] = b & 0x04 ? c1 : c0;
              dst[d + 6] = b & 0x02 ? c1 : c0;
              dst[d + 7] = b & 0x01 ? c1 : c0;
            }
            if (c < tw) {
              const b = p[ob]!;
              for (let bit = 7; c < tw; c++, bit--) dst[d++] = (b >>> bit) & 1 ? c1 : c0;
            }
            o += rowBytes;
          }
          continue;
        }
        const mask = (1 << bits) - 1;
        for (let r = 0; r < th; r++) {
          let d = base + r * stride;
          let shift = 8 - bits;
          let b = p[o]!;
          let ob = o;
          for (let c = 0; c < tw; c++) {
            const k = (b >>> shift) & mask;
            if (k >= np) throw new StreamError('tile colour index past its palette');
            dst[d++] = decodePalette[k]!;
            if (shift === 0) {
              shift = 8 - bits;
              b = p[++ob]!;
            } else shift -= bits;
          }
          o += rowBytes;
        }
      } else if (type === 0) {
        const size = readVarint(p, o, 'short tile data', 'bad tile length');
        o = varintEnd;
        if (o + size > len) throw new StreamError('short tile data');
        decodeRle24(p.subarray(o, o + size), tw, th, dst, stride, x + tx, y + ty);
        o += size;
      } else {
        throw new StreamError(`unknown tile type ${type}`);
      }
    }
  }
  if (o !== len) throw new StreamError('trailing bytes after tile data');
}
