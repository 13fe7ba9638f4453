// Flow control at a relay (issue 14, "a client that stops reading"). The engine host
// sends a console at most FRAME_WINDOW unacked frames and SERIAL_HIGH_WATER unacked
// serial bytes, and trusts the console's acks. A client that acks without reading (a
// script that sends acks and never reads its socket, or a socket whose reader stalled
// behind a fast acker) would let the relay's outgoing buffer (ws bufferedAmount, a
// UNIX socket's writableLength) grow without bound. The gate holds such acks back
// while the relay's own transport holds more than `high` unsent bytes and passes them
// on as it drains: the console then gets only what its transport carries, the engine
// keeps coalescing frames meanwhile, and the relay holds at most `high` plus one
// window of frames and serial bytes. Everything else (keys, pointer, serial input,
// subscribe, full-frame requests) passes at once: input never waits on output.
import { FRAME_WINDOW, encodeUiToHost } from '../common/contracts/stream';

/**
 * A message about to wait in a relay's send queue, as bytes of its own. Messages that
 * arrive through a socket are views into the read chunk (rpc-socket.ts FrameReader), and a
 * 20-byte serial message queued for a stalled console would keep that whole chunk (up to
 * megabytes of other consoles' frames) alive: measured, 2.5 MB/s pinned in `vireo serve`
 * by a stalled console of a guest printing 130 lines a second. Copies when the view is less
 * than half of its buffer, so a queue never holds more than twice its bytes.
 */
export function ownBytes(d: Uint8Array): Uint8Array {
  return d.byteLength * 2 < d.buffer.byteLength ? d.slice() : d;
}

/** Unsent bytes a relay's transport may hold before the console's acks wait. */
export const RELAY_HIGH_WATER = 8 * 1024 * 1024;

const ACK_FRAME = 0x81; // stream.ts Op.AckFrame
const ACK_SERIAL = 0x82; // stream.ts Op.AckSerial

export interface AckGateCounters {
  /** Acks that had to wait for the transport to drain. */
  held: number;
}

export class AckGate {
  private frameAcks = 0;
  private serialBytes = 0;
  /** While acks wait: a slow re-check, in case no send callback comes after the last drain. */
  private timer: ReturnType<typeof setInterval> | undefined;
  readonly counters: AckGateCounters = { held: 0 };

  /**
   * @param pending bytes the relay's transport to the console has not written out yet
   * @param forward passes a message on towards the engine host
   */
  constructor(
    private readonly pending: () => number,
    private readonly forward: (msg: Uint8Array) => void,
    private readonly high = RELAY_HIGH_WATER,
  ) {}

  /** A message from the console. */
  fromConsole(msg: Uint8Array): void {
    const isFrameAck = msg.byteLength === 1 && msg[0] === ACK_FRAME;
    const isSerialAck = msg.byteLength === 5 && msg[0] === ACK_SERIAL;
    if (!isFrameAck && !isSerialAck) return this.forward(msg);
    if (!this.holding() && this.pending() <= this.high) return this.forward(msg);
    this.counters.held++;
    // Held acks add up in two numbers: more frame acks than the window are no-ops at
    // the engine host anyway, serial bytes are summed (saturating at the u32 field).
    if (isFrameAck) this.frameAcks = Math.min(FRAME_WINDOW, this.frameAcks + 1);
    else this.serialBytes = Math.min(0xffffffff, this.serialBytes + new DataView(msg.buffer, msg.byteOffset, 5).getUint32(1, true));
    this.timer ??= setInterval(() => this.drained(), 100);
  }

  /** Call whenever the transport wrote something out (a send callback, 'drain'). */
  drained(): void {
    if (!this.holding() || this.pending() > this.high) return;
    const frames = this.frameAcks;
    const bytes = this.serialBytes;
    this.frameAcks = 0;
    this.serialBytes = 0;
    this.stopTimer();
    if (bytes) this.forward(encodeUiToHost({ op: 'ackSerial', bytes }));
    for (let i = 0; i < frames; i++) this.forward(encodeUiToHost({ op: 'ackFrame' }));
  }

  /** The console went away: nothing more is forwarded. */
  close(): void {
    this.frameAcks = 0;
    this.serialBytes = 0;
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Acks are waiting for the transport to drain. */
  holding(): boolean {
    return this.frameAcks > 0 || this.serialBytes > 0;
  }
}
