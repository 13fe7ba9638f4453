// bench/app's console peer: QEMU's VNC server (-vnc, its own WebSocket listener) shown by
// noVNC (npm @novnc/novnc, served from a tiny static HTTP server), the stack that
// cockpit-machines puts in a browser. Also the page instrumentation both sides share.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

/**
 * Runs in every page before its own scripts (Vireo's console and noVNC alike), so both are
 * counted the same way:
 * - a "canvas update" is a JS task that wrote (putImageData / drawImage) into a canvas that is
 *   in the document; several writes in one task are one update (only the last state shows).
 *   noVNC decodes into an off-screen backbuffer and copies it to its visible canvas once per
 *   FramebufferUpdate (flip); Vireo's console writes its visible canvas once per frame.
 * - bytes received on every WebSocket (the console stream / the RFB connection).
 * - keydown times (capture phase on window, before any page handler), and, while `__vb.watch`
 *   is set, the time each visible-canvas update changes the pixel at watch.x, watch.y.
 */
export const INSTRUMENT = `(() => {
  const st = (globalThis.__vb = { updates: 0, wsBytes: 0, keys: [], pixels: [], watch: null, last: null });
  let pending = null;
  const done = () => {
    const c = pending;
    pending = null;
    st.updates++;
    if (st.watch) {
      const d = c.getContext('2d').getImageData(st.watch.x, st.watch.y, 1, 1).data;
      const v = (d[0] << 16) | (d[1] << 8) | d[2];
      if (v !== st.last) {
        st.last = v;
        st.pixels.push([performance.now(), v]);
      }
    }
  };
  const mark = (canvas) => {
    if (pending || !canvas || !canvas.isConnected) return;
    pending = canvas;
    queueMicrotask(done);
  };
  const P = CanvasRenderingContext2D.prototype;
  for (const name of ['putImageData', 'drawImage']) {
    const orig = P[name];
    P[name] = function (...a) {
      const r = orig.apply(this, a);
      mark(this.canvas);
      return r;
    };
  }
  // A real WebSocket with a listener added (noVNC checks its channel's own prototype, so no subclass).
  const WS = globalThis.WebSocket;
  const Counted = function (...a) {
    const ws = new WS(...a);
    ws.addEventListener('message', (e) => {
      const d = e.data;
      st.wsBytes += typeof d === 'string' ? d.length : d.byteLength ?? d.size ?? 0;
    });
    return ws;
  };
  Counted.prototype = WS.prototype;
  Object.setPrototypeOf(Counted, WS);
  globalThis.WebSocket = Counted;
  addEventListener('keydown', () => st.keys.push(performance.now()), true);
})();`;

/** A free TCP port on 127.0.0.1 at or above `from` (the first that binds). */
export async function freePort(from = 0): Promise<number> {
  for (let p = from; ; p = p ? p + 1 : 0) {
    const got = await new Promise<number>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(-1));
      srv.listen(p, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    if (got > 0) return got;
    if (p === 0 || p > 65000) throw new Error('no free TCP port');
  }
}

/** Where noVNC is: VIREO_NOVNC_DIR, else the @novnc/novnc package. */
export function novncDir(): string | undefined {
  if (process.env.VIREO_NOVNC_DIR) return process.env.VIREO_NOVNC_DIR;
  try {
    // The package's "exports" hides package.json: its entry is core/rfb.js, one level down.
    return path.resolve(path.dirname(require.resolve('@novnc/novnc')), '..');
  } catch {
    return undefined;
  }
}

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.html': 'text/html', '.json': 'application/json', '.css': 'text/css' };

/** Serves noVNC's core/ and vendor/ plus a page that connects to ws://127.0.0.1:wsPort (noVNC's defaults). */
export async function serveNovnc(dir: string, wsPort: number): Promise<{ url: string; close(): Promise<void> }> {
  const page = `<!doctype html><html><head><meta charset="utf-8"><title>noVNC peer</title></head>
<body style="margin:0"><div id="screen" style="width:100vw;height:100vh"></div>
<script type="module">
import RFB from './core/rfb.js';
const rfb = new RFB(document.getElementById('screen'), 'ws://127.0.0.1:${wsPort}');
rfb.addEventListener('connect', () => (document.documentElement.dataset.vnc = 'connected'));
rfb.addEventListener('disconnect', (e) => (document.documentElement.dataset.vnc = 'disconnected ' + JSON.stringify(e.detail)));
globalThis.rfb = rfb;
</script></body></html>`;
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x').pathname;
    if (u === '/' || u === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page);
      return;
    }
    const file = path.join(dir, path.normalize(u).replace(/^(\.\.[/\\])+/, ''));
    if (!file.startsWith(dir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' }).end(fs.readFileSync(file));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

export interface Qemu {
  proc: ChildProcess;
  accel: string;
  wsPort: number;
  close(): Promise<void>;
}

/** qemu-system-x86_64 -vnc with its WebSocket listener, booting `kernel` (multiboot) with `append`. */
export async function startQemu(kernel: string, append: string, serialLog: string): Promise<Qemu> {
  const display = (await freePort(5900 + 150)) - 5900;
  const wsPort = await freePort(6900);
  const tryAccel = async (accel: string[]): Promise<ChildProcess | string> => {
    const args = [
      ...accel,
      '-machine', 'pc', '-m', '256', '-nic', 'none', '-vga', 'std', '-display', 'none',
      '-vnc', `127.0.0.1:${display},websocket=127.0.0.1:${wsPort}`,
      '-kernel', kernel, '-append', append, '-serial', `file:${serialLog}`,
    ];
    const p = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // Up when the WebSocket port listens; a refused accelerator exits at once.
    for (let i = 0; i < 100; i++) {
      if (p.exitCode !== null) return `exited ${p.exitCode}: ${err.trim()}`;
      const up = await new Promise<boolean>((r) => {
        const s = net.connect(wsPort, '127.0.0.1', () => (s.destroy(), r(true)));
        s.once('error', () => r(false));
      });
      if (up) return p;
      await new Promise((r) => setTimeout(r, 100));
    }
    p.kill('SIGKILL');
    return `no VNC WebSocket on ${wsPort} after 10 s: ${err.trim()}`;
  };
  // QEMU-KVM with the CPU model this kvm_pvm host's KVM runs (as bench/pc does).
  let accel = 'kvm';
  let p = await tryAccel(['-accel', 'kvm', '-cpu', 'qemu64,-cx16,-xsave']);
  if (typeof p === 'string') {
    console.error(`QEMU with KVM refused (${p}); falling back to -accel tcg`);
    accel = 'tcg';
    p = await tryAccel(['-accel', 'tcg']);
  }
  if (typeof p === 'string') throw new Error(`qemu-system-x86_64: ${p}`);
  const proc = p;
  return {
    proc,
    accel,
    wsPort,
    close: async () => {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

export const haveQemu = () => spawnSync('qemu-system-x86_64', ['--version']).status === 0;

/** The guest's own count from its COM1 log ("f N t T" every 256 frames): the last N. */
export function guestFrames(log: string): number {
  let n = 0;
  try {
    for (const m of fs.readFileSync(log, 'utf8').matchAll(/^f ([0-9a-f]+) t/gm)) n = parseInt(m[1]!, 16);
  } catch {
    /* not yet */
  }
  return n;
}
