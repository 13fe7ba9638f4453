// The Linux test guest (resources/linux-guest): builds it, prepares the disks
// and CD the checks read, boots it in Vireo (`vireo boot`) or QEMU, and reads
// the VIREO-CHECK lines its init prints on the serial console. Used by the OS
// lane (e2e/linux-guest.spec.ts) and the bench (bench/linux-boot/bench.ts).
// QEMU is a reference peer, never a runtime dependency of Vireo.
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..', ...(path.basename(path.resolve(__dirname, '..', '..')) === 'dist' ? ['..'] : []));
export const BUILD_SCRIPT = path.join(ROOT, 'resources', 'linux-guest', 'build.sh');
export const PROMPT = 'vireo-guest# ';

export interface GuestBuild {
  dir: string;
  kver: string;
  vmlinuz: string;
  vmlinux: string;
  initramfs: string;
  /** The boot ISO (GRUB, timeout 0, console=ttyS0), when grub-mkrescue was there. */
  iso?: string;
  /** The token in the boot ISO's vireo/cd.txt. */
  isoCdToken?: string;
}

/** Builds (or finds in the cache) the guest; a string is the reason it cannot be built here. */
export function buildGuest(cacheDir?: string): GuestBuild | string {
  const r = spawnSync('bash', [BUILD_SCRIPT, ...(cacheDir ? [cacheDir] : [])], { encoding: 'utf8' });
  if (r.status !== 0) {
    const why = (r.stderr ?? '').trim().split('\n').slice(-3).join(' / ');
    if (r.status === 3) return why;
    throw new Error(`resources/linux-guest/build.sh failed (exit ${r.status}): ${r.stderr}`);
  }
  const dir = r.stdout.trim().split('\n').pop()!;
  const env = Object.fromEntries(
    fs.readFileSync(path.join(dir, 'env'), 'utf8').split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const iso = path.join(dir, 'linux-guest.iso');
  return {
    dir, kver: env.KVER!, vmlinuz: path.join(dir, 'vmlinuz'), vmlinux: path.join(dir, 'vmlinux'),
    initramfs: path.join(dir, 'initramfs.cpio'), iso: fs.existsSync(iso) ? iso : undefined, isoCdToken: env.ISO_CD_TOKEN,
  };
}

export function which(prog: string): string | null {
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(d, prog);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

// ---- media the checks read ----
export const DISK_BYTES = 4 << 20;
export const DATA_OFFSET = 4096;
export const DATA_BYTES = 1 << 20;
export const GUEST_WRITE_OFFSET = 4096 * 512;

export interface Media {
  dir: string;
  /** virtio-blk disk, raw. */
  virtio: string;
  /** IDE disk, qcow2 (converted from raw with qemu-img). */
  ide: string;
  /** A data CD (iso9660) with vireo/cd.txt and vireo/data.bin. */
  cd: string;
  tokens: { virtio: string; ide: string; cd: string };
}

function diskImage(label: string, token: string): Buffer {
  const b = Buffer.alloc(DISK_BYTES);
  const data = crypto.randomBytes(DATA_BYTES);
  data.copy(b, DATA_OFFSET);
  const md5 = crypto.createHash('md5').update(data).digest('hex');
  b.write(`VIREO-DISK label=${label} token=${token} md5=${md5} size=${DATA_BYTES}\n`, 0, 'latin1');
  return b;
}

/** Fresh disks and CD for one boot, in `dir`. Needs qemu-img (qcow2) and xorriso (the CD). */
export function prepareMedia(dir: string): Media {
  fs.mkdirSync(dir, { recursive: true });
  const tok = () => crypto.randomBytes(6).toString('hex');
  const tokens = { virtio: `v-${tok()}`, ide: `i-${tok()}`, cd: `c-${tok()}` };
  const virtio = path.join(dir, 'virtio.raw');
  fs.writeFileSync(virtio, diskImage('virtio', tokens.virtio));
  const ideRaw = path.join(dir, 'ide.raw');
  fs.writeFileSync(ideRaw, diskImage('ide', tokens.ide));
  const ide = path.join(dir, 'ide.qcow2');
  fs.rmSync(ide, { force: true });
  const c = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ideRaw, ide], { encoding: 'utf8' });
  if (c.status !== 0) throw new Error(`qemu-img convert: ${c.stderr}`);
  fs.rmSync(ideRaw);
  const tree = path.join(dir, 'cdtree');
  fs.mkdirSync(path.join(tree, 'vireo'), { recursive: true });
  const data = crypto.randomBytes(256 << 10);
  fs.writeFileSync(path.join(tree, 'vireo', 'data.bin'), data);
  fs.writeFileSync(path.join(tree, 'vireo', 'cd.txt'),
    `VIREO-CD token=${tokens.cd} md5=${crypto.createHash('md5').update(data).digest('hex')} size=${data.length}\n`);
  const cd = path.join(dir, 'cd.iso');
  fs.rmSync(cd, { force: true });
  const x = spawnSync('xorriso', ['-as', 'mkisofs', '-quiet', '-R', '-J', '-V', 'VIREO_CD', '-o', cd, tree], { encoding: 'utf8' });
  if (x.status !== 0) throw new Error(`xorriso: ${x.stderr}`);
  return { dir, virtio, ide, cd, tokens };
}

