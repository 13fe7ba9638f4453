// The relays' ack gate (ack-gate.ts): unit behaviour, then the WebSocket bridge and the
// service socket with a console that acks what it never reads.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FRAME_WINDOW, encodeUiToHost } from '../../common/contracts/stream';
import { AckGate, RELAY_HIGH_WATER, ownBytes } from '../ack-gate';
import { type Backend, serveSocket } from '../rpc-socket';
import type { StreamHandle } from '../supervisor';
import { startBridge } from '../ws-bridge';

const ackFrame = encodeUiToHost({ op: 'ackFrame' });
const ackSerial = (bytes: number) => encodeUiToHost({ op: 'ackSerial', bytes });

describe('AckGate', () => {
  it('passes everything while the transport is below the mark', () => {
    const out: Uint8Array[] = [];
    const g = new AckGate(() => 100, (m) => out.push(m), 1000);
    g.fromConsole(ackFrame);
    g.fromConsole(ackSerial(5));
    g.fromConsole(encodeUiToHost({ op: 'key', code: 'KeyA', down: true }));
    expect(out.map((m) => m[0])).toEqual([0x81, 0x82, 0x84]);
    expect(g.counters.held).toBe(0);
    g.close();
  });

  it('holds acks above the mark, adds them up, lets input through and releases them once drained', () => {
    const out: Uint8Array[] = [];
    let pending = 5000;
    const g = new AckGate(() => pending, (m) => out.push(m), 1000);
    for (let i = 0; i < 50; i++) g.fromConsole(ackFrame);
    g.fromConsole(ackSerial(0xf0000000));
    g.fromConsole(ackSerial(0xf0000000));
    g.fromConsole(encodeUiToHost({ op: 'pointer', x: 1, y: 2, buttons: 1, wheel: 0, hwheel: 0 }));
    expect(out.map((m) => m[0])).toEqual([0x89]); // input never waits on output
    expect(g.counters.held).toBe(52);
    g.drained(); // still above the mark
    expect(out.length).toBe(1);
    pending = 1000;
    g.drained();
    // One serial ack (saturated at the u32 field), then at most a window of frame acks.
    expect(out.slice(1).map((m) => m[0])).toEqual([0x82, ...Array(FRAME_WINDOW).fill(0x81)]);
    expect(new DataView(out[1]!.buffer, out[1]!.byteOffset).getUint32(1, true)).toBe(0xffffffff);
    expect(g.holding()).toBe(false);
    // An ack after the release goes straight through again.
    g.fromConsole(ackFrame);
    expect(out.length).toBe(2 + FRAME_WINDOW + 1);
    g.close();
  });

  it('releases by itself when no send callback comes after the drain', async () => {
    const out: Uint8Array[] = [];
    let pending = 5000;
    const g = new AckGate(() => pending, (m) => out.push(m), 1000);
    g.fromConsole(ackFrame);
    expect(out.length).toBe(0);
    pending = 0;
    await new Promise((r) => setTimeout(r, 250));
    expect(out.length).toBe(1);
    g.close();
  });
});

describe('ownBytes', () => {
  it('copies a small view so a queued message does not pin the chunk it came in', () => {
    const chunk = new Uint8Array(1 << 20);
    chunk.set([2, 0, 65, 66], 1000);
    const view = chunk.subarray(1000, 1004);
    const own = ownBytes(view);
    expect(Array.from(own)).toEqual([2, 0, 65, 66]);
    expect(own.buffer.byteLength).toBeLessThan(1024);
    // A view that is most of its buffer (a whole frame) goes as it is, uncopied.
    const big = chunk.subarray(8, chunk.byteLength);
    expect(ownBytes(big)).toBe(big);
  });
});

/**
 * A stand-in engine stream that behaves as the engine host does for frames: it sends a
 * FRAME bytes frame every 5 ms while it has credit (FRAME_WINDOW at most), and each ack
 * gives one back. `sent` counts the bytes it handed to the relay.
 */
