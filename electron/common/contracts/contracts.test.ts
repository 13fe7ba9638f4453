import { describe, expect, it } from 'vitest';
import { api } from './api';
import * as s from './schema';
import { decodeHostToUi, decodeUiToHost, encodeFrame, encodeInfo, encodeUiToHost } from './stream';
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
    expect(f).toMatchObject({ op: 'frame', width: 640, height: 480, modeChanged: true, rects: [{ x: 10, y: 20, w: 2, h: 3 }] });
    expect(() => decodeHostToUi(encodeFrame(4, 4, false, [{ x: 3, y: 0, w: 2, h: 3, data }]))).toThrow(/outside/);
    for (const m of [
      { op: 'key', code: 'KeyA', down: true },
      { op: 'combo', name: 'ctrl-alt-f7' },
      { op: 'mouse', dx: -5, dy: 7, dz: 1, buttons: 1 },
      { op: 'ackSerial', bytes: 123456 },
      { op: 'subscribe', frames: true, serial: false },
      { op: 'displaySize', width: 1920, height: 1080 },
      { op: 'displaySize', width: 0, height: 0 },
    ] as const) {
      expect(decodeUiToHost(encodeUiToHost(m))).toEqual(m);
    }
    expect(() => decodeUiToHost(encodeUiToHost({ op: 'combo', name: 'rm -rf' }))).toThrow(/unknown key combination/);
    expect(() => decodeUiToHost(Uint8Array.of(0x84, 1, 0x20))).toThrow(/key code/);
    expect(() => decodeUiToHost(Uint8Array.of(0x42))).toThrow(/unknown/);
  });
  it('carries absolute pointer events for the USB tablet, clamped to the wire', () => {
    const m = { op: 'pointer', x: 1023, y: 767, buttons: 1 | 4 | 16, wheel: -3, hwheel: 2 } as const;
    const bytes = encodeUiToHost(m);
    expect(bytes.byteLength).toBe(8);
    expect(decodeUiToHost(bytes)).toEqual(m);
    expect(decodeUiToHost(encodeUiToHost({ op: 'pointer', x: -5, y: 70000, buttons: 0xff, wheel: 300, hwheel: -300 }))).toEqual({
      op: 'pointer',
      x: 0,
      y: 65535,
      buttons: 31,
      wheel: 127,
      hwheel: -128,
    });
    expect(() => decodeUiToHost(Uint8Array.of(0x89, 0, 0, 0, 0, 32, 0, 0))).toThrow(/buttons/);
    expect(() => decodeUiToHost(Uint8Array.of(0x89, 0, 0, 0, 0, 0, 0))).toThrow(/8 bytes/);
  });
  it("says in the stream's info whether the guest drives the tablet", () => {
    expect(decodeHostToUi(encodeInfo({ state: 'running', tablet: true }))).toEqual({ op: 'info', info: { state: 'running', tablet: true } });
    expect(decodeHostToUi(encodeInfo({ state: 'running', tablet: false }))).toEqual({ op: 'info', info: { state: 'running', tablet: false } });
    expect(decodeHostToUi(encodeInfo({ state: 'paused' }))).toEqual({ op: 'info', info: { state: 'paused' } });
    const odd = new TextEncoder().encode(JSON.stringify({ state: 'running', tablet: 'yes' }));
    expect(decodeHostToUi(Uint8Array.of(0x03, ...odd))).toEqual({ op: 'info', info: { state: 'running' } });
  });
});
