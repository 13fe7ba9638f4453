// `vireo boot`: run a VM headless with its serial console on this terminal.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import type { MachineConfig, NativeMachine, NicConfig, StateEvent } from '../common/engine-api';
import { charToCode } from '../common/keys';
import { loadAddon } from '../engine-host/addon';

export interface BootOptions {
  config: MachineConfig;
  serial: { kind: 'stdio' } | { kind: 'file'; path: string };
  timeoutS?: number;
  screenshots: Array<{ atS: number; file: string }>;
  /** --screenshot-on: a screenshot the first time the guest's serial output contains `text`. */
  screenshotsOn: Array<{ text: string; file: string }>;
  keys: Array<{ atS: number; keys: string }>;
  /** --keys-on: keys typed the first time the guest's serial output contains `text`. */
  keysOn: Array<{ text: string; keys: string }>;
  /** --power-button-at / --power-button-on: the ACPI power button pressed at atS, or when serial shows `text`. */
  powerButton: Array<{ atS?: number; text?: string }>;
  /** --save-at: pause at atS, write the state to file, exit 0. */
  saveAt?: { atS: number; file: string };
  /** --restore: load this state file into the new machine before it starts. */
  restore?: string;
}

export const BOOT_USAGE = `usage: vireo boot ([--kernel FILE [--initrd FILE] [--append STRING]]
                   [--cdrom ISO] [--disk IMG[,format=raw|qcow2][,if=ide|virtio]]... [--boot order=dc] [--boot-menu]
                   [--nic none|user[,model=virtio|e1000][,mac=M][,hostfwd=tcp:[HOST]:PORT-[GUEST]:PORT]...[,restrict=on]
                         [,net=A.B.C.D/N][,host=IP][,dhcpstart=IP][,dns=IP]]...
                   [--screenshot-at SECONDS:FILE.png]... [--screenshot-on TEXT:FILE.png]... [--keys-at SECONDS:COMBO|TEXT]...
                   [--keys-on TEXT:KEYS]... [--power-button-at SECONDS] [--power-button-on TEXT]
                  | --flat FILE [--flat-address ADDR])
                  [--memory 256M] [--cpus N] [--uuid UUID] [--serial stdio|file:PATH] [--timeout SECONDS] [--no-reboot]
                  [--snapshot] [--save-at SECONDS:FILE] [--restore FILE]

Runs a virtual machine without a window. The guest's first serial port is this
terminal (raw mode when it is one; press Ctrl-A then X to quit). The exit status
is the guest's: a write of V to the isa-debug-exit port 0xf4 exits with (V<<1)|1;
a guest power-off exits 0; a crashed guest prints why and exits 2; --timeout
exits 124.

The machine is a PC running SeaBIOS from the Debian seabios package, with the
given CD-ROM and disks, a VGA display and a PS/2 keyboard. With --kernel, SeaBIOS
boots that kernel first (as QEMU's -kernel: multiboot, Linux bzImage, PVH); the
disks are there for it. --flat runs a real-mode binary on a bare machine with
serial ports only (no firmware, display or disks). A guest reset or triple fault
reboots the PC; with --no-reboot it ends the run instead (a triple fault as a
crash, status 2). --uuid sets the machine's UUID (SMBIOS type 1, what dmidecode
and guests' /sys/class/dmi/id/product_uuid show); without it each boot gets a
random one. --snapshot runs with temporary changes (QEMU's -snapshot): writes go
to throwaway qcow2 overlays in $TMPDIR, dropped at exit; the disk images are
only read. Images are locked as QEMU locks them: a disk another VM writes is refused.

--nic user adds a virtio-net card (model=e1000: an Intel 82540EM, for guests
without virtio drivers) on user-mode NAT (libslirp, as QEMU's -nic user):
the guest gets 10.0.2.15 by DHCP, reaches the host's loopback at 10.0.2.2 and
DNS at 10.0.2.3. hostfwd=tcp::2222-:22 forwards host port 2222 (every host
address; tcp:127.0.0.1:2222-:22 for loopback only) to guest port 22; repeat it
for more. restrict=on keeps the guest off the outside world and the host (port
forwards still work). net=192.168.122.0/24,host=192.168.122.1,dhcpstart=192.168.122.100,dns=192.168.122.3
puts the guest on another network (QEMU's -netdev user options; defaults .2, .15, .3). Repeat --nic for more cards; --nic none (the default) gives
none. Network cards need the PC (not --flat).
--save-at SECONDS:FILE pauses the machine after SECONDS, writes its whole state
(RAM, vCPUs, devices; docs/state.md) to FILE and exits 0. --restore FILE resumes
such a state: give the same machine options (memory, cpus, disks, boot files) it
was saved with; a different configuration is refused, naming what differs.
--screenshot-on TEXT:FILE.png writes the display to FILE.png the first time the
guest's first serial port prints TEXT (the last ':' ends TEXT), e.g. when a test
guest says its screen is ready.
--keys-on TEXT:KEYS types KEYS on the PS/2 keyboard (as --keys-at: a combo, <Enter>-style
key names or literal text) the first time the serial port prints TEXT; the first ':'
not written as '\\:' ends TEXT (--keys-on 'login\\::root<Enter>').
--power-button-at SECONDS / --power-button-on TEXT press the ACPI power button (what
Shut Down and virsh shutdown do; QEMU's system_powerdown) then, or the first time the
serial port prints TEXT: the guest decides how to power off.
The process confines itself before the guest runs, as the app's engine hosts do
(no_new_privs and seccomp: no programs run, no tracing or mounts; the vCPU and
device threads keep only I/O on what is open). VIREO_NO_CONFINE=1 leaves that off.`;

