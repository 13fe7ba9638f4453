// Scrolling as a copy (issue 14, "a scrolled terminal"): when a text console or a
// page scrolls, the engine reports the whole area as changed, and every console would
// get every pixel of it again although most rows only moved. Like VNC's CopyRect and
// RDP's ScrBlt, the engine host keeps the screen its consoles show (the shadow), finds
// the vertical shift that explains most of a changed rect's rows (a whole text screen,
// or a terminal window scrolling inside a desktop), and sends those rows as one "copy
// from y+dy" rect (stream.ts ENC_COPY) followed by the rows that are really new. Every
// console that gets a partial frame shows the shadow already (one that missed a frame
// waits for a whole one, host-core.ts), and whole frames carry no copies.
//
// Cost per frame: a hash of every 4th changed row (rows of one colour are marked: they
// match anywhere and prove nothing) looked up among the shown rows' hashes, an exact
// comparison of the rows a candidate copies (a differing row fails at its first
// differing pixel; hash collisions never send wrong pixels), and the shadow update (a
// copy of the changed pixels, their rows hashed again).
import { type PixelRect, copyPixels } from '../common/contracts/stream';

/** At least this many rows must move together before a copy is sent instead of pixels. */
const MIN_BAND = 16;
/** Narrower rects are not worth a look. */
const MIN_WIDTH = 64;
const FLAT = 0; // the hash of a row of one colour (real hashes are never 0: see rowHash)

export class ScrollDetector {
  private w = 0;
  private h = 0;
  private shadow = new Uint32Array(0);
  private hashes = new Uint32Array(0); // per shadow row (full width)
  /** Rows sent as copies so far (tests and diagnostics). */
  copiedRows = 0;

  /**
   * Turns an update into the rects to send: on a whole frame (or a new mode) the rects as
   * they are, the shadow taken from them; otherwise a copy rect first where a rect is
   * mostly rows that moved, then its other rows as pixels.
   */
  process(width: number, height: number, whole: boolean, rects: PixelRect[]): PixelRect[] {
    if (width !== this.w || height !== this.h) {
      this.w = width;
      this.h = height;
      this.shadow = new Uint32Array(width * height);
      this.hashes = new Uint32Array(height);
      this.rehash(0, height);
      whole = true;
    }
    const out: PixelRect[] = [];
    for (const r of rects) {
      if (!whole && r.w >= MIN_WIDTH && r.h >= MIN_BAND * 2 && r.data.byteOffset % 4 === 0) {
        const split = this.scrolled(r);
        if (split) {
          out.push(...split);
          continue;
        }
      }
      out.push(r);
    }
    // Copies first: they read the screen as it was before this frame. A copy whose source
    // an earlier copy of this frame overwrote would read the wrong rows: it goes as pixels.
    out.sort((a, b) => Number(!!b.copyFrom) - Number(!!a.copyFrom));
    const written: PixelRect[] = [];
    for (const r of out) {
      if (r.copyFrom) {
        const src = { x: r.copyFrom.x, y: r.copyFrom.y, w: r.w, h: r.h };
        if (written.some((d) => overlaps(d, src))) delete r.copyFrom;
        else written.push(r), (this.copiedRows += r.h);
      }
      this.apply(r);
    }
    return out;
  }