// ---- command lines ----
export interface BootSpec {
  /** 'kernel': direct boot (kernel + initramfs + append); 'iso': firmware → El Torito → GRUB from the boot ISO. */
  path: 'kernel' | 'iso';
  kernel?: string;
  initrd?: string;
  append?: string;
  media?: Media;
  memoryMiB: number;
  cpus: number;
  /** Two network cards on user-mode NAT: virtio-net (10.0.2.0/24) and e1000 (10.0.3.0/24). */
  nics?: boolean;
  /**
   * The VM's life after the checks (append vireo.life=1; docs/linux-guest.md): this token is typed on the display
   * console's keyboard, the guest reboots, and the ACPI power button powers it off. Vireo: --keys-on and
   * --power-button-on; QEMU: the same through QMP on `qmp` (a unix socket path), and it may reboot (no -no-reboot).
   */
  life?: { token: string; qmp?: string };
}

/** The second card's NAT network (the first is the default 10.0.2.0/24). */
export const E1000_NET = '10.0.3.0/24';

/** Arguments for `vireo boot` (after `boot`). */
export function vireoArgs(s: BootSpec, build: GuestBuild, timeoutS: number): string[] {
  const a = ['--memory', `${s.memoryMiB}M`, '--cpus', String(s.cpus), '--timeout', String(timeoutS)];
  if (s.path === 'kernel') {
    a.push('--kernel', s.kernel ?? build.vmlinux, '--initrd', s.initrd ?? build.initramfs, '--append', s.append ?? 'console=ttyS0');
    if (s.media) a.push('--disk', s.media.ide, '--disk', `${s.media.virtio},if=virtio`, '--cdrom', s.media.cd);
  } else {
    if (s.media) a.push('--disk', s.media.ide, '--disk', `${s.media.virtio},if=virtio`);
    a.push('--cdrom', build.iso!, '--boot', 'order=d');
  }
  if (s.nics) a.push('--nic', 'user,model=virtio', '--nic', `user,model=e1000,net=${E1000_NET}`);
  if (s.life) {
    a.push('--keys-on', `VIREO-KEYS ready:${lifeKeysLine(s.life.token)}<Enter>`, '--keys-on', `VIREO-KEYS ${s.life.token}:reboot<Enter>`,
      '--power-button-on', 'VIREO-BUTTON ready');
  }
  return a;
}

// ---- the VM's life (vireo.life=1): keys on the display console, reboot, the ACPI power button ----
/** The command the host types on the guest's display console (tty1): it writes the token on the serial port. */
export const lifeKeysLine = (token: string) => `echo VIREO-KEYS ${token} >/dev/ttyS0`;

/** The serial lines of the life steps, in the order they must come. */
export function lifeMarks(token: string): string[] {
  return ['VIREO-KEYS ready', `VIREO-KEYS ${token}`, 'VIREO-INIT rebooting', 'VIREO-REBOOTED', 'VIREO-BUTTON ready', 'VIREO-BUTTON pressed',
    'VIREO-INIT powering off'];
}

