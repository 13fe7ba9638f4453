// libvirt domain XML in and out for Vireo's VM definition (docs/libvirt-xml.md).
// toDomainXml writes what `virsh define` takes for the same hardware (checked against
// libvirt's schema with virt-xml-validate in the tests); fromDomainXml reads what
// `virsh dumpxml` and `virt-install --print-xml` write, and lists by path every element
// and attribute it did not use, with why: nothing is dropped silently.
import { type Boot, type Disk, type Nic, type VmDefinition, MAC_PATTERN, displayProblem, isDefaultDisplay, UUID_PATTERN, VM_NAME_PATTERN } from '../../common/contracts/vm';
import { type XmlElement, type XmlNode, XmlSyntaxError, parseXml, unusedPaths, writeXml } from './xml';

/** Vireo's own metadata namespace (the OS id and what libvirt has no element for). */
export const VIREO_NS = 'urn:vireo:domain:1';
export const LIBOSINFO_NS = 'http://libosinfo.org/xmlns/libvirt/domain/1.0';

export class DomainXmlError extends Error {
  constructor(readonly path: string, message: string) {
    super(path ? `${path}: ${message}` : message);
    this.name = 'DomainXmlError';
  }
}

export interface Ignored {
  /** XPath-like: /domain/devices/controller[2], /domain/vcpu/@placement. */
  path: string;
  /** Why: not used by Vireo, or how it was mapped. */
  reason: string;
}

export interface ImportedDomain {
  vm: VmDefinition;
  ignored: Ignored[];
}

export interface ToXmlOptions {
  /** osinfo-db's id URL for vm.os (e.g. http://debian.org/debian/11), written as libosinfo metadata. */
  osinfoUrl?: string;
}

export interface FromXmlOptions {
  /** Maps a libosinfo id URL to a Vireo OS id (osinfo short-id), when the XML has no Vireo metadata. */
  osFromOsinfo?: (url: string) => string | undefined;
  /** createdAt for the new definition. */
  now?: () => string;
}

const BOOT_DEV: Record<string, string> = { c: 'hd', d: 'cdrom', n: 'network' };
const BOOT_LETTER: Record<string, string> = { hd: 'c', cdrom: 'd', network: 'n' };

// ---- NICs: the one place a Vireo NIC meets a libvirt <interface> ----

/**
 * A Vireo NIC as libvirt <interface>: NICs name a Vireo network (networks.ts), which
 * is libvirt's <interface type='network'><source network='NAME'/>; `default` is the
 * NAT network every VM joins unless told otherwise, as libvirt's is.
 */
export function nicToXml(nic: Nic): XmlNode {
  const net = nic.network === 'user' ? 'default' : nic.network; // a definition from before networks had names
  return ['interface', { type: 'network' }, ['source', { network: net }], ['mac', { address: nic.mac }], ['model', { type: nic.model }]];
}

const NET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** The NIC part of an <interface>: its network and model, with notes on what was mapped. */
export function nicFromXml(type: string, source: { network?: string; bridge?: string }, model: string | undefined): { network: Nic['network']; model: Nic['model']; notes: string[] } {
  const notes: string[] = [];
  let network: Nic['network'];
  if (type === 'network' && source.network && NET_NAME.test(source.network)) network = source.network;
  else if (type === 'network') {
    network = 'default';
    notes.push(`network '${source.network ?? ''}' is not a name Vireo's networks can have: put on 'default'`);
  } else if (type === 'user') {
    network = 'default';
    notes.push("a user-mode interface is put on Vireo's 'default' network (user-mode NAT)");
  } else {
    network = 'default';
    notes.push(`a ${type} interface${source.bridge ? ` (bridge ${source.bridge})` : ''} is put on Vireo's 'default' NAT network: Vireo has no ${type} backend yet`);
  }
  let m: Nic['model'];
  if (model === 'virtio' || model === 'e1000') m = model;
  else {
    m = 'e1000';
    notes.push(model ? `model ${model} is not emulated: e1000` : 'no model given: e1000');
  }
  return { network, model: m, notes };
}

// ---- writing ----

/** The libvirt target names of the disks in order (hda, hdb, vda ...), as dumpxml writes them. */
export function diskTargets(disks: Disk[]): string[] {
  let ide = 0;
  let vd = 0;
  return disks.map((d) => (d.bus === 'virtio' ? `vd${String.fromCharCode(97 + vd++)}` : `hd${String.fromCharCode(97 + ide++)}`));
}

