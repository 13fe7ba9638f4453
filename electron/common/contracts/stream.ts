// Fast data between a console and its engine host: framebuffer dirty rectangles
// and serial bytes out, acks, keys, mouse (relative PS/2 or the absolute USB
// tablet) and serial input back. A compact binary
// format, the same bytes over a MessagePort (Electron) or a WebSocket (browser
// mode); every message is decoded with bounds checks before use.
//
// Flow control: the engine host sends at most FRAME_WINDOW frames that are not yet
// acked (a slow canvas gets fewer frames, never a backlog), and stops sending serial
// bytes while SERIAL_HIGH_WATER bytes are unacked (the rest waits in the host; none
// is dropped). Input travels the other way and never waits on output.

export const FRAME_WINDOW = 2;
export const SERIAL_HIGH_WATER = 256 * 1024;
export const SERIAL_CHUNK = 16 * 1024;

export const enum Op {
  Frame = 0x01,
  Serial = 0x02,
  Info = 0x03,
  AckFrame = 0x81,
  AckSerial = 0x82,
  SerialIn = 0x83,
  Key = 0x84,
  Combo = 0x85,
  Mouse = 0x86,
  FullFrame = 0x87,
  Subscribe = 0x88,
  Pointer = 0x89,
  DisplaySize = 0x8a,
}

/** A dirty rectangle as the engine gives it: BGRX pixels, w*h*4 bytes. */
export interface PixelRect {
  x: number;
  y: number;
  w: number;
  h: number;
  data: Uint8Array;
  /** Instead of pixels: copy the w x h rect at (copyFrom.x, copyFrom.y) of the screen as it was before this frame (scrolling). */
  copyFrom?: { x: number; y: number };
}

/** A dirty rectangle as it travels: `data` is its pixels in encoding `enc` (frame-codec.ts); paint with decodeRect. */
export interface WireRect {
  x: number;
  y: number;
  w: number;
  h: number;
  enc: number;
  data: Uint8Array;
}

export type HostToUi =
  | { op: 'frame'; width: number; height: number; modeChanged: boolean; rects: WireRect[]; /** Size on the wire. */ bytes: number }
  | { op: 'serial'; port: number; data: Uint8Array }
  | { op: 'info'; info: StreamInfo };

export interface StreamInfo {
  state: string;
  message?: string;
  /** The guest drives the USB tablet: send 'pointer' (absolute) instead of 'mouse' (PS/2, needs a grab). */
  tablet?: boolean;
}

export type UiToHost =
  | { op: 'ackFrame' }
  | { op: 'ackSerial'; bytes: number }
  | { op: 'serialIn'; port: number; data: Uint8Array }
  | { op: 'key'; code: string; down: boolean }
  | { op: 'combo'; name: string }
  | { op: 'mouse'; dx: number; dy: number; dz: number; buttons: number }
  /** Absolute pointer (USB tablet): framebuffer pixel x, y; buttons 1 left, 2 right, 4 middle, 8 back, 16 forward; wheel + up; hwheel + right. */
  | { op: 'pointer'; x: number; y: number; buttons: number; wheel: number; hwheel: number }
  | { op: 'fullFrame' }
  | { op: 'subscribe'; frames: boolean; serial: boolean }
  /**
   * The console's display area in device pixels ("resize guest with window"): the engine offers
   * it as the EDID's preferred size, for guests that probe modes again. 0 x 0: back to the VM's setting.
   */
  | { op: 'displaySize'; width: number; height: number };

import { ENC_COPY, ENC_RLE24, ENC_RLE24_LZ, ENC_TILES, decodeRle24, decodeTiles, encodeRle24, encodeTiles, rle24Bound } from './frame-codec';
import { lzCompress, lzDecompress } from './lz';
import { StreamError } from './stream-error';