/** Host verdicts for the life steps: each line came, in order, a second kernel boot between reboot and REBOOTED. */
export function verifyLife(r: RunResult, token: string): HostVerdict[] {
  const lines = r.serial.replace(/\r/g, '').split('\n');
  const v: HostVerdict[] = [];
  let at = -1;
  const names = ['life-keys-ready', 'life-keys-typed', 'life-reboot', 'life-rebooted', 'life-button-ready', 'life-button-pressed', 'life-poweroff'];
  lifeMarks(token).forEach((mark, i) => {
    const j = lines.findIndex((l, k) => k > at && (l === mark || l.startsWith(`${mark} `)));
    v.push({ name: names[i]!, ok: j > at, detail: j > at ? `line ${j}: ${lines[j]!.slice(0, 100)}` : `no '${mark}' after line ${at}` });
    if (j > at) at = j;
  });
  const reboot = lines.findIndex((l) => l.startsWith('VIREO-INIT rebooting'));
  const again = lines.findIndex((l, k) => k > reboot && /Linux version \d/.test(l));
  v.push({ name: 'life-second-boot', ok: reboot >= 0 && again > reboot, detail: again > reboot ? `kernel banner again at line ${again}` : 'no kernel banner after the reboot' });
  return v;
}

/** A minimal QMP client (QEMU's machine protocol) for the reference runs: keys and the power button. */
export class Qmp {
  private sock?: net.Socket;
  private queue: Promise<unknown> = Promise.resolve();
  private buf = '';
  private waiters: Array<(line: string) => void> = [];
  constructor(readonly socketPath: string) {}

