// A synthetic engine for bench/app ONLY (loaded with VIREO_ADDON): it drives the
// real app path (engine host process, supervisor, WebSocket bridge, browser canvas
// and xterm) with load the real engine can't produce yet: 10 MB of serial output,
// and a display whose every pixel changes on every poll. Never used by tests.
//
// Display modes (VIREO_BENCH_MODE): 'full' whole-screen changes on every poll, with
// VIREO_BENCH_PATTERN 'flat' (one colour, the best case for compression), 'desktop'
// (a page of text-like glyph rows on a light background scrolling 8 px a frame; the
// typical large change) or 'noise' (every pixel random, the worst case: nothing
// compresses); 'idle' nothing changes; 'blink' a 8x16 cursor that toggles every
// 250 ms (each toggle's time is logged to VIREO_BENCH_LOG for the latency bench).
// Size: VIREO_BENCH_W x VIREO_BENCH_H (default 1024x768).
'use strict';
const fs = require('fs');
const MODE = process.env.VIREO_BENCH_MODE || 'serial';
const PATTERN = process.env.VIREO_BENCH_PATTERN || 'flat';
const LOG = process.env.VIREO_BENCH_LOG;
const W = Number(process.env.VIREO_BENCH_W || 1024);
const H = Number(process.env.VIREO_BENCH_H || 768);

// Deterministic pseudo-random words (xorshift32).
function fillNoise(u32, seed) {
  let x = seed | 1;
  for (let i = 0; i < u32.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    u32[i] = x & 0x00ffffff;
  }
}

// A tall page: light background, rows of dark 'glyphs' (random 6x10 blocks with gaps), 16 px lines.
let page = null;
const PAGE_EXTRA = 1024;
function desktopPage() {
  if (page) return page;
  page = new Uint32Array(W * (H + PAGE_EXTRA));
  page.fill(0x00f4f4f4);
  let x = 12345;
  const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
  for (let line = 0; line * 16 < H + PAGE_EXTRA; line++) {
    const len = (rnd() % (W / 8 - 10)) + 5;
    for (let c = 0; c < len; c++) {
      if (rnd() % 6 === 0) continue; // a space
      const bits = rnd();
      for (let gy = 0; gy < 10; gy++) {
        for (let gx = 0; gx < 6; gx++) {
          if ((bits >>> ((gy * 6 + gx) % 31)) & 1) page[(line * 16 + 3 + gy) * W + 8 + c * 8 + gx] = 0x00202830;
        }
      }
    }
  }
  return page;
}
const noisePool = [];

class Machine {
  constructor(config) {
    this.config = config;
    this.state = 'created';
    this.frame = 0;
    this.serialCb = () => {};
    this.stateCb = () => {};
  }
  start() {
    this.state = 'running';
    setImmediate(() => this.stateCb({ state: 'running' }));
    if (MODE === 'serial') {
      const total = Number(process.env.VIREO_BENCH_BYTES || 10 * 1024 * 1024);
      let sent = 0;
      const chunk = 4096;
      // A chatty guest: 4 KiB bursts as fast as the event loop allows.
      const pump = () => {
        if (this.state !== 'running') return;
        for (let n = 0; n < 16 && sent < total; n++) {
          const len = Math.min(chunk, total - sent);
          const b = Buffer.alloc(len);
          for (let i = 0; i < len; i++) {
            const k = sent + i;
            b[i] = k % 81 === 80 ? 10 : 33 + (k % 94);
          }
          sent += len;
          this.serialCb(0, b);
        }
        if (sent < total) setImmediate(pump);
        else if (LOG) fs.appendFileSync(LOG, `done ${Date.now()}\n`);
      };
      setTimeout(pump, 300);
    }
  }
  pause() { this.state = 'paused'; }
  resume() { this.state = 'running'; }
  stop() {
    if (this.state === 'stopped') return;
    clearInterval(this.blinkTimer);
    this.state = 'stopped';
    this.stateCb({ state: 'stopped', reason: { kind: 'stopped', message: 'stopped' } });
  }
  writeSerial(port, data) {
    if (LOG) fs.appendFileSync(LOG, `input ${Date.now()} ${Buffer.from(data).toString('hex')}\n`);
  }
  onSerial(cb) { this.serialCb = cb; }
  onState(cb) { this.stateCb = cb; }
  sendKey() {}
  sendCombo() {}
  sendMouse() {}
  sendPointer() { return false; }
  tabletActive() { return false; }
  perfStats() {
    return { vcpus: 1, cpuNs: 0, ramBytes: 256 * 1048576, residentBytes: 0, disks: [], nics: [] };
  }
  pciDevices() { return []; }
  // A new buffer per poll, like the engine (it copies each rectangle out of its framebuffer).
  wholeScreen() {
    const data = new Uint8Array(W * H * 4);
    const u32 = new Uint32Array(data.buffer);
    if (PATTERN === 'noise') {
      // A handful of random screens made once (making them costs more than the path under test).
      if (noisePool.length < 4) {
        const n = new Uint32Array(W * H);
        fillNoise(n, 0x9e3779b9 + noisePool.length * 7919);
        noisePool.push(n);
      }
      u32.set(noisePool[this.frame % noisePool.length]);
    } else if (PATTERN === 'desktop') {
      const p = desktopPage();
      const off = ((this.frame * 8) % PAGE_EXTRA) * W;
      u32.set(p.subarray(off, off + W * H));
    } else {
      u32.fill(0x00010101 * ((this.frame * 37) & 0xff));
    }
    return data;
  }
  pollFrame(full) {
    if (MODE === 'serial') return null;
    if (MODE === 'blink') {
      if (!this.blinkTimer) {
        this.blinkOn = false;
        this.blinkDirty = false;
        this.blinkTimer = setInterval(() => {
          if (this.state !== 'running') return;
          this.blinkOn = !this.blinkOn;
          this.blinkDirty = true;
          if (LOG) fs.appendFileSync(LOG, `blink ${Date.now()}\n`);
        }, 250);
      }
      if (full) {
        this.blinkDirty = false;
        const data = new Uint8Array(W * H * 4);
        new Uint32Array(data.buffer).fill(0x00101010);
        return { width: W, height: H, modeChanged: true, rects: [{ x: 0, y: 0, w: W, h: H, data }] };
      }
      if (!this.blinkDirty) return null;
      this.blinkDirty = false;
      const data = new Uint8Array(8 * 16 * 4);
      new Uint32Array(data.buffer).fill(this.blinkOn ? 0x00c0c0c0 : 0x00101010);
      return { width: W, height: H, modeChanged: false, rects: [{ x: 64, y: 64, w: 8, h: 16, data }] };
    }
    if (MODE === 'idle' && !full) return null;
    this.frame++;
    return { width: W, height: H, modeChanged: !!full, rects: [{ x: 0, y: 0, w: W, h: H, data: this.wholeScreen() }] };
  }
  screenshotPng() { return Buffer.alloc(0); }
  screenText() { return ''; }
}

module.exports = { Machine, kvmProblem: () => null, kvmIsPvm: () => false };
