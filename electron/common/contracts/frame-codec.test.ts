import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENC_RLE24, ENC_TILES, decodeRle24, decodeTiles, encodeRle24, encodeTiles, rle24Bound, tilesBound } from './frame-codec';
import { StreamError, decodeHostToUi, decodeRect, encodeFrame, frameOptions } from './stream';

/** BGRX pixels from 24-bit values (the X byte set to junk: it must never matter). */
function bgrx(vals: number[]): Uint8Array {
  const u = new Uint32Array(vals.map((v) => (v & 0xffffff) | 0xab000000));
  return new Uint8Array(u.buffer);
}
/** The RGBA word a BGRX value must become. */
const rgba = (v: number) => (0xff000000 | ((v & 0xff) << 16) | (v & 0xff00) | ((v >>> 16) & 0xff)) >>> 0;

function rng(seed: number) {
  let x = seed | 1;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
}

function roundTrip(vals: number[], w: number, h: number, stride = w + 3, at = { x: 2, y: 1 }) {
  const enc = encodeRle24(bgrx(vals), w * h).slice();
  expect(enc.byteLength).toBeLessThanOrEqual(rle24Bound(w * h));
  const dst = new Uint32Array(stride * (h + 3)).fill(0x12345678);
  decodeRle24(enc, w, h, dst, stride, at.x, at.y);
  for (let y = 0; y < h + 3; y++) {
    for (let x = 0; x < stride; x++) {
      const inside = x >= at.x && x < at.x + w && y >= at.y && y < at.y + h;
      const want = inside ? rgba(vals[(y - at.y) * w + (x - at.x)]!) : 0x12345678;
      if (dst[y * stride + x] !== want) throw new Error(`pixel ${x},${y}: ${dst[y * stride + x]!.toString(16)} != ${want.toString(16)}`);
    }
  }
  return enc;
}

