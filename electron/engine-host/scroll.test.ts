// Scrolling as a copy (scroll.ts): a console that applies the frames the engine host
// sends must always end with exactly the guest's screen, whatever moved, and a scrolled
// text screen must cost a copy plus its new rows instead of every pixel.
import { describe, expect, it } from 'vitest';
import { ENC_COPY } from '../common/contracts/frame-codec';
import { type PixelRect, StreamError, decodeHostToUi, decodeRect, encodeFrame } from '../common/contracts/stream';
import { ScrollDetector } from './scroll';

function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
}

const W = 320;
const H = 240;

/** A text-like row of pixels for line `n` (8x16 cells of two colours). */
function textRow(n: number, y: number, into: Uint32Array, at: number) {
  for (let x = 0; x < W; x++) {
    const ch = (n * 31 + (x >> 3) * 7) % 13;
    into[at + x] = ((x & 7) * 3 + (y & 15) + ch) % 5 < 2 ? 0xffe0e0e0 : 0xff102030;
  }
}

/** The guest's screen: text lines `top`.. scrolled so that line `top` is at row 0, shifted by `offset` rows. */
function textScreen(top: number): Uint32Array {
  const s = new Uint32Array(W * H);
  for (let y = 0; y < H; y++) textRow(top + (y >> 4), y, s, y * W);
  return s;
}

/** Frames as a console gets them, applied to its screen. */
class Console {
  screen = new Uint32Array(W * H);
  bytes = 0;
  apply(frame: Uint8Array) {
    this.bytes += frame.byteLength;
    const m = decodeHostToUi(frame);
    if (m.op !== 'frame') throw new Error('not a frame');
    for (const r of m.rects) decodeRect(r, this.screen, W);
    return m;
  }
  /** The screen as 24-bit BGR words, comparable with a guest screen. */
  same(guest: Uint32Array) {
    for (let i = 0; i < guest.length; i++) {
      const g = guest[i]!;
      const want = ((g & 0xff) << 16) | (g & 0xff00) | ((g >>> 16) & 0xff);
      if ((this.screen[i]! & 0xffffff) !== want) return false;
    }
    return true;
  }
}

const whole = (s: Uint32Array): PixelRect[] => [{ x: 0, y: 0, w: W, h: H, data: new Uint8Array(s.slice().buffer) }];