export { StreamError };

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });
/** UTF-8 text of a message, or a StreamError (the decoders throw nothing else on bad bytes). */
function text(b: Uint8Array): string {
  try {
    return dec.decode(b);
  } catch {
    throw new StreamError('text that is not UTF-8');
  }
}

export const COMBOS = [
  'ctrl-alt-del',
  'ctrl-alt-backspace',
  ...Array.from({ length: 12 }, (_, i) => `ctrl-alt-f${i + 1}`),
] as const;
const COMBO_SET = new Set<string>(COMBOS);
const KEY_CODE = /^[A-Za-z0-9]{1,32}$/;

/**
 * tiles: ENC_TILES (frame-codec.ts: solid, palette-packed or RLE24 per 64x64 tile) instead of
 * plain RLE24. On by default; the engine host turns it off with VIREO_CONSOLE_TILES=0.
 * lz: the LZ stage (lz.ts) over plain RLE24 (so only with tiles off). Off by default: measured
 * against QEMU VNC + noVNC (docs/benchmarks.md) it cut wire bytes by a third but cost the
 * engine host more CPU than Chromium saved on this 2-core host (1920x1080 text 7-12 fps with
 * it, 18-19 without). The engine host turns it on with VIREO_CONSOLE_LZ=1 (a slow link).
 * Consoles always decode every encoding.
 */
export const frameOptions = { lz: false, tiles: true };

/**
 * A frame message: [op][width u16][height u16][modeChanged u8][rect count u16], then per
 * rect [x u16][y u16][w u16][h u16][enc u8][length u32][payload] (little endian). The
 * pixels are coded here (frame-codec.ts): the one copy the engine's pixels make in the
 * host, and 3 bytes a pixel or far fewer on the way out.
 */