export class UsageError extends Error {}

/** Parses sizes like 256M, 1G, 512 (MiB), 2048K into MiB. */
export function parseMemory(s: string): number {
  const m = /^(\d+)([KMGT]i?B?)?$/i.exec(s.trim());
  if (!m) throw new UsageError(`--memory: '${s}' is not a size (try 256M or 1G)`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 'M')[0]!.toUpperCase();
  const mib = unit === 'K' ? n / 1024 : unit === 'M' ? n : unit === 'G' ? n * 1024 : n * 1024 * 1024;
  if (!Number.isInteger(mib) || mib < 16) throw new UsageError(`--memory: at least 16M, in whole MiB (got ${s})`);
  return mib;
}

function parseAt(flag: string, v: string): { atS: number; rest: string } {
  const i = v.indexOf(':');
  const at = Number(v.slice(0, i));
  if (i <= 0 || !Number.isFinite(at) || at < 0) throw new UsageError(`${flag}: expected SECONDS:VALUE, got '${v}'`);
  return { atS: at, rest: v.slice(i + 1) };
}

const DEFAULT_BIOS = '/usr/share/seabios/bios.bin';
const DEFAULT_VGA_BIOS = '/usr/share/seabios/vgabios-stdvga.bin';

const VALUE_FLAGS = new Set([
  '--kernel', '--initrd', '--append', '--flat', '--flat-address', '--memory', '-m', '--cpus', '--smp', '--serial',
  '--cdrom', '--disk', '--boot', '--timeout', '--screenshot-at', '--screenshot-on', '--keys-at', '--keys-on', '--power-button-at', '--power-button-on', '--uuid', '--nic', '--save-at', '--restore',
]);

