// bench/app: the UI's budgets, measured in Debian's Chromium against `vireo serve`.
//   1. the manager with 200 VMs renders in < 200 ms (vm.list reply -> rows committed -> painted)
//   2. the serial console takes 10 MB of guest output without losing a byte or blocking input
//   3. engine -> canvas frame rate for full-screen changes, and frames sent while idle
//   4. frames-engine: the real engine as the source (guests/fbloop.bin repainting the whole
//      screen from ring 3) against QEMU's VNC server + noVNC in the same Chromium, and
//      keypress -> pixel latency on both (see vnc-peer.ts)
// Run: npx tsc -p tsconfig.json && npx vite build --config renderer/vite.config.ts && node dist/bench/app/app-bench.js
// Benches 2 and 3 use bench/app/synthetic-addon.cjs in place of the engine (see there).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { INSTRUMENT, guestFrames, haveQemu, novncDir, serveNovnc, startQemu } from './vnc-peer';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];

interface Served {
  dir: string;
  url: string;
  proc: ChildProcess;
  ctx: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

function defFile(dir: string, name: string, boot: object, i: number, extra: object = {}): string {
  const uuid = randomUUID();
  const mac = `52:54:00:${[i >> 16, (i >> 8) & 255, i & 255].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
  const def = { version: 1, uuid, name, os: 'generic', memoryMiB: 256, cpus: 1, boot, disks: [], nics: [{ mac, network: 'user', model: 'e1000' }], createdAt: new Date().toISOString(), ...extra };
  fs.writeFileSync(path.join(dir, `${uuid}.json`), JSON.stringify(def));
  return uuid;
}

async function serve(setup: (vmsDir: string) => void, env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-bench-'));
  const vmsDir = path.join(dir, 'config', 'vireo', 'vms');
  fs.mkdirSync(vmsDir, { recursive: true });
  setup(vmsDir);
  // Its own runtime dir: its own per-user service (the default `vireo serve` path: engine
  // host -> service -> serve -> browser), never one another run or engineer started.
  const runtime = path.join(dir, 'run');
  fs.mkdirSync(runtime, { mode: 0o700 });
  const fullEnv = { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'config'), XDG_DATA_HOME: path.join(dir, 'data'), XDG_RUNTIME_DIR: runtime, ...env };
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), 'serve'], {
    env: fullEnv,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.on('exit', (c) => reject(new Error(`vireo serve exited ${c}: ${out}`)));
  });
  const ctx = await chromium.launchPersistentContext(path.join(dir, 'chromium'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 800 },
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  return {
    dir,
    url,
    proc,
    ctx,
    page,
    close: async () => {
      await ctx.close();
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      spawnSync(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), 'service', '--stop'], { env: fullEnv, stdio: 'ignore' });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/* eslint-disable @typescript-eslint/no-explicit-any -- page functions run in the browser; this file has no DOM lib */
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function benchManager(): Promise<Record<string, number>> {
  const s = await serve((d) => {
    for (let i = 0; i < 200; i++) defFile(d, `vm-${String(i).padStart(3, '0')}`, { kind: 'firmware', order: 'dc' }, i);
  });
  const render: number[] = [];
  const load: number[] = [];
  try {
    for (let run = 0; run < 5; run++) {
      await s.page.goto(s.url);
      await s.page.waitForFunction(() => (globalThis as any).document.querySelectorAll('[role=option]').length === 200);
      // Wait for the paint after the commit, then read the marks.
      const r = await s.page.evaluate(
        () =>
          new Promise<{ render: number; load: number }>((resolve) =>
            (globalThis as any).requestAnimationFrame(() =>
              setTimeout(() => {
                const got = performance.getEntriesByName('vireo:list-received')[0]!.startTime;
                const done = performance.getEntriesByName('vireo:list-rendered')[0]!.startTime;
                resolve({ render: done - got, load: performance.now() });
              }),
            ),
          ),
      );
      render.push(r.render);
      load.push(r.load);
    }
  } finally {
    await s.close();
  }
  return { vms: 200, renderMsMedian: +median(render).toFixed(1), renderMsMax: +Math.max(...render).toFixed(1), pageLoadToPaintedMsMedian: +median(load).toFixed(0) };
}

function adler32(total: number): number {
  let a = 1;
  let b = 0;
  for (let k = 0; k < total; k++) {
    const v = k % 81 === 80 ? 10 : 33 + (k % 94);
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

async function openConsole(s: Served, uuid: string, tab: 'Serial' | 'Display'): Promise<void> {
  await s.page.goto(`${s.url}#/console/${uuid}`);
  await s.page.waitForFunction(() => (globalThis as any).document.documentElement.dataset.vireoReady === 'console');
  await s.page.getByRole('tab', { name: tab }).click();
  await s.page.getByRole('button', { name: 'Run', exact: true }).click();
}

async function benchSerial(): Promise<Record<string, number | boolean>> {
  const total = 10 * 1024 * 1024;
  const log = path.join(os.tmpdir(), `vireo-bench-serial-${process.pid}.log`);
  fs.writeFileSync(log, '');
  let uuid = '';
  const s = await serve((d) => (uuid = defFile(d, 'chatty', { kind: 'kernel', kernel: '/dev/null' }, 1)), {
    VIREO_ADDON: path.join(ROOT, 'bench', 'app', 'synthetic-addon.cjs'),
    VIREO_BENCH_MODE: 'serial',
    VIREO_BENCH_LOG: log,
    VIREO_BENCH_BYTES: String(total),
  });
  try {
    await openConsole(s, uuid, 'Serial');
    await s.page.waitForFunction(() => Number((globalThis as any).document.querySelector('.serial')?.getAttribute('data-bytes')) > 0, undefined, { timeout: 30000 });
    const t0 = Date.now();
    // Type while the guest floods: each key's trip from the page to the engine is timed.
    const sentAt: number[] = [];
    await s.page.locator('.xterm-helper-textarea').focus();
    for (;;) {
      const got = Number(await s.page.locator('.serial').getAttribute('data-bytes'));
      if (got >= total) break;
      if (Date.now() - t0 > 300000) throw new Error(`only ${got} bytes after 300 s`);
      if (sentAt.length < 20) {
        sentAt.push(Date.now());
        await s.page.keyboard.insertText('k');
      }
      await s.page.waitForTimeout(100); // the bench's sampling interval (this is a measurement, not a test wait)
    }
    const secs = (Date.now() - t0) / 1000;
    const adler = Number(await s.page.locator('.serial').getAttribute('data-adler32'));
    const inputs = fs
      .readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('input '))
      .map((l) => Number(l.split(' ')[1]));
    const lat = inputs.map((t, i) => t - (sentAt[i] ?? t));
    return {
      bytes: Number(await s.page.locator('.serial').getAttribute('data-bytes')),
      seconds: +secs.toFixed(2),
      MBps: +(total / 1048576 / secs).toFixed(2),
      noByteLost: adler === adler32(total),
      keysTyped: sentAt.length,
      keysReachedEngine: inputs.length,
      inputLatencyMsMedian: inputs.length ? median(lat) : -1,
      inputLatencyMsMax: inputs.length ? Math.max(...lat) : -1,
    };
  } finally {
    await s.close();
    fs.rmSync(log, { force: true });
  }
}