export function encodeFrame(width: number, height: number, modeChanged: boolean, rects: PixelRect[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = FRAME_HEADER;
  const encs: number[] = [];
  for (const r of rects) {
    if (r.copyFrom) {
      const q = new Uint8Array(4);
      const dv = new DataView(q.buffer);
      dv.setUint16(0, r.copyFrom.x, true);
      dv.setUint16(2, r.copyFrom.y, true);
      parts.push(q);
      encs.push(ENC_COPY);
      size += RECT_HEADER + 4;
      continue;
    }
    if (r.data.byteLength !== r.w * r.h * 4) throw new StreamError('rect data size does not match w*h*4');
    // The encoders and lzCompress reuse scratch buffers: keep a copy of each rect's bytes but the last.
    let p = frameOptions.tiles ? encodeTiles(r.data, r.w, r.h) : encodeRle24(r.data, r.w * r.h);
    let enc = frameOptions.tiles ? ENC_TILES : ENC_RLE24;
    const lz = !frameOptions.tiles && frameOptions.lz && lzWorthTrying(p.byteLength, r.w * r.h) ? lzCompress(p) : undefined;
    if (lz && lz.byteLength + 4 < p.byteLength * 0.875) {
      const q = new Uint8Array(4 + lz.byteLength);
      new DataView(q.buffer).setUint32(0, p.byteLength, true);
      q.set(lz, 4);
      p = q;
      enc = ENC_RLE24_LZ;
    } else if (rects.length > 1) p = p.slice();
    parts.push(p);
    encs.push(enc);
    size += RECT_HEADER + p.byteLength;
  }
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  out[0] = Op.Frame;
  dv.setUint16(1, width, true);
  dv.setUint16(3, height, true);
  out[5] = modeChanged ? 1 : 0;
  dv.setUint16(6, rects.length, true);
  let o = FRAME_HEADER;
  rects.forEach((r, i) => {
    const p = parts[i]!;
    dv.setUint16(o, r.x, true);
    dv.setUint16(o + 2, r.y, true);
    dv.setUint16(o + 4, r.w, true);
    dv.setUint16(o + 6, r.h, true);
    out[o + 8] = encs[i]!;
    dv.setUint32(o + 9, p.byteLength, true);
    out.set(p, o + RECT_HEADER);
    o += RECT_HEADER + p.byteLength;
  });
  return out;
}

const FRAME_HEADER = 8;
const RECT_HEADER = 13;

/** ENC_COPY: rows of the screen move (scrolling); overlapping source and target are fine. */
function copyRect(r: WireRect, dst: Uint32Array, stride: number): void {
  if (r.data.byteLength !== 4) throw new StreamError('a copy rect carries 4 bytes');
  const dv = new DataView(r.data.buffer, r.data.byteOffset, 4);
  const sx = dv.getUint16(0, true);
  const sy = dv.getUint16(2, true);
  const rows = dst.length / stride;
  if (r.x + r.w > stride || r.y + r.h > rows || sx + r.w > stride || sy + r.h > rows) throw new StreamError('copy outside the screen');
  copyPixels(dst, stride, sx, sy, r.x, r.y, r.w, r.h);
}

/**
 * Copies the w x h rect at (sx, sy) of a screen (`stride` pixels a row) to (x, y) of the same
 * screen, as if through a temporary buffer (source and target may overlap: scrolling). The
 * console's ENC_COPY and the engine host's picture of the consoles' screen (scroll.ts) both
 * move pixels with it. Bounds are the caller's.
 */
export function copyPixels(dst: Uint32Array, stride: number, sx: number, sy: number, x: number, y: number, w: number, h: number): void {
  if (sx === 0 && x === 0 && w === stride) {
    dst.copyWithin(y * stride, sy * stride, (sy + h) * stride); // whole rows: one move
    return;
  }
  // Row by row, in the order that reads each source row before it is overwritten.
  const down = sy < y;
  for (let k = 0; k < h; k++) {
    const row = down ? h - 1 - k : k;
    dst.copyWithin((y + row) * stride + x, (sy + row) * stride + sx, (sy + row) * stride + sx + w);
  }
}

/**
 * The second stage pays where RLE24 left repeating literals (text, icons, UI chrome) and
 * costs a pass for nothing on noise: only tried on rects of some size where RLE24 found
 * any run at all (noise comes out at 3 bytes a pixel and more). lz.ts also crosses
 * stretches without matches faster and faster.
 */
function lzWorthTrying(rleBytes: number, pixels: number): boolean {
  return rleBytes >= 1024 && rleBytes < pixels * 3;
}

/**
 * Paints a decoded message's rect into `dst`: RGBA pixels as 32-bit words (an ImageData's
 * buffer), `stride` pixels a row. Throws StreamError on corrupt pixel data.
 */
export function decodeRect(r: WireRect, dst: Uint32Array, stride: number): void {
  if (r.enc === ENC_TILES) return decodeTiles(r.data, r.w, r.h, dst, stride, r.x, r.y);
  if (r.enc === ENC_RLE24) return decodeRle24(r.data, r.w, r.h, dst, stride, r.x, r.y);
  if (r.enc === ENC_COPY) return copyRect(r, dst, stride);
  if (r.enc !== ENC_RLE24_LZ) throw new StreamError(`unknown pixel encoding ${r.enc}`);
  if (r.data.byteLength < 4) throw new StreamError('short compressed pixels');
  const size = new DataView(r.data.buffer, r.data.byteOffset, 4).getUint32(0, true);
  // What the encoder could have made for this rect, no more: a hostile size allocates nothing big.
  if (size > rle24Bound(r.w * r.h)) throw new StreamError('compressed pixels claim too many bytes');
  decodeRle24(lzDecompress(r.data.subarray(4), size), r.w, r.h, dst, stride, r.x, r.y);
}

export function encodeSerial(port: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + data.byteLength);
  out[0] = Op.Serial;
  out[1] = port;
  out.set(data, 2);
  return out;
}

