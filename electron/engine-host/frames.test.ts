// Frames for two consoles on one VM, one of them slow: the engine's dirty state is
// consumed by each poll, so a console out of credits when the screen changed must get a
// whole frame once it acks again, or the part that changed would stay stale on it.
import { describe, expect, it } from 'vitest';
import type { ToHost } from '../common/contracts/engine-host';
import { FRAME_WINDOW, type HostToUi, decodeHostToUi, encodeUiToHost } from '../common/contracts/stream';
import { FakeMachine, fakeAddon } from '../services/__tests__/fake-engine';
import { EngineHost } from './host-core';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const frames = (ms: HostToUi[]) => ms.filter((m): m is Extract<HostToUi, { op: 'frame' }> => m.op === 'frame');

describe('engine host frames', () => {
  it('a console that was out of credits when the screen changed gets a whole frame when it acks', async () => {
    const host = new EngineHost(fakeAddon, () => undefined, () => undefined);
    host.handle({ t: 'start', config: { memoryMiB: 16, cpus: 1 } } as ToHost);
    const machine = FakeMachine.last!;
    const fast: HostToUi[] = [];
    const slow: HostToUi[] = [];
    host.attachStream(1, { send: (d) => fast.push(decodeHostToUi(d)) });
    host.attachStream(2, { send: (d) => slow.push(decodeHostToUi(d)) });
    for (const sid of [1, 2]) host.streamInput(sid, encodeUiToHost({ op: 'subscribe', frames: true, serial: false }));
    try {
      // Both get their first (whole) frame; the slow one then uses up its window unacked.
      await expect.poll(() => frames(slow).length).toBeGreaterThanOrEqual(1);
      for (let i = 0; frames(slow).length < FRAME_WINDOW && i < 100; i++) {
        machine.sendKey('KeyA', true);
        await sleep(20);
      }
      expect(frames(slow).length).toBe(FRAME_WINDOW);
      // The fast console acks each frame and sees the next change; the slow one does not.
      const before = frames(fast).length;
      for (let i = 0; i < before; i++) host.streamInput(1, encodeUiToHost({ op: 'ackFrame' }));
      machine.sendKey('KeyB', true);
      await expect.poll(() => frames(fast).length).toBeGreaterThan(before);
      const pixel = machine.pixel;
      expect(frames(slow).length).toBe(FRAME_WINDOW);
      // Nothing changes after that. The slow console acks once: a whole frame with the screen as it is now.
      await sleep(60);
      host.streamInput(2, encodeUiToHost({ op: 'ackFrame' }));
      await expect.poll(() => frames(slow).length).toBe(FRAME_WINDOW + 1);
      const last = frames(slow).at(-1)!;
      expect(last.modeChanged).toBe(true); // a whole frame
      expect(last.rects.map((r) => [r.x, r.y, r.w, r.h])).toEqual([[0, 0, 64, 48]]);
      const screen = new Uint32Array(64 * 48);
      const { decodeRect } = await import('../common/contracts/stream');
      for (const r of last.rects) decodeRect(r, screen, 64);
      expect(screen[0]! & 0xff).toBe(pixel);
    } finally {
      host.handle({ t: 'stop' } as ToHost);
    }
  });
});