/** The VM as libvirt domain XML (type kvm, machine pc), as `virsh define` takes it. */
export function toDomainXml(vm: VmDefinition, opts: ToXmlOptions = {}): string {
  const kib = vm.memoryMiB * 1024;
  const os: XmlNode = ['os', {}, ['type', { arch: 'x86_64', machine: 'pc' }, 'hvm']];
  const meta: XmlNode = ['vireo:vm', { 'xmlns:vireo': VIREO_NS }, ['vireo:os', {}, vm.os], ['vireo:created', {}, vm.createdAt]];
  const b = vm.boot;
  if (b.kind === 'firmware') {
    for (const c of b.order) os.push(['boot', { dev: BOOT_DEV[c] }]);
    if (b.menu) os.push(['bootmenu', { enable: 'yes', ...(b.menuTimeoutMs !== undefined ? { timeout: String(b.menuTimeoutMs) } : {}) }]);
  } else {
    os.push(['kernel', {}, b.kernel]);
    if (b.initrd) os.push(['initrd', {}, b.initrd]);
    if (b.append) os.push(['cmdline', {}, b.append]);
    if (b.flatAddress !== undefined) meta.push(['vireo:flat-address', {}, `0x${b.flatAddress.toString(16)}`]);
  }
  const targets = diskTargets(vm.disks);
  const devices: XmlNode = ['devices', {}];
  vm.disks.forEach((d, i) => {
    const disk: XmlNode = ['disk', { type: 'file', device: d.media }, ['driver', { name: 'qemu', type: d.format }]];
    if (d.path) disk.push(['source', { file: d.path }]);
    disk.push(['target', { dev: targets[i], bus: d.bus }]);
    if (d.readOnly || d.media === 'cdrom') disk.push(['readonly', {}]);
    devices.push(disk);
  });
  for (const n of vm.nics) devices.push(nicToXml(n));
  const serial: XmlNode = ['serial', { type: 'pty' }];
  if (vm.serial?.logFile) serial.push(['log', { file: vm.serial.logFile }]);
  serial.push(['target', { port: 0 }]);
  devices.push(serial, ['console', { type: 'pty' }, ['target', { type: 'serial', port: 0 }]]);
  // VNC: Vireo's console is a framebuffer with PS/2 input (std VGA), which is what VNC
  // carries; SPICE's gains (QXL, agent clipboard, USB redirection) need devices Vireo lacks.
  // The display's preferred size as libvirt writes it (7.9+): <model><resolution x= y=/></model>.
  const model: XmlNode = ['model', { type: 'vga' }];
  if (vm.display) model.push(['resolution', { x: String(vm.display.width), y: String(vm.display.height) }]);
  devices.push(['graphics', { type: 'vnc', port: -1, autoport: 'yes' }], ['video', {}, model]);
  const metadata: XmlNode = ['metadata', {}, meta];
  if (opts.osinfoUrl) metadata.push(['libosinfo:libosinfo', { 'xmlns:libosinfo': LIBOSINFO_NS }, ['libosinfo:os', { id: opts.osinfoUrl }]]);
  const domain: XmlNode = [
    'domain',
    { type: 'kvm' },
    ['name', {}, vm.name],
    ['uuid', {}, vm.uuid],
    metadata,
    ['memory', { unit: 'KiB' }, String(kib)],
    ['currentMemory', { unit: 'KiB' }, String(kib)],
    ['vcpu', {}, String(vm.cpus)],
    os,
    ['features', {}, ['acpi', {}], ['apic', {}]],
    ['clock', { offset: 'utc' }],
    ['on_poweroff', {}, 'destroy'],
    ['on_reboot', {}, 'restart'],
    ['on_crash', {}, 'destroy'],
    devices,
  ];
  return writeXml(domain);
}

// ---- reading ----

const UNIT: Record<string, number> = {
  b: 1, bytes: 1,
  kb: 1e3, k: 1024, kib: 1024,
  mb: 1e6, m: 1024 ** 2, mib: 1024 ** 2,
  gb: 1e9, g: 1024 ** 3, gib: 1024 ** 3,
  tb: 1e12, t: 1024 ** 4, tib: 1024 ** 4,
  pb: 1e15, p: 1024 ** 5, pib: 1024 ** 5,
  eb: 1e18, e: 1024 ** 6, eib: 1024 ** 6,
};

