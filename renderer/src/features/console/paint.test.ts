import { describe, expect, it } from 'vitest';
import { decodeHostToUi, encodeFrame } from '../../../../electron/common/contracts/stream';
import { ScreenPainter, canvasToFramebuffer, wheelNotches } from './paint';

describe('ScreenPainter', () => {
  it('decodes each rect into one reused screen image and puts only that rect', () => {
    const puts: Array<[ImageData, number[]]> = [];
    const created: ImageData[] = [];
    const ctx = {
      createImageData: (w: number, h: number) => {
        const img = { width: w, height: h, data: new Uint8ClampedArray(w * h * 4) } as unknown as ImageData;
        created.push(img);
        return img;
      },
      putImageData: (img: ImageData, ...args: number[]) => puts.push([img, args]),
    } as unknown as CanvasRenderingContext2D;
    const p = new ScreenPainter();
    const px = new Uint8Array(new Uint32Array([0x00010203, 0x00010203, 0x00aabbcc, 0x00010203]).buffer);
    const send = (x: number, y: number) => {
      const m = decodeHostToUi(encodeFrame(4, 3, false, [{ x, y, w: 2, h: 2, data: px }]));
      if (m.op !== 'frame') throw new Error('not a frame');
      return p.paint(ctx, 4, 3, m.rects);
    };
    expect(send(1, 0)).toBe(4);
    expect(send(2, 1)).toBe(4);
    expect(created).toHaveLength(1);
    expect(puts.map(([, a]) => a)).toEqual([[0, 0, 1, 0, 2, 2], [0, 0, 2, 1, 2, 2]]);
    const d = created[0]!.data;
    // (1,0) from the first frame: BGRX 03 02 01 -> RGBA 01 02 03 ff; (2,2) = the third pixel of the second.
    expect([...d.subarray(4, 8)]).toEqual([1, 2, 3, 255]);
    expect([...d.subarray((2 * 4 + 2) * 4, (2 * 4 + 2) * 4 + 4)]).toEqual([0xaa, 0xbb, 0xcc, 255]);
    expect([...d.subarray(0, 4)]).toEqual([0, 0, 0, 0]);
  });
});

describe('wheel notches', () => {
  it('turns the browser wheel into IntelliMouse Z: sign kept, scaled, clamped', () => {
    expect(wheelNotches(100, 0)).toBe(1);
    expect(wheelNotches(-100, 0)).toBe(-1);
    expect(wheelNotches(4, 0)).toBe(1); // a touchpad's small step is still a notch
    expect(wheelNotches(350, 0)).toBe(4);
    expect(wheelNotches(5000, 0)).toBe(7);
    expect(wheelNotches(-3, 1)).toBe(-1);
    expect(wheelNotches(9, 1)).toBe(3);
    expect(wheelNotches(1, 2)).toBe(1);
    expect(wheelNotches(0, 0)).toBe(0);
    expect(wheelNotches(Number.NaN, 0)).toBe(0);
  });
});

describe('canvas point to framebuffer pixel (USB tablet)', () => {
  it('maps 1:1 directly and scales a stretched element', () => {
    expect(canvasToFramebuffer(0, 0, 1024, 768, 1024, 768, false)).toEqual({ x: 0, y: 0 });
    expect(canvasToFramebuffer(512.6, 300.2, 1024, 768, 1024, 768, false)).toEqual({ x: 512, y: 300 });
    expect(canvasToFramebuffer(1023.9, 767.9, 1024, 768, 1024, 768, false)).toEqual({ x: 1023, y: 767 });
    // A HiDPI-free element shown at half size without contain.
    expect(canvasToFramebuffer(256, 192, 512, 384, 1024, 768, false)).toEqual({ x: 512, y: 384 });
  });
  it('undoes scale to fit with letterbox bars', () => {
    // 800x600 picture in a 1600x900 element: scale 1.5, 200 px bars left and right.
    expect(canvasToFramebuffer(200, 0, 1600, 900, 800, 600, true)).toEqual({ x: 0, y: 0 });
    expect(canvasToFramebuffer(800, 450, 1600, 900, 800, 600, true)).toEqual({ x: 400, y: 300 });
    expect(canvasToFramebuffer(1399, 899, 1600, 900, 800, 600, true)).toEqual({ x: 799, y: 599 });
    // In the bars: the nearest edge.
    expect(canvasToFramebuffer(50, 450, 1600, 900, 800, 600, true)).toEqual({ x: 0, y: 300 });
    expect(canvasToFramebuffer(1590, 450, 1600, 900, 800, 600, true)).toEqual({ x: 799, y: 300 });
    // Bars above and below: 640x480 in 640x1000, scale 1, 260 px bars.
    expect(canvasToFramebuffer(10, 260, 640, 1000, 640, 480, true)).toEqual({ x: 10, y: 0 });
    expect(canvasToFramebuffer(10, 100, 640, 1000, 640, 480, true)).toEqual({ x: 10, y: 0 });
  });
  it('survives an empty element or screen', () => {
    expect(canvasToFramebuffer(5, 5, 0, 0, 640, 480, true)).toEqual({ x: 0, y: 0 });
    expect(canvasToFramebuffer(5, 5, 640, 480, 0, 0, true)).toEqual({ x: 0, y: 0 });
  });
});