type Pattern = 'flat' | 'desktop' | 'noise';

/**
 * CPU time (ms, user + system) of each process on the path, by role: the profile that the
 * shared host's load does not distort as much as wall-clock rates (each figure is that
 * process's own work). Roles: engine host (its cmdline names the VM), service, serve,
 * and Chromium's processes (its profile dir is under `dir`) by --type.
 */
function cpuByRole(dir: string, uuid: string, servePid: number): Record<string, number> {
  const out: Record<string, number> = {};
  const tick = 10; // ms per clock tick (CLK_TCK 100)
  let servicePid = -1;
  try {
    servicePid = Number(fs.readFileSync(path.join(dir, 'run', 'vireo', 'service.pid'), 'utf8'));
  } catch {
    /* no service (standalone) */
  }
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd: string;
    let stat: string;
    try {
      cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ');
      stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue;
    }
    const pid = Number(e);
    let role: string | undefined;
    if (pid === servePid) role = 'serve';
    else if (pid === servicePid) role = 'service';
    else if (cmd.includes(`--vm ${uuid}`)) role = 'engineHost';
    else if (cmd.includes(dir) && cmd.includes('chromium')) role = `chromium-${/--type=([\w-]+)/.exec(cmd)?.[1] ?? 'browser'}`;
    if (!role) continue;
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out[role] = (out[role] ?? 0) + (Number(f[11]) + Number(f[12])) * tick;
  }
  return out;
}

