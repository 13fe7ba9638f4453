import { describe, expect, it } from 'vitest';
import { ENC_RLE24, decodeRle24, encodeRle24, rle24Bound } from './frame-codec';
import { StreamError, decodeHostToUi, decodeRect, encodeFrame } from './stream';

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