  private async open(): Promise<void> {
    if (this.sock) return;
    for (let i = 0; ; i++) {
      try {
        this.sock = await new Promise<net.Socket>((res, rej) => {
          const c = net.createConnection(this.socketPath, () => res(c));
          c.once('error', rej);
        });
        break;
      } catch (e) {
        if (i > 100) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    this.sock.setEncoding('utf8');
    this.sock.on('error', () => {});
    this.sock.on('data', (d: string) => {
      this.buf += d;
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (line.includes('"return"') || line.includes('"error"') || line.includes('"QMP"')) this.waiters.shift()?.(line);
      }
    });
    await new Promise<string>((r) => this.waiters.push(r)); // the greeting
    await this.send({ execute: 'qmp_capabilities' });
  }

  private send(cmd: object): Promise<string> {
    return new Promise<string>((r) => {
      this.waiters.push(r);
      this.sock!.write(`${JSON.stringify(cmd)}\n`);
    });
  }

  /** Runs commands one after another (each waits for QEMU's answer). */
  run(...cmds: object[]): Promise<unknown> {
    this.queue = this.queue.then(async () => {
      await this.open();
      for (const c of cmds) {
        const a = await this.send(c);
        if (a.includes('"error"')) throw new Error(`QMP ${JSON.stringify(c)}: ${a}`);
      }
    }).catch((e) => { process.stderr.write(`${(e as Error).message}\n`); });
    return this.queue;
  }

  /** Types text on the PS/2 keyboard ('\n' is Enter), US layout. */
  type(text: string): Promise<unknown> {
    return this.run(...[...text].map((ch) => ({ execute: 'send-key', arguments: { keys: qcodes(ch).map((q) => ({ type: 'qcode', data: q })) } })));
  }

  powerdown(): Promise<unknown> { return this.run({ execute: 'system_powerdown' }); }

  close(): void { this.sock?.destroy(); }
}

const QCODE: Record<string, string[]> = {
  ' ': ['spc'], '\n': ['ret'], '-': ['minus'], '_': ['shift', 'minus'], '/': ['slash'], '.': ['dot'], '>': ['shift', 'dot'],
  '<': ['shift', 'comma'], ',': ['comma'], '=': ['equal'], ':': ['shift', 'semicolon'], ';': ['semicolon'],
};
function qcodes(ch: string): string[] {
  if (/^[a-z0-9]$/.test(ch)) return [ch];
  if (/^[A-Z]$/.test(ch)) return ['shift', ch.toLowerCase()];
  const q = QCODE[ch];
  if (!q) throw new Error(`no QEMU key for ${JSON.stringify(ch)}`);
  return q;
}

/** Arguments for qemu-system-x86_64: the same board as Vireo's PC (i440FX, PIIX IDE, std-vga). */
export function qemuArgs(s: BootSpec, build: GuestBuild, accel: 'tcg' | 'kvm'): string[] {
  const a = ['-machine', 'pc', '-m', String(s.memoryMiB), '-smp', String(s.cpus), '-display', 'none', '-vga', 'std',
    '-serial', 'stdio', '-monitor', 'none', '-nodefaults', '-usb', '-device', 'usb-tablet'];
  // The life steps reboot the guest; every other run ends at a reset.
  if (s.life?.qmp) a.push('-qmp', `unix:${s.life.qmp},server=on,wait=off`);
  else a.push('-no-reboot');
  if (s.nics) a.push('-nic', 'user,model=virtio-net-pci', '-nic', `user,model=e1000,net=${E1000_NET}`);
  a.push(...(accel === 'kvm' ? ['-enable-kvm', '-cpu', 'qemu64,-cx16,-xsave'] : ['-accel', 'tcg']));
  if (s.media) {
    a.push('-drive', `file=${s.media.ide},format=qcow2,if=ide,index=0,media=disk`);
    a.push('-drive', `file=${s.media.virtio},format=raw,if=virtio`);
  }
  if (s.path === 'kernel') {
    a.push('-kernel', s.kernel ?? build.vmlinuz, '-initrd', s.initrd ?? build.initramfs, '-append', s.append ?? 'console=ttyS0');
    if (s.media) a.push('-drive', `file=${s.media.cd},format=raw,if=ide,index=2,media=cdrom,readonly=on`);
  } else {
    a.push('-drive', `file=${build.iso},format=raw,if=ide,index=2,media=cdrom,readonly=on`, '-boot', 'order=d');
  }
  return a;
}

// ---- running and reading the serial console ----
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface RunResult {
  /** Everything the guest printed on its first serial port (stdout). */
  serial: string;
  /** The VMM's stderr (Vireo: the engine's stop message). */
  stderr: string;
  checks: Check[];
  summary?: { pass: number; fail: number };
  exitCode: number | null;
  signal: string | null;
  /** Killed by the harness at the limit. */
  killed: boolean;
  /** Stopped early because the VMM's stderr showed RunOptions.stopOnStderr. */
  stoppedOn?: string;
  /** Seconds from spawn: first serial byte, init started, checks summary, shell prompt, process end. */
  t: { firstByte?: number; init?: number; summary?: number; prompt?: number; end: number };
  /** Host clock (s since epoch) when each check line arrived. */
  arrivedAt: Record<string, number>;
  /** Seconds from spawn at which each VIREO-GRUB / VIREO-INIT / VIREO-SUMMARY / VIREO-SHELL line arrived. */
  marks: Array<[number, string]>;
}

export function parseChecks(serial: string): Check[] {
  const out: Check[] = [];
  for (const m of serial.replace(/\r/g, '').matchAll(/^VIREO-CHECK (\S+) (PASS|FAIL) ?(.*)$/gm)) {
    out.push({ name: m[1]!, ok: m[2] === 'PASS', detail: m[3]! });
  }
  return out;
}

/** The last non-empty serial line (where a boot stopped). */
export function lastLine(text: string): string {
  const lines = text.replace(/\r/g, '').split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.length ? lines[lines.length - 1]! : '(no serial output)';
}

export interface RunOptions {
  limitS: number;
  /** Written to the guest's serial console once the shell prompt shows (e.g. 'poweroff -f\n'). */
  atPrompt?: string;
  /** Stop the VMM once the prompt shows (bench). */
  killAtPrompt?: boolean;
  onData?: (chunk: string) => void;
  /** Each runs once, the first time a serial line starts with its text (QEMU's life steps through QMP). */
  onLine?: Array<{ text: string; run: () => unknown }>;
  env?: NodeJS.ProcessEnv;
  /** Stop the VMM when its stderr shows this (QEMU keeps a VM stopped after "KVM internal error" until killed). */
  stopOnStderr?: string;
}

export function runGuest(cmd: string, args: string[], o: RunOptions): Promise<RunResult> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const el = () => Number(process.hrtime.bigint() - t0) / 1e9;
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { ...process.env, ...o.env } });
    const r: RunResult = { serial: '', stderr: '', checks: [], exitCode: null, signal: null, killed: false, t: { end: 0 }, arrivedAt: {}, marks: [] };
    let pending = '';
    let prompted = false;
    const kill = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch { /* gone */ }
    };
    const timer = setTimeout(() => { r.killed = true; kill(); }, o.limitS * 1000);
    child.stdin.on('error', () => {});
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d: string) => {
      if (r.t.firstByte === undefined) r.t.firstByte = el();
      r.serial += d;
      o.onData?.(d);
      pending += d;
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const raw of parts) {
        const line = raw.replace(/\r/g, '');
        if (line.startsWith('VIREO-INIT') && r.t.init === undefined) r.t.init = el();
        if (/^VIREO-(GRUB|INIT|SUMMARY|SHELL|POWEROFF|KEYS|REBOOTED|BUTTON)/.test(line)) r.marks.push([el(), line.slice(0, 80)]);
        const trig = o.onLine?.findIndex((w) => line.startsWith(w.text)) ?? -1;
        if (trig >= 0) o.onLine!.splice(trig, 1)[0]!.run();
        const c = /^VIREO-CHECK (\S+) /.exec(line);
        if (c) r.arrivedAt[c[1]!] = Date.now() / 1000;
        const s = /^VIREO-SUMMARY pass=(\d+) fail=(\d+)/.exec(line);
        if (s) { r.summary = { pass: +s[1]!, fail: +s[2]! }; r.t.summary = el(); }
      }
      if (!prompted && (pending.includes(PROMPT) || r.serial.includes(`\n${PROMPT}`))) {
        prompted = true;
        r.t.prompt = el();
        if (o.atPrompt) child.stdin.write(o.atPrompt);
        if (o.killAtPrompt) kill();
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      r.stderr += d;
      if (o.stopOnStderr && r.stderr.includes(o.stopOnStderr)) { r.stoppedOn = o.stopOnStderr; kill(); }
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      kill();
      r.exitCode = code;
      r.signal = sig;
      r.t.end = el();
      r.checks = parseChecks(r.serial);
      resolve(r);
    });
  });
}