/** Bytes of a libvirt scaled integer (<memory unit='GiB'>2</memory>); no unit means KiB. */
export function scaledBytes(value: string, unit: string | undefined, path: string): number {
  const v = value.trim();
  if (!/^[0-9]+$/.test(v)) throw new DomainXmlError(path, `'${v}' is not a whole number`);
  const u = (unit ?? 'KiB').toLowerCase();
  const f = UNIT[u];
  if (f === undefined) throw new DomainXmlError(`${path}/@unit`, `unknown unit '${unit}' (use b, KiB, MiB, GiB, TiB, KB, MB, GB…)`);
  return Number(v) * f;
}

/** A reader over a parsed tree that marks what it reads. */
class Reader {
  readonly ignored: Ignored[] = [];
  constructor(readonly root: XmlElement) {
    root.used = true;
  }
  kids(el: XmlElement, name: string): XmlElement[] {
    const out = el.children.filter((c) => c.name === name);
    for (const c of out) c.used = true;
    return out;
  }
  kid(el: XmlElement, name: string): XmlElement | undefined {
    return this.kids(el, name)[0];
  }
  attr(el: XmlElement, name: string): string | undefined {
    const a = el.attrs.get(name);
    if (!a) return undefined;
    a.used = true;
    return a.value;
  }
  /** Marks an element (and its whole subtree) used and records why it was not taken over. */
  ignore(el: XmlElement, reason: string): void {
    const mark = (e: XmlElement) => {
      e.used = true;
      for (const a of e.attrs.values()) a.used = true;
      e.children.forEach(mark);
    };
    mark(el);
    this.ignored.push({ path: el.path, reason });
  }
  note(path: string, reason: string): void {
    this.ignored.push({ path, reason });
  }
  text(el: XmlElement): string {
    return el.text.trim();
  }
}

/** What libvirt writes that Vireo's fixed PC already is (or does not model); noted, not an error. */
const KNOWN_IGNORED: Record<string, string> = {
  emulator: 'Vireo runs its own engine',
  controller: 'Vireo has a fixed set of controllers',
  input: 'Vireo has PS/2 keyboard and mouse',
  memballoon: 'no balloon device in Vireo',
  rng: 'no virtio-rng in Vireo',
  channel: 'no guest agent channels in Vireo',
  sound: 'no sound device in Vireo',
  audio: 'no sound device in Vireo',
  redirdev: 'no USB redirection in Vireo',
  hub: 'no USB hub in Vireo',
  smartcard: 'no smartcard in Vireo',
  tpm: 'no TPM in Vireo',
  watchdog: 'no watchdog in Vireo',
  panic: 'no pvpanic device in Vireo',
  filesystem: 'no shared folders in Vireo',
  hostdev: 'no device passthrough in Vireo',
};

