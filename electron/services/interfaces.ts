// A VM's network interfaces (virsh domifaddr, domifstat, domif-getlink,
// domif-setlink; the Details page's NIC rows): the definition's NICs, and for a
// running VM the engine's link state and counters per NIC, with the addresses the
// network's DHCP server leased to each MAC -- the isolated switch's own leases, or
// on NAT the leases the VM's engine saw libslirp hand out. Bridged NICs get their
// addresses from the LAN's DHCP server, which Vireo does not see: none listed.
import type { VmDefinition } from '../common/contracts/vm';
import type { NetworkDef } from '../common/contracts/network';
import { maskOf, ipToInt } from '../common/contracts/network';
import type { IfaceAddress, VmInterface } from '../common/contracts/interfaces';
import type { NicLease, NicStats } from '../common/engine-api';

export class InterfaceError extends Error {}

export interface InterfaceServiceOptions {
  network: (name: string) => NetworkDef | undefined;
  /** An isolated network's live switch leases. */
  switchLeases: (name: string) => NicLease[];
  running: (uuid: string) => boolean;
  /** The engine's NICs of a running VM, in definition order; with `link`, plug/pull that one first. */
  engineNics: (uuid: string, link?: { index: number; up: boolean }) => Promise<NicStats[]>;
}

export class InterfaceService {
  constructor(private readonly o: InterfaceServiceOptions) {}

  async list(def: VmDefinition): Promise<{ running: boolean; interfaces: VmInterface[] }> {
    const running = this.o.running(def.uuid);
    const stats = running ? await this.o.engineNics(def.uuid) : [];
    return { running, interfaces: def.nics.map((_, i) => this.describe(def, i, stats[i])) };
  }

  /** `iface` is net<N> or a MAC address (any case), as virsh's domif-setlink takes. */
  async setLink(def: VmDefinition, iface: string, up: boolean): Promise<VmInterface> {
    const index = this.indexOf(def, iface);
    if (!this.o.running(def.uuid)) throw new InterfaceError(`${def.name} is not running: a link is plugged or pulled on a running VM.`);
    const stats = await this.o.engineNics(def.uuid, { index, up });
    return this.describe(def, index, stats[index]);
  }

  private indexOf(def: VmDefinition, iface: string): number {
    const m = /^net(\d+)$/.exec(iface);
    const i = m ? Number(m[1]) : def.nics.findIndex((n) => n.mac.toLowerCase() === iface.toLowerCase());
    if (i < 0 || i >= def.nics.length) {
      const names = def.nics.map((n, k) => `net${k} (${n.mac})`).join(', ');
      throw new InterfaceError(`${def.name} has no network interface '${iface}'${names ? `: it has ${names}` : ': it has none'}.`);
    }
    return i;
  }

  private describe(def: VmDefinition, i: number, st: NicStats | undefined): VmInterface {
    const nic = def.nics[i]!;
    const net = this.o.network(nic.network);
    const mac = nic.mac.toLowerCase();
    const leases = !st || !net ? [] : net.mode === 'isolated' ? this.o.switchLeases(net.name) : net.mode === 'nat' ? st.leases : [];
    const prefix = net?.ipv4.prefix ?? 24;
    const addresses: IfaceAddress[] = leases
      .filter((l) => l.mac.toLowerCase() === mac && inNetwork(l.ip, net))
      .map((l) => ({ ip: l.ip, prefix, source: 'lease' as const, expires: l.expires, ...(l.hostname ? { hostname: l.hostname } : {}) }));
    return {
      name: `net${i}`,
      mac: nic.mac,
      model: nic.model,
      network: nic.network,
      ...(net ? { mode: net.mode } : {}),
      ...(st
        ? {
            linkUp: st.linkUp,
            counters: {
              rxPackets: st.rxPackets,
              rxBytes: st.rxBytes,
              rxDropped: st.rxDropped,
              txPackets: st.txPackets,
              txBytes: st.txBytes,
              txDropped: st.txDropped,
              errors: st.txMalformed + st.rxBadBuffers,
            },
          }
        : {}),
      addresses,
    };
  }
}

/** A lease outside the network's range (a definition edited since) is not the VM's address there. */
function inNetwork(ip: string, net: NetworkDef | undefined): boolean {
  if (!net) return false;
  const a = ipToInt(ip);
  const base = ipToInt(net.ipv4.address);
  if (a === null || base === null) return false;
  const mask = maskOf(net.ipv4.prefix);
  return (a & mask) >>> 0 === (base & mask) >>> 0;
}