function creditStream(frame: number) {
  const st = { sent: 0, credits: FRAME_WINDOW, closed: false };
  let dataCb: (d: Uint8Array) => void = () => undefined;
  const payload = new Uint8Array(frame).fill(7);
  payload[0] = 0x01;
  const timer = setInterval(() => {
    if (st.credits > 0 && !st.closed) {
      st.credits--;
      st.sent += frame;
      dataCb(payload);
    }
  }, 5);
  const handle: StreamHandle = {
    send: (d) => {
      if (d[0] === 0x81) st.credits = Math.min(FRAME_WINDOW, st.credits + 1);
    },
    onData: (cb) => (dataCb = cb),
    onClose: () => undefined,
    close: () => {
      st.closed = true;
      clearInterval(timer);
    },
  };
  return { st, handle, stop: () => clearInterval(timer) };
}

/** A client frame (RFC 6455 5.2): FIN, binary, masked. */
function wsFrame(payload: Uint8Array): Buffer {
  const mask = randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]!));
  return Buffer.concat([Buffer.from([0x82, 0x80 | payload.byteLength]), mask, body]);
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('a console that acks what it never reads', () => {
  const FRAME = 256 * 1024;
  const SECONDS = 3;

  it('through the WebSocket bridge: the relay holds at most its mark plus what the sockets take', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-gate-'));
    cleanups.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
    const fake = creditStream(FRAME);
    cleanups.push(fake.stop);
    const backend: Backend = { call: async () => ({ t: 'error', id: -1, message: 'no', code: 'internal' }), onEvent: () => () => undefined, openStream: () => fake.handle };
    const bridge = await startBridge({ service: backend, staticDir: tmp });
    cleanups.push(() => bridge.close());
    const sock = net.connect(bridge.port, '127.0.0.1');
    cleanups.push(() => sock.destroy());
    await new Promise((r) => sock.once('connect', r));
    sock.write(
      `GET /stream?vm=x&token=${bridge.token} HTTP/1.1\r\nHost: 127.0.0.1:${bridge.port}\r\nOrigin: http://127.0.0.1:${bridge.port}\r\n` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    await new Promise<void>((resolve) => {
      sock.once('data', () => {
        sock.pause(); // never reads again
        resolve();
      });
    });
    const t = setInterval(() => sock.write(wsFrame(ackFrame)), 2);
    cleanups.push(() => clearInterval(t));
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const mib = fake.st.sent / 2 ** 20;
    console.log(`bridge: ${mib.toFixed(1)} MiB sent to a console that read nothing in ${SECONDS} s (mark ${RELAY_HIGH_WATER / 2 ** 20} MiB)`);
    // Without the gate: one 256 KiB frame every 5 ms, ~150 MiB. With it: the mark, a window, and the kernel's socket buffers.
    expect(mib).toBeLessThan(RELAY_HIGH_WATER / 2 ** 20 + 24);
  });

  it('through the service socket: the same for a client of the UNIX socket', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-gate-'));
    cleanups.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
    const fake = creditStream(FRAME);
    cleanups.push(fake.stop);
    const backend: Backend = { call: async () => ({ t: 'error', id: -1, message: 'no', code: 'internal' }), onEvent: () => () => undefined, openStream: () => fake.handle };
    const sockPath = path.join(tmp, 's.sock');
    const server = await serveSocket({ backend, path: sockPath, peerCheck: () => null });
    cleanups.push(() => server.close());
    // A raw client: open stream 1, then never read, and ack every 2 ms.
    const sock = net.connect(sockPath);
    cleanups.push(() => sock.destroy());
    await new Promise((r) => sock.once('connect', r));
    const frame = (kind: number, body: Buffer) => {
      const h = Buffer.alloc(5);
      h.writeUInt32LE(1 + body.length, 0);
      h[4] = kind;
      return Buffer.concat([h, body]);
    };
    sock.write(frame(1, Buffer.from(JSON.stringify({ t: 'stream.open', sid: 1, uuid: 'x' }))));
    sock.pause();
    const sid = Buffer.alloc(4);
    sid.writeUInt32LE(1, 0);
    const ack = frame(2, Buffer.concat([sid, Buffer.from(ackFrame)]));
    const t = setInterval(() => sock.write(ack), 2);
    cleanups.push(() => clearInterval(t));
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const mib = fake.st.sent / 2 ** 20;
    console.log(`service socket: ${mib.toFixed(1)} MiB sent to a client that read nothing in ${SECONDS} s`);
    expect(mib).toBeLessThan(RELAY_HIGH_WATER / 2 ** 20 + 24);
  });
});