/** Parses domain XML into a Vireo VM definition, plus what was ignored or mapped. */
export function fromDomainXml(xml: string, opts: FromXmlOptions = {}): ImportedDomain {
  let root: XmlElement;
  try {
    root = parseXml(xml);
  } catch (e) {
    if (e instanceof XmlSyntaxError) throw new DomainXmlError('', e.message);
    throw e;
  }
  if (root.name !== 'domain') throw new DomainXmlError(root.path, `the root element is <${root.name}>, not <domain>: this is not libvirt domain XML`);
  const r = new Reader(root);
  const type = r.attr(root, 'type');
  if (type !== 'kvm') r.note(`${root.path}/@type`, `domain type '${type ?? ''}': Vireo runs it on its own KVM engine`);

  const one = (name: string, required = false): XmlElement | undefined => {
    const els = r.kids(root, name);
    if (els.length > 1) throw new DomainXmlError(els[1].path, `<${name}> appears more than once`);
    if (required && !els[0]) throw new DomainXmlError(root.path, `<${name}> is missing`);
    return els[0];
  };

  const nameEl = one('name', true)!;
  const name = r.text(nameEl);
  if (!VM_NAME_PATTERN.test(name)) throw new DomainXmlError(nameEl.path, `'${name}' is not a name Vireo accepts (letters, digits, '.', '_', '-', starting with a letter or digit, at most 63)`);

  const uuidEl = one('uuid');
  let uuid: string | undefined;
  if (uuidEl) {
    const raw = r.text(uuidEl).toLowerCase();
    const dashed = /^[0-9a-f]{32}$/.test(raw) ? raw.replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5') : raw;
    if (!UUID_PATTERN.test(dashed)) throw new DomainXmlError(uuidEl.path, `'${raw}' is not a UUID`);
    uuid = dashed;
  }

  // Memory: <memory> is the maximum, <currentMemory> the balloon target; Vireo has one size.
  const memEl = one('memory', true)!;
  const memBytes = scaledBytes(memEl.text, r.attr(memEl, 'unit'), memEl.path);
  const curEl = one('currentMemory');
  if (curEl) {
    const cur = scaledBytes(curEl.text, r.attr(curEl, 'unit'), curEl.path);
    if (cur !== memBytes) r.note(curEl.path, `currentMemory differs from memory: Vireo has no balloon and gives the guest all of <memory>`);
  }
  const memoryMiB = Math.round(memBytes / 1024 ** 2);
  if (memBytes % 1024 ** 2) r.note(memEl.path, `memory rounded to ${memoryMiB} MiB`);
  if (memoryMiB < 16) throw new DomainXmlError(memEl.path, `${memBytes} bytes of memory: Vireo needs at least 16 MiB`);
  if (memoryMiB > 1024 * 1024) throw new DomainXmlError(memEl.path, 'more than 1 TiB of memory');

  const vcpuEl = one('vcpu', true)!;
  const cpusText = r.text(vcpuEl);
  if (!/^[0-9]+$/.test(cpusText) || +cpusText < 1 || +cpusText > 288) throw new DomainXmlError(vcpuEl.path, `'${cpusText}' vCPUs: give 1 to 288`);
  const cpus = Number(cpusText);
  const current = r.attr(vcpuEl, 'current');
  if (current && current !== cpusText) r.note(`${vcpuEl.path}/@current`, `Vireo starts all ${cpus} vCPUs`);

  // <os>
  const osEl = one('os', true)!;
  const typeEl = r.kid(osEl, 'type');
  if (!typeEl || r.text(typeEl) !== 'hvm') throw new DomainXmlError(typeEl?.path ?? osEl.path, `os type must be hvm (a full PC)${typeEl ? `, not '${r.text(typeEl)}'` : ''}`);
  const arch = r.attr(typeEl, 'arch');
  if (arch && arch !== 'x86_64' && arch !== 'i686') throw new DomainXmlError(`${typeEl.path}/@arch`, `architecture ${arch}: Vireo runs x86 guests only`);
  const machine = r.attr(typeEl, 'machine');
  if (machine && !/^pc(-i440fx.*)?$/.test(machine)) r.note(`${typeEl.path}/@machine`, `machine '${machine}': Vireo's PC is i440FX-like ('pc')`);
  const loader = r.kid(osEl, 'loader');
  if (loader) throw new DomainXmlError(loader.path, 'UEFI or custom firmware is not supported: Vireo boots with SeaBIOS');
  if (r.attr(osEl, 'firmware')) throw new DomainXmlError(`${osEl.path}/@firmware`, 'UEFI firmware is not supported: Vireo boots with SeaBIOS');

  const kernelEl = r.kid(osEl, 'kernel');
  const meta = readMetadata(r, one('metadata'), opts);
  let boot: Boot;
  if (kernelEl) {
    const initrd = r.kid(osEl, 'initrd');
    const cmdline = r.kid(osEl, 'cmdline');
    boot = {
      kind: 'kernel',
      kernel: r.text(kernelEl),
      ...(initrd && r.text(initrd) ? { initrd: r.text(initrd) } : {}),
      ...(cmdline && cmdline.text ? { append: cmdline.text } : {}),
      ...(meta.flatAddress !== undefined ? { flatAddress: meta.flatAddress } : {}),
    };
    if (!boot.kernel) throw new DomainXmlError(kernelEl.path, 'the kernel path is empty');
    for (const b of r.kids(osEl, 'boot')) r.ignore(b, 'direct kernel boot: the boot order is not used');
  } else {
    let order = '';
    for (const b of r.kids(osEl, 'boot')) {
      const dev = r.attr(b, 'dev') ?? '';
      const l = BOOT_LETTER[dev];
      if (!l) r.note(b.path, `boot device '${dev}' is not bootable in Vireo (hd, cdrom, network)`);
      else if (!order.includes(l)) order += l;
    }
    const menu = r.kid(osEl, 'bootmenu');
    const menuOn = menu ? r.attr(menu, 'enable') === 'yes' : false;
    const timeoutText = menu ? r.attr(menu, 'timeout') : undefined;
    let menuTimeoutMs: number | undefined;
    if (timeoutText !== undefined) {
      const t = Number(timeoutText);
      if (!/^\d+$/.test(timeoutText.trim()) || t > 65535) throw new DomainXmlError(menu!.path, `bootmenu timeout '${timeoutText}' is not a number of milliseconds from 0 to 65535`);
      if (menuOn) menuTimeoutMs = t;
    }
    boot = { kind: 'firmware', order: order || 'c', ...(menuOn ? { menu: true } : {}), ...(menuTimeoutMs !== undefined ? { menuTimeoutMs } : {}) };
    if (!order) r.note(osEl.path, 'no <boot dev>: boots from the hard disk (hd), as libvirt does');
  }

  // <features>, <clock>, lifecycle: Vireo's PC has ACPI and an APIC, an RTC in UTC.
  const features = one('features');
  if (features) {
    for (const f of features.children) {
      if (f.name === 'acpi' || f.name === 'apic' || f.name === 'pae') {
        r.kids(features, f.name);
        r.attr(f, 'eoi');
      } else r.ignore(f, 'CPU/firmware feature not modelled by Vireo');
    }
  }
  const clock = one('clock');
  if (clock) {
    const off = r.attr(clock, 'offset');
    if (off && off !== 'utc') r.note(`${clock.path}/@offset`, `clock offset '${off}': Vireo's RTC runs in UTC`);
    for (const t of clock.children) r.ignore(t, 'timer settings are Vireo\'s own');
  }
  for (const [n, want] of [['on_poweroff', 'destroy'], ['on_reboot', 'restart'], ['on_crash', 'destroy']] as const) {
    const el = one(n);
    if (el && r.text(el) !== want) r.note(el.path, `'${r.text(el)}': Vireo does '${want}'`);
  }

  // <devices>
  const devs = one('devices');
  const disks: Disk[] = [];
  const nics: Nic[] = [];
  let serialLog: string | undefined;
  let display: { width: number; height: number } | undefined;
  if (devs) {
    for (const d of r.kids(devs, 'disk')) disks.push(readDisk(r, d));
    for (const i of r.kids(devs, 'interface')) nics.push(readInterface(r, i));
    const serials = r.kids(devs, 'serial');
    serials.forEach((s, i) => {
      if (i > 0) return r.ignore(s, 'Vireo has one serial port (COM1)');
      const t = r.attr(s, 'type');
      if (t && t !== 'pty') r.note(`${s.path}/@type`, `serial type '${t}': Vireo's COM1 is its serial console`);
      const tgt = r.kid(s, 'target');
      if (tgt) {
        r.attr(tgt, 'port');
        r.attr(tgt, 'type');
        for (const m of r.kids(tgt, 'model')) r.attr(m, 'name');
      }
      const log = r.kid(s, 'log');
      if (log) {
        serialLog = r.attr(log, 'file');
        const app = r.attr(log, 'append');
        if (app && app !== 'off') r.note(`${log.path}/@append`, 'Vireo starts the log anew at each boot');
      }
      for (const src of r.kids(s, 'source')) r.ignore(src, 'the serial console is Vireo\'s own');
    });
    for (const c of r.kids(devs, 'console')) {
      r.attr(c, 'type');
      r.attr(c, 'tty');
      const tgt = r.kid(c, 'target');
      if (tgt) {
        const tt = r.attr(tgt, 'type');
        r.attr(tgt, 'port');
        if (tt && tt !== 'serial') r.note(`${tgt.path}/@type`, `a ${tt} console: Vireo's console is COM1`);
      }
      for (const src of r.kids(c, 'source')) r.ignore(src, 'the console is Vireo\'s own');
      for (const log of r.kids(c, 'log')) r.ignore(log, 'libvirt repeats the serial port\'s log here');
    }
    for (const g of r.kids(devs, 'graphics')) {
      const t = r.attr(g, 'type');
      if (t !== 'vnc') r.ignore(g, `${t} graphics: Vireo's console window shows the screen`);
      else for (const a of ['port', 'autoport', 'listen']) r.attr(g, a);
      for (const l of r.kids(g, 'listen')) {
        r.attr(l, 'type');
        if (r.attr(l, 'address') && r.attr(l, 'address') !== '127.0.0.1') r.note(l.path, 'Vireo\'s console is local only');
      }
    }
    for (const v of r.kids(devs, 'video')) {
      const m = r.kid(v, 'model');
      const t = m ? r.attr(m, 'type') : undefined;
      if (m) for (const a of ['vram', 'heads', 'primary']) r.attr(m, a);
      if (t && t !== 'vga') r.note(m!.path, `video model ${t}: Vireo emulates a standard VGA (Bochs VBE)`);
      const res = m ? r.kid(m, 'resolution') : undefined;
      if (res && !display) {
        const x = Number(r.attr(res, 'x')), y = Number(r.attr(res, 'y'));
        const why = displayProblem(x, y);
        if (why) r.note(res.path, `resolution ${r.attr(res, 'x')}x${r.attr(res, 'y')} not used: ${why}`);
        else if (!isDefaultDisplay({ width: x, height: y })) display = { width: x, height: y };
      }
      for (const a of r.kids(v, 'address')) r.ignore(a, 'libvirt-assigned PCI address');
    }
    for (const c of devs.children) {
      if (!c.used && KNOWN_IGNORED[c.name]) r.ignore(c, KNOWN_IGNORED[c.name]);
    }
  }
  if (disks.length > 16) throw new DomainXmlError(devs!.path, `${disks.length} disks: Vireo takes at most 16`);
  if (disks.filter((d) => d.bus === 'ide').length > 4) throw new DomainXmlError(devs!.path, 'more than 4 IDE/SATA drives: put the others on virtio');
  if (nics.length > 8) throw new DomainXmlError(devs!.path, `${nics.length} network interfaces: Vireo takes at most 8`);

  const vm: VmDefinition = {
    version: 1,
    uuid: uuid ?? '00000000-0000-0000-0000-000000000000',
    name,
    os: meta.os ?? 'generic',
    memoryMiB,
    cpus,
    boot,
    disks,
    nics,
    createdAt: meta.created ?? opts.now?.() ?? new Date().toISOString(),
    ...(serialLog ? { serial: { logFile: serialLog } } : {}),
    ...(display ? { display } : {}),
  };
  if (!uuidEl) r.note(root.path, 'no <uuid>: a new one is made');
  if (!meta.os) r.note(`${root.path}/metadata`, 'no OS named (Vireo or libosinfo metadata): generic');
  const rest = unusedPaths(root).map((p) => ({ path: p, reason: 'not used by Vireo' }));
  return { vm, ignored: [...r.ignored, ...rest] };
}

