// Virtual networks (virsh net-list / net-define / net-start / net-autostart /
// net-destroy / net-undefine): one schema-checked JSON file per network under
// $XDG_CONFIG_HOME/vireo/networks, written atomically. A `default` NAT network
// (10.0.2.0/24: libslirp's and QEMU's user-mode addresses) is made on first start.
//
// What a network is to the engine: a NAT network is the engine's user-mode NAT
// (libslirp), one instance per NIC, configured with the network's subnet,
// gateway, DHCP start, DNS and port forwards. So VMs on the same NAT network
// each have their own NAT (they reach the outside and the host, not each other),
// as QEMU's -nic user. An isolated network is a switch this service runs
// (net-switches.ts: the engine's learning switch with its DHCP server, on a UNIX
// socket every engine host's NIC connects to), started and stopped with the
// network: VMs on it reach each other and nothing else. A bridged network puts
// each NIC on a TAP device attached to a named host bridge (needs CAP_NET_ADMIN;
// the engine's error says how to grant it). `active` is runtime state like
// libvirt's: autostart networks are started when the service starts; a VM on a
// stopped network does not start (the error says how to start it).
import * as dgram from 'node:dgram';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  DEFAULT_NETWORK,
  type Ipv4Config,
  type NetworkDef,
  NetworkDefSchema,
  type NetworkFieldError,
  type NetworkSummary,
  type PortForward,
  IPV4_PATTERN,
  defaultIpv4,
  intToIp,
  ipToInt,
  maskOf,
  networkNameProblem,
} from '../common/contracts/network';
import * as s from '../common/contracts/schema';
import { ValidationError } from '../common/contracts/schema';
import { syncDir, writeFileAtomic } from './atomic';

const StoredSchema = s.object({ version: s.literal(1), ...NetworkDefSchema.shape });

/** libslirp hands out at most this many DHCP leases from the start address (NB_BOOTP_CLIENTS). */
export const SLIRP_LEASES = 16;

export class NetworkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetworkError';
  }
}

export interface NetworkUse {
  name: string;
  running: boolean;
  /** Network names of the VM's NICs. */
  networks: string[];
}

export interface NetworkOptions {
  /** $XDG_CONFIG_HOME/vireo/networks */
  dir: string;
  /** Which VMs have NICs on which networks, and whether they run. */
  usage: () => NetworkUse[];
  onChanged?: (name: string) => void;
  /** Whether host:port can be bound now (tests replace it). */
  portFree?: (proto: 'tcp' | 'udp', address: string, port: number) => Promise<boolean>;
  /** Runs what an active network needs (isolated: its switch); start throws a message for the user. */
  switches?: { start(def: NetworkDef): void; stop(name: string): void };
}

/** Host bridge (interface) names: what Linux allows (IFNAMSIZ 16 with the NUL), without '/' or spaces. */
export const BRIDGE_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;

export function defaultNetwork(): NetworkDef {
  return { name: DEFAULT_NETWORK, mode: 'nat', ipv4: defaultIpv4('10.0.2.0', 24), forwards: [], autostart: true };
}

/** Why VMs on a network of this mode can't start with today's engine, or null (every mode is carried now). */
export function engineProblem(_mode: NetworkDef['mode']): string | null {
  return null;
}

export async function hostPortFree(proto: 'tcp' | 'udp', address: string, port: number): Promise<boolean> {
  const host = address || '0.0.0.0';
  return new Promise((resolve) => {
    if (proto === 'tcp') {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
    } else {
      const sock = dgram.createSocket('udp4');
      sock.once('error', () => (sock.close(), resolve(false)));
      sock.bind({ address: host, port, exclusive: true }, () => sock.close(() => resolve(true)));
    }
  });
}

export class NetworkService {
  private readonly nets = new Map<string, NetworkDef>();
  private readonly active = new Set<string>();
  /** Why an autostart network could not be started (its switch), by name. */
  private readonly startErrors = new Map<string, string>();
  /** Files that failed to load, with why (never overwritten). */
  readonly broken: Array<{ file: string; problem: string }> = [];

  constructor(private readonly opts: NetworkOptions) {}

  private fileOf(name: string): string {
    return path.join(this.opts.dir, `${name}.json`);
  }