// ---- what the host checks on top of the guest's own verdicts ----
/** PCI functions Vireo's PC puts on the board with a Linux driver, as vendor:device → driver. */
/**
 * The key names the function; a virtio device may carry either ID: QEMU's `-machine pc` makes transitional ones
 * (1af4:1000 net, 1af4:1001 block), Vireo modern-only ones (1af4:1041 net, 1af4:1042 block; docs/virtio.md).
 */
export const EXPECTED_PCI: Record<string, string> = {
  '8086:7010': 'ata_piix', // PIIX3 IDE
  '8086:7020': 'uhci_hcd', // PIIX3 USB (UHCI), the tablet's controller
  '1234:1111': 'bochs-drm', // std-vga
  '1af4:1001|1af4:1042': 'virtio-pci', // virtio-blk (transitional | modern)
  '1af4:1000|1af4:1041': 'virtio-pci', // virtio-net (transitional | modern)
  '8086:100e': 'e1000', // Intel 82540EM
};
const DISK_PCI = '1af4:1001|1af4:1042';
const NIC_PCI = new Set(['1af4:1000|1af4:1041', '8086:100e']);

/** The IPv4 addresses the host's resolver gives for `name` (empty when it cannot resolve it). */
export async function hostResolve(name: string): Promise<string[]> {
  const dns = await import('node:dns');
  try {
    return (await dns.promises.lookup(name, { all: true, family: 4 })).map((a) => a.address);
  } catch {
    return [];
  }
}

/** The host's end of the network checks: an HTTP server on loopback that the guest reaches at its NAT gateway. */
export interface HostHttp {
  port: number;
  token: string;
  /** Paths the guest fetched, in order. */
  hits: string[];
  close(): Promise<void>;
}

/**
 * GET /NAME answers `VIREO-HTTP name=NAME token=TOKEN`; GET /blob/NAME 1 MiB of random bytes and GET /blobmd5/NAME
 * their md5 (host → guest); POST /up/NAME answers `md5=M len=N` of the body it received (guest → host).
 */
