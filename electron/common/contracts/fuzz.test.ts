// Property tests over the TypeScript side's parsers (issue 15's "the console stream decoder
// and the contract's schema parser, with a JS fuzzer or property tests"): mutated and random
// input either parses or is refused with the parser's own error, nothing else escapes, the
// screen is written only inside its buffer, and no parse touches Object.prototype.
import { describe, expect, it } from 'vitest';
import { api } from './api';
import * as s from './schema';
import { type UiToHost, StreamError, decodeHostToUi, decodeRect, decodeUiToHost, encodeFrame, encodeInfo, encodeSerial, encodeUiToHost, frameOptions } from './stream';

function rng(seed: number) {
  let x = seed | 1;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
}

function mutate(r: () => number, good: Uint8Array): Uint8Array {
  const cut = r() % 3 === 0 ? r() % (good.byteLength + 1) : good.byteLength;
  const p = good.slice(0, cut);
  for (let k = r() % 5; k > 0; k--) if (p.byteLength) p[r() % p.byteLength] = r() & 255;
  if (r() % 8 === 0) return Uint8Array.of(...p, ...Array.from({ length: r() % 9 }, () => r() & 255));
  return p;
}

describe('console stream decoders under mutation', () => {
  it('host → console: 20,000 mutated frames, infos and serial messages decode or throw a StreamError; pixels land only on the screen', () => {
    const r = rng(99);
    const W = 160, H = 90;
    const px = (w: number, h: number, colours: number) => {
      const u = new Uint32Array(w * h).map(() => r() % colours);
      return new Uint8Array(u.buffer);
    };
    const goods: Uint8Array[] = [];
    for (const tiles of [true, false]) {
      frameOptions.tiles = tiles;
      goods.push(encodeFrame(W, H, true, [{ x: 0, y: 0, w: W, h: H, data: px(W, H, 2) }]));
      goods.push(encodeFrame(W, H, false, [{ x: 5, y: 7, w: 70, h: 65, data: px(70, 65, 40) }, { x: 100, y: 3, w: 9, h: 4, data: px(9, 4, 5) }]));
      goods.push(encodeFrame(W, H, false, [{ x: 0, y: 10, w: W, h: 40, data: new Uint8Array(0), copyFrom: { x: 0, y: 30 } }]));
    }
    frameOptions.tiles = true;
    goods.push(encodeInfo({ state: 'running', message: 'hello', tablet: true }), encodeSerial(0, new TextEncoder().encode('login: ')));
    let decoded = 0;
    for (let n = 0; n < 20000; n++) {
      const p = mutate(r, goods[n % goods.length]!);
      // The screen is exactly W x H with a guard band after it: nothing may be written past W*H.
      const screen = new Uint32Array(W * H + 64).fill(0x5a5a5a5a);
      try {
        const m = decodeHostToUi(p);
        if (m.op === 'frame' && m.width === W && m.height === H) for (const rect of m.rects) decodeRect(rect, screen.subarray(0, W * H), W);
        decoded++;
      } catch (e) {
        if (!(e instanceof StreamError)) throw new Error(`input ${n} (${[...p.subarray(0, 24)]}): ${String(e)}`);
      }
      for (let i = W * H; i < screen.length; i++) if (screen[i] !== 0x5a5a5a5a) throw new Error(`input ${n} wrote past the screen`);
    }
    expect(decoded).toBeGreaterThan(1000);
  });

  it('console → host: 20,000 mutated input messages decode or throw a StreamError', () => {
    const r = rng(7);
    const msgs: UiToHost[] = [
      { op: 'key', code: 'KeyA', down: true },
      { op: 'combo', name: 'ctrl-alt-del' },
      { op: 'mouse', dx: -5, dy: 7, dz: 1, buttons: 1 },
      { op: 'ackSerial', bytes: 123456 },
      { op: 'subscribe', frames: true, serial: false },
      { op: 'displaySize', width: 1920, height: 1080 },
      { op: 'ackFrame' },
    ];
    const goods = msgs.map(encodeUiToHost);
    for (let n = 0; n < 20000; n++) {
      const p = n % 10 === 0 ? Uint8Array.from({ length: r() % 12 }, () => r() & 255) : mutate(r, goods[n % goods.length]!);
      try {
        decodeUiToHost(p);
      } catch (e) {
        if (!(e instanceof StreamError)) throw new Error(`input ${n} (${[...p]}): ${String(e)}`);
      }
    }
  });
});

describe('contract schemas under random input', () => {
  it("every call's params and result: 300 random values each parse or throw a ValidationError, and Object.prototype stays clean", () => {
    const r = rng(1234);
    const keys = ['uuid', 'name', 'action', 'path', 'edit', 'media', 'kind', 'memoryMiB', 'cpus', 'disks', 'network', 'mode', 'x', '__proto__', 'constructor', 'prototype', 'toString', ''];
    const value = (depth: number): unknown => {
      switch (r() % (depth > 3 ? 6 : 9)) {
        case 0: return null;
        case 1: return r() % 2 === 0;
        case 2: return [0, -1, 1e308, -0, NaN, Infinity, 2 ** 53, 0.5, 4096][r() % 9];
        case 3: return ['', 'a', 'x'.repeat(r() % 5000), '../../etc/passwd', '\u0000', 'start', 'running', '00000000-0000-4000-8000-000000000000'][r() % 8];
        case 4: return undefined;
        case 5: return r() % 1000;
        case 6: return Array.from({ length: r() % 4 }, () => value(depth + 1));
        default: {
          const o: Record<string, unknown> = r() % 4 === 0 ? JSON.parse('{"__proto__": {"polluted": 1}}') : {};
          for (let k = r() % 5; k > 0; k--) o[keys[r() % keys.length]!] = value(depth + 1);
          return o;
        }
      }
    };
    let accepted = 0;
    for (const [name, call] of Object.entries(api)) {
      for (const schema of [call.params, call.result] as Array<s.Schema<unknown>>) {
        for (let n = 0; n < 300; n++) {
          const v = value(0);
          try {
            schema.parse(v);
            accepted++;
          } catch (e) {
            if (!(e instanceof s.ValidationError)) throw new Error(`${name}: ${JSON.stringify(v)?.slice(0, 200)}: ${String(e)}`);
          }
        }
      }
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(accepted).toBeGreaterThan(0);
  });
});
