import { describe, expect, it } from 'vitest';
import { bgrxToRgba } from './paint';

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
