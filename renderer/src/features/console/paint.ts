// Paints frame updates (encoded dirty rectangles, stream.ts / frame-codec.ts) onto a
// canvas. Kept free of React: frames go straight from the stream to the canvas, never
// through component state. One ImageData the size of the screen is kept and reused:
// each rect is decoded straight into it (no per-frame buffers, no separate colour
// swizzle pass) and only the rect's area is put on the canvas.
import { type WireRect, decodeRect } from '../../../../electron/common/contracts/stream';

export class ScreenPainter {
  private img: ImageData | undefined;
  private px: Uint32Array | undefined;

  /** Decodes and paints the rects; returns the pixels painted. Throws StreamError on corrupt pixel data. */
  paint(ctx: CanvasRenderingContext2D, width: number, height: number, rects: WireRect[]): number {
    if (!this.img || this.img.width !== width || this.img.height !== height) {
      this.img = ctx.createImageData(width, height);
      this.px = new Uint32Array(this.img.data.buffer);
    }
    let pixels = 0;
    for (const r of rects) {
      if (!r.w || !r.h) continue;
      decodeRect(r, this.px!, width);
      ctx.putImageData(this.img, 0, 0, r.x, r.y, r.w, r.h);
      pixels += r.w * r.h;
    }
    return pixels;
  }
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
