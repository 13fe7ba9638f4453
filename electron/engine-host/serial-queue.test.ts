// Serial output for a console that stops acking (issue 14, "a client that stops reading"):
// the engine host keeps it (never dropped short of SERIAL_QUEUE_LIMIT) but in whole
// SERIAL_CHUNK messages, not one queued message per small write of the guest (a guest that
// prints a line at a time would otherwise cost an object per line on top of its bytes).
// When the console acks again it gets every byte, in order, in few messages.
import { describe, expect, it } from 'vitest';
import type { ToHost } from '../common/contracts/engine-host';
import { SERIAL_CHUNK, SERIAL_HIGH_WATER, decodeHostToUi, encodeUiToHost } from '../common/contracts/stream';
import { FakeMachine, fakeAddon } from '../services/__tests__/fake-engine';
import { EngineHost } from './host-core';

describe('engine host serial queue', () => {
  it('coalesces what waits for a console that stopped acking, and delivers it all in order', () => {
    const host = new EngineHost(fakeAddon, () => undefined, () => undefined);
    host.handle({ t: 'start', config: { memoryMiB: 16, cpus: 1 } } as ToHost);
    const machine = FakeMachine.last!;
    const got: Uint8Array[] = [];
    host.attachStream(1, { send: (d) => got.push(d) });
    host.streamInput(1, encodeUiToHost({ op: 'subscribe', frames: false, serial: true }));
    got.length = 0;
    // 20,000 writes of 100 bytes (2 MB): the first 256 KiB go out, the rest waits.
    const LINE = 100;
    const N = 20000;
    const expected = new Uint8Array(LINE * N);
    for (let i = 0; i < N; i++) {
      const line = new Uint8Array(LINE).fill(32 + (i % 90));
      expected.set(line, i * LINE);
      machine.emitSerial(line);
    }
    const serialOf = (ms: Uint8Array[]) => ms.map((m) => decodeHostToUi(m)).filter((m) => m.op === 'serial') as Array<{ op: 'serial'; data: Uint8Array }>;
    const first = serialOf(got);
    const sentBytes = first.reduce((a, m) => a + m.data.byteLength, 0);
    expect(sentBytes).toBeLessThanOrEqual(SERIAL_HIGH_WATER + LINE);
    // The console acks everything it got, then keeps acking until the queue is empty.
    got.length = 0;
    let acked = sentBytes;
    host.streamInput(1, encodeUiToHost({ op: 'ackSerial', bytes: acked }));
    for (let i = 0; i < 1000; i++) {
      const more = serialOf(got).reduce((a, m) => a + m.data.byteLength, 0) + sentBytes - acked;
      if (!more) break;
      acked += more;
      host.streamInput(1, encodeUiToHost({ op: 'ackSerial', bytes: more }));
    }
    const rest = serialOf(got);
    const all = new Uint8Array(LINE * N);
    let o = 0;
    for (const m of [...first, ...rest]) {
      all.set(m.data, o);
      o += m.data.byteLength;
    }
    expect(o).toBe(LINE * N);
    expect(Buffer.from(all).equals(Buffer.from(expected))).toBe(true);
    // What waited went out in whole chunks: ~1.8 MB in ~110 messages, not ~17,400.
    const waited = LINE * N - sentBytes;
    console.log(`${waited} bytes waited for the console; sent in ${rest.length} messages after the acks`);
    expect(rest.length).toBeLessThanOrEqual(Math.ceil(waited / SERIAL_CHUNK) + 2);
    host.handle({ t: 'stop' });
  });
});
