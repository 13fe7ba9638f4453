// lz.ts: round trips over the shapes a console sees, the LZ4 block format checked
// against the lz4 tool both ways (its legacy frame is blocks with a length in front and
// nothing else), and a decoder that refuses every kind of broken input.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENC_RLE24, ENC_RLE24_LZ, encodeRle24 } from './frame-codec';
import { lzBound, lzCompress, lzDecompress } from './lz';
import { StreamError, decodeHostToUi, decodeRect, encodeFrame, frameOptions } from './stream';

function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
}

const samples = (): [string, Uint8Array][] => {
  const r = rng(7);
  const random = new Uint8Array(100000).map(() => r() & 255);
  const zeros = new Uint8Array(70000);
  const text = new TextEncoder().encode('The quick brown fox jumps over the lazy dog. '.repeat(3000));
  // Short periods: matches that overlap their own output (offset < length).
  const period3 = new Uint8Array(5000).map((_, i) => [1, 2, 3][i % 3]!);
  // Repeats farther apart than the 64 KiB window.
  const far = new Uint8Array(200000);
  far.set(random.subarray(0, 1000), 0);
  far.set(random.subarray(0, 1000), 150000);
  const small = Array.from({ length: 20 }, (_, n) => [`${n} bytes`, new Uint8Array(n).map((_, i) => i & 3)] as [string, Uint8Array]);
  return [['random', random], ['zeros', zeros], ['text', text], ['period 3', period3], ['far repeat', far], ...small];
};

