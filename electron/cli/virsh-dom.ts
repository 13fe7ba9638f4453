// virsh's device listings of a VM: domiflist, domblklist, domifaddr. Targets (hda, vda)
// are the names `vireo dumpxml` gives the disks; NIC rows come from the definition.
import type { VmSummary } from '../common/contracts/vm';
import { diskTargets } from '../services/libvirt/domain-xml';
import { registerVerb, table } from './virsh';

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

/** The service knows no guest addresses: each NIC is a row with no address. */
export function ifAddrTable(vm: Pick<VmSummary, 'nics'>): string {
  return table(['Name', 'MAC address', 'Protocol', 'Address'], vm.nics.map((n, i) => [`net${i}`, n.mac, '-', '-']));
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
  summary: "a VM's network interfaces with their addresses, where known",
  usage: '<domain>',
  help:
    "  The engine's user-mode NAT (libslirp) gives out DHCP leases inside the VM's process\n" +
    '  and does not report them, and there is no guest agent: the addresses are not known,\n' +
    '  so each NIC is listed with none (a note on stderr says so). Nothing is guessed.',
  flags: ['--full'],
  args: vmArg,
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    if (ctx.json) {
      ctx.out(JSON.stringify(vm.nics.map((n, i) => ({ name: `net${i}`, mac: n.mac, network: n.network, addresses: [] })), null, 2) + '\n');
      return 0;
    }
    ctx.out(ifAddrTable(vm) + '\n');
    if (vm.nics.length) process.stderr.write("note: addresses are not known: the engine's user-mode NAT does not report its DHCP leases, and there is no guest agent\n");
    return 0;
  },
});
