// Virtual networks (virt-manager's Connection Details → Virtual Networks, virsh
// net-*): what the UI sees and sends. A network is a named definition VM NICs
// refer to; 'nat' networks are carried by the engine's user-mode NAT (libslirp),
// 'isolated' ones by a switch the service runs (VMs on it reach each other only),
// 'bridge' ones by a TAP per NIC on a named host bridge.
import * as s from './schema';

/** Network names: like pool names (a letter or digit, then letters, digits, '.', '_', '-'). */
export const NETWORK_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
export const DEFAULT_NETWORK = 'default';
export const IPV4_PATTERN = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function networkNameProblem(name: string): string | null {
  if (name.length === 0) return 'Enter a name.';
  if (name.length > 32) return 'Network names are at most 32 characters.';
  if (!NETWORK_NAME_PATTERN.test(name)) return 'Use letters, digits, ".", "_" and "-" only, starting with a letter or digit.';
  return null;
}

export const NetworkModeSchema = s.enums(['nat', 'isolated', 'bridge'] as const);
export type NetworkMode = s.Infer<typeof NetworkModeSchema>;

export const PortForwardSchema = s.object({
  proto: s.enums(['tcp', 'udp'] as const),
  /** Host address to listen on; '' = every address (0.0.0.0). */
  hostAddress: s.string({ max: 64 }),
  hostPort: s.number({ int: true, min: 1, max: 65535 }),
  guestPort: s.number({ int: true, min: 1, max: 65535 }),
  /** The guest address; omitted = the network's first DHCP address (what the VM's first lease is). */
  guestAddress: s.optional(s.string({ max: 64 })),
  /** Only this VM (by name) gets the forward; omitted = whichever VM on the network starts (one at a time: one host socket). */
  vm: s.optional(s.string({ max: 256 })),
});
export type PortForward = s.Infer<typeof PortForwardSchema>;

export const Ipv4ConfigSchema = s.object({
  /** The network address, e.g. 10.0.2.0. */
  address: s.string({ max: 64 }),
  prefix: s.number({ int: true }),
  /** The gateway (slirp's host address), e.g. 10.0.2.2. */
  gateway: s.string({ max: 64 }),
  /** The DNS server the guest is given (slirp's DNS proxy), e.g. 10.0.2.3. */
  dns: s.string({ max: 64 }),
  dhcpStart: s.string({ max: 64 }),
  dhcpEnd: s.string({ max: 64 }),
});
export type Ipv4Config = s.Infer<typeof Ipv4ConfigSchema>;

/** What is stored (one JSON file per network) and what define/edit send. */
export const NetworkDefSchema = s.object({
  name: s.string({ max: 64 }),
  mode: NetworkModeSchema,
  /** mode 'bridge' only: the host bridge the VMs' TAP devices join (like br0). */
  bridge: s.optional(s.string({ max: 15 })),
  ipv4: Ipv4ConfigSchema,
  forwards: s.array(PortForwardSchema, { max: 64 }),
  autostart: s.boolean(),
});
export type NetworkDef = s.Infer<typeof NetworkDefSchema>;

export const NetworkSummarySchema = s.object({
  ...NetworkDefSchema.shape,
  /** Started (virsh net-start): VMs on it may start. */
  active: s.boolean(),
  isDefault: s.boolean(),
  /** VMs with a NIC on it, with whether they run. */
  usedBy: s.array(s.object({ name: s.string(), running: s.boolean() })),
  /** Why VMs on it can't start now (e.g. its switch could not be started), or null. */
  engineProblem: s.nullable(s.string()),
});
export type NetworkSummary = s.Infer<typeof NetworkSummarySchema>;

/**
 * A problem tied to one field of the network editor: 'name', 'mode', 'bridge',
 * 'ipv4.address', 'ipv4.prefix', 'ipv4.gateway', 'ipv4.dns', 'ipv4.dhcpStart',
 * 'ipv4.dhcpEnd', 'forwards', 'forwards.<i>.hostPort', 'forwards.<i>.hostAddress',
 * 'forwards.<i>.guestAddress', 'forwards.<i>.vm'.
 */
export const NetworkFieldErrorSchema = s.object({ field: s.string({ max: 64 }), message: s.string() });
export type NetworkFieldError = s.Infer<typeof NetworkFieldErrorSchema>;

const netName = s.string({ min: 1, max: 64 });

export const networkApi = {
  'network.list': { params: s.object({}), result: s.array(NetworkSummarySchema) },
  /** virsh net-define (and net-start with `start`). Field problems come back as data. */
  'network.define': {
    params: s.object({ def: NetworkDefSchema, start: s.optional(s.boolean()), dryRun: s.optional(s.boolean()) }),
    result: s.object({ errors: s.array(NetworkFieldErrorSchema), network: s.optional(NetworkSummarySchema) }),
  },
  /** Changes a network (`name` is the current one; def.name may rename it when no VM uses it). */
  'network.edit': {
    params: s.object({ name: netName, def: NetworkDefSchema, dryRun: s.optional(s.boolean()) }),
    result: s.object({ errors: s.array(NetworkFieldErrorSchema), network: s.optional(NetworkSummarySchema) }),
  },
  'network.start': { params: s.object({ name: netName }), result: NetworkSummarySchema },
  /** virsh net-destroy: refused while running VMs use it (named). */
  'network.stop': { params: s.object({ name: netName }), result: NetworkSummarySchema },
  'network.autostart': { params: s.object({ name: netName, autostart: s.boolean() }), result: NetworkSummarySchema },
  /** virsh net-dhcp-leases: what an isolated network's DHCP handed out (live leases), with the VM owning each MAC. */
  'network.leases': {
    params: s.object({ name: netName }),
    result: s.array(s.object({ mac: s.string(), ip: s.string(), expires: s.number(), hostname: s.optional(s.string()), vm: s.optional(s.string()) })),
  },
  /** virsh net-undefine: refused while any VM has a NIC on it (named), and for 'default'. */
  'network.undefine': { params: s.object({ name: netName }), result: s.object({}) },
} as const;

export const networkEvents = {
  /** A network was defined, changed, started, stopped or removed. */
  'network.changed': s.object({ name: s.string() }),
} as const;

// ---- IPv4 helpers (shared by the service and the editor) ----

export function ipToInt(ip: string): number | null {
  if (!IPV4_PATTERN.test(ip)) return null;
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((sh) => Math.floor(n / 2 ** sh) % 256).join('.');
}

export function maskOf(prefix: number): number {
  return prefix <= 0 ? 0 : (2 ** 32 - 2 ** (32 - prefix));
}

/** A NAT network's defaults on `address`/`prefix`: gateway .2, DNS .3, DHCP .15 to .15+15 (libslirp's 16 leases). */
export function defaultIpv4(address = '10.0.2.0', prefix = 24): Ipv4Config {
  const base = ipToInt(address) ?? 0;
  return { address, prefix, gateway: intToIp(base + 2), dns: intToIp(base + 3), dhcpStart: intToIp(base + 15), dhcpEnd: intToIp(base + 30) };
}
