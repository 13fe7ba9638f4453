import { describe, expect, it } from 'vitest';
import { bgrxToRgba, wheelNotches } from './paint';

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
