// virsh's device listings of a VM: domiflist, domblklist, and for a running VM's
// NICs domifaddr, domifstat, domif-getlink, domif-setlink. Targets (hda, vda) are the
// names `vireo dumpxml` gives the disks; NIC rows come from the definition, named
// net0, net1, ... in its order.
import type { VmInterface } from '../common/contracts/interfaces';
import type { VmSummary } from '../common/contracts/vm';
import { diskTargets } from '../services/libvirt/domain-xml';
import { type VerbContext, VerbError, registerVerb, table } from './virsh';

const vmArg = { min: 1, max: 1, names: ['domain'] };

export function ifListTable(vm: Pick<VmSummary, 'nics'>): string {
  return table(['Interface', 'Type', 'Source', 'Model', 'MAC'], vm.nics.map((n) => ['-', 'network', n.network, n.model, n.mac]));
}

export function blkListTable(vm: Pick<VmSummary, 'disks'>, details: boolean): string {
  const t = diskTargets(vm.disks);
  const src = (p: string) => p || '-';
  return details
    ? table(['Type', 'Device', 'Target', 'Source'], vm.disks.map((d, i) => ['file', d.media, t[i]!, src(d.path)]))
    : table(['Target', 'Source'], vm.disks.map((d, i) => [t[i]!, src(d.path)]));
}

/** One row per leased address; a NIC with none is a row with no address ('-'). */
export function ifAddrTable(ifaces: Pick<VmInterface, 'name' | 'mac' | 'addresses'>[]): string {
  const rows: string[][] = [];
  for (const i of ifaces) {
    if (!i.addresses.length) rows.push([i.name, i.mac, '-', '-']);
    i.addresses.forEach((a, k) => rows.push([k ? '-' : i.name, k ? '-' : i.mac, 'ipv4', `${a.ip}/${a.prefix}`]));
  }
  return table(['Name', 'MAC address', 'Protocol', 'Address'], rows);
}

/** virsh domifstat's lines: `<iface> rx_bytes N` ... */
export function ifStatLines(i: Pick<VmInterface, 'name' | 'counters'>): string {
  const c = i.counters!;
  const rows: Array<[string, number]> = [
    ['rx_bytes', c.rxBytes], ['rx_packets', c.rxPackets], ['rx_errs', 0], ['rx_drop', c.rxDropped],
    ['tx_bytes', c.txBytes], ['tx_packets', c.txPackets], ['tx_errs', c.errors], ['tx_drop', c.txDropped],
  ];
  return rows.map(([k, v]) => `${i.name} ${k} ${v}\n`).join('');
}

async function interfaces(ctx: VerbContext, dom: string) {
  const vm = await ctx.vm(dom);
  return { vm, ...(await ctx.call('vm.interfaces', { uuid: vm.uuid })) };
}

/** A running VM's interface named net<N> or by MAC (domifstat, domif-getlink). */
async function runningIface(ctx: VerbContext, dom: string, iface: string): Promise<VmInterface> {
  const { vm, running, interfaces: all } = await interfaces(ctx, dom);
  if (!running) throw new VerbError(`${vm.name} is not running`);
  return pick(vm, all, iface);
}

function pick(vm: VmSummary, list: VmInterface[], iface: string): VmInterface {
  const i = list.find((x) => x.name === iface || x.mac.toLowerCase() === iface.toLowerCase());
  if (!i) throw new VerbError(`${vm.name} has no interface '${iface}' (it has ${list.map((x) => `${x.name} ${x.mac}`).join(', ') || 'none'})`);
  return i;
}

registerVerb({
  name: 'domiflist',
  summary: "a VM's network interfaces",
  usage: '<domain>',
  args: vmArg,
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    if (ctx.json) ctx.out(JSON.stringify(vm.nics.map((n) => ({ type: 'network', source: n.network, model: n.model, mac: n.mac })), null, 2) + '\n');
    else ctx.out(ifListTable(vm) + '\n');
    return 0;
  },
});