describe('RLE24 pixel codec', () => {
  // Frames carry RLE24 when the tiles are off (VIREO_CONSOLE_TILES=0).
  beforeAll(() => void (frameOptions.tiles = false));
  afterAll(() => void (frameOptions.tiles = true));
  it('round-trips flat, noisy and mixed rects, in place inside a larger screen, colours swapped to RGBA', () => {
    const r = rng(7);
    const w = 37;
    const h = 11;
    const n = w * h;
    roundTrip(new Array(n).fill(0x102030), w, h);
    roundTrip(Array.from({ length: n }, () => r() & 0xffffff), w, h);
    // Runs of every length 1..9 (across row ends), then noise, then a long run.
    const mixed: number[] = [];
    let len = 1;
    while (mixed.length < n) {
      const v = r() & 0xffffff;
      for (let k = 0; k < len && mixed.length < n; k++) mixed.push(v);
      len = (len % 9) + 1;
    }
    roundTrip(mixed, w, h);
    roundTrip([0xff0000], 1, 1);
    expect(roundTrip([], 0, 0).byteLength).toBe(0);
  });

  it('makes flat screens small and noise no bigger than 3 bytes a pixel plus tokens', () => {
    const n = 1024 * 768;
    const flat = encodeRle24(bgrx(new Array(n).fill(0x445566)), n);
    expect(flat.byteLength).toBeLessThan(16);
    const r = rng(3);
    const noise = encodeRle24(bgrx(Array.from({ length: n }, () => r() & 0xffffff)), n);
    expect(noise.byteLength).toBeLessThan(n * 3 + n / 100);
  });

  it('refuses corrupt pixel data without writing outside the rect', () => {
    const w = 8;
    const h = 4;
    const good = encodeRle24(bgrx(Array.from({ length: w * h }, (_, i) => (i < 16 ? 0x111111 : i * 977))), w * h).slice();
    const bad: Array<[Uint8Array, RegExp]> = [
      [good.subarray(0, good.byteLength - 1), /short pixel data/],
      [Uint8Array.of(...good, 0), /trailing bytes/],
      [Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x01), /bad pixel token/],
      [Uint8Array.of(((w * h) << 1) | 1, 1, 2, 3), /runs past the rect/], // a run of w*h+1 pixels
      [Uint8Array.of(0x02 << 1, 1, 2, 3), /short pixel data/], // a literal of 3 with 1 pixel
      [new Uint8Array(0), /short pixel data/],
    ];
    for (const [p, why] of bad) {
      const dst = new Uint32Array(16 * 8).fill(7);
      expect(() => decodeRle24(p, w, h, dst, 16, 4, 2)).toThrow(why);
      for (let y = 0; y < 8; y++) for (let x = 0; x < 16; x++) if (!(x >= 4 && x < 12 && y >= 2 && y < 6)) expect(dst[y * 16 + x]).toBe(7);
    }
    expect(() => decodeRle24(good, w, h, new Uint32Array(16 * 8), 16, 9, 0)).toThrow(/outside the screen/);
    expect(() => decodeRle24(good, w, h, new Uint32Array(16 * 5), 16, 0, 2)).toThrow(/outside the screen/);
  });

  it('frames carry encoded rects end to end, and bad frames are refused', () => {
    const a = bgrx(new Array(6).fill(0x0000ff));
    const b = bgrx([1, 2, 3, 4]);
    const m = decodeHostToUi(encodeFrame(8, 4, true, [{ x: 1, y: 1, w: 3, h: 2, data: a }, { x: 6, y: 2, w: 2, h: 2, data: b }]));
    if (m.op !== 'frame') throw new Error('not a frame');
    expect(m).toMatchObject({ width: 8, height: 4, modeChanged: true });
    expect(m.rects.map((r) => [r.x, r.y, r.w, r.h, r.enc])).toEqual([[1, 1, 3, 2, ENC_RLE24], [6, 2, 2, 2, ENC_RLE24]]);
    const screen = new Uint32Array(8 * 4);
    for (const r of m.rects) decodeRect(r, screen, 8);
    expect(screen[1 * 8 + 1]).toBe(rgba(0x0000ff));
    expect(screen[2 * 8 + 3]).toBe(rgba(0x0000ff));
    expect([screen[2 * 8 + 6], screen[2 * 8 + 7], screen[3 * 8 + 6], screen[3 * 8 + 7]]).toEqual([1, 2, 3, 4].map(rgba));
    expect(screen[0]).toBe(0);
    const bytes = encodeFrame(8, 4, false, [{ x: 0, y: 0, w: 2, h: 2, data: b }]);
    expect(() => decodeHostToUi(bytes.subarray(0, bytes.byteLength - 1))).toThrow(StreamError);
    const wrongEnc = bytes.slice();
    wrongEnc[8 + 8] = 9;
    expect(() => decodeHostToUi(wrongEnc)).toThrow(/unknown pixel encoding/);
    const huge = bytes.slice();
    new DataView(huge.buffer).setUint32(8 + 9, 0xffffffff, true);
    expect(() => decodeHostToUi(huge)).toThrow(/short rect data/);
    expect(() => encodeFrame(8, 4, false, [{ x: 0, y: 0, w: 2, h: 2, data: new Uint8Array(15) }])).toThrow(/w\*h\*4/);
  });

  it('encodes unaligned engine buffers the same as aligned ones', () => {
    const vals = [5, 5, 5, 5, 9, 8, 7, 7, 7];
    const aligned = encodeRle24(bgrx(vals), 9).slice();
    const odd = new Uint8Array(37).subarray(1);
    odd.set(bgrx(vals));
    expect([...encodeRle24(odd, 9)]).toEqual([...aligned]);
  });
});

