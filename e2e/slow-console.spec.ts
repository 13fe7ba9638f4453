// A console client that stops reading (issue 14, "bad input"): a real `vireo serve`, its
// service and engine host run native/guests/paint.asm, a multiboot kernel that repaints
// its text screen row after row forever and prints `PAINT <n>` on COM1 after each whole
// screen. A good console (a WebSocket on /stream that reads everything and acks every
// frame at once, as a fast canvas does) measures frames a second and the guest's PAINT
// rate, first alone, then while a bad console is connected: it subscribes, never reads
// its socket again, and keeps asking for full frames and acking frames and serial bytes it
// never read. The relays must not queue for it without bound (ack-gate.ts holds its acks
// while its socket is backed up), and neither the guest nor the good console may slow
// down. Memory is each process's RSS from /proc.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { decodeHostToUi, encodeUiToHost } from '../electron/common/contracts/stream';
import { apiCall, buildGuest, distReady, engineCapability, servicePid, startServe } from './harness';

const why = distReady() ?? engineCapability() ?? (fs.existsSync('/usr/share/seabios/bios.bin') ? null : 'SeaBIOS is missing (apt-get install seabios)');
if (why) console.log(`SKIP slow console e2e: ${why}`);

type Srv = Awaited<ReturnType<typeof startServe>>;
let srv: Srv | undefined;
const closers: (() => void)[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resident memory of a process in MiB (0 once it is gone). */
function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(+m[1]! / 1024) : 0;
  } catch {
    return 0;
  }
}

/** Children of `ppid` (the engine hosts the service forked). */
function children(ppid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (+fields[1]! === ppid) out.push(+d);
    } catch {
      /* gone */
    }
  }
  return out;
}