function readMetadata(r: Reader, md: XmlElement | undefined, opts: FromXmlOptions): { os?: string; created?: string; flatAddress?: number } {
  const out: { os?: string; created?: string; flatAddress?: number } = {};
  if (!md) return out;
  for (const c of md.children) {
    const ns = [...c.attrs.entries()].find(([k]) => k === 'xmlns' || k.startsWith('xmlns:'));
    const prefix = c.name.includes(':') ? c.name.split(':')[0] + ':' : '';
    if (ns?.[1].value === VIREO_NS) {
      r.kids(md, c.name);
      ns[1].used = true;
      const os = r.kid(c, `${prefix}os`);
      if (os && /^[A-Za-z0-9._+-]{1,64}$/.test(r.text(os))) out.os = r.text(os);
      const cr = r.kid(c, `${prefix}created`);
      if (cr) out.created = r.text(cr).slice(0, 64);
      const fa = r.kid(c, `${prefix}flat-address`);
      if (fa) {
        const v = Number(r.text(fa));
        if (!Number.isInteger(v) || v < 0 || v > 0xfffff) throw new DomainXmlError(fa.path, `'${r.text(fa)}' is not a real-mode address (0 to 0xfffff)`);
        out.flatAddress = v;
      }
    } else if (ns?.[1].value === LIBOSINFO_NS) {
      r.kids(md, c.name);
      ns[1].used = true;
      const os = r.kid(c, `${prefix}os`);
      const id = os ? r.attr(os, 'id') : undefined;
      const mapped = id ? opts.osFromOsinfo?.(id) : undefined;
      if (id && !mapped) r.note(os!.path, `osinfo id ${id} is not in this host's osinfo-db: generic`);
      out.os ??= mapped;
    }
  }
  return out;
}