describe('ENC_TILES pixel codec', () => {
  function tilesRoundTrip(vals: number[], w: number, h: number, stride = w + 5, at = { x: 3, y: 2 }) {
    const enc = encodeTiles(bgrx(vals), w, h).slice();
    expect(enc.byteLength).toBeLessThanOrEqual(tilesBound(w, h));
    const dst = new Uint32Array(stride * (h + 4)).fill(0x12345678);
    decodeTiles(enc, w, h, dst, stride, at.x, at.y);
    for (let y = 0; y < h + 4; y++) {
      for (let x = 0; x < stride; x++) {
        const inside = x >= at.x && x < at.x + w && y >= at.y && y < at.y + h;
        const want = inside ? rgba(vals[(y - at.y) * w + (x - at.x)]!) : 0x12345678;
        if (dst[y * stride + x] !== want) throw new Error(`${w}x${h} pixel ${x},${y}: ${dst[y * stride + x]!.toString(16)} != ${want.toString(16)}`);
      }
    }
    return enc;
  }
  /** The type byte of each tile of a well-formed payload, in order. */
  function tileTypes(p: Uint8Array, w: number, h: number): number[] {
    const types: number[] = [];
    let o = 0;
    for (let ty = 0; ty < h; ty += 64) {
      for (let tx = 0; tx < w; tx += 64) {
        const tw = Math.min(64, w - tx), th = Math.min(64, h - ty);
        const t = p[o++]!;
        types.push(t);
        if (t === 1) o += 3;
        else if (t >= 2) o += t * 3 + th * ((tw * (t === 2 ? 1 : t <= 4 ? 2 : 4) + 7) >> 3);
        else {
          let len = 0, shift = 0, b = 0;
          do {
            b = p[o++]!;
            len |= (b & 0x7f) << shift;
            shift += 7;
          } while (b & 0x80);
          o += len;
        }
      }
    }
    expect(o).toBe(p.byteLength);
    return types;
  }
  /** w x h pixels drawn from `colours` at random, in runs of 1..maxRun. */
  function picture(w: number, h: number, colours: number[], seed: number, maxRun = 4): number[] {
    const r = rng(seed);
    const out: number[] = [];
    while (out.length < w * h) {
      const v = colours[r() % colours.length]!;
      for (let k = 1 + (r() % maxRun); k > 0 && out.length < w * h; k--) out.push(v);
    }
    return out;
  }

  it('round-trips every tile kind at tile-edge sizes, in place inside a larger screen', () => {
    const r = rng(11);
    const many = Array.from({ length: 40 }, () => r() & 0xffffff);
    for (const [w, h] of [[1, 1], [63, 1], [64, 64], [65, 63], [130, 70], [200, 3], [7, 129]] as const) {
      for (const n of [1, 2, 3, 4, 5, 16, 17, 40]) tilesRoundTrip(picture(w, h, many.slice(0, n), w * 131 + n), w, h);
      tilesRoundTrip(Array.from({ length: w * h }, () => r() & 0xffffff), w, h);
    }
    expect(tilesRoundTrip([], 0, 0).byteLength).toBe(0);
  });

  it('makes a two-colour text page about 1 bit a pixel, a third of RLE24 or less; noise stays near 3 bytes a pixel', () => {
    const w = 1024;
    const h = 768;
    // A page as bench/app draws it: light background, lines of dark 6x10 glyphs.
    const page = new Array(w * h).fill(0xf4f4f4);
    const r = rng(5);
    for (let line = 0; line * 16 + 13 < h; line++) {
      for (let c = 0; c < 100; c++) {
        const bits = r();
        for (let gy = 0; gy < 10; gy++) for (let gx = 0; gx < 6; gx++) if ((bits >>> ((gy * 6 + gx) % 31)) & 1) page[(line * 16 + 3 + gy) * w + 8 + c * 8 + gx] = 0x202830;
      }
    }
    const tiles = tilesRoundTrip(page, w, h, w, { x: 0, y: 0 });
    const rle = encodeRle24(bgrx(page), w * h).byteLength;
    expect(tiles.byteLength).toBeLessThan((w * h) / 8 + 4096);
    expect(tiles.byteLength).toBeLessThan(rle / 3);
    const noise = Array.from({ length: w * h }, () => r() & 0xffffff);
    expect(encodeTiles(bgrx(noise), w, h).byteLength).toBeLessThan(w * h * 3 + w * h / 50);
    expect(encodeTiles(bgrx(new Array(w * h).fill(0x445566)), w, h).byteLength).toBe(16 * 12 * 4);
  });

  it('refuses corrupt tile data without writing outside the rect', () => {
    const w = 70;
    const h = 5; // two tiles: 64x5 and 6x5
    const two = encodeTiles(bgrx(picture(w, h, [0x111111, 0x222222], 3)), w, h).slice();
    expect(two[0]).toBe(2);
    const three = encodeTiles(bgrx(picture(w, h, [1, 2, 3], 4, 1)), w, h).slice();
    expect(three[0]).toBe(3);
    const badIndex = three.slice();
    badIndex[1 + 9] = 0xff; // first row's first indices: 3 (past a 3-colour palette)
    const bad: Array<[Uint8Array, RegExp]> = [
      [two.subarray(0, two.byteLength - 1), /short tile data/],
      [Uint8Array.of(...two, 0), /trailing bytes/],
      [Uint8Array.of(17, ...two.subarray(1)), /unknown tile type 17/],
      [badIndex, /index past its palette/],
      [Uint8Array.of(0, 0x80, 0x80, 0x80, 0x80), /bad tile length/],
      [Uint8Array.of(0, 50, 1, 2), /short tile data/],
      [new Uint8Array(0), /short tile data/],
    ];
    for (const [p, why] of bad) {
      const dst = new Uint32Array(80 * 8).fill(7);
      expect(() => decodeTiles(p, w, h, dst, 80, 4, 2)).toThrow(why);
      for (let y = 0; y < 8; y++) for (let x = 0; x < 80; x++) if (!(x >= 4 && x < 74 && y >= 2 && y < 7)) expect(dst[y * 80 + x]).toBe(7);
    }
    expect(() => decodeTiles(two, w, h, new Uint32Array(80 * 8), 80, 11, 0)).toThrow(/outside the screen/);
  });

  it('5,000 mutated payloads: each decodes inside the rect or throws a StreamError, nothing else', () => {
    const r = rng(21);
    const w = 150;
    const h = 70; // 3 x 2 tiles, the last column and row narrower
    const vals = picture(w, h, [1, 2, 3], 5, 6);
    for (let i = 0; i < 64 * 20; i++) vals[(i >> 6) * w + (i & 63) + 64] = 0x101010 * (i % 9); // a part of 3 + 9 colours
    for (let i = 0; i < 40; i++) vals[w * 69 + 100 + i] = r() & 0xffffff; // noise: an RLE24 tile
    const good = encodeTiles(bgrx(vals), w, h).slice();
    const types = tileTypes(good, w, h);
    expect(types).toContain(0); // RLE24
    expect(types).toContain(3); // 2 bits a pixel
    expect(types.some((t) => t > 4)).toBe(true); // 4 bits a pixel
    const stride = w + 4;
    for (let n = 0; n < 5000; n++) {
      const p = good.slice(0, good.byteLength - (r() % 3 === 0 ? r() % good.byteLength : 0));
      for (let k = 1 + (r() % 4); k > 0; k--) if (p.byteLength) p[r() % p.byteLength] = r() & 255;
      const dst = new Uint32Array(stride * (h + 2)).fill(7);
      try {
        decodeTiles(p, w, h, dst, stride, 2, 1);
      } catch (e) {
        expect(e, String(e)).toBeInstanceOf(StreamError);
      }
      for (let y = 0; y < h + 2; y++) for (let x = 0; x < stride; x++) if (!(x >= 2 && x < 2 + w && y >= 1 && y < 1 + h) && dst[y * stride + x] !== 7) throw new Error(`wrote outside the rect at ${x},${y}`);
    }
  });

  it('frames carry tile rects by default and plain RLE24 when tiles are off', () => {
    const data = bgrx(picture(90, 20, [0xabcdef, 0x123456], 9));
    const go = () => {
      const m = decodeHostToUi(encodeFrame(100, 30, false, [{ x: 5, y: 6, w: 90, h: 20, data }, { x: 0, y: 0, w: 2, h: 2, data: bgrx([1, 2, 3, 4]) }]));
      if (m.op !== 'frame') throw new Error('not a frame');
      const screen = new Uint32Array(100 * 30);
      for (const r of m.rects) decodeRect(r, screen, 100);
      return { encs: m.rects.map((r) => r.enc), screen };
    };
    const tiles = go();
    expect(tiles.encs).toEqual([ENC_TILES, ENC_TILES]);
    frameOptions.tiles = false;
    try {
      const rle = go();
      expect(rle.encs).toEqual([ENC_RLE24, ENC_RLE24]);
      expect([...rle.screen]).toEqual([...tiles.screen]);
    } finally {
      frameOptions.tiles = true;
    }
    expect(tiles.screen[6 * 100 + 5]).toBe(rgba(new Uint32Array(data.buffer)[0]!));
  });
});