  /** Loads the definitions, makes `default` on first start (and `isolated` for VMs that used the old built-in), starts the autostart ones. */
  async init(): Promise<void> {
    await fs.mkdir(this.opts.dir, { recursive: true, mode: 0o700 });
    this.nets.clear();
    this.active.clear();
    this.broken.length = 0;
    for (const file of (await fs.readdir(this.opts.dir)).sort()) {
      if (!file.endsWith('.json') || file.startsWith('.')) continue;
      const full = path.join(this.opts.dir, file);
      try {
        const { version: _v, ...def } = StoredSchema.parse(JSON.parse(await fs.readFile(full, 'utf8')));
        if (file !== `${def.name}.json`) throw new ValidationError('name', `does not match the file name ${file}`);
        if (this.get(def.name)) throw new ValidationError('name', `'${def.name}' is used by another network`);
        this.nets.set(def.name, def);
      } catch (e) {
        this.broken.push({ file: full, problem: e instanceof Error ? e.message : String(e) });
      }
    }
    if (!this.nets.has(DEFAULT_NETWORK) && !this.broken.some((b) => path.basename(b.file) === `${DEFAULT_NETWORK}.json`)) {
      await this.write(defaultNetwork());
    }
    // VMs made before networks were definitions could be on the built-in 'isolated' one.
    if (!this.get('isolated') && this.opts.usage().some((u) => u.networks.includes('isolated'))) {
      const base = this.freeSubnet();
      await this.write({ name: 'isolated', mode: 'isolated', ipv4: defaultIpv4(base, 24), forwards: [], autostart: true });
    }
    this.startErrors.clear();
    for (const n of this.nets.values()) {
      if (!n.autostart) continue;
      try {
        this.opts.switches?.start(n);
        this.active.add(n.name);
      } catch (e) {
        this.startErrors.set(n.name, e instanceof Error ? e.message : String(e));
      }
    }
  }

  /** Starts what the network needs and marks it active; a NetworkError when its switch can't run. */
  private activate(n: NetworkDef): void {
    try {
      this.opts.switches?.start(n);
    } catch (e) {
      throw new NetworkError(e instanceof Error ? e.message : String(e));
    }
    this.startErrors.delete(n.name);
    this.active.add(n.name);
  }

  private deactivate(name: string): void {
    this.opts.switches?.stop(name);
    this.active.delete(name);
  }

  /** A /24 no network uses: 192.168.100.0, .101.0, ... */
  freeSubnet(): string {
    for (let i = 100; i < 255; i++) {
      const a = `192.168.${i}.0`;
      if (![...this.nets.values()].some((n) => overlaps(n.ipv4, { address: a, prefix: 24 }))) return a;
    }
    return '10.10.0.0';
  }

  list(): NetworkSummary[] {
    return [...this.nets.values()].sort((a, b) => (a.name === DEFAULT_NETWORK ? -1 : b.name === DEFAULT_NETWORK ? 1 : a.name.localeCompare(b.name))).map((n) => this.summary(n));
  }

  get(name: string): NetworkDef | undefined {
    return this.nets.get(name);
  }

  isActive(name: string): boolean {
    return this.active.has(name);
  }

  summary(n: NetworkDef): NetworkSummary {
    return {
      ...n,
      active: this.active.has(n.name),
      isDefault: n.name === DEFAULT_NETWORK,
      usedBy: this.opts.usage().filter((u) => u.networks.includes(n.name)).map((u) => ({ name: u.name, running: u.running })),
      engineProblem: this.startErrors.get(n.name) ?? engineProblem(n.mode),
    };
  }

  private need(name: string): NetworkDef {
    const n = this.nets.get(name);
    if (!n) throw new NetworkError(`No network named '${name}'.`);
    return n;
  }

