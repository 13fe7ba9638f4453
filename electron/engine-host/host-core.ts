// The engine host's logic, free of any process plumbing: it owns one native
// Machine, answers control messages, and serves console streams with flow control
// (frame credits, serial watermarks). main.ts wires it to child_process IPC or to
// Electron's parentPort; unit tests drive it with a fake addon.
import * as fs from 'node:fs';
import type { FrameUpdate, MachineConfig, NativeAddon, NativeMachine, StateEvent } from '../common/engine-api';
import type { FromHost, ToHost } from '../common/contracts/engine-host';
import { DEFAULT_DISPLAY, fitDisplaySize } from '../common/contracts/vm';
import { ScrollDetector } from './scroll';
import {
  FRAME_WINDOW,
  SERIAL_CHUNK,
  SERIAL_HIGH_WATER,
  StreamError,
  decodeUiToHost,
  encodeFrame,
  frameOptions,
  encodeInfo,
  encodeSerial,
} from '../common/contracts/stream';

/** How often the display is polled while a console wants frames. */
// A little under 1/60 s: timers fire late on a busy host, and at 16 ms a 60 Hz display
// got ~56 frames a second. The console's acks (one per animation frame) keep it from
// painting faster than the display shows.
export const FRAME_INTERVAL_MS = 14;
/**
 * The next poll after one that found a change: a screen that keeps changing (a scrolling page,
 * a video) is polled this often, so the consoles' acks, not the timer, set the frame rate
 * (at 14 ms the timer alone capped it at ~71 fps, ~56 on a busy host). An idle screen goes
 * back to FRAME_INTERVAL_MS. VIREO_FRAME_BUSY_MS overrides it (bench/app).
 */
export const FRAME_BUSY_INTERVAL_MS = Math.max(1, Number(process.env.VIREO_FRAME_BUSY_MS) || 8);
/** Serial output kept for a console that attaches late. */
export const SERIAL_SCROLLBACK = 64 * 1024;
/**
 * The COM1 log file is capped: past this size it is rotated (renamed to `<file>.1`,
 * replacing the previous one) and a new file started, so a chatty guest uses at most
 * twice this on disk. MachineConfig.serialLogMaxBytes overrides it (tests).
 */