export function encodeInfo(info: StreamInfo): Uint8Array {
  const body = enc.encode(JSON.stringify(info));
  const out = new Uint8Array(1 + body.byteLength);
  out[0] = Op.Info;
  out.set(body, 1);
  return out;
}

export function decodeHostToUi(buf: Uint8Array): HostToUi {
  if (buf.byteLength < 1) throw new StreamError('empty message');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  switch (buf[0]) {
    case Op.Frame: {
      if (buf.byteLength < 8) throw new StreamError('short frame header');
      const width = dv.getUint16(1, true);
      const height = dv.getUint16(3, true);
      const modeChanged = buf[5] === 1;
      const n = dv.getUint16(6, true);
      const rects: WireRect[] = [];
      let o = FRAME_HEADER;
      for (let i = 0; i < n; i++) {
        if (o + RECT_HEADER > buf.byteLength) throw new StreamError('short rect header');
        const x = dv.getUint16(o, true);
        const y = dv.getUint16(o + 2, true);
        const w = dv.getUint16(o + 4, true);
        const h = dv.getUint16(o + 6, true);
        const enc = buf[o + 8]!;
        const len = dv.getUint32(o + 9, true);
        if (x + w > width || y + h > height) throw new StreamError('rect outside the screen');
        if (enc !== ENC_RLE24 && enc !== ENC_RLE24_LZ && enc !== ENC_COPY && enc !== ENC_TILES) throw new StreamError(`unknown pixel encoding ${enc}`);
        if (o + RECT_HEADER + len > buf.byteLength) throw new StreamError('short rect data');
        rects.push({ x, y, w, h, enc, data: buf.subarray(o + RECT_HEADER, o + RECT_HEADER + len) });
        o += RECT_HEADER + len;
      }
      if (o !== buf.byteLength) throw new StreamError('trailing bytes after frame');
      return { op: 'frame', width, height, modeChanged, rects, bytes: buf.byteLength };
    }
    case Op.Serial:
      if (buf.byteLength < 2) throw new StreamError('short serial message');
      return { op: 'serial', port: buf[1]!, data: buf.subarray(2) };
    case Op.Info: {
      let v: unknown;
      try {
        v = JSON.parse(text(buf.subarray(1)));
      } catch (e) {
        throw e instanceof StreamError ? e : new StreamError('bad info message');
      }
      if (typeof v !== 'object' || v === null || typeof (v as StreamInfo).state !== 'string') {
        throw new StreamError('bad info message');
      }
      const m = (v as StreamInfo).message;
      const t = (v as StreamInfo).tablet;
      return {
        op: 'info',
        info: { state: (v as StreamInfo).state, ...(typeof m === 'string' ? { message: m } : {}), ...(typeof t === 'boolean' ? { tablet: t } : {}) },
      };
    }
    default:
      throw new StreamError(`unknown host message 0x${buf[0]!.toString(16)}`);
  }
}

