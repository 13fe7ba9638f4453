// Paints frame updates (BGRX dirty rectangles) onto a canvas. Kept free of React:
// frames go straight from the stream to the canvas, never through component state.
import type { WireRect } from '../../../../electron/common/contracts/stream';

export function bgrxToRgba(src: Uint8Array, dst: Uint8ClampedArray): void {
  const n = src.byteLength >> 2;
  if (src.byteOffset % 4 === 0 && dst.byteOffset % 4 === 0) {
    const s = new Uint32Array(src.buffer, src.byteOffset, n);
    const d = new Uint32Array(dst.buffer, dst.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const v = s[i]!;
      d[i] = 0xff000000 | ((v & 0xff) << 16) | (v & 0xff00) | ((v >>> 16) & 0xff);
    }
  } else {
    for (let i = 0, o = 0; i < n; i++, o += 4) {
      dst[o] = src[o + 2]!;
      dst[o + 1] = src[o + 1]!;
      dst[o + 2] = src[o]!;
      dst[o + 3] = 255;
    }
  }
}

// One reusable ImageData per rectangle size: full-screen updates repeat the same size,
// and a fresh 3 MB buffer per frame is garbage the collector would have to chase.
const images = new Map<string, ImageData>();

function imageFor(ctx: CanvasRenderingContext2D, w: number, h: number): ImageData {
  const key = `${w}x${h}`;
  let img = images.get(key);
  if (!img) {
    if (images.size > 32) images.clear();
    img = ctx.createImageData(w, h);
    images.set(key, img);
  }
  return img;
}

export function paintRects(ctx: CanvasRenderingContext2D, rects: WireRect[]): number {
  let pixels = 0;
  for (const r of rects) {
    if (!r.w || !r.h) continue;
    const img = imageFor(ctx, r.w, r.h);
    bgrxToRgba(r.data, img.data);
    ctx.putImageData(img, r.x, r.y);
    pixels += r.w * r.h;
  }
  return pixels;
}

/**
 * A wheel event as PS/2 IntelliMouse Z notches: down positive (as the browser's
 * deltaY), one notch per 100 px, 3 lines or a page, at least one, at most 7
 * (the 4-bit field's range); 0 when the wheel did not turn vertically.
 * deltaMode: 0 pixels, 1 lines, 2 pages (WheelEvent.DOM_DELTA_*).
 */
export function wheelNotches(deltaY: number, deltaMode: number): number {
  if (!deltaY || !Number.isFinite(deltaY)) return 0;
  const per = deltaMode === 1 ? 3 : deltaMode === 2 ? 1 : 100;
  return Math.sign(deltaY) * Math.max(1, Math.min(7, Math.round(Math.abs(deltaY) / per)));
}

/**
 * Where a point on the canvas element (offsetX/offsetY, CSS pixels) lies on the
 * guest's framebuffer (fbW x fbH pixels), for the USB tablet. `contain`: the
 * element is larger than the picture and the picture is scaled to fit inside it,
 * centred (the console's "Scale to fit", CSS object-fit: contain); otherwise the
 * picture fills the element (1:1, where the element is the framebuffer's size).
 * Points in the letterbox bars or past the edges land on the nearest edge pixel.
 */
export function canvasToFramebuffer(
  offsetX: number,
  offsetY: number,
  elemW: number,
  elemH: number,
  fbW: number,
  fbH: number,
  contain: boolean,
): { x: number; y: number } {
  if (fbW <= 0 || fbH <= 0 || elemW <= 0 || elemH <= 0) return { x: 0, y: 0 };
  let sx = elemW / fbW;
  let sy = elemH / fbH;
  let left = 0;
  let top = 0;
  if (contain) {
    sx = sy = Math.min(sx, sy);
    left = (elemW - fbW * sx) / 2;
    top = (elemH - fbH * sy) / 2;
  }
  const clamp = (v: number, n: number) => Math.max(0, Math.min(n - 1, Math.floor(v)));
  return { x: clamp((offsetX - left) / sx, fbW), y: clamp((offsetY - top) / sy, fbH) };
}