export function startHostHttp(): Promise<HostHttp> {
  const token = `h-${crypto.randomBytes(6).toString('hex')}`;
  const blob = crypto.randomBytes(1 << 20);
  const blobMd5 = crypto.createHash('md5').update(blob).digest('hex');
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').replace(/[^\w./-]/g, '');
    hits.push(url.slice(1));
    const send = (body: string | Buffer) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
      res.end(body);
    };
    if (req.method === 'POST' && url.startsWith('/up/')) {
      const h = crypto.createHash('md5');
      let n = 0;
      req.on('data', (c: Buffer) => { h.update(c); n += c.length; });
      req.on('end', () => send(`md5=${h.digest('hex')} len=${n}\n`));
      return;
    }
    if (url.startsWith('/blob/')) return send(blob);
    if (url.startsWith('/blobmd5/')) return send(`${blobMd5}\n`);
    send(`VIREO-HTTP name=${url.slice(1)} token=${token}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as import('node:net').AddressInfo).port;
      resolve({ port, token, hits, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

export interface HostVerdict {
  name: string;
  ok: boolean;
  detail: string;
}

/** Host-side checks: tokens the guest read, the guest's writes in the images, qemu-img check, RTC vs the host clock, CPU count, the board's PCI functions bound. */
export function verifyHost(r: RunResult, want: {
  media?: Media; cdToken?: string; cpus?: number; nics?: boolean; http?: HostHttp;
  /** The name the guest resolved (vireo.dns=) and the IPv4 addresses the host's resolver gives for it. */
  dns?: { name: string; addrs: string[] };
}): HostVerdict[] {
  const v: HostVerdict[] = [];
  const by = new Map(r.checks.map((c) => [c.name, c]));
  const detail = (n: string) => by.get(n)?.detail ?? '';
  const add = (name: string, ok: boolean, d: string) => v.push({ name, ok, detail: d });
  if (want.media) {
    for (const label of ['virtio', 'ide'] as const) {
      const tok = want.media.tokens[label];
      add(`host-${label}-token`, detail(`disk-${label}-read`).includes(`token=${tok} `), `guest read token ${/token=(\S+)/.exec(detail(`disk-${label}-read`))?.[1] ?? '(none)'}, host wrote ${tok}`);
      let img: Buffer;
      if (label === 'ide') {
        const raw = path.join(want.media.dir, 'ide-after.raw');
        const c = spawnSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', want.media.ide, raw], { encoding: 'utf8' });
        img = c.status === 0 ? fs.readFileSync(raw) : Buffer.alloc(0);
        const chk = spawnSync('qemu-img', ['check', '-f', 'qcow2', want.media.ide], { encoding: 'utf8' });
        add('host-ide-qcow2-check', chk.status === 0, (chk.stdout + chk.stderr).trim().split('\n')[0] ?? '');
      } else {
        img = fs.readFileSync(want.media.virtio);
      }
      const sector = img.subarray(GUEST_WRITE_OFFSET, GUEST_WRITE_OFFSET + 512).toString('latin1').replace(/\0+$/, '').trim();
      add(`host-${label}-sees-guest-write`, sector === `VIREO-GUEST-WROTE label=${label} token=${tok}`, `sector 4096: '${sector.slice(0, 80)}'`);
    }
  }
  if (want.cdToken) add('host-cdrom-token', detail('cdrom').includes(`token=${want.cdToken} `), `guest: ${detail('cdrom') || '(no cdrom check)'}`);
  const rtc = /rtc=(\d+)/.exec(detail('rtc'));
  if (rtc) {
    const d = Number(rtc[1]) - r.arrivedAt['rtc']!;
    add('host-rtc', Math.abs(d) <= 15, `guest RTC - host clock at the line's arrival = ${d.toFixed(1)} s (allowed ±15)`);
  } else add('host-rtc', false, 'no rtc=… in the guest rtc check');
  if (want.cpus) add('host-cpus', new RegExp(`online=${want.cpus} `).test(detail('cpus')), `guest: ${detail('cpus')}, want ${want.cpus}`);
  const pci = r.checks.filter((c) => c.name.startsWith('pci-'));
  for (const [ids, driver] of Object.entries(EXPECTED_PCI)) {
    if (ids === DISK_PCI && !want.media) continue;
    if (NIC_PCI.has(ids) && !want.nics) continue;
    const hit = pci.find((c) => ids.split('|').some((id) => c.detail.includes(`id=${id} `)));
    add(`host-pci-${ids.split('|')[0]}`, !!hit && hit.detail.includes(`driver=${driver}`), hit ? hit.detail : `no PCI function ${ids.replace('|', ' or ')}`);
  }
  if (want.http) {
    for (const drv of ['virtio_net', 'e1000']) {
      const d = detail(`net-${drv}`);
      const served = ['', 'blob/', 'up/'].map((p) => `${p}${drv}`);
      add(`host-net-${drv}`, d.includes(`token=${want.http.token}`) && served.every((p) => want.http!.hits.includes(p)),
        `guest: ${d || '(no check)'}; host served: ${want.http.hits.join(', ') || '(nothing)'} (needs ${served.join(', ')})`);
      if (want.dns) {
        const g = /name=(\S+) server=(\S+) addr=(\S+)/.exec(detail(`net-${drv}-dns`));
        add(`host-net-${drv}-dns`, !!g && g[1] === want.dns.name && want.dns.addrs.includes(g[3]!),
          `guest: ${detail(`net-${drv}-dns`) || '(no check)'}; host resolves ${want.dns.name} to ${want.dns.addrs.join(', ')}`);
      }
    }
  }
  return v;
}