/** Whole-screen changes on every engine poll: frames painted into the canvas per second. */
async function benchFrames(pattern: Pattern, w: number, h: number, seconds = 5, tiles = '1'): Promise<Record<string, number | string>> {
  let uuid = '';
  const s = await serve((d) => (uuid = defFile(d, 'display', { kind: 'kernel', kernel: '/dev/null' }, 2)), {
    VIREO_CONSOLE_TILES: tiles,
    VIREO_ADDON: path.join(ROOT, 'bench', 'app', 'synthetic-addon.cjs'),
    VIREO_BENCH_MODE: 'full',
    VIREO_BENCH_PATTERN: pattern,
    VIREO_BENCH_W: String(w),
    VIREO_BENCH_H: String(h),
  });
  try {
    await openConsole(s, uuid, 'Display');
    await s.page.waitForFunction(() => Number((globalThis as any).document.querySelector('canvas')?.dataset.frames) > 0, undefined, { timeout: 30000 });
    await s.page.waitForTimeout(500); // settle (measurement window, not a test wait)
    const f0 = Number(await s.page.locator('canvas').getAttribute('data-frames'));
    const b0 = Number(await s.page.locator('canvas').getAttribute('data-wire-bytes'));
    const c0 = cpuByRole(s.dir, uuid, s.proc.pid!);
    const t0 = Date.now();
    await s.page.waitForTimeout(seconds * 1000);
    const f1 = Number(await s.page.locator('canvas').getAttribute('data-frames'));
    const b1 = Number(await s.page.locator('canvas').getAttribute('data-wire-bytes'));
    const secs = (Date.now() - t0) / 1000;
    const c1 = cpuByRole(s.dir, uuid, s.proc.pid!);
    const fps = (f1 - f0) / secs;
    const cpuMsPerFrame = Object.fromEntries(
      Object.keys(c1)
        .map((k) => [k, +((c1[k]! - (c0[k] ?? 0)) / Math.max(1, f1 - f0)).toFixed(1)] as const)
        .filter(([, v]) => v > 0),
    );
    return {
      pattern,
      width: w,
      height: h,
      fps: +fps.toFixed(1),
      MBpsPixels: +((fps * w * h * 4) / 1048576).toFixed(1),
      MBpsWire: +((b1 - b0) / 1048576 / secs).toFixed(1),
      cpuMsPerFrame: JSON.stringify(cpuMsPerFrame),
    };
  } finally {
    await s.close();
  }
}

async function benchIdle(): Promise<Record<string, number>> {
  let uuid = '';
  const s = await serve((d) => (uuid = defFile(d, 'display', { kind: 'kernel', kernel: '/dev/null' }, 2)), {
    VIREO_ADDON: path.join(ROOT, 'bench', 'app', 'synthetic-addon.cjs'),
    VIREO_BENCH_MODE: 'idle',
  });
  try {
    await openConsole(s, uuid, 'Display');
    await s.page.waitForFunction(() => Number((globalThis as any).document.querySelector('canvas')?.dataset.frames) > 0, undefined, { timeout: 30000 });
    await s.page.waitForTimeout(500); // settle (measurement window, not a test wait)
    const f0 = Number(await s.page.locator('canvas').getAttribute('data-frames'));
    const t0 = Date.now();
    await s.page.waitForTimeout(5000);
    const f1 = Number(await s.page.locator('canvas').getAttribute('data-frames'));
    return { idleSeconds: +((Date.now() - t0) / 1000).toFixed(1), idleFramesPainted: f1 - f0 };
  } finally {
    await s.close();
  }
}

/**
 * A small change (an 8x16 cursor toggling every 250 ms in the engine): from the moment the
 * engine's framebuffer changed to the moment the canvas holds it (wall clock in both
 * processes; the engine's poll interval is part of it, as it would be for a guest).
 */
