// libvirt network XML in and out for Vireo's network definition (virsh net-dumpxml /
// net-define; docs/libvirt-xml.md). A 'nat' network is <forward mode='nat'/>, an isolated
// one has no <forward>, 'bridge' is <forward mode='bridge'/><bridge name=/>. libvirt's
// <ip address> is the host side of the network: Vireo's gateway (slirp's host address);
// the DHCP range is <dhcp><range>. What libvirt has no element for (the DNS address
// slirp gives guests, port forwards) is Vireo metadata. Reading lists, by path, every
// element and attribute not taken over, with why, as domain XML does.
import { type NetworkDef, type PortForward, defaultIpv4, intToIp, ipToInt, maskOf } from '../../common/contracts/network';
import type { Ignored } from './domain-xml';
import { type XmlElement, type XmlNode, XmlSyntaxError, parseXml, unusedPaths, writeXml } from './xml';

export const VIREO_NET_NS = 'urn:vireo:network:1';

export class NetworkXmlError extends Error {
  constructor(readonly path: string, message: string) {
    super(path ? `${path}: ${message}` : message);
    this.name = 'NetworkXmlError';
  }
}

/** The network as libvirt network XML (virt-xml-validate FILE network accepts it). */
export function toNetworkXml(def: NetworkDef): string {
  const ip = def.ipv4;
  const meta: XmlNode = ['vireo:network', { 'xmlns:vireo': VIREO_NET_NS }, ['vireo:dns', { address: ip.dns }]];
  for (const f of def.forwards) {
    meta.push(['vireo:forward', { proto: f.proto, 'host-address': f.hostAddress || undefined, 'host-port': f.hostPort, 'guest-port': f.guestPort, 'guest-address': f.guestAddress, vm: f.vm }]);
  }
  const net: XmlNode = ['network', {}, ['name', {}, def.name], ['metadata', {}, meta]];
  if (def.mode === 'nat') net.push(['forward', { mode: 'nat' }]);
  if (def.mode === 'bridge') net.push(['forward', { mode: 'bridge' }], ['bridge', { name: def.bridge }]);
  net.push(['ip', { address: ip.gateway, netmask: intToIp(maskOf(ip.prefix)) }, ['dhcp', {}, ['range', { start: ip.dhcpStart, end: ip.dhcpEnd }]]]);
  return writeXml(net);
}

function prefixOfMask(mask: string, path: string): number {
  const n = ipToInt(mask);
  if (n === null) throw new NetworkXmlError(path, `'${mask}' is not an IPv4 netmask`);
  for (let p = 0; p <= 32; p++) if (maskOf(p) === n) return p;
  throw new NetworkXmlError(path, `'${mask}' is not a contiguous netmask`);
}

/**
 * The definition libvirt network XML describes (autostart off: libvirt keeps that apart
 * from the XML, and net-define leaves a network inactive and not autostarted), with
 * what was not taken over.
 */