function readDisk(r: Reader, d: XmlElement): Disk {
  const type = r.attr(d, 'type') ?? 'file';
  const device = r.attr(d, 'device') ?? 'disk';
  if (device !== 'disk' && device !== 'cdrom') {
    throw new DomainXmlError(`${d.path}/@device`, `a ${device} drive is not supported (disk or cdrom)`);
  }
  const src = r.kid(d, 'source');
  let p = '';
  if (type === 'file') p = (src && r.attr(src, 'file')) ?? '';
  else if (type === 'block') {
    p = (src && r.attr(src, 'dev')) ?? '';
    r.note(`${d.path}/@type`, 'a block device is opened as a file');
  } else throw new DomainXmlError(`${d.path}/@type`, `a ${type} disk is not supported: Vireo opens local files (type='file')`);
  if (src) for (const c of src.children) r.ignore(c, 'source options are not used');
  if (!p && device === 'disk') throw new DomainXmlError(d.path, 'a disk without a source file');
  if (p && !p.startsWith('/')) throw new DomainXmlError(src!.path, `'${p}' is not an absolute path`);
  const drv = r.kid(d, 'driver');
  let format: Disk['format'];
  const ft = drv ? r.attr(drv, 'type') : undefined;
  if (drv) {
    r.attr(drv, 'name');
    for (const a of drv.attrs.keys()) if (!['name', 'type'].includes(a)) r.attr(drv, a), r.note(`${drv.path}/@${a}`, 'driver tuning is Vireo\'s own');
  }
  if (ft === 'raw' || ft === 'qcow2') format = ft;
  else if (ft) throw new DomainXmlError(`${drv!.path}/@type`, `disk format ${ft} is not supported (raw or qcow2; convert it with vireo img convert)`);
  else {
    format = device === 'disk' && /\.qcow2$/i.test(p) ? 'qcow2' : 'raw';
    r.note(d.path, `no <driver type>: ${format} assumed from the file name`);
  }
  const tgt = r.kid(d, 'target');
  let bus: Disk['bus'] = 'ide';
  if (tgt) {
    r.attr(tgt, 'dev');
    const b = r.attr(tgt, 'bus');
    if (b === 'virtio' || b === 'ide') bus = b;
    else if (b) r.note(`${tgt.path}/@bus`, `bus ${b}: Vireo has no ${b} controller, the drive goes on IDE`);
    const tray = r.attr(tgt, 'tray');
    if (tray === 'open') r.note(`${tgt.path}/@tray`, 'the tray starts closed');
  }
  if (bus === 'virtio' && device === 'cdrom') throw new DomainXmlError(d.path, 'a virtio CD-ROM is not supported (ide)');
  const ro = r.kid(d, 'readonly');
  for (const a of r.kids(d, 'address')) r.ignore(a, 'libvirt-assigned address');
  for (const a of r.kids(d, 'alias')) r.ignore(a, 'libvirt-assigned alias');
  return { path: p, format, media: device, bus, ...(ro || device === 'cdrom' ? { readOnly: true } : {}) };
}