registerVerb({
  name: 'domblklist',
  summary: "a VM's disks and CD-ROM drives",
  usage: '[--details] <domain>',
  help: '  --details  the type and device (disk, cdrom) too',
  flags: ['--details'],
  args: vmArg,
  async run(ctx, f, [dom]) {
    const vm = await ctx.vm(dom!);
    const t = diskTargets(vm.disks);
    if (ctx.json) ctx.out(JSON.stringify(vm.disks.map((d, i) => ({ target: t[i], source: d.path || null, device: d.media, format: d.format, bus: d.bus })), null, 2) + '\n');
    else ctx.out(blkListTable(vm, f.has('--details')) + '\n');
    return 0;
  },
});

registerVerb({
  name: 'domifaddr',
  summary: "a running VM's network interfaces with the addresses leased to them",
  usage: '<domain> [--interface NAME] [--source lease]',
  help:
    "  Addresses come from the network's DHCP server (virsh's --source lease): on NAT the\n" +
    "  leases the VM's engine saw libslirp hand out, on an isolated network its switch's.\n" +
    '  There is no guest agent, so an address the guest set itself is not known, nor a\n' +
    "  bridged NIC's (the LAN's DHCP server gave it): those NICs are listed with none.",
  flags: ['--full'],
  options: ['--interface', '--source'],
  args: vmArg,
  async run(ctx, _f, [dom], opts) {
    const source = opts.get('--source')?.[0] ?? 'lease';
    if (source !== 'lease') throw new VerbError(`--source ${source}: only 'lease' is known here (there is no guest agent, and the engine keeps no ARP table)`);
    const { vm, running, interfaces: all } = await interfaces(ctx, dom!);
    if (!running) throw new VerbError(`${vm.name} is not running`);
    const want = opts.get('--interface')?.[0];
    const list = want ? [pick(vm, all, want)] : all;
    if (ctx.json) {
      ctx.out(JSON.stringify(list.map((i) => ({ name: i.name, mac: i.mac, network: i.network, addresses: i.addresses })), null, 2) + '\n');
      return 0;
    }
    ctx.out(ifAddrTable(list) + '\n');
    const none = list.filter((i) => !i.addresses.length).map((i) => i.name);
    if (none.length) {
      process.stderr.write(`note: no address known for ${none.join(', ')}: no DHCP lease seen from ${none.length > 1 ? 'them' : 'it'} (a static or bridged address is not known: there is no guest agent)\n`);
    }
    return 0;
  },
});

registerVerb({
  name: 'domifstat',
  summary: "a running VM's network interface counters",
  usage: '<domain> <interface>',
  args: { min: 2, max: 2, names: ['domain', 'interface'] },
  async run(ctx, _f, [dom, iface]) {
    const i = await runningIface(ctx, dom!, iface!);
    if (ctx.json) ctx.out(JSON.stringify({ name: i.name, ...i.counters }, null, 2) + '\n');
    else ctx.out(ifStatLines(i));
    return 0;
  },
});

registerVerb({
  name: 'domif-getlink',
  summary: "whether a running VM's network cable is plugged in",
  usage: '<domain> <interface>',
  args: { min: 2, max: 2, names: ['domain', 'interface'] },
  async run(ctx, _f, [dom, iface]) {
    const i = await runningIface(ctx, dom!, iface!);
    ctx.out(ctx.json ? JSON.stringify({ name: i.name, link: i.linkUp ? 'up' : 'down' }) + '\n' : `${i.name} ${i.linkUp ? 'up' : 'down'}\n`);
    return 0;
  },
});

registerVerb({
  name: 'domif-setlink',
  summary: "plug in (up) or pull (down) a running VM's network cable",
  usage: '<domain> <interface> <up|down>',
  help: '  The guest sees the link change as with a real cable. <interface> is net<N> (vireo domiflist order) or the MAC.',
  args: { min: 3, max: 3, names: ['domain', 'interface', 'state'] },
  async run(ctx, _f, [dom, iface, state]) {
    if (state !== 'up' && state !== 'down') throw new VerbError(`state '${state}': up or down`);
    const vm = await ctx.vm(dom!);
    const i = await ctx.call('vm.setLink', { uuid: vm.uuid, iface: iface!, up: state === 'up' });
    ctx.out(ctx.json ? JSON.stringify({ name: i.name, link: i.linkUp ? 'up' : 'down' }) + '\n' : 'Device updated successfully\n');
    return 0;
  },
});