  /**
   * The copy and pixel rects for a rect whose rows mostly moved vertically within its
   * columns (a full-width text screen, or a terminal window scrolling inside a desktop), or null.
   */
  private scrolled(r: PixelRect): PixelRect[] | null {
    const W = this.w;
    const px = new Uint32Array(r.data.buffer, r.data.byteOffset, r.w * r.h);
    const full = r.x === 0 && r.w === W;
    // Where do the rows come from? Old rows (the same columns) by hash, up to 8 places
    // each (text repeats rows), then a vote of sampled new rows for every dy = old row -
    // new row they allow: the true shift gets a vote from nearly every sample,
    // coincidences scatter. Full rows use the kept hashes; a narrower rect hashes the old
    // rows it could have come from (its own height above and below).
    const where = new Map<number, number[]>();
    const lo = full ? 0 : Math.max(0, r.y - r.h);
    const hi = full ? this.h : Math.min(this.h, r.y + 2 * r.h);
    for (let y = lo; y < hi; y++) {
      const k = full ? this.hashes[y]! : rowHash(this.shadow, y * W + r.x, r.w);
      if (k === FLAT) continue;
      const at = where.get(k);
      if (!at) where.set(k, [y]);
      else if (at.length < 8) at.push(y);
    }
    const votes = new Map<number, number>();
    for (let y = 0; y < r.h; y += 4) {
      const k = rowHash(px, y * r.w, r.w); // sampled rows only: the band below is checked pixel by pixel
      if (k === FLAT) continue;
      for (const from of where.get(k) ?? []) {
        const dy = from - (r.y + y);
        if (dy !== 0) votes.set(dy, (votes.get(dy) ?? 0) + 1);
      }
    }
    let dy = 0;
    let best = 0;
    for (const [d, n] of votes) if (n > best) (best = n), (dy = d);
    if (!dy || best < MIN_BAND / 4) return null;
    // The longest band of rows that equal the old rows dy away, exactly.
    let bandStart = -1;
    let bandLen = 0;
    for (let y = 0; y < r.h; ) {
      let e = y;
      while (e < r.h && this.sameAsOld(px, r, e, r.y + e + dy)) e++;
      if (e - y > bandLen) (bandStart = y), (bandLen = e - y);
      y = e + 1;
    }
    if (bandLen < MIN_BAND) return null;
    // The band's pixels ride along (not sent): what goes instead should the copy turn out unusable.
    const band = r.data.subarray(bandStart * r.w * 4, (bandStart + bandLen) * r.w * 4);
    const out: PixelRect[] = [{ x: r.x, y: r.y + bandStart, w: r.w, h: bandLen, data: band, copyFrom: { x: r.x, y: r.y + bandStart + dy } }];
    const rows = (from: number, to: number) => {
      if (to > from) out.push({ x: r.x, y: r.y + from, w: r.w, h: to - from, data: r.data.subarray(from * r.w * 4, to * r.w * 4) });
    };
    rows(0, bandStart);
    rows(bandStart + bandLen, r.h);
    return out;
  }

  /** Whether row `y` of the new pixels equals shadow row `oldY`, pixel by pixel (a different row fails early). */
  private sameAsOld(px: Uint32Array, r: PixelRect, y: number, oldY: number): boolean {
    if (oldY < 0 || oldY >= this.h) return false;
    const a = y * r.w;
    const b = oldY * this.w + r.x;
    for (let i = 0; i < r.w; i++) if ((px[a + i]! & 0xffffff) !== (this.shadow[b + i]! & 0xffffff)) return false;
    return true;
  }

  /** Puts a rect on the shadow, as a console paints it. */
  private apply(r: PixelRect): void {
    const w = this.w;
    if (r.copyFrom) {
      // Exactly what a console does with the copy (stream.ts).
      copyPixels(this.shadow, w, r.copyFrom.x, r.copyFrom.y, r.x, r.y, r.w, r.h);
      // Whole rows keep their hashes; parts of rows are hashed again.
      if (r.x === 0 && r.w === w) this.hashes.copyWithin(r.y, r.copyFrom.y, r.copyFrom.y + r.h);
      else this.rehash(r.y, r.y + r.h);
      return;
    }
    const src = r.data.byteOffset % 4 === 0 ? new Uint32Array(r.data.buffer, r.data.byteOffset, r.w * r.h) : new Uint32Array(r.data.slice().buffer);
    for (let y = 0; y < r.h; y++) this.shadow.set(src.subarray(y * r.w, (y + 1) * r.w), (r.y + y) * w + r.x);
    this.rehash(r.y, r.y + r.h);
  }

  private rehash(from: number, to: number): void {
    for (let y = from; y < to; y++) this.hashes[y] = rowHash(this.shadow, y * this.w, this.w);
  }
}

function overlaps(a: { x: number; y: number; w: number; h: number }, b: { x: number; y: number; w: number; h: number }): boolean {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/** FNV-1a over the row's 24-bit pixels; FLAT (0) for a row of one colour, never 0 otherwise. */
function rowHash(px: Uint32Array, at: number, w: number): number {
  const first = px[at]! & 0xffffff;
  let h = 0x811c9dc5;
  let flat = true;
  for (let i = 0; i < w; i++) {
    const v = px[at + i]! & 0xffffff;
    if (v !== first) flat = false;
    h = Math.imul(h ^ v, 16777619);
  }
  if (flat) return FLAT;
  return h >>> 0 || 1;
}