async function benchBlink(): Promise<Record<string, number>> {
  const log = path.join(os.tmpdir(), `vireo-bench-blink-${process.pid}.log`);
  fs.writeFileSync(log, '');
  let uuid = '';
  const s = await serve((d) => (uuid = defFile(d, 'blink', { kind: 'kernel', kernel: '/dev/null' }, 3)), {
    VIREO_ADDON: path.join(ROOT, 'bench', 'app', 'synthetic-addon.cjs'),
    VIREO_BENCH_MODE: 'blink',
    VIREO_BENCH_LOG: log,
  });
  try {
    await openConsole(s, uuid, 'Display');
    await s.page.waitForFunction(() => Number((globalThis as any).document.querySelector('canvas')?.dataset.frames) > 0, undefined, { timeout: 30000 });
    // Every paint's wall-clock time, taken when the canvas's frame counter changes.
    await s.page.evaluate(() => {
      const g = globalThis as any;
      g.__paints = [];
      const c = g.document.querySelector('canvas');
      new g.MutationObserver(() => g.__paints.push(performance.timeOrigin + performance.now())).observe(c, { attributes: true, attributeFilter: ['data-frames'] });
    });
    const t0 = Date.now();
    await s.page.waitForTimeout(6000); // 24 blinks (measurement window)
    const paints: number[] = await s.page.evaluate(() => (globalThis as any).__paints);
    const blinks = fs
      .readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('blink '))
      .map((l) => Number(l.split(' ')[1]))
      .filter((t) => t > t0 && t < Date.now() - 300);
    const lat = blinks.map((t) => (paints.find((p) => p >= t) ?? Infinity) - t).filter((d) => d < 250);
    return { blinks: blinks.length, painted: lat.length, latencyMsMedian: lat.length ? +median(lat).toFixed(1) : -1, latencyMsMax: lat.length ? +Math.max(...lat).toFixed(1) : -1 };
  } finally {
    await s.close();
    fs.rmSync(log, { force: true });
  }
}

// ---- 4. frames-engine: the real engine against QEMU's VNC server + noVNC ----------------

const FBLOOP = process.env.VIREO_FBLOOP ?? path.join(ROOT, 'native', 'out', 'core', 'guests', 'fbloop.bin');

/** One console showing guests/fbloop.bin: Vireo's own, or noVNC on QEMU's VNC server. */
interface ConsoleSide {
  side: 'vireo' | 'qemu+novnc';
  page: Page;
  /** The guest's COM1 log ("f N t T" lines). */
  log: string;
  /** Chromium's profile dir (its processes carry it on their command line). */
  chromiumDir: string;
  /** The VMM's pid (the engine host / qemu-system-x86_64). */
  vmmPid(): number;
  accel: string;
  close(): Promise<void>;
}

function tmpLog(tag: string): string {
  const log = path.join(os.tmpdir(), `vireo-bench-${tag}-${process.pid}-${Date.now()}.log`);
  fs.writeFileSync(log, '');
  return log;
}

/** Waits until the canvas shows the guest's mode (SeaBIOS runs first: ~9 s on a kvm_pvm host). */
async function waitMode(page: Page, w: number, h: number): Promise<void> {
  await page.waitForFunction(([w, h]) => [...(globalThis as any).document.querySelectorAll('canvas')].some((c: any) => c.width === w && c.height === h), [w, h], { timeout: 90000 });
}

async function openVireo(append: string, w: number, h: number): Promise<ConsoleSide> {
  let uuid = '';
  let log = '';
  const s = await serve((d) => {
    // A serial log must lie in Vireo's log directory ($XDG_DATA_HOME/vireo/logs).
    const logs = path.join(d, '..', '..', '..', 'data', 'vireo', 'logs');
    fs.mkdirSync(logs, { recursive: true });
    log = path.join(logs, 'fbloop-serial.log');
    uuid = defFile(d, 'fbloop', { kind: 'kernel', kernel: FBLOOP, append }, 4, { nics: [], serial: { logFile: log } });
  });
  try {
    await s.ctx.addInitScript({ content: INSTRUMENT });
    await openConsole(s, uuid, 'Display');
    await waitMode(s.page, w, h);
  } catch (e) {
    const shot = path.join(os.tmpdir(), `vireo-bench-fbloop-failed-${process.pid}.png`);
    await s.page.screenshot({ path: shot }).catch(() => undefined);
    let svc = '';
    try {
      svc = fs.readFileSync(path.join(s.dir, 'data', 'vireo', 'logs', 'service.log'), 'utf8').slice(-1500);
    } catch {
      /* none */
    }
    await s.close();
    if (svc) console.error(`service log:\n${svc}`);
    throw new Error(`Vireo console never showed ${w}x${h} (page: ${shot}): ${(e as Error).message}`);
  }
  const enginePid = () => {
    for (const e of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(`--vm ${uuid}`)) return Number(e);
      } catch {
        /* gone */
      }
    }
    return -1;
  };
  return {
    side: 'vireo',
    page: s.page,
    log,
    chromiumDir: s.dir,
    vmmPid: enginePid,
    accel: 'kvm',
    close: () => s.close(),
  };
}