/** One --nic value: 'user[,model=virtio|e1000][,mac=M][,hostfwd=...]...[,restrict=on|off]'. */
export function parseNic(v: string): NicConfig {
  const [kind, ...opts] = v.split(',');
  if (kind !== 'user') {
    throw new UsageError(`--nic: 'user' (NAT) or 'none'; got '${kind}'${/^(bridge|tap)\b/.test(kind!) ? ' (bridged networking is not built yet)' : ''}`);
  }
  const nic: NicConfig = { backend: 'user' };
  for (const o of opts) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new UsageError(`--nic: expected KEY=VALUE, got '${o}'`);
    const key = o.slice(0, eq), val = o.slice(eq + 1);
    switch (key) {
      case 'model':
        if (val === 'virtio' || val === 'virtio-net-pci') nic.model = 'virtio';
        else if (val === 'e1000' || val === '82540em') nic.model = 'e1000';
        else throw new UsageError(`--nic: model=virtio or model=e1000 (got '${val}')`);
        break;
      case 'mac':
        if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(val)) throw new UsageError(`--nic: mac=52:54:00:12:34:56 style (got '${val}')`);
        if (parseInt(val.slice(0, 2), 16) & 1) throw new UsageError(`--nic: mac ${val} is a multicast address`);
        nic.mac = val.toLowerCase();
        break;
      case 'hostfwd':
        if (!/^(tcp|udp)?:[^:-]*:\d+-[^:]*:\d+$/.test(val)) {
          throw new UsageError(`--nic: hostfwd=[tcp|udp]:[HOSTADDR]:PORT-[GUESTADDR]:PORT (got '${val}')`);
        }
        (nic.hostfwd ??= []).push(val);
        break;
      case 'restrict':
        if (!['on', 'off', 'yes', 'no'].includes(val)) throw new UsageError(`--nic: restrict=on or off (got '${val}')`);
        nic.restrict = val === 'on' || val === 'yes';
        break;
      case 'net':
        if (!/^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/.test(val)) throw new UsageError(`--nic: net=A.B.C.D/PREFIX (got '${val}')`);
        nic.net = val;
        break;
      case 'host':
      case 'dhcpstart':
      case 'dns':
        if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(val)) throw new UsageError(`--nic: ${key}=A.B.C.D (got '${val}')`);
        nic[key === 'dhcpstart' ? 'dhcpStart' : key] = val;
        break;
      default:
        throw new UsageError(`--nic: unknown option '${key}' (model, mac, hostfwd, restrict, net, host, dhcpstart, dns)`);
    }
  }
  return nic;
}

/**
 * One --disk value: 'PATH[,format=raw|qcow2][,if=ide|virtio]'. The format is never
 * guessed from the file's content (a guest can write a qcow2 header into a raw disk
 * and name a host file as its backing file): without format= it follows the name,
 * qcow2 for *.qcow2 / *.qcow, raw otherwise, and a hint is printed when the content
 * disagrees.
 */
export function parseDisk(v: string): NonNullable<MachineConfig['disks']>[number] {
  const parts = v.split(',');
  const opts = parts.slice(1);
  const known = opts.length > 0 && opts.every((o) => /^(format|if)=/.test(o));
  const file = known ? parts[0]! : v;
  if (!file) throw new UsageError('--disk: PATH[,format=raw|qcow2][,if=ide|virtio]');
  let format: 'raw' | 'qcow2' = /\.qcow2?$/i.test(file) ? 'qcow2' : 'raw';
  let bus: 'ide' | 'virtio' = 'ide';
  let stated = false;
  for (const o of known ? opts : []) {
    const [key, val] = [o.slice(0, o.indexOf('=')), o.slice(o.indexOf('=') + 1)];
    if (key === 'format') {
      if (val !== 'raw' && val !== 'qcow2') throw new UsageError(`--disk: format=raw or qcow2 (got '${val}')`);
      format = val;
      stated = true;
    } else {
      if (val !== 'ide' && val !== 'virtio') throw new UsageError(`--disk: if=ide or virtio (got '${val}')`);
      bus = val;
    }
  }
  if (!stated && looksQcow2Sync(file) !== (format === 'qcow2')) {
    console.error(`vireo boot: ${file} is opened as ${format} (from its name); its content looks ${format === 'raw' ? 'like qcow2' : 'raw'}: add ,format=${format === 'raw' ? 'qcow2' : 'raw'} if that is what it is`);
  }
  return { path: file, media: 'disk', bus, format };
}