/** A console that reads everything: counts frames and bytes, collects COM1 text, acks at once. */
function goodConsole(s: Srv, uuid: string) {
  const u = new URL(s.url);
  const ws = new WebSocket(`ws://${u.host}/stream?vm=${uuid}&token=${s.token}`, { origin: s.origin });
  const st = { frames: 0, bytes: 0, serial: '', closed: '' };
  ws.on('open', () => ws.send(encodeUiToHost({ op: 'subscribe', frames: true, serial: true })));
  ws.on('message', (d: Buffer) => {
    const m = decodeHostToUi(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    if (m.op === 'frame') {
      st.frames++;
      st.bytes += m.bytes;
      ws.send(encodeUiToHost({ op: 'ackFrame' }));
    } else if (m.op === 'serial') {
      st.serial += Buffer.from(m.data).toString('latin1');
      ws.send(encodeUiToHost({ op: 'ackSerial', bytes: m.data.byteLength }));
    }
  });
  ws.on('close', (code, reason) => (st.closed = `${code} ${reason}`));
  closers.push(() => ws.terminate());
  return st;
}

/** The last PAINT count in COM1 text. */
function paints(text: string): number {
  const all = [...text.matchAll(/PAINT (\d+)\r?\n/g)];
  return all.length ? +all[all.length - 1]![1]! : 0;
}

/** A client frame (RFC 6455 5.2): FIN, binary, masked as a client must. */
function wsFrame(payload: Uint8Array): Buffer {
  const mask = randomBytes(4);
  const len = payload.byteLength;
  const head = len < 126 ? Buffer.from([0x82, 0x80 | len]) : Buffer.from([0x82, 0x80 | 126, len >> 8, len & 255]);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([head, mask, body]);
}

/**
 * The bad console: a raw WebSocket that completes the handshake, subscribes and asks for
 * a full frame, then never reads another byte while it acks frames and serial bytes and
 * asks for full frames every 5 ms.
 */
async function stalledConsole(s: Srv, uuid: string): Promise<{ sent: () => number; stop: () => void }> {
  const u = new URL(s.url);
  const sock = net.connect(+u.port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  sock.write(
    `GET /stream?vm=${uuid}&token=${s.token} HTTP/1.1\r\nHost: ${u.host}\r\nOrigin: ${s.origin}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  // Read the 101 answer, then stop reading for good.
  await new Promise<void>((resolve, reject) => {
    let got = '';
    const on = (d: Buffer) => {
      got += d.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      sock.off('data', on);
      sock.pause();
      if (!got.startsWith('HTTP/1.1 101')) reject(new Error(`no upgrade: ${got.split('\r\n')[0]}`));
      else resolve();
    };
    sock.on('data', on);
  });
  sock.write(wsFrame(encodeUiToHost({ op: 'subscribe', frames: true, serial: true })));
  let sent = 0;
  const acks = Buffer.concat([
    wsFrame(encodeUiToHost({ op: 'fullFrame' })),
    wsFrame(encodeUiToHost({ op: 'ackFrame' })),
    wsFrame(encodeUiToHost({ op: 'ackSerial', bytes: 1 << 20 })),
  ]);
  const timer = setInterval(() => {
    if (!sock.destroyed) sock.write(acks);
    sent++;
  }, 5);
  const stop = () => {
    clearInterval(timer);
    sock.destroy();
  };
  closers.push(stop);
  return { sent: () => sent, stop };
}

describe.skipIf(!!why)('a console that stops reading', () => {
  afterEach(async () => {
    for (const c of closers.splice(0)) c();
    await srv?.stop();
    srv = undefined;
  });

  it('keeps serve, service and engine host memory bounded and slows neither the guest nor another console', { timeout: 300000 }, async (ctx) => {
    srv = await startServe();
    const kernel = buildGuest('paint', srv.dir);
    if (!kernel) return ctx.skip('nasm is not installed: cannot build the paint guest');
    const r = await apiCall(srv, 'vm.create', {
      media: { kind: 'kernel', kernel },
      os: 'generic',
      memoryMiB: 32,
      cpus: 1,
      storage: { kind: 'none' },
      name: 'paint',
      network: 'none',
    });
    expect(r.errors).toEqual([]);
    const uuid: string = r.vm.uuid;
    await apiCall(srv, 'vm.action', { uuid, action: 'start' });
    const good = goodConsole(srv, uuid);
    const t0 = Date.now();
    while (paints(good.serial) < 2) {
      if (good.closed) throw new Error(`console closed: ${good.closed}`);
      if (Date.now() - t0 > 120000) throw new Error(`the paint guest did not paint within 120 s; COM1: ${JSON.stringify(good.serial.slice(-300))}`);
      await sleep(200);
    }
    const service = servicePid(srv.env)!;
    const serve = srv.server.pid!;
    const hosts = children(service);
    expect(hosts.length).toBeGreaterThan(0);
    const mem = () => ({ serve: rssMiB(serve), service: rssMiB(service), host: Math.max(...hosts.map(rssMiB)) });
    console.log(`paint guest painting after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // One phase: frames/s and bytes/s at the good console, PAINT screens/s of the guest, peak RSS.
    const phase = async (secs: number) => {
      const f0 = good.frames, b0 = good.bytes, p0 = paints(good.serial), start = Date.now();
      // Peak RSS over the whole phase and over its first half: a queue that grows keeps
      // raising the peak in the second half; a bounded one levels off.
      const peak = mem();
      let firstHalf = { ...peak };
      for (let i = 0; i < secs * 4; i++) {
        await sleep(250);
        const m = mem();
        peak.serve = Math.max(peak.serve, m.serve);
        peak.service = Math.max(peak.service, m.service);
        peak.host = Math.max(peak.host, m.host);
        if (i === secs * 2) firstHalf = { ...peak };
      }
      const dt = (Date.now() - start) / 1000;
      return { fps: (good.frames - f0) / dt, mbps: (good.bytes - b0) / dt / 1e6, paintsPerS: (paints(good.serial) - p0) / dt, peak, firstHalf };
    };
    const before = mem();
    const alone = await phase(10);
    const bad = await stalledConsole(srv, uuid);
    const stalled = await phase(40);
    console.log(
      `alone: ${alone.fps.toFixed(1)} frames/s (${alone.mbps.toFixed(2)} MB/s), guest ${alone.paintsPerS.toFixed(2)} screens/s; ` +
        `peak RSS serve ${alone.peak.serve} MiB, service ${alone.peak.service} MiB, engine host ${alone.peak.host} MiB`,
    );
    console.log(
      `with a console that stopped reading (${bad.sent()} rounds of full-frame request + acks): ${stalled.fps.toFixed(1)} frames/s ` +
        `(${stalled.mbps.toFixed(2)} MB/s), guest ${stalled.paintsPerS.toFixed(2)} screens/s; peak RSS serve ${stalled.peak.serve} MiB ` +
        `(+${stalled.peak.serve - alone.peak.serve}), service ${stalled.peak.service} MiB (+${stalled.peak.service - alone.peak.service}), ` +
        `engine host ${stalled.peak.host} MiB (+${stalled.peak.host - alone.peak.host}); in its second 20 s serve +${stalled.peak.serve - stalled.firstHalf.serve}, ` +
        `service +${stalled.peak.service - stalled.firstHalf.service}, engine host +${stalled.peak.host - stalled.firstHalf.host} MiB; ` +
        `at the start serve ${before.serve}, service ${before.service}, engine host ${before.host} MiB`,
    );
    expect(bad.sent()).toBeGreaterThan(500);
    // Bounded: the relays hold at most their 8 MiB mark plus a window for the stalled console;
    // the rest is the processes' own high-water marks (the first full frames, the V8 heap
    // growing under the frame traffic: in a 70 s run the engine host levelled off at +86 MiB
    // after 30 s, serve at +63), so the queues are judged by the second 20 s. Without
    // ack-gate.ts serve grew steadily, ~18 MB/s (every full frame the console asked for,
    // queued in its WebSocket): +352 MiB in 20 s.
    // The bounds leave room for that heap noise (serve +29 MiB in one second 20 s on a loaded
    // host) and still fail the unbounded queue by far.
    for (const p of ['serve', 'service', 'host'] as const) {
      expect(stalled.peak[p] - alone.peak[p], `${p}: peak over the alone phase's`).toBeLessThan(160);
    }
    for (const p of ['serve', 'service'] as const) {
      expect(stalled.peak[p] - stalled.firstHalf[p], `${p}: growth in the second 20 s`).toBeLessThan(64);
    }
    // Neither the guest nor the good console is held up. A loose bound: on this shared 2-core
    // host the guest's rate alone varied from 59 to 168 screens/s between runs; a guest or a
    // console that waited on the stalled one would drop towards 0.
    expect(good.closed).toBe('');
    expect(stalled.paintsPerS).toBeGreaterThan(alone.paintsPerS / 3);
    expect(stalled.fps).toBeGreaterThan(alone.fps / 3);
    bad.stop();
  });
});