export const SERIAL_LOG_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Opens the serial log for append without following a symlink (O_NOFOLLOW: a link
 * planted at the log's name is refused, not written through) and only if it is a
 * regular file. Returns the descriptor and the current size.
 */
export function openSerialLog(file: string): { fd: number; size: number } {
  const c = fs.constants;
  const fd = fs.openSync(file, c.O_WRONLY | c.O_APPEND | c.O_CREAT | c.O_NOFOLLOW | c.O_NONBLOCK, 0o600);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    return { fd, size: st.size };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/**
 * VIREO_CONSOLE_SCROLL=0 turns scrolling-as-copies off, VIREO_CONSOLE_TILES=0 the palette tiles
 * off (plain RLE24), VIREO_CONSOLE_LZ=1 (with tiles off) the LZ stage on (stream.ts frameOptions).
 */
const SCROLL_COPIES = process.env.VIREO_CONSOLE_SCROLL !== '0';
if (process.env.VIREO_CONSOLE_LZ === '1') frameOptions.lz = true;
if (process.env.VIREO_CONSOLE_TILES === '0') frameOptions.tiles = false;

/** A console that stops acking is dropped once this much serial output waits for it. */
export const SERIAL_QUEUE_LIMIT = 256 * 1024 * 1024;

export interface StreamSink {
  send(data: Uint8Array): void;
}

interface ConsoleStream {
  sid: number;
  sink: StreamSink;
  frames: boolean;
  serial: boolean;
  frameCredits: number;
  wantFull: boolean;
  serialUnacked: number;
  /** Serial messages waiting for the console's acks, filled up to SERIAL_CHUNK bytes each. */
  serialQueue: SerialPart[];
  queuedBytes: number;
}

/** A serial message being filled: header + SERIAL_CHUNK bytes of room, `len` of them used. */
interface SerialPart {
  msg: Uint8Array;
  port: number;
  len: number;
}
const EMPTY_CHUNK = new Uint8Array(SERIAL_CHUNK);

export interface HostCounters {
  framesSent: number;
  framePolls: number;
  emptyPolls: number;
  serialBytesOut: number;
}

export class EngineHost {
  private machine: NativeMachine | undefined;
  private config: MachineConfig | undefined;
  private readonly streams = new Map<number, ConsoleStream>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The last poll found a change (schedule() then polls sooner). */
  private screenBusy = false;
  /** The screen the consoles show, for sending scrolled rows as copies (scroll.ts). */
  private readonly scroll = new ScrollDetector();
  private statsTimer: ReturnType<typeof setInterval> | undefined;
  /** COM1 log file (MachineConfig.serialFile; the engine itself has no file sink). */
  private serialLog: number | undefined;
  private serialLogBytes = 0;
  private scrollback: Uint8Array[] = [];
  private scrollbackBytes = 0;
  /** The previous perf sample's vCPU time and clock (guest CPU % over the interval). */
  private lastCpuNs = -1;
  private lastCpuAt = 0;
  /** Touched guest RAM, rescanned every 2 s (mincore over guest RAM). */
  private memoryMiB = 0;
  private memoryAt = 0;
  private rebooting = false;
  private stopping = false;
  /** The guest drives the USB tablet (last seen by checkTablet). */
  private tablet = false;
  readonly counters: HostCounters = { framesSent: 0, framePolls: 0, emptyPolls: 0, serialBytesOut: 0 };

  constructor(
    private readonly addon: NativeAddon,
    private readonly post: (msg: FromHost) => void,
    private readonly exit: (code: number) => void,
  ) {}

  handle(msg: ToHost): void {
    try {
      this.dispatch(msg);
    } catch (e) {
      this.post({ t: 'error', message: e instanceof Error ? e.message : String(e) });
      if (msg.t === 'start') this.finish(3);
    }
  }

  /** A stream that bypasses IPC (Electron MessagePort). */
  attachStream(sid: number, sink: StreamSink): void {
    this.streams.set(sid, {
      sid,
      sink,
      frames: false,
      serial: false,
      frameCredits: FRAME_WINDOW,
      wantFull: true,
      serialUnacked: 0,
      serialQueue: [],
      queuedBytes: 0,
    });
    sink.send(encodeInfo({ state: this.machine?.state ?? 'created', tablet: this.tablet }));
  }

  streamInput(sid: number, data: Uint8Array): void {
    const s = this.streams.get(sid);
    if (!s) return;
    let m;
    try {
      m = decodeUiToHost(data);
    } catch (e) {
      if (e instanceof StreamError || e instanceof TypeError) {
        this.post({ t: 'error', message: `console ${sid}: ${e.message}` });
        return;
      }
      throw e;
    }
    const machine = this.machine;
    switch (m.op) {
      case 'subscribe':
        s.frames = m.frames;
        if (m.serial && !s.serial) {
          s.serial = true;
          for (const chunk of this.scrollback) this.queueSerial(s, chunk);
        }
        s.serial = m.serial;
        s.wantFull = true;
        this.pump(s);
        this.schedule();
        break;
      case 'ackFrame':
        s.frameCredits = Math.min(FRAME_WINDOW, s.frameCredits + 1);
        this.schedule();
        break;
      case 'fullFrame':
        s.wantFull = true;
        this.schedule();
        break;
      case 'ackSerial':
        s.serialUnacked = Math.max(0, s.serialUnacked - m.bytes);
        this.pump(s);
        break;
      case 'serialIn':
        machine?.writeSerial(m.port, m.data);
        break;
      case 'key':
        machine?.sendKey(m.code, m.down);
        break;
      case 'combo':
        machine?.sendCombo(m.name);
        break;
      case 'mouse':
        machine?.sendMouse(m.dx, m.dy, m.dz, m.buttons);
        break;
      case 'pointer':
        machine?.sendPointer(m.x, m.y, m.buttons, m.wheel, m.hwheel);
        break;
      case 'displaySize': {
        // "Resize guest with window": the console's area becomes the EDID's preferred size
        // (fitted to what the display can offer); 0 x 0 goes back to the VM's own setting.
        const want = m.width && m.height ? fitDisplaySize(m.width, m.height) : (this.config?.display ?? DEFAULT_DISPLAY);
        try {
          machine?.setDisplaySize(want.width, want.height);
        } catch {
          // a machine without the PC board (a flat binary) has no display: nothing to offer
        }
        break;
      }
    }
  }

  private dispatch(msg: ToHost): void {
    switch (msg.t) {
      case 'start':
        if (this.machine) throw new Error('already started');
        this.config = msg.config as MachineConfig;
        if (this.config.serialFile) {
          try {
            const { fd, size } = openSerialLog(this.config.serialFile);
            this.serialLog = fd;
            this.serialLogBytes = size;
          } catch {
            this.serialLog = undefined; // a log that can't be opened never stops the VM (the service checked the path)
          }
        }
        this.boot(msg.restore);
        this.statsTimer = setInterval(() => this.stats(), 1000);
        this.statsTimer.unref?.();
        break;
      case 'pause':
        this.need().pause();
        this.post({ t: 'state', state: 'paused' });
        this.broadcastInfo('paused');
        break;
      case 'resume':
        this.need().resume();
        this.post({ t: 'state', state: 'running' });
        this.broadcastInfo('running');
        break;
      case 'reboot':
        // A request to the guest, like virsh reboot: ctrl-alt-del (an OS restarts; firmware resets).
        // A bare machine (direct kernel without firmware) has no keyboard to take it: it is reset.
        if (this.config?.bios) this.need().sendCombo('ctrl-alt-del');
        else this.resetBoard();
        break;
      case 'reset':
        this.resetBoard();
        break;
      case 'powerButton': {
        // Shut Down: press the ACPI power button like virt-manager does. A guest that has
        // not enabled ACPI (firmware, boot loaders, bare test guests) cannot react to it:
        // the supervisor is told so, and nothing is stopped.
        const accepted = this.machine ? this.machine.powerButton() : false;
        this.post({
          t: 'acpi',
          accepted,
          ...(accepted ? {} : { message: 'the guest has not enabled ACPI (no ACPI-aware OS is running), so it cannot see the power button' }),
        });
        break;
      }
      case 'stop':
        this.stopNow();
        break;
      case 'save':
        this.save(msg.reqId, msg.path);
        break;
      case 'snapshot':
        this.snapshot(msg.reqId, msg.op, msg.name, msg.statePath);
        break;
      case 'screenshot':
        try {
          this.post({ t: 'screenshot', reqId: msg.reqId, png: new Uint8Array(this.need().screenshotPng()) });
        } catch (e) {
          this.post({ t: 'screenshot', reqId: msg.reqId, error: (e as Error).message });
        }
        break;
      case 'media':
        this.media(msg.reqId, msg.path);
        break;
      case 'devices':
        try {
          this.post({ t: 'devices', reqId: msg.reqId, pci: this.need().pciDevices() });
        } catch (e) {
          this.post({ t: 'devices', reqId: msg.reqId, error: (e as Error).message });
        }
        break;
      case 'nics':
        try {
          const m = this.need();
          if (msg.link && !m.setNicLink(msg.link.index, msg.link.up)) throw new Error(`the machine has no network card ${msg.link.index}`);
          this.post({ t: 'nics', reqId: msg.reqId, nics: m.nicStats() });
        } catch (e) {
          this.post({ t: 'nics', reqId: msg.reqId, error: (e as Error).message });
        }
        break;
      case 'openStream':
        this.attachStream(msg.sid, { send: (data) => this.post({ t: 'stream', sid: msg.sid, data }) });
        break;
      case 'closeStream':
        this.streams.delete(msg.sid);
        break;
      case 'stream':
        this.streamInput(msg.sid, msg.data);
        break;
    }
  }

  /** The board's reset line: the machine stops and a fresh one starts with the same config, in this host. */
  private resetBoard(): void {
    const old = this.need();
    this.rebooting = true;
    try {
      old.stop();
    } finally {
      this.rebooting = false;
    }
    this.machine = undefined;
    this.boot();
    for (const s of this.streams.values()) s.wantFull = true;
  }

  /**
   * Graceful engine stop (Force Off, quit, SIGTERM): the native stop stops the vCPUs,
   * completes in-flight disk requests, flushes qcow2 metadata and closes the images
   * before it returns; then the host exits 0.
   */
  stopNow(): void {
    if (this.stopping) return;
    this.stopping = true;
    const m = this.machine;
    if (m) {
      try {
        m.stop();
      } catch (e) {
        this.post({ t: 'error', message: `stop: ${(e as Error).message}` });
      }
      if (m.state !== 'crashed') this.post({ t: 'state', state: 'stopped', reason: { kind: 'stopped', message: 'stopped by the host' } });
    }
    this.finish(0);
  }

  /**
   * Managed save (virsh managedsave): pause, write the state file, then stop the machine
   * (disks flushed and closed) and exit 0. An engine error is answered and the machine
   * goes on as it was (resumed if it was running).
   */
  private save(reqId: number, path: string): void {
    if (this.stopping) {
      this.post({ t: 'saved', reqId, error: 'the machine is stopping' });
      return;
    }
    let m: NativeMachine;
    try {
      m = this.need();
    } catch (e) {
      this.post({ t: 'saved', reqId, error: (e as Error).message });
      return;
    }
    const wasRunning = m.state === 'running';
    try {
      if (wasRunning) m.pause();
      m.saveState(path);
    } catch (e) {
      if (wasRunning) {
        try {
          m.resume();
        } catch {
          /* the reply says what failed; the state events say the rest */
        }
      }
      this.post({ t: 'saved', reqId, error: e instanceof Error ? e.message : String(e) });
      return;
    }
    this.post({ t: 'saved', reqId });
    this.stopping = true;
    try {
      m.stop();
    } catch (e) {
      this.post({ t: 'error', message: `stop: ${(e as Error).message}` });
    }
    this.post({ t: 'state', state: 'stopped', reason: { kind: 'stopped', message: 'saved to a state file' } });
    this.finish(0);
  }

  /**
   * Snapshot of a live machine: pause (drains disk I/O, flushes the images), the state file
   * when asked, the disk snapshots, resume unless it was paused. The machine pauses only for
   * the capture. A failure leaves no state file and no disk snapshot.
   */
  private snapshot(reqId: number, op: 'create' | 'delete', name: string, statePath?: string): void {
    if (this.stopping) {
      this.post({ t: 'snapshot', reqId, error: 'the machine is stopping' });
      return;
    }
    let m: NativeMachine;
    try {
      m = this.need();
    } catch (e) {
      this.post({ t: 'snapshot', reqId, error: (e as Error).message });
      return;
    }
    const wasRunning = m.state === 'running';
    let error: string | undefined;
    try {
      if (wasRunning) m.pause();
      if (op === 'delete') m.deleteDiskSnapshots(name);
      else {
        if (statePath) m.saveState(statePath);
        try {
          m.createDiskSnapshots(name);
        } catch (e) {
          if (statePath) fs.rmSync(statePath, { force: true });
          throw e;
        }
      }
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    if (wasRunning) {
      try {
        m.resume();
      } catch {
        /* the state events say what happened */
      }
    }
    this.post({ t: 'snapshot', reqId, ...(error !== undefined ? { error } : {}) });
  }

  /** Live CD change; the config follows, so a Reboot in this host keeps the new disc. */
  private media(reqId: number, path: string | null): void {
    let ejected: boolean | undefined;
    try {
      const m = this.need();
      if (path === null) ejected = m.ejectCdrom();
      else m.changeCdrom(path);
    } catch (e) {
      this.post({ t: 'media', reqId, error: e instanceof Error ? e.message : String(e) });
      return;
    }
    if (path !== null || ejected) {
      // The drive stays in the config with no disc ('' is left out at boot).
      const disks = this.config?.disks ?? [];
      const i = disks.findIndex((d) => d.media === 'cdrom');
      if (i >= 0) disks[i] = { ...disks[i]!, path: path ?? '' };
    }
    this.post({ t: 'media', reqId, ...(ejected !== undefined ? { ejected } : {}) });
  }

  /** restore: a state file loaded before start() (only the first boot; a reset boots fresh). */
  private boot(restore?: string): void {
    const cfg = this.config!;
    // An ejected CD drive has path '': the engine has no empty drive, so it is left out.
    const m = new this.addon.Machine(cfg.disks?.some((d) => d.path === '') ? { ...cfg, disks: cfg.disks.filter((d) => d.path !== '') } : cfg);
    this.machine = m;
    m.onSerial((port, data) => this.onSerial(port, data));
    m.onState((ev) => this.onState(m, ev));
    if (restore) {
      try {
        m.loadState(restore);
      } catch (e) {
        this.machine = undefined; // its events are not this host's any more
        try {
          m.stop();
        } catch {
          /* never started */
        }
        throw e;
      }
    }
    m.start();
    if (m.state === 'running') this.post({ t: 'state', state: 'running' });
  }

  private onState(m: NativeMachine, ev: StateEvent): void {
    if (m !== this.machine || this.rebooting || this.stopping) return;
    this.post({ t: 'state', state: ev.state, ...(ev.reason ? { reason: ev.reason } : {}) });
    this.broadcastInfo(ev.state, ev.reason?.message);
    if (ev.state === 'stopped' || ev.state === 'crashed') {
      this.finish(ev.state === 'crashed' ? 1 : 0);
    }
  }

  private finish(code: number): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.timer = this.statsTimer = undefined;
    // Let queued IPC flush before the process goes.
    setTimeout(() => this.exit(code), 20);
  }

  /** Appends to the COM1 log, rotating it at the cap. A failing log is closed, never fatal. */
  private logSerial(data: Uint8Array): void {
    const file = this.config!.serialFile!;
    const max = this.config?.serialLogMaxBytes ?? SERIAL_LOG_MAX_BYTES;
    try {
      if (this.serialLogBytes > 0 && this.serialLogBytes + data.byteLength > max) {
        fs.closeSync(this.serialLog!);
        this.serialLog = undefined;
        fs.renameSync(file, `${file}.1`);
        const { fd, size } = openSerialLog(file);
        this.serialLog = fd;
        this.serialLogBytes = size;
      }
      // One write may exceed the cap (a single chunk larger than it): keep its tail.
      const part = data.byteLength > max ? data.subarray(data.byteLength - max) : data;
      fs.writeSync(this.serialLog!, part);
      this.serialLogBytes += part.byteLength;
    } catch {
      if (this.serialLog !== undefined) fs.close(this.serialLog, () => undefined);
      this.serialLog = undefined;
    }
  }

  private need(): NativeMachine {
    if (!this.machine) throw new Error('the machine is not started');
    return this.machine;
  }

  private onSerial(port: number, data: Uint8Array): void {
    const copy = new Uint8Array(data); // the addon may reuse its buffer
    if (port === 0 && this.serialLog !== undefined) this.logSerial(copy);
    if (port === 0) {
      this.scrollback.push(copy);
      this.scrollbackBytes += copy.byteLength;
      while (this.scrollbackBytes > SERIAL_SCROLLBACK && this.scrollback.length > 1) {
        this.scrollbackBytes -= this.scrollback.shift()!.byteLength;
      }
    }
    for (const s of this.streams.values()) {
      if (!s.serial) continue;
      this.queueSerial(s, copy, port);
      this.pump(s);
    }
  }

  // Output that waits for a console's acks is appended to the last waiting message while
  // it has room: a guest writing a line at a time costs one queued message per
  // SERIAL_CHUNK bytes, not one per line (which would cost far more than the bytes).
  private queueSerial(s: ConsoleStream, data: Uint8Array, port = 0): void {
    for (let o = 0; o < data.byteLength; ) {
      const last = s.serialQueue[s.serialQueue.length - 1];
      if (!last || last.port !== port || last.len === SERIAL_CHUNK) {
        // A new message of exactly these bytes (what goes straight out while acks keep up).
        const n = Math.min(SERIAL_CHUNK, data.byteLength - o);
        s.serialQueue.push({ msg: encodeSerial(port, data.subarray(o, o + n)), port, len: n });
        o += n;
        s.queuedBytes += n;
        continue;
      }
      if (last.msg.byteLength < 2 + SERIAL_CHUNK) {
        // It waits and more comes: give it a whole chunk of room, once.
        const grown = encodeSerial(port, EMPTY_CHUNK);
        grown.set(last.msg.subarray(2, 2 + last.len), 2);
        last.msg = grown;
      }
      const n = Math.min(SERIAL_CHUNK - last.len, data.byteLength - o);
      last.msg.set(data.subarray(o, o + n), 2 + last.len);
      last.len += n;
      o += n;
      s.queuedBytes += n;
    }
    if (s.queuedBytes > SERIAL_QUEUE_LIMIT) {
      s.sink.send(encodeInfo({ state: 'error', message: 'console too slow: serial output dropped' }));
      this.streams.delete(s.sid);
    }
  }

  private pump(s: ConsoleStream): void {
    while (s.serialUnacked < SERIAL_HIGH_WATER && s.serialQueue.length) {
      const part = s.serialQueue.shift()!;
      const n = part.len;
      const msg = part.msg.byteLength === 2 + n ? part.msg : part.msg.slice(0, 2 + n);
      s.queuedBytes -= n;
      s.serialUnacked += n;
      this.counters.serialBytesOut += n;
      s.sink.send(msg);
    }
  }

  private broadcastInfo(state: string, message?: string): void {
    for (const s of this.streams.values()) s.sink.send(encodeInfo({ state, ...(message ? { message } : {}), tablet: this.tablet }));
  }

  /** Tells the consoles when the guest starts or stops driving the USB tablet. */
  private checkTablet(): void {
    const m = this.machine;
    const now = !!m && m.state === 'running' && m.tabletActive();
    if (now === this.tablet) return;
    this.tablet = now;
    if (m) this.broadcastInfo(m.state);
  }

  /**
   * Runs the frame poll loop only while some console can take a frame: a chain of timeouts,
   * FRAME_BUSY_INTERVAL_MS apart while the screen changes, FRAME_INTERVAL_MS while it is still.
   */
  private schedule(): void {
    const wanted = [...this.streams.values()].some((s) => s.frames && s.frameCredits > 0);
    if (wanted && !this.timer && this.machine) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.screenBusy = this.pollFrames();
        this.schedule();
      }, this.screenBusy ? FRAME_BUSY_INTERVAL_MS : FRAME_INTERVAL_MS);
    } else if (!wanted && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** Polls the display and sends what changed; true when the screen had changed. */
  private pollFrames(): boolean {
    const m = this.machine;
    if (!m) return false;
    this.checkTablet();
    const ready = [...this.streams.values()].filter((s) => s.frames && s.frameCredits > 0);
    if (!ready.length) return false;
    const full = ready.some((s) => s.wantFull);
    this.counters.framePolls++;
    let upd: FrameUpdate | null;
    try {
      upd = m.pollFrame(full);
    } catch (e) {
      this.post({ t: 'error', message: `pollFrame: ${(e as Error).message}` });
      return false;
    }
    if (!upd) {
      this.counters.emptyPolls++;
      return false;
    }
    if (upd.width === 0 || upd.height === 0) return false;
    // A console out of credits misses this change (the engine's dirty state is gone once
    // polled): it gets a whole frame when it can take one again, or its screen would keep
    // what this update repaints (two windows on one VM, one of them slow).
    for (const s of this.streams.values()) if (s.frames && s.frameCredits <= 0) s.wantFull = true;
    const whole = upd.modeChanged || full;
    const rects = SCROLL_COPIES ? this.scroll.process(upd.width, upd.height, whole, upd.rects) : upd.rects;
    const bytes = encodeFrame(upd.width, upd.height, whole, rects);
    for (const s of ready) {
      // A stream that wanted a full frame and gets a partial one waits for the next full poll.
      if (s.wantFull && !full) continue;
      s.wantFull = false;
      s.frameCredits--;
      this.counters.framesSent++;
      s.sink.send(bytes);
    }
    return true;
  }

  private stats(): void {
    this.checkTablet();
    const m = this.machine;
    if (!m) return;
    const now = Date.now();
    const scanMemory = now - this.memoryAt >= 2000;
    let p;
    try {
      p = m.perfStats({ memory: scanMemory });
    } catch {
      return; // the machine is going away: no sample this second
    }
    if (scanMemory && p.residentBytes >= 0) {
      this.memoryMiB = Math.round(p.residentBytes / (1024 * 1024));
      this.memoryAt = now;
    }
    // Guest CPU: the vCPU threads' CPU time over the interval, percent of all vCPUs (0–100).
    let cpuPercent = 0;
    if (this.lastCpuNs >= 0 && p.cpuNs >= this.lastCpuNs && now > this.lastCpuAt) {
      const pct = ((p.cpuNs - this.lastCpuNs) / ((now - this.lastCpuAt) * 1e6 * Math.max(1, p.vcpus))) * 100;
      cpuPercent = Math.round(Math.min(100, Math.max(0, pct)) * 10) / 10;
    }
    this.lastCpuNs = p.cpuNs;
    this.lastCpuAt = now;
    this.post({
      t: 'stats',
      cpuPercent,
      memoryMiB: this.memoryMiB,
      perf: {
        at: now,
        vcpus: p.vcpus,
        ramMiB: Math.round(p.ramBytes / (1024 * 1024)),
        disks: p.disks.slice(0, 64).map((d) => ({ readBytes: d.readBytes, readOps: d.readOps, writeBytes: d.writeBytes, writeOps: d.writeOps })),
        nics: p.nics.slice(0, 64).map((n) => ({ rxBytes: n.rxBytes, rxPackets: n.rxPackets, txBytes: n.txBytes, txPackets: n.txPackets })),
        ...(p.input ? { input: { droppedKeys: p.input.droppedKeys, mergedClicks: p.input.mergedClicks } } : {}),
      },
    });
  }
}
