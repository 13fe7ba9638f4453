// Network throughput and latency through user-mode NAT, Vireo vs QEMU's user
// networking (`-nic user,model=virtio-net-pci`), the same guest on the same host
// (issue 11's bench).
//
//   npx tsc -p tsconfig.json && node dist/bench/net/net-bench.js [--rounds 3] [--mib 256] [--pings 2000]
//
// The guest is native/guests/netbench.{asm,c}: a multiboot kernel whose driver
// (polled virtio-net, DHCP, a small TCP client) runs in ring 3, so on a kvm_pvm
// host it runs natively under both VMMs and what differs is the VMM's path:
// the virtio-net model, libslirp, and the threads between them. The guest
// connects to 10.0.2.2 (the NAT's address for the host's loopback) on a port
// this process listens on, and this process drives it: pings ('P' -> 'p', the
// round trip timed here), uploads ('U' n: the guest sends n bytes, timed from
// the command to the last byte) and downloads ('D' n: this process sends n
// bytes, timed from the command to the guest's 'k' after the last one).
// Rounds alternate Vireo and QEMU-KVM (`-accel kvm -cpu qemu64,-cx16,-xsave`,
// as the other QEMU peers here; TCG when KVM is refused, said in the output).
// Ratios: throughput Vireo ÷ QEMU, latency QEMU ÷ Vireo, so ≥ 1.0× means Vireo
// is at least as good on every row (the target).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', ...(path.basename(path.resolve(__dirname, '..', '..')) === 'dist' ? ['..'] : []));
export const NETBENCH_GUEST = path.join(ROOT, 'native', 'out', 'core', 'guests', 'netbench.bin');
const VIREO_CLI = path.join(ROOT, 'bin', 'vireo.js');

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN; };
const now = () => process.hrtime.bigint();
const sec = (t0: bigint) => Number(now() - t0) / 1e9;

/** The host end of the guest's one TCP connection. */
export class GuestLink {
  private buf = Buffer.alloc(0);
  private want: { n: number; resolve: (b: Buffer) => void } | null = null;
  private counting: { left: number; resolve: () => void; check: boolean; off: number; bad: boolean } | null = null;
  private closed = false;
  private error: Error | null = null;

  constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('close', () => { this.closed = true; this.fail(new Error('the guest closed the connection')); });
    sock.on('error', (e) => this.fail(e));
  }

  private fail(e: Error) {
    this.error ??= e;
    if (this.want) this.want.resolve(Buffer.alloc(0));
    if (this.counting) this.counting.resolve();
  }

  private onData(d: Buffer) {
    if (this.counting) {
      const c = this.counting;
      const k = Math.min(c.left, d.length);
      if (c.check) for (let i = 0; i < k; i++, c.off++) if (d[i] !== 97 + (c.off % 26)) c.bad = true;
      c.left -= k;
      d = d.subarray(k);
      if (c.left === 0) { this.counting = null; c.resolve(); }
    }
    if (d.length) this.buf = Buffer.concat([this.buf, d]);
    if (this.want && this.buf.length >= this.want.n) {
      const w = this.want;
      this.want = null;
      const out = this.buf.subarray(0, w.n);
      this.buf = this.buf.subarray(w.n);
      w.resolve(out);
    }
  }

  private read(n: number): Promise<Buffer> {
    if (this.error) return Promise.reject(this.error);
    return new Promise<Buffer>((resolve, reject) => {
      this.want = { n, resolve: (b) => (b.length === n ? resolve(b) : reject(this.error ?? new Error('short read'))) };
      this.onData(Buffer.alloc(0));
    });
  }

  private static cmd(c: string, n: number): Buffer {
    const b = Buffer.alloc(5);
    b.write(c, 0, 'latin1');
    b.writeUInt32LE(n, 1);
    return b;
  }

  /** One round trip: seconds. */
  async ping(): Promise<number> {
    const t0 = now();
    this.sock.write('P');
    const r = await this.read(1);
    if (r.toString('latin1') !== 'p') throw new Error(`ping answered with ${JSON.stringify(r.toString('latin1'))}`);
    return sec(t0);
  }

  /** The guest sends n bytes: seconds from the command to the last byte. `check`: every byte is the pattern. */
  async upload(n: number, check = false): Promise<number> {
    if (this.error) throw this.error;
    const c = { left: n, check, off: 0, bad: false, resolve: () => {} };
    const done = new Promise<void>((resolve) => (c.resolve = resolve));
    const t0 = now();
    this.counting = c;
    this.sock.write(GuestLink.cmd('U', n));
    await done;
    if (this.error) throw this.error;
    if (c.bad) throw new Error('uploaded data differs from the pattern the guest sends');
    return sec(t0);
  }

  /** This end sends n bytes: seconds from the command to the guest's 'k'. `check`: the guest checks them. */
  async download(n: number, check = false): Promise<number> {
    const chunk = Buffer.alloc(1 << 20);
    if (check) for (let i = 0; i < chunk.length; i++) chunk[i] = 97 + (i % 26);
    const t0 = now();
    const ack = this.read(1);
    this.sock.write(GuestLink.cmd(check ? 'd' : 'D', n));
    let sent = 0;
    while (sent < n) {
      // A 1 MiB chunk is 26-aligned only at 0, so send whole pattern periods.
      const k = Math.min(n - sent, check ? chunk.length - (chunk.length % 26) : chunk.length);
      if (!this.sock.write(chunk.subarray(0, k))) await new Promise((r) => this.sock.once('drain', r));
      sent += k;
      if (this.error) throw this.error;
    }
    const r = await ack;
    if (r.toString('latin1') !== 'k') throw new Error(`download answered with ${JSON.stringify(r.toString('latin1'))}`);
    return sec(t0);
  }

  /** Asks the guest to close and exit; resolves when the connection ends. */
  async quit(): Promise<void> {
    if (this.closed) return;
    const ended = new Promise((r) => this.sock.once('close', r));
    this.sock.write('Q');
    await ended;
  }
}