  /** Every problem with a definition, each tied to its field. `current`: the name it replaces (edit). */
  async check(def: NetworkDef, current?: string): Promise<NetworkFieldError[]> {
    const errors: NetworkFieldError[] = [];
    const err = (field: string, message: string) => void errors.push({ field, message });
    const np = networkNameProblem(def.name);
    if (np) err('name', np);
    else if (def.name.toLowerCase() === 'none') err('name', "'none' means no network: choose another name.");
    else {
      const clash = [...this.nets.keys()].find((k) => k.toLowerCase() === def.name.toLowerCase() && k !== current);
      if (clash) err('name', `A network named '${clash}' already exists.`);
    }
    if (current !== undefined && def.name !== current) {
      if (current === DEFAULT_NETWORK) err('name', "The default network can't be renamed.");
      else {
        const users = this.usersOf(current);
        if (users.length) err('name', `Can't rename: ${users.join(', ')} ${users.length === 1 ? 'has a NIC' : 'have NICs'} on '${current}'.`);
      }
    }
    if (def.mode !== 'bridge' && def.bridge !== undefined) err('bridge', 'Only a bridged network names a host bridge.');
    if (def.mode === 'bridge') {
      // The host's LAN gives the addresses: the IPv4 settings are not used.
      if (!def.bridge) err('bridge', 'Name the host bridge the VMs join (like br0).');
      else if (!BRIDGE_NAME_PATTERN.test(def.bridge)) err('bridge', `'${def.bridge}' is not a network interface name (up to 15 letters, digits, '.', '_', '-').`);
      if (def.forwards.length) err('forwards', 'Only NAT networks forward host ports.');
      return errors;
    }
    if (current !== undefined && this.active.has(current)) {
      const old = this.nets.get(current)!;
      const running = this.opts.usage().filter((u) => u.running && u.networks.includes(current)).map((u) => u.name);
      const changed = old.mode !== def.mode || JSON.stringify(old.ipv4) !== JSON.stringify(def.ipv4);
      if (running.length && changed && (old.mode === 'isolated' || def.mode === 'isolated')) {
        err('mode', `Running ${running.length === 1 ? 'VM' : 'VMs'} ${running.join(', ')} ${running.length === 1 ? 'is' : 'are'} on this isolated network's switch: shut ${running.length === 1 ? 'it' : 'them'} down before changing its mode or addresses.`);
      }
    }

    // IPv4
    const ip = def.ipv4;
    const addr = ipToInt(ip.address);
    const prefixOk = Number.isInteger(ip.prefix) && ip.prefix >= 8 && ip.prefix <= 29;
    if (!prefixOk) err('ipv4.prefix', 'The prefix must be between /8 and /29.');
    if (addr === null) err('ipv4.address', `'${ip.address}' is not an IPv4 address (like 192.168.100.0).`);
    else if (prefixOk && (addr & ~maskOf(ip.prefix)) >>> 0 !== 0) {
      err('ipv4.address', `${ip.address} has host bits set for /${ip.prefix}: the network address is ${intToIp((addr & maskOf(ip.prefix)) >>> 0)}.`);
    }
    const subnetOk = addr !== null && prefixOk && !errors.some((e) => e.field === 'ipv4.address');
    const inside = (field: string, v: string, what: string): number | null => {
      const n = ipToInt(v);
      if (n === null) return err(field, `'${v}' is not an IPv4 address.`), null;
      if (!subnetOk) return n;
      const mask = maskOf(ip.prefix);
      if ((n & mask) >>> 0 !== addr) return err(field, `${what} ${v} is outside ${ip.address}/${ip.prefix}.`), null;
      if (n === addr || n === (addr | ~mask) >>> 0) return err(field, `${what} ${v} is the network's own or broadcast address.`), null;
      return n;
    };
    const gw = inside('ipv4.gateway', ip.gateway, 'The gateway');
    const dns = inside('ipv4.dns', ip.dns, 'The DNS server');
    const start = inside('ipv4.dhcpStart', ip.dhcpStart, 'The DHCP range start');
    const end = inside('ipv4.dhcpEnd', ip.dhcpEnd, 'The DHCP range end');
    if (gw !== null && dns !== null && gw === dns) err('ipv4.dns', 'The DNS server must differ from the gateway (the NAT answers on both).');
    if (start !== null && end !== null) {
      if (end < start) err('ipv4.dhcpEnd', 'The DHCP range ends before it starts.');
      for (const [v, f, what] of [[gw, 'ipv4.gateway', 'gateway'], [dns, 'ipv4.dns', 'DNS server']] as const) {
        if (v !== null && v >= start && v <= end) err(f, `The ${what} ${intToIp(v)} is inside the DHCP range.`);
      }
    }
    if (subnetOk) {
      for (const o of this.nets.values()) {
        if (o.name === current) continue;
        if (overlaps(o.ipv4, ip)) err('ipv4.address', `${ip.address}/${ip.prefix} overlaps network '${o.name}' (${o.ipv4.address}/${o.ipv4.prefix}).`);
      }
    }

    // Port forwards
    if (def.forwards.length && def.mode !== 'nat') err('forwards', 'Only NAT networks forward host ports.');
    const old = current !== undefined ? this.nets.get(current) : undefined;
    const mine = new Set<string>();
    for (const [i, f] of def.forwards.entries()) {
      const fp = `forwards.${i}`;
      if (f.hostAddress !== '' && !IPV4_PATTERN.test(f.hostAddress)) err(`${fp}.hostAddress`, `'${f.hostAddress}' is not an IPv4 address (leave it empty for every address).`);
      if (f.guestAddress !== undefined && f.guestAddress !== '') inside(`${fp}.guestAddress`, f.guestAddress, 'The guest address');
      if (f.vm !== undefined && f.vm !== '' && !this.opts.usage().some((u) => u.name === f.vm)) err(`${fp}.vm`, `No VM named '${f.vm}'.`);
      const key = `${f.proto}:${f.hostPort}`;
      if (mine.has(key)) {
        err(`${fp}.hostPort`, `Host port ${f.proto} ${f.hostPort} is forwarded twice in this network.`);
        continue;
      }
      mine.add(key);
      const other = [...this.nets.values()].find((o) => o.name !== current && o.forwards.some((x) => x.proto === f.proto && x.hostPort === f.hostPort && addrClash(x.hostAddress, f.hostAddress)));
      if (other) {
        err(`${fp}.hostPort`, `Host port ${f.proto} ${f.hostPort} is already forwarded by network '${other.name}'.`);
        continue;
      }
      // A forward this network already had may be bound by its own running VMs.
      if (old?.forwards.some((x) => x.proto === f.proto && x.hostPort === f.hostPort && x.hostAddress === f.hostAddress)) continue;
      if (!errors.some((e) => e.field === `${fp}.hostAddress`)) {
        const free = await (this.opts.portFree ?? hostPortFree)(f.proto, f.hostAddress, f.hostPort);
        if (!free) err(`${fp}.hostPort`, `Host port ${f.proto} ${f.hostPort} is already in use on this host (or needs privileges).`);
      }
    }
    return errors;
  }

