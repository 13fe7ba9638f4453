// `vireo boot`: run a VM headless with its serial console on this terminal.
import * as fs from 'node:fs';
import type { MachineConfig, NativeMachine, StateEvent } from '../common/engine-api';
import { loadAddon } from '../engine-host/addon';

export interface BootOptions {
  config: MachineConfig;
  serial: { kind: 'stdio' } | { kind: 'file'; path: string };
  timeoutS?: number;
  screenshots: Array<{ atS: number; file: string }>;
  keys: Array<{ atS: number; keys: string }>;
}

export const BOOT_USAGE = `usage: vireo boot (--kernel FILE [--initrd FILE] [--append STRING] | --flat FILE [--flat-address ADDR]
                   | [--cdrom ISO] [--disk IMG]... [--virtio-disk IMG]... [--boot order=dc] [--boot-menu])
                  [--memory 256M] [--cpus N] [--serial stdio|file:PATH] [--timeout SECONDS]
                  [--screenshot-at SECONDS:FILE.png]... [--keys-at SECONDS:COMBO|TEXT]...

Runs a virtual machine without a window. The guest's first serial port is this
terminal (raw mode when it is one; press Ctrl-A then X to quit). The exit status
is the guest's: a write of V to the isa-debug-exit port 0xf4 exits with (V<<1)|1;
a guest power-off exits 0; a crashed guest prints why and exits 2; --timeout
exits 124.

Without --kernel/--flat the machine boots SeaBIOS from the Debian seabios package
with the given CD-ROM and disks. --disk attaches an IDE disk, --virtio-disk a
virtio-blk disk (PCI); the image format (raw, qcow2) is probed.`;

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
  '--cdrom', '--disk', '--virtio-disk', '--boot', '--timeout', '--screenshot-at', '--keys-at',
]);

export function parseBootArgs(args: string[]): BootOptions {
  const config: MachineConfig = { memoryMiB: 256, cpus: 1, disks: [] };
  const o: BootOptions = { config, serial: { kind: 'stdio' }, screenshots: [], keys: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const takesValue = !['--boot-menu', '--help', '-h'].includes(flag);
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
      case '--cdrom': config.disks!.push({ path: v, media: 'cdrom', readOnly: true, bus: 'ide' }); break;
      case '--disk': config.disks!.push({ path: v, media: 'disk', bus: 'ide' }); break;
      case '--virtio-disk': config.disks!.push({ path: v, media: 'disk', bus: 'virtio' }); break;
      case '--boot': {
        const m = /^(?:order=)?([cdn]+)$/.exec(v);
        if (!m) throw new UsageError(`--boot: order=LETTERS with c (disk), d (cdrom), n (network); got '${v}'`);
        config.bootOrder = m[1];
        break;
      }
      case '--boot-menu': config.bootMenu = true; break;
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
      case '--keys-at': {
        const { atS, rest } = parseAt(flag, v);
        o.keys.push({ atS, keys: rest });
        break;
      }
      case '--help': case '-h': throw new UsageError('');
      default: throw new UsageError(`unknown option '${a}'`);
    }
  }
  if (config.kernel && config.flat) throw new UsageError('give --kernel or --flat, not both');
  if ((config.initrd || config.append) && !config.kernel) throw new UsageError('--initrd and --append need --kernel');
  if (!config.kernel && !config.flat) {
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
  let m: NativeMachine;
  try {
    m = new addon.Machine(opts.config);
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

    m.onSerial((port, data) => {
      if (port !== 0) return;
      if (out === 1) process.stdout.write(data);
      else fs.writeSync(out, data);
    });
    m.onState((ev) => {
      if (ev.state !== 'stopped' && ev.state !== 'crashed') return;
      const code = exitStatus(ev);
      finish(code, ev.state === 'crashed' ? describeCrash(ev) : undefined);
    });

    if (opts.timeoutS) timers.push(setTimeout(() => finish(124, `vireo: timed out after ${opts.timeoutS} s`), opts.timeoutS * 1000));
    for (const s of opts.screenshots) {
      timers.push(setTimeout(() => {
        try {
          fs.writeFileSync(s.file, m.screenshotPng());
        } catch (e) {
          process.stderr.write(`vireo: screenshot ${s.file}: ${(e as Error).message}\n`);
        }
      }, s.atS * 1000));
    }
    for (const k of opts.keys) {
      timers.push(setTimeout(() => {
        try {
          sendKeys(m, k.keys);
        } catch (e) {
          process.stderr.write(`vireo: keys '${k.keys}': ${(e as Error).message}\n`);
        }
      }, k.atS * 1000));
    }

    if (tty) stdin.setRawMode(true);
    stdin.on('data', onInput);
    stdin.on('end', () => stdin.pause());
    m.start();
  });
}

const COMBOS = new Set(['ctrl-alt-del', 'ctrl-alt-backspace', ...Array.from({ length: 12 }, (_, i) => `ctrl-alt-f${i + 1}`)]);

/** DOM code for a printable ASCII character (US layout), with shift. */
export function charToCode(ch: string): { code: string; shift: boolean } | null {
  if (/^[a-z]$/.test(ch)) return { code: `Key${ch.toUpperCase()}`, shift: false };
  if (/^[A-Z]$/.test(ch)) return { code: `Key${ch}`, shift: true };
  if (/^[0-9]$/.test(ch)) return { code: `Digit${ch}`, shift: false };
  const plain: Record<string, string> = {
    ' ': 'Space', '\n': 'Enter', '\r': 'Enter', '\t': 'Tab', '-': 'Minus', '=': 'Equal', '[': 'BracketLeft',
    ']': 'BracketRight', '\\': 'Backslash', ';': 'Semicolon', "'": 'Quote', '`': 'Backquote', ',': 'Comma',
    '.': 'Period', '/': 'Slash',
  };
  if (plain[ch]) return { code: plain[ch]!, shift: false };
  const shifted: Record<string, string> = {
    '!': 'Digit1', '@': 'Digit2', '#': 'Digit3', $: 'Digit4', '%': 'Digit5', '^': 'Digit6', '&': 'Digit7',
    '*': 'Digit8', '(': 'Digit9', ')': 'Digit0', _: 'Minus', '+': 'Equal', '{': 'BracketLeft', '}': 'BracketRight',
    '|': 'Backslash', ':': 'Semicolon', '"': 'Quote', '~': 'Backquote', '<': 'Comma', '>': 'Period', '?': 'Slash',
  };
  if (shifted[ch]) return { code: shifted[ch]!, shift: true };
  return null;
}

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