export interface Engine {
  name: string;
  proc: ChildProcess;
  serialLog: string;
  exited: Promise<number | null>;
  stderr: () => string;
}

/** Listens on the loopback, starts `start(port)`, and resolves with the guest's connection. */
export async function connectGuest(start: (port: number) => Engine, timeoutS = 60): Promise<{ link: GuestLink; engine: Engine }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const engine = start(port);
  try {
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${engine.name}: the guest did not connect in ${timeoutS} s; serial: ${readSerial(engine)}; stderr: ${engine.stderr()}`)), timeoutS * 1000);
      server.once('connection', (s) => { clearTimeout(timer); resolve(s); });
      void engine.exited.then((code) => { clearTimeout(timer); reject(new Error(`${engine.name} exited (${code}) before the guest connected; serial: ${readSerial(engine)}; stderr: ${engine.stderr()}`)); });
    });
    return { link: new GuestLink(sock), engine };
  } catch (e) {
    engine.proc.kill('SIGKILL');
    throw e;
  } finally {
    server.close();
  }
}

const readSerial = (e: Engine) => { try { return JSON.stringify(fs.readFileSync(e.serialLog, 'utf8')); } catch { return '(none)'; } };

function spawnEngine(name: string, cmd: string, args: string[], serialLog: string): Engine {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { name, proc, serialLog, exited, stderr: () => err.trim() };
}

/** `vireo boot` with the netbench guest on user-mode NAT. */
export function startVireo(port: number, dir: string, model = 'virtio'): Engine {
  const serialLog = path.join(dir, `vireo-${port}.serial`);
  return spawnEngine('vireo', process.execPath, [VIREO_CLI, 'boot', '--kernel', NETBENCH_GUEST, '--append', `port=${port}`,
    '--nic', `user,model=${model}`, '--memory', '128M', '--timeout', '600', '--serial', `file:${serialLog}`], serialLog);
}

/** QEMU with the same guest, `-nic user,model=virtio-net-pci`. */
export function startQemu(port: number, dir: string, accel: 'kvm' | 'tcg'): Engine {
  const serialLog = path.join(dir, `qemu-${port}.serial`);
  const a = accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'qemu64,-cx16,-xsave'] : ['-accel', 'tcg'];
  return spawnEngine(`qemu-${accel}`, 'qemu-system-x86_64', [...a, '-machine', 'pc', '-m', '128', '-display', 'none', '-vga', 'none',
    '-kernel', NETBENCH_GUEST, '-append', `port=${port}`, '-nic', 'user,model=virtio-net-pci',
    '-serial', `file:${serialLog}`, '-device', 'isa-debug-exit,iobase=0xf4,iosize=1'], serialLog);
}

export const haveQemu = () => spawnSync('qemu-system-x86_64', ['--version']).status === 0;

interface Figures { rttUs: number; upMBs: number; downMBs: number }

async function measure(start: (port: number) => Engine, mib: number, pings: number): Promise<Figures> {
  const { link, engine } = await connectGuest(start);
  try {
    for (let i = 0; i < 200; i++) await link.ping();
    const rtts: number[] = [];
    for (let i = 0; i < pings; i++) rtts.push(await link.ping());
    const n = mib << 20;
    await link.upload(1 << 20);
    const up = await link.upload(n);
    await link.download(1 << 20);
    const down = await link.download(n);
    await link.quit();
    const code = await Promise.race([engine.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
    // The guest exits through isa-debug-exit with 0: status 1 from both VMMs.
    if (code !== 1) throw new Error(`${engine.name} ended with ${code}; serial: ${readSerial(engine)}`);
    return { rttUs: median(rtts) * 1e6, upMBs: n / up / 1e6, downMBs: n / down / 1e6 };
  } finally {
    if (engine.proc.exitCode === null) engine.proc.kill('SIGKILL');
  }
}

async function main() {
  const argv = process.argv.slice(2);
  const opt = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1]! : d);
  const rounds = Number(opt('--rounds', '3'));
  const mib = Number(opt('--mib', '256'));
  const pings = Number(opt('--pings', '2000'));
  if (!fs.existsSync(NETBENCH_GUEST)) throw new Error(`no ${NETBENCH_GUEST}: build the native tree (npm run build)`);
  if (!haveQemu()) throw new Error('qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-bench-net-'));
  let accel: 'kvm' | 'tcg' = 'kvm';
  const vireo: Figures[] = [], qemu: Figures[] = [];
  for (let r = 0; r < rounds; r++) {
    vireo.push(await measure((p) => startVireo(p, dir), mib, pings));
    let q: Figures;
    try {
      q = await measure((p) => startQemu(p, dir, accel), mib, pings);
    } catch (e) {
      if (accel === 'tcg') throw e;
      console.error(`QEMU with KVM failed (${(e as Error).message}); falling back to -accel tcg`);
      accel = 'tcg';
      q = await measure((p) => startQemu(p, dir, accel), mib, pings);
    }
    qemu.push(q);
    const v = vireo[r]!;
    console.error(`round ${r + 1}: vireo rtt ${v.rttUs.toFixed(1)} us up ${v.upMBs.toFixed(0)} MB/s down ${v.downMBs.toFixed(0)} MB/s; ` +
      `qemu-${accel} rtt ${q.rttUs.toFixed(1)} us up ${q.upMBs.toFixed(0)} MB/s down ${q.downMBs.toFixed(0)} MB/s`);
  }
  const m = (xs: Figures[], k: keyof Figures) => median(xs.map((x) => x[k]));
  const rows: [string, number, number, number][] = [
    ['guest -> host TCP (MB/s)', m(vireo, 'upMBs'), m(qemu, 'upMBs'), m(vireo, 'upMBs') / m(qemu, 'upMBs')],
    ['host -> guest TCP (MB/s)', m(vireo, 'downMBs'), m(qemu, 'downMBs'), m(vireo, 'downMBs') / m(qemu, 'downMBs')],
    ['TCP round trip, 1 byte (us, median)', m(vireo, 'rttUs'), m(qemu, 'rttUs'), m(qemu, 'rttUs') / m(vireo, 'rttUs')],
  ];
  console.log(`net bench: ${rounds} rounds, ${mib} MiB each way, ${pings} pings; virtio-net on user-mode NAT; QEMU ${accel}; medians`);
  console.log(`| row | Vireo | QEMU-${accel} | ratio (≥ 1.0× is Vireo as good or better) |`);
  console.log('|---|---:|---:|---:|');
  for (const [name, v, q, ratio] of rows) console.log(`| ${name} | ${v.toFixed(1)} | ${q.toFixed(1)} | ${ratio.toFixed(2)}× |`);
  fs.rmSync(dir, { recursive: true, force: true });
}

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