  async define(def: NetworkDef, opts: { start?: boolean; dryRun?: boolean } = {}): Promise<{ errors: NetworkFieldError[]; network?: NetworkSummary }> {
    const clean = normalize(def);
    const errors = await this.check(clean);
    if (errors.length || opts.dryRun) return { errors };
    await this.write(clean);
    if (opts.start) this.activate(clean);
    this.opts.onChanged?.(clean.name);
    return { errors: [], network: this.summary(clean) };
  }

  async edit(name: string, def: NetworkDef, dryRun = false): Promise<{ errors: NetworkFieldError[]; network?: NetworkSummary }> {
    this.need(name);
    const clean = normalize(def);
    const errors = await this.check(clean, name);
    if (errors.length || dryRun) return { errors };
    const wasActive = this.active.has(name);
    if (wasActive) this.deactivate(name); // an isolated network's switch restarts with the new settings
    if (clean.name !== name) {
      await this.removeFile(name);
      this.nets.delete(name);
    }
    await this.write(clean);
    if (wasActive) {
      try {
        this.activate(clean);
      } catch (e) {
        this.startErrors.set(clean.name, e instanceof Error ? e.message : String(e));
      }
    }
    this.opts.onChanged?.(clean.name);
    return { errors: [], network: this.summary(clean) };
  }

  start(name: string): NetworkSummary {
    const n = this.need(name);
    if (this.active.has(name)) throw new NetworkError(`Network '${name}' is already active.`);
    this.activate(n);
    this.opts.onChanged?.(name);
    return this.summary(n);
  }

  stop(name: string): NetworkSummary {
    const n = this.need(name);
    if (!this.active.has(name)) throw new NetworkError(`Network '${name}' is not active.`);
    const running = this.opts.usage().filter((u) => u.running && u.networks.includes(name)).map((u) => u.name);
    if (running.length) throw new NetworkError(`Network '${name}' is in use by running ${running.length === 1 ? 'VM' : 'VMs'} ${running.join(', ')}: shut ${running.length === 1 ? 'it' : 'them'} down first.`);
    this.deactivate(name);
    this.opts.onChanged?.(name);
    return this.summary(n);
  }

