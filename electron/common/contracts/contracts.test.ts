import { describe, expect, it } from 'vitest';
import { api } from './api';
import * as s from './schema';
import { decodeHostToUi, decodeUiToHost, encodeFrame, encodeUiToHost } from './stream';
import { VmDefinitionSchema, nameProblem } from './vm';

describe('schema', () => {
  it('rejects unknown fields and wrong types with a path', () => {
    const o = s.object({ a: s.number(), b: s.optional(s.string()) });
    expect(o.parse({ a: 1 })).toEqual({ a: 1 });
    expect(() => o.parse({ a: 1, c: 2 })).toThrow('c: unknown field');
    expect(() => o.parse({ a: '1' })).toThrow('a: expected a finite number');
    expect(() => api['vm.action'].params.parse({ uuid: 'u', action: 'start', x: 1 })).toThrow();
  });
  it('checks VM names', () => {
    expect(nameProblem('debian-12.vm_1')).toBeNull();
    expect(nameProblem('')).toMatch(/Enter/);
    expect(nameProblem('-x')).toMatch(/letters/);
    expect(nameProblem('a b')).toMatch(/letters/);
    expect(() => VmDefinitionSchema.parse({ version: 2 })).toThrow();
  });
});

describe('stream wire format', () => {
  it('round-trips frames and input, and rejects malformed bytes', () => {
    const data = new Uint8Array(2 * 3 * 4).fill(9);
    const f = decodeHostToUi(encodeFrame(640, 480, true, [{ x: 10, y: 20, w: 2, h: 3, data }]));
    expect(f).toMatchObject({ op: 'frame', width: 640, height: 480, modeChanged: true });
    expect(() => decodeHostToUi(encodeFrame(4, 4, false, [{ x: 3, y: 0, w: 2, h: 3, data }]))).toThrow(/outside/);
    for (const m of [
      { op: 'key', code: 'KeyA', down: true },
      { op: 'combo', name: 'ctrl-alt-f7' },
      { op: 'mouse', dx: -5, dy: 7, dz: 1, buttons: 1 },
      { op: 'ackSerial', bytes: 123456 },
      { op: 'subscribe', frames: true, serial: false },
    ] as const) {
      expect(decodeUiToHost(encodeUiToHost(m))).toEqual(m);
    }
    expect(() => decodeUiToHost(encodeUiToHost({ op: 'combo', name: 'rm -rf' }))).toThrow(/unknown key combination/);
    expect(() => decodeUiToHost(Uint8Array.of(0x84, 1, 0x20))).toThrow(/key code/);
    expect(() => decodeUiToHost(Uint8Array.of(0x42))).toThrow(/unknown/);
  });
});