async function openQemuNovnc(append: string, w: number, h: number): Promise<ConsoleSide> {
  const dir = novncDir();
  if (!dir) throw new Error('noVNC not found: npm i (devDependency @novnc/novnc) or set VIREO_NOVNC_DIR');
  const log = tmpLog('fbloop-qemu');
  const q = await startQemu(FBLOOP, append, log);
  const web = await serveNovnc(dir, q.wsPort);
  const prof = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-bench-novnc-'));
  const ctx = await chromium.launchPersistentContext(path.join(prof, 'chromium'), { executablePath: '/usr/bin/chromium', headless: true, args: ARGS, viewport: { width: 1280, height: 800 } });
  await ctx.addInitScript({ content: INSTRUMENT });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  try {
    await page.goto(web.url);
    await page.waitForFunction(() => (globalThis as any).document.documentElement.dataset.vnc === 'connected', undefined, { timeout: 30000 });
    await waitMode(page, w, h);
  } catch (e) {
    await ctx.close();
    await q.close();
    await web.close();
    throw new Error(`noVNC never showed ${w}x${h} (guest log: ${fs.readFileSync(log, 'utf8').slice(0, 200)}): ${(e as Error).message}`);
  }
  return {
    side: 'qemu+novnc',
    page,
    log,
    chromiumDir: prof,
    vmmPid: () => q.proc.pid ?? -1,
    accel: q.accel,
    close: async () => {
      await ctx.close();
      await q.close();
      await web.close();
      fs.rmSync(prof, { recursive: true, force: true });
      fs.rmSync(log, { force: true });
    },
  };
}

/** CPU time (ms) of Chromium's processes for one profile dir (browser + renderer + GPU...). */
function chromiumCpuMs(dir: string): number {
  let ms = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (!cmd.includes(dir) || !cmd.includes('chromium')) continue;
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ms += (Number(f[11]) + Number(f[12])) * 10;
    } catch {
      /* gone */
    }
  }
  return ms;
}

const vb = (page: Page) => page.evaluate(() => {
  const st = (globalThis as any).__vb;
  return { updates: st.updates as number, wsBytes: st.wsBytes as number, now: performance.now() };
});