  async setAutostart(name: string, autostart: boolean): Promise<NetworkSummary> {
    const n = this.need(name);
    const next = { ...n, autostart };
    await this.write(next);
    this.opts.onChanged?.(name);
    return this.summary(next);
  }

  private usersOf(name: string): string[] {
    return this.opts.usage().filter((u) => u.networks.includes(name)).map((u) => u.name);
  }

  async undefine(name: string): Promise<void> {
    this.need(name);
    if (name === DEFAULT_NETWORK) throw new NetworkError("The default network can't be removed.");
    const users = this.usersOf(name);
    if (users.length) {
      throw new NetworkError(`Network '${name}' is used by ${users.join(', ')}: move ${users.length === 1 ? 'its NIC' : 'their NICs'} to another network or remove ${users.length === 1 ? 'it' : 'them'} first (Details → NIC).`);
    }
    await this.removeFile(name);
    this.nets.delete(name);
    this.deactivate(name);
    this.opts.onChanged?.(name);
  }

  private async write(def: NetworkDef): Promise<void> {
    const checked = NetworkDefSchema.parse(def);
    await fs.mkdir(this.opts.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.fileOf(checked.name), JSON.stringify({ version: 1, ...checked }, null, 2) + '\n', 0o600);
    this.nets.set(checked.name, checked);
  }

  private async removeFile(name: string): Promise<void> {
    await fs.rm(this.fileOf(name), { force: true });
    await syncDir(this.opts.dir);
  }

  /**
   * Why a VM with these NICs can't start now (thrown as a NetworkError by the caller), or null:
   * a NIC on a network that does not exist, is not active, or that the engine can't carry.
   */
  startProblem(vmName: string, nics: Array<{ network: string }>): string | null {
    for (const [i, nic] of nics.entries()) {
      const n = this.nets.get(nic.network);
      const who = `${vmName} can't start: NIC ${i + 1} is on network '${nic.network}'`;
      if (!n) return `${who}, which does not exist. Choose another network under Details → NIC.`;
      const why = this.startErrors.get(n.name) ?? engineProblem(n.mode);
      if (why) return `${who}: ${why}. Move the NIC to a NAT network (such as 'default') or remove it under Details → NIC.`;
      if (!this.active.has(n.name)) return `${who}, which is not active. Start it under Networks (or mark it autostart).`;
    }
    return null;
  }
}

/** Trims what a form may leave around values. */
function normalize(def: NetworkDef): NetworkDef {
  const t = (v: string) => v.trim();
  const ip = def.ipv4;
  return {
    ...def,
    name: t(def.name),
    ipv4: { address: t(ip.address), prefix: ip.prefix, gateway: t(ip.gateway), dns: t(ip.dns), dhcpStart: t(ip.dhcpStart), dhcpEnd: t(ip.dhcpEnd) },
    forwards: def.forwards.map((f) => ({
      proto: f.proto,
      hostAddress: t(f.hostAddress),
      hostPort: f.hostPort,
      guestPort: f.guestPort,
      ...(f.guestAddress?.trim() ? { guestAddress: t(f.guestAddress) } : {}),
      ...(f.vm?.trim() ? { vm: t(f.vm) } : {}),
    })),
  };
}

function overlaps(a: Pick<Ipv4Config, 'address' | 'prefix'>, b: Pick<Ipv4Config, 'address' | 'prefix'>): boolean {
  const x = ipToInt(a.address);
  const y = ipToInt(b.address);
  if (x === null || y === null) return false;
  const m = maskOf(Math.min(a.prefix, b.prefix));
  return (x & m) >>> 0 === (y & m) >>> 0;
}

function addrClash(a: string, b: string): boolean {
  return a === '' || b === '' || a === b;
}

/** The forwards one VM's NIC on `net` gets, in the engine's hostfwd syntax. */
export function hostfwdsFor(net: NetworkDef, vmName: string): string[] {
  return net.forwards
    .filter((f: PortForward) => f.vm === undefined || f.vm === vmName)
    .map((f) => `${f.proto}:${f.hostAddress}:${f.hostPort}-${f.guestAddress ?? ''}:${f.guestPort}`);
}