describe('ScrollDetector', () => {
  it('a text screen scrolled by a line goes as one copy and the new line, and the console ends with the screen', () => {
    const d = new ScrollDetector();
    const con = new Console();
    let guest = textScreen(0);
    con.apply(encodeFrame(W, H, true, d.process(W, H, true, whole(guest))));
    expect(con.same(guest)).toBe(true);
    for (let top = 1; top <= 5; top++) {
      guest = textScreen(top);
      const before = con.bytes;
      const m = con.apply(encodeFrame(W, H, false, d.process(W, H, false, whole(guest))));
      expect(con.same(guest)).toBe(true);
      expect(m.rects.map((r) => [r.enc === ENC_COPY ? 'copy' : 'pixels', r.y, r.h])).toEqual([
        ['copy', 0, H - 16],
        ['pixels', H - 16, 16],
      ]);
      // The copy's source: one text line (16 rows) further down.
      const dv = new DataView(m.rects[0]!.data.buffer, m.rects[0]!.data.byteOffset, 4);
      expect([dv.getUint16(0, true), dv.getUint16(2, true)]).toEqual([0, 16]);
      expect(con.bytes - before).toBeLessThan(W * 16 * 4);
    }
    expect(d.copiedRows).toBe(5 * (H - 16));
  });

  it('scrolling back (content moving down) and by odd amounts works too', () => {
    const d = new ScrollDetector();
    const con = new Console();
    let guest = textScreen(10);
    con.apply(encodeFrame(W, H, true, d.process(W, H, true, whole(guest))));
    let prev = 10;
    for (const top of [9, 7, 8, 8, 3]) {
      guest = textScreen(top);
      const m = con.apply(encodeFrame(W, H, false, d.process(W, H, false, whole(guest))));
      expect(con.same(guest)).toBe(true);
      // Moved: a copy first; the same screen again: pixels (nothing moved).
      expect(m.rects[0]!.enc === ENC_COPY, `${prev} -> ${top}`).toBe(top !== prev);
      prev = top;
    }
    // A pixel-exact shift of 5 rows (not a whole line).
    const shifted = new Uint32Array(W * H);
    shifted.set(guest.subarray(5 * W));
    for (let y = H - 5; y < H; y++) textRow(99, y, shifted, y * W);
    const m = con.apply(encodeFrame(W, H, false, d.process(W, H, false, whole(shifted))));
    expect(con.same(shifted)).toBe(true);
    expect(m.rects[0]!.enc).toBe(ENC_COPY);
  });

  it('600 random updates (scrolls, windows scrolling inside the screen, bands swapping places, flat screens, partial rects): the console always ends with the guest screen', () => {
    const r = rng(5);
    const d = new ScrollDetector();
    const con = new Console();
    let guest = textScreen(0);
    con.apply(encodeFrame(W, H, true, d.process(W, H, true, whole(guest))));
    let copies = 0;
    let windowCopies = 0;
    for (let step = 0; step < 600; step++) {
      const kind = r() % 7;
      const next = guest.slice();
      let rects: PixelRect[];
      if (kind === 0) {
        // scroll by 1..40 rows either way, new rows random or text
        const dy = (1 + (r() % 40)) * (r() % 2 ? 1 : -1);
        for (let y = 0; y < H; y++) {
          const from = y + dy;
          if (from >= 0 && from < H) next.set(guest.subarray(from * W, from * W + W), y * W);
          else for (let x = 0; x < W; x++) next[y * W + x] = r() % 3 ? 0xff000000 | r() : 0xff102030;
        }
        rects = whole(next);
      } else if (kind === 1) {
        // a small rect changes
        const x = r() % (W - 8), y = r() % (H - 8), w = 1 + (r() % (W - x)), h = 1 + (r() % Math.min(40, H - y));
        const data = new Uint32Array(w * h).map(() => (r() % 2 ? 0xff000000 | r() : 0xffe0e0e0));
        for (let k = 0; k < h; k++) next.set(data.subarray(k * w, k * w + w), (y + k) * W + x);
        rects = [{ x, y, w, h, data: new Uint8Array(data.buffer) }];
      } else if (kind === 2) {
        // a flat screen (every row the same colour: rows that "match anywhere")
        next.fill(0xff203040);
        rects = whole(next);
      } else if (kind === 3) {
        // a full-width band of rows, partly moved
        const y0 = r() % (H - 64), h = 32 + (r() % 32);
        const src = Math.max(0, Math.min(H - h, y0 + (r() % 33) - 16));
        next.set(guest.subarray(src * W, (src + h) * W), y0 * W);
        if (r() % 2) next[(y0 + (r() % h)) * W + (r() % W)] = 0xff000000 | r();
        rects = [{ x: 0, y: y0, w: W, h, data: new Uint8Array(next.slice(y0 * W, (y0 + h) * W).buffer) }];
      } else if (kind === 5) {
        // a terminal window inside the screen scrolls by a few text lines; new lines at its bottom
        const x0 = 8 * (r() % 10), y0 = r() % 60, ww = 160 + 8 * (r() % 10), wh = 96 + (r() % 64), lines = 1 + (r() % 3);
        const win = new Uint32Array(ww * wh);
        for (let y = 0; y < wh; y++) {
          const from = y + 16 * lines;
          if (from < wh) win.set(guest.subarray((y0 + from) * W + x0, (y0 + from) * W + x0 + ww), y * ww);
          else win.set(new Uint32Array(ww).map(() => 0xff000000 | r()), y * ww);
        }
        for (let y = 0; y < wh; y++) next.set(win.subarray(y * ww, (y + 1) * ww), (y0 + y) * W + x0);
        rects = [{ x: x0, y: y0, w: ww, h: wh, data: new Uint8Array(win.buffer) }];
      } else if (kind === 6) {
        // two full-width bands each take rows from elsewhere; one's source may be the other's target
        const h = 32;
        const a = r() % (H / 2 - h), b = H / 2 + (r() % (H / 2 - h));
        const sa = b + (r() % 8), sb = a + (r() % 8);
        for (const [to, from] of [[a, Math.min(H - h, sa)], [b, Math.min(H - h, sb)]] as const) next.set(guest.subarray(from * W, (from + h) * W), to * W);
        rects = [a, b].map((y) => ({ x: 0, y, w: W, h, data: new Uint8Array(next.slice(y * W, (y + h) * W).buffer) }));
      } else {
        rects = whole(next); // nothing changed but reported
      }
      const out = d.process(W, H, false, rects);
      copies += out.filter((x) => x.copyFrom).length;
      windowCopies += out.filter((x) => x.copyFrom && x.w < W).length;
      con.apply(encodeFrame(W, H, false, out));
      guest = next;
      expect(con.same(guest), `step ${step}, kind ${kind}`).toBe(true);
    }
    expect(copies).toBeGreaterThan(40);
    expect(windowCopies).toBeGreaterThan(10);
  });

  it('a copy whose source another copy of the same frame overwrote goes as pixels', () => {
    const d = new ScrollDetector();
    const con = new Console();
    const guest = textScreen(0);
    con.apply(encodeFrame(W, H, true, d.process(W, H, true, whole(guest))));
    // Rows 32..95 take what was at 48..111; rows 128..191 take what was at 40..103 — which
    // the first copy has just overwritten on the console.
    const next = guest.slice();
    next.set(guest.subarray(48 * W, 112 * W), 32 * W);
    next.set(guest.subarray(40 * W, 104 * W), 128 * W);
    const rects = [32, 128].map((y) => ({ x: 0, y, w: W, h: 64, data: new Uint8Array(next.slice(y * W, (y + 64) * W).buffer) }));
    const out = d.process(W, H, false, rects);
    expect(out.filter((x) => x.copyFrom).length).toBe(1);
    con.apply(encodeFrame(W, H, false, out));
    expect(con.same(next)).toBe(true);
  });

  it('a new mode starts from the whole frame; copies outside the screen are refused by consoles', () => {
    const d = new ScrollDetector();
    const out = d.process(64, 48, false, [{ x: 0, y: 0, w: 64, h: 48, data: new Uint8Array(64 * 48 * 4) }]);
    expect(out.some((r) => r.copyFrom)).toBe(false); // a size it has never seen: no copies
    const bad = encodeFrame(W, H, false, [{ x: 0, y: 200, w: W, h: 40, data: new Uint8Array(0), copyFrom: { x: 0, y: 220 } }]);
    const m = decodeHostToUi(bad);
    if (m.op !== 'frame') throw new Error('not a frame');
    expect(() => decodeRect(m.rects[0]!, new Uint32Array(W * H), W)).toThrow(StreamError);
  });
});