describe('lz (LZ4 block format)', () => {
  it('round-trips every shape, within its bound, and shrinks what repeats', () => {
    for (const [name, s] of samples()) {
      const c = lzCompress(s).slice();
      expect(c.byteLength, name).toBeLessThanOrEqual(lzBound(s.byteLength));
      expect(lzDecompress(c, s.byteLength), name).toEqual(s);
    }
    const text = samples()[2]![1];
    expect(lzCompress(text).byteLength).toBeLessThan(text.byteLength / 20);
  });

  const lz4 = spawnSync('lz4', ['--version']).status === 0 ? 'lz4' : null;
  it.skipIf(!lz4)('is LZ4: the lz4 tool decodes ours, and ours decodes the lz4 tool\'s', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-lz-'));
    try {
      for (const [name, s] of samples()) {
        if (!s.byteLength) continue;
        // Ours, in lz4's legacy frame: magic 0x184C2102, then [u32 LE block length][block].
        const c = lzCompress(s);
        const frame = new Uint8Array(8 + c.byteLength);
        const dv = new DataView(frame.buffer);
        dv.setUint32(0, 0x184c2102, true);
        dv.setUint32(4, c.byteLength, true);
        frame.set(c, 8);
        fs.writeFileSync(path.join(dir, 'ours.lz4'), frame);
        const d = spawnSync('lz4', ['-d', '-c', path.join(dir, 'ours.lz4')]);
        expect(d.status, `${name}: ${d.stderr}`).toBe(0);
        expect(new Uint8Array(d.stdout), name).toEqual(s);
        // Theirs (-l: legacy frame; one block below 8 MiB), decoded by ours.
        fs.writeFileSync(path.join(dir, 'in.bin'), s);
        const e = spawnSync('lz4', ['-l', '-9', '-f', '-c', path.join(dir, 'in.bin')]);
        expect(e.status, name).toBe(0);
        const out = new Uint8Array(e.stdout);
        const len = new DataView(out.buffer, out.byteOffset).getUint32(4, true);
        expect(lzDecompress(out.subarray(8, 8 + len), s.byteLength), name).toEqual(s);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses broken input: early ends, offsets before the start or 0, overruns, the wrong size', () => {
    const good = lzCompress(new TextEncoder().encode('abcabcabcabcabcabcabcabcabcabcXYZ')).slice();
    expect(new TextDecoder().decode(lzDecompress(good, 33))).toBe('abcabcabcabcabcabcabcabcabcabcXYZ');
    const bad: [Uint8Array, number, RegExp][] = [
      [new Uint8Array(0), 1, /end early/],
      [good.subarray(0, 5), 33, /end early|overrun/],
      [Uint8Array.of(0x10, 0x61, 0x00, 0x00), 10, /before the start/], // offset 0
      [Uint8Array.of(0x10, 0x61, 0x05, 0x00), 10, /before the start/], // offset 5 with 1 byte out
      [Uint8Array.of(0x1f, 0x61, 0x01, 0x00, 0xff, 0xff, 0x10), 100, /overruns|end early/], // match past the size
      [Uint8Array.of(0xf0, 0xff), 1000, /end early/], // literal length bytes run out
      [Uint8Array.of(0x50, 1, 2, 3), 5, /overrun/], // 5 literals promised, 3 there
      [Uint8Array.of(0x30, 1, 2, 3), 4, /give 3 bytes, not 4/],
      [Uint8Array.of(0x30, 1, 2, 3), 2, /overrun/],
    ];
    for (const [p, size, why] of bad) expect(() => lzDecompress(p, size), `${[...p]}`).toThrow(why);
  });
});

describe('lz decoder under mutation', () => {
  it('5,000 mutated blocks: each decodes or throws a StreamError, nothing else', () => {
    const r = rng(11);
    const src = new TextEncoder().encode('abcabcabc hello hello hello world world '.repeat(50));
    const good = lzCompress(src).slice();
    for (let n = 0; n < 5000; n++) {
      const p = good.slice(0, good.byteLength - (r() % 3 === 0 ? r() % good.byteLength : 0));
      for (let k = 1 + (r() % 4); k > 0; k--) if (p.byteLength) p[r() % p.byteLength] = r() & 255;
      const size = r() % 4 === 0 ? r() % 4000 : src.byteLength;
      try {
        const out = lzDecompress(p, size);
        expect(out.byteLength).toBe(size);
      } catch (e) {
        expect(e, String(e)).toBeInstanceOf(StreamError);
      }
    }
  });
});

describe('frames use it where it pays', () => {
  // The stage works on RLE24, so these run with the palette tiles off (VIREO_CONSOLE_TILES=0).
  it('with the stage on (VIREO_CONSOLE_LZ=1): a text-like rect goes RLE24+LZ and decodes to the same pixels; noise stays RLE24', () => {
    frameOptions.lz = true;
    frameOptions.tiles = false;
    try {
      textAndNoise();
    } finally {
      frameOptions.lz = false;
      frameOptions.tiles = true;
    }
  });

  it('off by default: with the tiles off every rect goes RLE24', () => {
    const w = 64, h = 64;
    const text = new Uint32Array(w * h).map((_, i) => (((i % w) * 7 + ((i / w) | 0) * 3) % 5 < 2 ? 0xffffff : 0x202020));
    frameOptions.tiles = false;
    try {
      const m = decodeHostToUi(encodeFrame(w, h, true, [{ x: 0, y: 0, w, h, data: new Uint8Array(text.buffer) }]));
      if (m.op !== 'frame') throw new Error('not a frame');
      expect(m.rects.map((x) => x.enc)).toEqual([ENC_RLE24]);
    } finally {
      frameOptions.tiles = true;
    }
  });
});

function textAndNoise() {
  {
    const w = 256, h = 64;
    // "Text": an 8x16 glyph of two colours repeated along rows, the way a terminal looks.
    const glyph = Array.from({ length: 16 }, (_, y) => Array.from({ length: 8 }, (_, x) => ((x * 7 + y * 3) % 5 < 2 ? 0xffffff : 0x202020)));
    const text = new Uint32Array(w * h).map((_, i) => glyph[(i / w | 0) % 16]![i % w % 8]!);
    const r = rng(3);
    const noise = new Uint32Array(w * h).map(() => r());
    const bytes = encodeFrame(w, h * 2, true, [
      { x: 0, y: 0, w, h, data: new Uint8Array(text.buffer) },
      { x: 0, y: h, w, h, data: new Uint8Array(noise.buffer) },
    ]);
    const m = decodeHostToUi(bytes);
    if (m.op !== 'frame') throw new Error('not a frame');
    expect(m.rects.map((x) => x.enc)).toEqual([ENC_RLE24_LZ, ENC_RLE24]);
    const rle = encodeRle24(new Uint8Array(text.buffer), w * h).byteLength;
    expect(m.rects[0]!.data.byteLength).toBeLessThan(rle / 4);
    const screen = new Uint32Array(w * h * 2);
    for (const x of m.rects) decodeRect(x, screen, w);
    for (let i = 0; i < w * h; i++) {
      expect(screen[i]! & 0xffffff).toBe(((text[i]! & 0xff) << 16) | (text[i]! & 0xff00) | ((text[i]! >>> 16) & 0xff));
    }
    // A forged length in front of the LZ block cannot make the decoder allocate more than the rect needs.
    const forged = { ...m.rects[0]!, data: m.rects[0]!.data.slice() };
    new DataView(forged.data.buffer).setUint32(0, 0x7fffffff, true);
    expect(() => decodeRect(forged, screen, w)).toThrow(/too many bytes/);
  }
}