export function fromNetworkXml(xml: string): { def: NetworkDef; ignored: Ignored[] } {
  let root: XmlElement;
  try {
    root = parseXml(xml);
  } catch (e) {
    if (e instanceof XmlSyntaxError) throw new NetworkXmlError('', e.message);
    throw e;
  }
  if (root.name !== 'network') throw new NetworkXmlError(`/${root.name}`, 'the root element is not <network>');
  root.used = true;
  const ignored: Ignored[] = [];
  const kids = (el: XmlElement, name: string) => el.children.filter((c) => c.name === name);
  const first = (el: XmlElement, name: string) => {
    const c = kids(el, name)[0];
    if (c) c.used = true;
    return c;
  };
  const attr = (el: XmlElement, name: string) => {
    const a = el.attrs.get(name);
    if (a) a.used = true;
    return a?.value;
  };
  /** Marks a whole element taken care of (it is listed as ignored by itself, not by its parts). */
  const consume = (el: XmlElement): void => {
    el.used = true;
    for (const a of el.attrs.values()) a.used = true;
    el.children.forEach(consume);
  };
  const nameEl = first(root, 'name');
  if (!nameEl || !nameEl.text.trim()) throw new NetworkXmlError('/network/name', 'a network needs a <name>');
  const name = nameEl.text.trim();
  const uuid = first(root, 'uuid');
  if (uuid) consume(uuid), ignored.push({ path: uuid.path, reason: 'Vireo networks are known by name only' });

  // The mode.
  const fwd = first(root, 'forward');
  let mode: NetworkDef['mode'] = 'isolated';
  let bridge: string | undefined;
  if (fwd) {
    const m = attr(fwd, 'mode') ?? 'nat';
    if (m === 'nat') mode = 'nat';
    else if (m === 'bridge') mode = 'bridge';
    else throw new NetworkXmlError(`${fwd.path}/@mode`, `forward mode '${m}' is not one Vireo has (nat, bridge, or no <forward> for isolated)`);
  }
  const br = first(root, 'bridge');
  if (br) {
    const n = attr(br, 'name');
    if (mode === 'bridge') bridge = n;
    else consume(br), ignored.push({ path: br.path, reason: 'the engine makes no host bridge for a NAT or isolated network (slirp runs in the VM\'s process)' });
  }

  // IPv4: the first <ip> without family='ipv6'.
  const ips = kids(root, 'ip');
  let ipv4 = defaultIpv4();
  const v4 = ips.find((i) => (i.attrs.get('family')?.value ?? 'ipv4') === 'ipv4');
  for (const i of ips) if (i !== v4) consume(i), ignored.push({ path: i.path, reason: i.attrs.get('family')?.value === 'ipv6' ? 'IPv6 is not configurable here' : 'only the first IPv4 <ip> is used' });
  if (v4) {
    v4.used = true;
    attr(v4, 'family');
    const gw = attr(v4, 'address');
    if (!gw || ipToInt(gw) === null) throw new NetworkXmlError(`${v4.path}/@address`, `'${gw ?? ''}' is not an IPv4 address`);
    const mask = attr(v4, 'netmask');
    const pre = attr(v4, 'prefix');
    const prefix = mask !== undefined ? prefixOfMask(mask, `${v4.path}/@netmask`) : pre !== undefined ? Number(pre) : 24;
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > 30) throw new NetworkXmlError(`${v4.path}/@prefix`, `prefix '${pre}' is not 1 to 30`);
    const base = intToIp((ipToInt(gw)! & maskOf(prefix)) >>> 0);
    ipv4 = { ...defaultIpv4(base, prefix), gateway: gw };
    const dhcp = first(v4, 'dhcp');
    if (dhcp) {
      const ranges = kids(dhcp, 'range');
      const r = ranges[0];
      if (r) {
        r.used = true;
        const s = attr(r, 'start');
        const e = attr(r, 'end');
        if (s) ipv4.dhcpStart = s;
        if (e) ipv4.dhcpEnd = e;
      }
      for (const x of ranges.slice(1)) consume(x), ignored.push({ path: x.path, reason: 'one DHCP range per network (the first)' });
    }
  }

  // Vireo's metadata: the DNS address and port forwards.
  const forwards: PortForward[] = [];
  const md = first(root, 'metadata');
  if (md) {
    for (const c of md.children) {
      if (c.name !== 'vireo:network' && !(c.name.endsWith(':network') && [...c.attrs.values()].some((a) => a.value === VIREO_NET_NS))) continue;
      c.used = true;
      for (const a of c.attrs.keys()) if (a.startsWith('xmlns')) attr(c, a);
      for (const x of c.children) {
        const local = x.name.slice(x.name.indexOf(':') + 1);
        if (local === 'dns') {
          x.used = true;
          const a = attr(x, 'address');
          if (a) ipv4.dns = a;
        } else if (local === 'forward') {
          x.used = true;
          const proto = attr(x, 'proto');
          const num = (k: string) => Number(attr(x, k));
          const ga = attr(x, 'guest-address');
          const vm = attr(x, 'vm');
          forwards.push({ proto: proto === 'udp' ? 'udp' : 'tcp', hostAddress: attr(x, 'host-address') ?? '', hostPort: num('host-port'), guestPort: num('guest-port'), ...(ga ? { guestAddress: ga } : {}), ...(vm ? { vm } : {}) });
        }
      }
    }
  }
  for (const p of unusedPaths(root)) ignored.push({ path: p, reason: 'not used by Vireo' });
  return { def: { name, mode, ...(bridge !== undefined ? { bridge } : {}), ipv4, forwards, autostart: false }, ignored };
}