export function encodeUiToHost(m: UiToHost): Uint8Array {
  switch (m.op) {
    case 'ackFrame':
      return Uint8Array.of(Op.AckFrame);
    case 'fullFrame':
      return Uint8Array.of(Op.FullFrame);
    case 'subscribe':
      return Uint8Array.of(Op.Subscribe, (m.frames ? 1 : 0) | (m.serial ? 2 : 0));
    case 'ackSerial': {
      const out = new Uint8Array(5);
      out[0] = Op.AckSerial;
      new DataView(out.buffer).setUint32(1, m.bytes, true);
      return out;
    }
    case 'serialIn': {
      const out = new Uint8Array(2 + m.data.byteLength);
      out[0] = Op.SerialIn;
      out[1] = m.port;
      out.set(m.data, 2);
      return out;
    }
    case 'key': {
      const code = enc.encode(m.code);
      const out = new Uint8Array(2 + code.byteLength);
      out[0] = Op.Key;
      out[1] = m.down ? 1 : 0;
      out.set(code, 2);
      return out;
    }
    case 'combo': {
      const name = enc.encode(m.name);
      const out = new Uint8Array(1 + name.byteLength);
      out[0] = Op.Combo;
      out.set(name, 1);
      return out;
    }
    case 'mouse': {
      const out = new Uint8Array(7);
      const dv = new DataView(out.buffer);
      out[0] = Op.Mouse;
      dv.setInt16(1, clamp(m.dx, -32768, 32767), true);
      dv.setInt16(3, clamp(m.dy, -32768, 32767), true);
      dv.setInt8(5, clamp(m.dz, -128, 127));
      out[6] = m.buttons & 7;
      return out;
    }
    case 'pointer': {
      const out = new Uint8Array(8);
      const dv = new DataView(out.buffer);
      out[0] = Op.Pointer;
      dv.setUint16(1, clamp(m.x, 0, 65535), true);
      dv.setUint16(3, clamp(m.y, 0, 65535), true);
      out[5] = m.buttons & 31;
      dv.setInt8(6, clamp(m.wheel, -128, 127));
      dv.setInt8(7, clamp(m.hwheel, -128, 127));
      return out;
    }
    case 'displaySize': {
      const out = new Uint8Array(5);
      const dv = new DataView(out.buffer);
      out[0] = Op.DisplaySize;
      dv.setUint16(1, clamp(m.width, 0, 65535), true);
      dv.setUint16(3, clamp(m.height, 0, 65535), true);
      return out;
    }
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, Math.trunc(v)));
}

export function decodeUiToHost(buf: Uint8Array): UiToHost {
  if (buf.byteLength < 1) throw new StreamError('empty message');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const need = (n: number) => {
    if (buf.byteLength !== n) throw new StreamError(`message 0x${buf[0]!.toString(16)} must be ${n} bytes`);
  };
  switch (buf[0]) {
    case Op.AckFrame:
      need(1);
      return { op: 'ackFrame' };
    case Op.FullFrame:
      need(1);
      return { op: 'fullFrame' };
    case Op.Subscribe:
      need(2);
      return { op: 'subscribe', frames: (buf[1]! & 1) !== 0, serial: (buf[1]! & 2) !== 0 };
    case Op.AckSerial:
      need(5);
      return { op: 'ackSerial', bytes: dv.getUint32(1, true) };
    case Op.SerialIn:
      if (buf.byteLength < 2 || buf[1]! > 3) throw new StreamError('bad serial input');
      return { op: 'serialIn', port: buf[1]!, data: buf.subarray(2) };
    case Op.Key: {
      if (buf.byteLength < 3 || buf[1]! > 1) throw new StreamError('bad key message');
      const code = text(buf.subarray(2));
      if (!KEY_CODE.test(code)) throw new StreamError('bad key code');
      return { op: 'key', down: buf[1] === 1, code };
    }
    case Op.Combo: {
      const name = text(buf.subarray(1));
      if (!COMBO_SET.has(name)) throw new StreamError(`unknown key combination '${name}'`);
      return { op: 'combo', name };
    }
    case Op.Mouse:
      need(7);
      if (buf[6]! > 7) throw new StreamError('bad mouse buttons');
      return { op: 'mouse', dx: dv.getInt16(1, true), dy: dv.getInt16(3, true), dz: dv.getInt8(5), buttons: buf[6]! };
    case Op.Pointer:
      need(8);
      if (buf[5]! > 31) throw new StreamError('bad pointer buttons');
      return { op: 'pointer', x: dv.getUint16(1, true), y: dv.getUint16(3, true), buttons: buf[5]!, wheel: dv.getInt8(6), hwheel: dv.getInt8(7) };
    case Op.DisplaySize:
      need(5);
      return { op: 'displaySize', width: dv.getUint16(1, true), height: dv.getUint16(3, true) };
    default:
      throw new StreamError(`unknown console message 0x${buf[0]!.toString(16)}`);
  }
}
