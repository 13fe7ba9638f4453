import { describe, expect, it } from 'vitest';
import { bgrxToRgba, canvasToFramebuffer, wheelNotches } from './paint';

describe('bgrxToRgba', () => {
  it('swaps blue and red and makes pixels opaque', () => {
    const src = Uint8Array.of(1, 2, 3, 0, 10, 20, 30, 99);
    const dst = new Uint8ClampedArray(8);
    bgrxToRgba(src, dst);
    expect([...dst]).toEqual([3, 2, 1, 255, 30, 20, 10, 255]);
    const odd = new Uint8Array(9).subarray(1);
    odd.set(src);
    const d2 = new Uint8ClampedArray(8);
    bgrxToRgba(odd, d2);
    expect([...d2]).toEqual([3, 2, 1, 255, 30, 20, 10, 255]);
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
