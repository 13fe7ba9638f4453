// A synthetic engine for bench/app ONLY (loaded with VIREO_ADDON): it drives the
// real app path (engine host process, supervisor, WebSocket bridge, browser canvas
// and xterm) with load the real engine can't produce yet: 10 MB of serial output,
// and a display whose every pixel changes on every poll. Never used by tests.
'use strict';
const fs = require('fs');
const MODE = process.env.VIREO_BENCH_MODE || 'serial';
const LOG = process.env.VIREO_BENCH_LOG;
const W = 1024;
const H = 768;

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
  pollFrame(full) {
    if (MODE === 'idle' && !full) return null;
    if (MODE === 'serial') return null;
    this.frame++;
    const data = new Uint8Array(W * H * 4);
    const v = (this.frame * 37) & 0xff;
    new Uint32Array(data.buffer).fill(0x00010101 * v);
    return { width: W, height: H, modeChanged: !!full, rects: [{ x: 0, y: 0, w: W, h: H, data }] };
  }
  screenshotPng() { return Buffer.alloc(0); }
  screenText() { return ''; }
}

module.exports = { Machine, kvmProblem: () => null, kvmIsPvm: () => false };