/** Canvas updates per second over `seconds`, the same counter on both sides. */
async function measureFrames(c: ConsoleSide, seconds: number): Promise<Record<string, number>> {
  // The guest has started repainting (its first report comes after 256 frames).
  for (let i = 0; guestFrames(c.log) === 0; i++) {
    if (i > 300) throw new Error(`${c.side}: the guest never reported a frame (${c.log})`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await c.page.waitForTimeout(1000); // settle (measurement window, not a test wait)
  const a = await vb(c.page);
  const g0 = guestFrames(c.log);
  const cpu0 = chromiumCpuMs(c.chromiumDir);
  const t0 = Date.now();
  const vireoFrames0 = c.side === 'vireo' ? Number(await c.page.locator('canvas').first().getAttribute('data-frames')) : 0;
  await c.page.waitForTimeout(seconds * 1000);
  const b = await vb(c.page);
  const secs = (Date.now() - t0) / 1000;
  const g1 = guestFrames(c.log);
  const cpu1 = chromiumCpuMs(c.chromiumDir);
  const n = b.updates - a.updates;
  const out: Record<string, number> = {
    fps: +(n / ((b.now - a.now) / 1000)).toFixed(1),
    MBpsWire: +((b.wsBytes - a.wsBytes) / 1048576 / secs).toFixed(2),
    guestFps: Math.round((g1 - g0) / secs),
    chromiumCpuMsPerFrame: +((cpu1 - cpu0) / Math.max(1, n)).toFixed(1),
  };
  if (c.side === 'vireo') out.consoleFramesCounted = Number(await c.page.locator('canvas').first().getAttribute('data-frames')) - vireoFrames0;
  return out;
}

/**
 * Keypress -> pixel: the guest in 'key' mode toggles a 128x128 block at (0,0) on every key
 * press it reads from the i8042. From the page's keydown (capture phase, before the console's
 * handler) to the first visible-canvas update whose pixel (64,64) changed.
 */
async function measureKeys(c: ConsoleSide, presses: number): Promise<Record<string, number>> {
  const canvas = c.page.locator('canvas').first();
  await c.page.waitForFunction(() => {
    const cv = (globalThis as any).document.querySelector('canvas');
    const d = cv.getContext('2d').getImageData(200, 200, 1, 1).data;
    return d[0] === 0x10 && d[1] === 0x10 && d[2] === 0x10;
  }, undefined, { timeout: 30000 });
  await canvas.click({ position: { x: 300, y: 300 } }); // captures the keyboard (Vireo) / focuses (noVNC)
  await c.page.evaluate(() => {
    const st = (globalThis as any).__vb;
    const cv = (globalThis as any).document.querySelector('canvas');
    const d = cv.getContext('2d').getImageData(64, 64, 1, 1).data;
    st.last = (d[0] << 16) | (d[1] << 8) | d[2];
    st.watch = { x: 64, y: 64 };
  });
  const lat: number[] = [];
  let missed = 0;
  for (let i = 0; i < presses; i++) {
    const before = await c.page.evaluate(() => ({ k: (globalThis as any).__vb.keys.length as number, p: (globalThis as any).__vb.pixels.length as number }));
    await c.page.keyboard.press('KeyA');
    try {
      await c.page.waitForFunction((p) => (globalThis as any).__vb.pixels.length > p, before.p, { timeout: 3000, polling: 5 });
      const r = await c.page.evaluate((b) => (globalThis as any).__vb.pixels[b.p][0] - (globalThis as any).__vb.keys[b.k], before);
      lat.push(r);
    } catch {
      missed++;
    }
    await c.page.waitForTimeout(150 + ((i * 37) % 100)); // the typist's pause (part of the workload)
  }
  return {
    presses,
    painted: lat.length,
    missed,
    latencyMsMedian: lat.length ? +median(lat).toFixed(1) : -1,
    latencyMsMin: lat.length ? +Math.min(...lat).toFixed(1) : -1,
    latencyMsMax: lat.length ? +Math.max(...lat).toFixed(1) : -1,
  };
}

/**
 * Vireo vs QEMU VNC + noVNC on the same guest, resolution and workload, rounds interleaved
 * (vireo, peer, vireo, peer...), medians and ratios reported.
 */
async function benchFramesEngine(): Promise<Record<string, unknown>> {
  if (!fs.existsSync(FBLOOP)) throw new Error(`${FBLOOP} missing: build the native tree (cmake --build native/out/core)`);
  const peer = haveQemu() && novncDir() !== undefined;
  if (!peer) console.error(`frames-engine: ${haveQemu() ? 'noVNC not found (npm i, or VIREO_NOVNC_DIR)' : 'qemu-system-x86_64 not found'}: Vireo only`);
  const rounds = Number(process.env.VIREO_BENCH_ROUNDS || 3);
  const seconds = Number(process.env.VIREO_BENCH_SECONDS || 5);
  const cases: Array<[string, number, number]> = [
    ['desktop', 1024, 768],
    ['noise', 1024, 768],
    ['desktop', 1920, 1080],
  ];
  const out: Record<string, unknown> = {};
  let accel = '';
  const sides: Array<(a: string, w: number, h: number) => Promise<ConsoleSide>> = peer ? [openVireo, openQemuNovnc] : [openVireo];
  for (const [pattern, w, h] of cases) {
    const key = `${pattern}${w}x${h}`;
    if (process.env.VIREO_BENCH_CASES && !process.env.VIREO_BENCH_CASES.split(',').includes(key)) continue;
    const runs: Record<string, Array<Record<string, number>>> = {};
    for (let r = 0; r < rounds; r++) {
      for (const open of sides) {
        const c = await open(`${pattern} ${w}`, w, h);
        try {
          if (c.side !== 'vireo') accel = c.accel;
          (runs[c.side] ??= []).push(await measureFrames(c, seconds));
        } finally {
          await c.close();
        }
      }
    }
    const summary = Object.fromEntries(
      Object.entries(runs).map(([side, rs]) => [side, { fps: median(rs.map((x) => x.fps!)), fpsRuns: rs.map((x) => x.fps), MBpsWire: median(rs.map((x) => x.MBpsWire!)), guestFps: median(rs.map((x) => x.guestFps!)), chromiumCpuMsPerFrame: median(rs.map((x) => x.chromiumCpuMsPerFrame!)), ...(side === 'vireo' ? { consoleFramesCounted: rs.map((x) => x.consoleFramesCounted) } : {}) }]),
    );
    const v = summary.vireo?.fps;
    const q = summary['qemu+novnc']?.fps;
    out[key] = { ...summary, ...(v !== undefined && q ? { fpsRatioVireoOverPeer: +(v / q).toFixed(2) } : {}) };
  }
  if (!process.env.VIREO_BENCH_CASES || process.env.VIREO_BENCH_CASES.split(',').includes('key')) {
    const runs: Record<string, Array<Record<string, number>>> = {};
    const presses = Number(process.env.VIREO_BENCH_PRESSES || 15);
    for (let r = 0; r < rounds; r++) {
      for (const open of sides) {
        const c = await open('key 1024', 1024, 768);
        try {
          (runs[c.side] ??= []).push(await measureKeys(c, presses));
        } finally {
          await c.close();
        }
      }
    }
    const summary = Object.fromEntries(
      Object.entries(runs).map(([side, rs]) => [side, { latencyMsMedian: median(rs.map((x) => x.latencyMsMedian!)), runs: rs }]),
    );
    const v = summary.vireo?.latencyMsMedian;
    const q = summary['qemu+novnc']?.latencyMsMedian;
    out.keyToPixel = { ...summary, ...(v !== undefined && q ? { latencyRatioVireoOverPeer: +(v / q).toFixed(2) } : {}) };
  }
  out.peer = peer ? `qemu-system-x86_64 -accel ${accel || 'kvm'} -vnc (websocket) + noVNC ${JSON.parse(fs.readFileSync(path.join(novncDir()!, 'package.json'), 'utf8')).version}` : 'none';
  return out;
}

async function main(): Promise<void> {
  // `node dist/bench/app/app-bench.js frames` runs only the named benches (manager, serial, frames,
  // frames-engine).
  const only = new Set(process.argv.slice(2));
  const want = (n: string) => only.size === 0 || only.has(n);
  const results: Record<string, unknown> = {
    host: `${os.cpus().length} CPUs, ${os.cpus()[0]?.model}, Node ${process.version}, Debian Chromium (headless), load ${os.loadavg()[0]!.toFixed(1)}`,
  };
  if (want('manager')) results.manager200 = await benchManager();
  if (want('serial')) results.serial10MB = await benchSerial();
  if (want('frames')) {
    // Interleaved rounds (the host is shared: load drifts); the medians are reported.
    const rounds = Number(process.env.VIREO_BENCH_ROUNDS || 3);
    const runs: Record<string, Array<Record<string, number | string>>> = {};
    for (let r = 0; r < rounds; r++) {
      for (const [pattern, w, h] of [
        ['desktop', 1024, 768],
        ['noise', 1024, 768],
        ['flat', 1024, 768],
        ['desktop', 1920, 1080],
        ['noise', 1920, 1080],
      ] as Array<[Pattern, number, number]>) {
        const key = `${pattern}${w}x${h}`;
        if (process.env.VIREO_BENCH_CASES && !process.env.VIREO_BENCH_CASES.split(',').includes(key)) continue;
        // VIREO_BENCH_TILES=1,0: each case with the palette tiles (default) and with plain RLE24.
        for (const tiles of (process.env.VIREO_BENCH_TILES ?? '1').split(',')) {
          (runs[tiles === '0' ? `${key}-rle24` : key] ??= []).push(await benchFrames(pattern, w, h, 5, tiles));
        }
      }
    }
    results.framesFullScreen = Object.fromEntries(
      Object.entries(runs).map(([k, rs]) => [k, { ...rs[0], fps: median(rs.map((x) => x.fps as number)), fpsRuns: rs.map((x) => x.fps), MBpsWire: median(rs.map((x) => x.MBpsWire as number)) }]),
    );
    if (!process.env.VIREO_BENCH_CASES) {
      results.framesIdle = await benchIdle();
      results.cursorBlink = await benchBlink();
    }
  }
  if (want('frames-engine')) results.framesEngine = await benchFramesEngine();
  console.log(JSON.stringify(results, null, 2));
  const m = results.manager200 as { renderMsMedian: number } | undefined;
  const se = results.serial10MB as { noByteLost: boolean } | undefined;
  const budget = (!m || m.renderMsMedian < 200) && (!se || se.noByteLost === true);
  process.exitCode = budget ? 0 : 1;
}

void main();