function readInterface(r: Reader, i: XmlElement): Nic {
  const type = r.attr(i, 'type') ?? '';
  const src = r.kid(i, 'source');
  const source = { network: src ? r.attr(src, 'network') : undefined, bridge: src ? r.attr(src, 'bridge') : undefined };
  if (!['network', 'bridge', 'user'].includes(type)) throw new DomainXmlError(`${i.path}/@type`, `a ${type || 'typeless'} interface is not supported (network, bridge or user)`);
  const macEl = r.kid(i, 'mac');
  const mac = macEl ? (r.attr(macEl, 'address') ?? '').toLowerCase() : '';
  if (!mac) throw new DomainXmlError(i.path, 'an interface without <mac address>: give one (52:54:00:xx:xx:xx)');
  if (!MAC_PATTERN.test(mac)) throw new DomainXmlError(`${macEl!.path}/@address`, `${mac} is not in QEMU's range 52:54:00:xx:xx:xx, which Vireo uses`);
  const modelEl = r.kid(i, 'model');
  const m = nicFromXml(type, source, modelEl ? r.attr(modelEl, 'type') : undefined);
  for (const n of m.notes) r.note(i.path, n);
  for (const a of r.kids(i, 'target')) r.ignore(a, 'libvirt-assigned host device name');
  for (const a of r.kids(i, 'address')) r.ignore(a, 'libvirt-assigned PCI address');
  for (const a of r.kids(i, 'alias')) r.ignore(a, 'libvirt-assigned alias');
  return { mac, network: m.network, model: m.model };
}