function looksQcow2Sync(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(4);
      return fs.readSync(fd, b, 0, 4, 0) === 4 && b.toString('latin1') === 'QFI\xfb';
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

export function parseBootArgs(args: string[]): BootOptions {
  const config: MachineConfig = { memoryMiB: 256, cpus: 1, disks: [] };
  const o: BootOptions = { config, serial: { kind: 'stdio' }, screenshots: [], screenshotsOn: [], keys: [], keysOn: [], powerButton: [] };
  let snapshot = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const takesValue = !['--boot-menu', '--no-reboot', '--snapshot', '-snapshot', '--help', '-h'].includes(flag);
    if (takesValue && !VALUE_FLAGS.has(flag)) throw new UsageError(`unknown option '${a}'`);
    let v = '';
    if (takesValue) {
      if (eq > 0 && flag !== '--boot') v = a.slice(eq + 1);
      else if (i + 1 < args.length) v = args[++i]!;
      else throw new UsageError(`${flag} needs a value`);
    }
    switch (flag) {
      case '--kernel': config.kernel = v; break;
      case '--initrd': config.initrd = v; break;
      case '--append': config.append = v; break;
      case '--flat': config.flat = v; break;
      case '--flat-address': {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new UsageError(`--flat-address: '${v}' is not an address`);
        config.flatAddress = n;
        break;
      }
      case '--memory': case '-m': config.memoryMiB = parseMemory(v); break;
      case '--cpus': case '--smp': {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--cpus: 1 to 64 (got '${v}')`);
        config.cpus = n;
        break;
      }
      case '--serial':
        if (v === 'stdio') o.serial = { kind: 'stdio' };
        else if (v.startsWith('file:') && v.length > 5) o.serial = { kind: 'file', path: v.slice(5) };
        else throw new UsageError(`--serial: stdio or file:PATH (got '${v}')`);
        break;
      case '--cdrom': config.disks!.push({ path: v, media: 'cdrom', readOnly: true, bus: 'ide', format: 'raw' }); break;
      case '--disk': config.disks!.push(parseDisk(v)); break;
      case '--boot': {
        const m = /^(?:order=)?([cdn]+)$/.exec(v);
        if (!m) throw new UsageError(`--boot: order=LETTERS with c (disk), d (cdrom), n (network); got '${v}'`);
        config.bootOrder = m[1];
        break;
      }
      case '--nic':
        if (v === 'none') config.nics = [];
        else (config.nics ??= []).push(parseNic(v));
        break;
      case '--boot-menu': config.bootMenu = true; break;
      case '--uuid':
        if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v))
          throw new UsageError(`--uuid: xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in hex digits (got '${v}')`);
        config.uuid = v.toLowerCase();
        break;
      case '--no-reboot': config.noReboot = true; break;
      case '--snapshot': case '-snapshot': snapshot = true; break;
      case '--timeout': {
        const n = Number(v);
        if (!(n > 0)) throw new UsageError(`--timeout: a number of seconds (got '${v}')`);
        o.timeoutS = n;
        break;
      }
      case '--screenshot-at': {
        const { atS, rest } = parseAt(flag, v);
        if (!rest.endsWith('.png')) throw new UsageError(`--screenshot-at: the file must end in .png (got '${rest}')`);
        o.screenshots.push({ atS, file: rest });
        break;
      }
      case '--screenshot-on': {
        const i = v.lastIndexOf(':');
        const text = v.slice(0, Math.max(i, 0));
        const file = v.slice(i + 1);
        if (i <= 0 || !text) throw new UsageError(`--screenshot-on: expected TEXT:FILE.png, got '${v}'`);
        if (!file.endsWith('.png')) throw new UsageError(`--screenshot-on: the file must end in .png (got '${file}')`);
        o.screenshotsOn.push({ text, file });
        break;
      }
      case '--keys-at': {
        const { atS, rest } = parseAt(flag, v);
        o.keys.push({ atS, keys: rest });
        break;
      }
      case '--keys-on': {
        const m = /^((?:[^:\\]|\\.)+):([\s\S]+)$/.exec(v);
        if (!m) throw new UsageError(`--keys-on: expected TEXT:KEYS (a ':' in TEXT as '\\:'), got '${v}'`);
        o.keysOn.push({ text: m[1]!.replace(/\\(.)/g, '$1'), keys: m[2]! });
        break;
      }
      case '--power-button-at': {
        const n = Number(v);
        if (!(n >= 0) || !Number.isFinite(n)) throw new UsageError(`--power-button-at: a number of seconds (got '${v}')`);
        o.powerButton.push({ atS: n });
        break;
      }
      case '--power-button-on':
        if (!v) throw new UsageError('--power-button-on: the serial text to wait for');
        o.powerButton.push({ text: v });
        break;
      case '--save-at': {
        const { atS, rest } = parseAt(flag, v);
        if (!rest) throw new UsageError('--save-at: SECONDS:FILE');
        o.saveAt = { atS, file: rest };
        break;
      }
      case '--restore': o.restore = v; break;
      case '--help': case '-h': throw new UsageError('');
      default: throw new UsageError(`unknown option '${a}'`);
    }
  }
  // QEMU's -snapshot: every writable disk gets a throwaway overlay in $TMPDIR (unlinked at once);
  // the images themselves are only read (and locked shared) and stay as they were.
  if (snapshot) config.disks = config.disks!.map((d) => (d.media === 'cdrom' || d.readOnly ? d : { ...d, snapshot: true }));
  if (config.kernel && config.flat) throw new UsageError('give --kernel or --flat, not both');
  if ((config.initrd || config.append) && !config.kernel) throw new UsageError('--initrd and --append need --kernel');
  if (config.nics?.length && config.flat) throw new UsageError('--nic needs the PC, not --flat');
  config.uuid ??= randomUUID();
  if (config.flat && (config.disks!.length || o.screenshots.length || o.screenshotsOn.length || o.keys.length || o.keysOn.length || o.powerButton.length || config.bootOrder || config.bootMenu)) {
    throw new UsageError('--flat runs a bare machine: --disk, --cdrom, --boot, --boot-menu, --screenshot-at, --screenshot-on, --keys-at, --keys-on and --power-button-* need the PC (use --kernel)');
  }
  if (!config.flat) {
    config.bios = DEFAULT_BIOS;
    config.vgaBios = DEFAULT_VGA_BIOS;
  }
  return o;
}

/** Checks the files a configuration names before the engine sees them, for clear errors. */
export function checkFiles(c: MachineConfig): void {
  const need: Array<[string | undefined, string]> = [
    [c.kernel, 'kernel'], [c.initrd, 'initrd'], [c.flat, 'flat binary'], [c.bios, 'firmware'], [c.vgaBios, 'VGA BIOS'],
  ];
  for (const d of c.disks ?? []) need.push([d.path, d.media === 'cdrom' ? 'CD-ROM image' : 'disk image']);
  for (const [p, what] of need) {
    if (!p) continue;
    try {
      fs.accessSync(p, fs.constants.R_OK);
      if (!fs.statSync(p).isFile()) throw new Error(`${what} '${p}' is not a file`);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') throw new Error(`${what} '${p}' does not exist`);
      if (err.code === 'EACCES') throw new Error(`${what} '${p}' is not readable (permission denied)`);
      throw err;
    }
    if (what === 'firmware' && p === DEFAULT_BIOS && !fs.existsSync(p)) {
      throw new Error(`SeaBIOS is not installed (${p}): apt-get install seabios`);
    }
  }
}

/** The process exit status for a machine's final state. */
export function exitStatus(ev: StateEvent): number {
  const r = ev.reason;
  if (!r) return 0;
  switch (r.kind) {
    case 'exit': return (((r.code ?? 0) << 1) | 1) & 0xff;
    case 'poweroff': case 'stopped': case 'reset': return 0;
    default: return 2;
  }
}

export function describeCrash(ev: StateEvent): string {
  const r = ev.reason!;
  let s = `vireo: the guest stopped: ${r.message}`;
  if (r.bytes) s += `\n  bytes at RIP ${r.rip ?? '?'}: ${r.bytes}`;
  return s;
}

export async function run(args: string[]): Promise<number> {
  let opts: BootOptions;
  try {
    opts = parseBootArgs(args);
  } catch (e) {
    if (e instanceof UsageError) {
      if (e.message) console.error(`vireo boot: ${e.message}\n`);
      console.error(BOOT_USAGE);
      return e.message ? 2 : 0;
    }
    throw e;
  }
  try {
    checkFiles(opts.config);
  } catch (e) {
    console.error(`vireo boot: ${(e as Error).message}`);
    return 1;
  }
  const addon = loadAddon();
  const problem = addon.kvmProblem();
  if (problem) {
    console.error(`vireo boot: ${problem}`);
    return 1;
  }
  // Confined as an engine host is (docs/architecture.md, "Engine host confinement"):
  // no exec, ptrace, modules or mounts, and the device threads keep only I/O on
  // what they have open. VIREO_NO_CONFINE=1 leaves it off (debugging only).
  if (process.env.VIREO_NO_CONFINE !== '1') {
    const c = addon.confine?.();
    if (c?.problems.length) console.error(`vireo boot: confinement incomplete: ${c.problems.join('; ')}`);
  }
  let m: NativeMachine;
  try {
    m = new addon.Machine(opts.config);
    if (opts.restore) m.loadState(opts.restore);
  } catch (e) {
    console.error(`vireo boot: ${(e as Error).message}`);
    return 1;
  }
  return runMachine(m, opts);
}

function runMachine(m: NativeMachine, opts: BootOptions): Promise<number> {
  return new Promise<number>((resolve) => {
    const out = opts.serial.kind === 'file' ? fs.openSync(opts.serial.path, 'w') : 1;
    const stdin = process.stdin;
    const tty = stdin.isTTY === true;
    const timers: NodeJS.Timeout[] = [];
    let finished = false;
    let ctrlA = false;

    const finish = (code: number, message?: string) => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearTimeout(t);
      stdin.off('data', onInput);
      if (tty) stdin.setRawMode(false);
      stdin.pause();
      m.stop();
      if (out !== 1) fs.closeSync(out);
      if (message) process.stderr.write((tty ? '\r\n' : '') + message + '\n');
      resolve(code);
    };

    const onInput = (chunk: Buffer) => {
      if (tty) {
        // Ctrl-A X quits, Ctrl-A Ctrl-A sends a literal Ctrl-A (as QEMU's -nographic).
        const pass: number[] = [];
        for (const b of chunk) {
          if (ctrlA) {
            ctrlA = false;
            if (b === 0x78 || b === 0x58) return finish(0, 'vireo: quit');
            pass.push(b);
          } else if (b === 0x01) {
            ctrlA = true;
          } else {
            pass.push(b);
          }
        }
        if (pass.length) m.writeSerial(0, Uint8Array.from(pass));
      } else {
        m.writeSerial(0, chunk);
      }
    };

    const shoot = (file: string) => {
      try {
        fs.writeFileSync(file, m.screenshotPng());
      } catch (e) {
        process.stderr.write(`vireo: screenshot ${file}: ${(e as Error).message}\n`);
      }
    };
    const typeKeys = (keys: string) => {
      try {
        sendKeys(m, keys);
      } catch (e) {
        process.stderr.write(`vireo: keys '${keys}': ${(e as Error).message}\n`);
      }
    };
    const pressPowerButton = () => {
      if (!m.powerButton()) process.stderr.write('vireo: the power button could not be pressed (the guest has not enabled ACPI)\n');
    };
    // --screenshot-on, --keys-on, --power-button-on: each fires once, the first time the serial
    // text seen so far (kept as long as the longest TEXT needs across chunks) contains its TEXT.
    const waiting: Array<{ text: string; fire: () => void }> = [
      ...opts.screenshotsOn.map((w) => ({ text: w.text, fire: () => shoot(w.file) })),
      ...opts.keysOn.map((w) => ({ text: w.text, fire: () => typeKeys(w.keys) })),
      ...opts.powerButton.filter((p) => p.text !== undefined).map((p) => ({ text: p.text!, fire: pressPowerButton })),
    ];
    const keep = Math.max(0, ...waiting.map((w) => w.text.length - 1));
    let tail = '';
    m.onSerial((port, data) => {
      if (port !== 0) return;
      if (out === 1) process.stdout.write(data);
      else fs.writeSync(out, data);
      if (!waiting.length) return;
      const seen = tail + Buffer.from(data).toString('latin1');
      for (let i = 0; i < waiting.length;) {
        const w = waiting[i]!;
        if (!seen.includes(w.text)) { i++; continue; }
        waiting.splice(i, 1);
        w.fire();
      }
      tail = keep ? seen.slice(-keep) : '';
    });
    m.onState((ev) => {
      if (ev.state !== 'stopped' && ev.state !== 'crashed') return;
      const code = exitStatus(ev);
      finish(code, ev.state === 'crashed' ? describeCrash(ev) : undefined);
    });

    if (opts.timeoutS) timers.push(setTimeout(() => finish(124, `vireo: timed out after ${opts.timeoutS} s`), opts.timeoutS * 1000));
    for (const s of opts.screenshots) timers.push(setTimeout(() => shoot(s.file), s.atS * 1000));
    if (opts.saveAt) {
      const { atS, file } = opts.saveAt;
      timers.push(setTimeout(() => {
        try {
          m.pause();
          m.saveState(file);
          finish(0, `vireo: saved the machine's state to ${file}`);
        } catch (e) {
          finish(1, `vireo: save to ${file} failed: ${(e as Error).message}`);
        }
      }, atS * 1000));
    }
    for (const k of opts.keys) timers.push(setTimeout(() => typeKeys(k.keys), k.atS * 1000));
    for (const p of opts.powerButton) if (p.atS !== undefined) timers.push(setTimeout(pressPowerButton, p.atS * 1000));

    if (tty) stdin.setRawMode(true);
    stdin.on('data', onInput);
    stdin.on('end', () => stdin.pause());
    m.start();
  });
}

const COMBOS = new Set(['ctrl-alt-del', 'ctrl-alt-backspace', ...Array.from({ length: 12 }, (_, i) => `ctrl-alt-f${i + 1}`)]);

/** Sends a named combo, a key name in angle brackets (<Enter>, <Escape>, <F2>...), or literal text. */
export function sendKeys(m: NativeMachine, keys: string): void {
  if (COMBOS.has(keys.toLowerCase())) return m.sendCombo(keys.toLowerCase());
  const re = /<([A-Za-z0-9]+)>|([\s\S])/g;
  let match: RegExpExecArray | null;
  while ((match = re.exec(keys))) {
    if (match[1]) {
      const name = match[1];
      const code = /^F\d+$/i.test(name) ? name.toUpperCase() : name === 'Esc' ? 'Escape' : name;
      m.sendKey(code, true);
      m.sendKey(code, false);
      continue;
    }
    const k = charToCode(match[2]!);
    if (!k) throw new Error(`no key for character ${JSON.stringify(match[2])}`);
    if (k.shift) m.sendKey('ShiftLeft', true);
    m.sendKey(k.code, true);
    m.sendKey(k.code, false);
    if (k.shift) m.sendKey('ShiftLeft', false);
  }
}
