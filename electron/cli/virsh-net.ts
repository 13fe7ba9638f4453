// virsh's net-* verbs on the service's virtual networks (contracts/network.ts):
// net-list, net-info, net-start, net-destroy, net-autostart, net-undefine, net-define,
// net-dumpxml, net-dhcp-leases. Network XML is mapped by electron/services/libvirt/
// network-xml.ts (docs/libvirt-xml.md).
import * as fs from 'node:fs';
import type { NetworkSummary } from '../common/contracts/network';
import { NetworkXmlError, fromNetworkXml, toNetworkXml } from '../services/libvirt/network-xml';
import { VerbError, registerVerb, table, type VerbContext } from './virsh';

const netArg = { min: 1, max: 1, names: ['network'] };
const yn = (b: boolean) => (b ? 'yes' : 'no');

async function network(ctx: VerbContext, name: string): Promise<NetworkSummary> {
  const all = await ctx.call('network.list', {});
  const n = all.find((x) => x.name === name) ?? all.find((x) => x.name.toLowerCase() === name.toLowerCase());
  if (!n) throw new VerbError(`failed to get network '${name}': no network with this name`);
  return n;
}

/** What the definition a summary carries (network.define/edit take it). */
export function defOf(n: NetworkSummary) {
  return { name: n.name, mode: n.mode, ...(n.bridge !== undefined ? { bridge: n.bridge } : {}), ipv4: n.ipv4, forwards: n.forwards, autostart: n.autostart };
}

export function netListTable(nets: NetworkSummary[]): string {
  return table(['Name', 'State', 'Autostart', 'Persistent'], nets.map((n) => [n.name, n.active ? 'active' : 'inactive', yn(n.autostart), 'yes']));
}

registerVerb({
  name: 'net-list',
  summary: 'list virtual networks (active ones; --all: every one)',
  usage: '[--all] [--inactive] [--name]',
  help: '  --all       active and inactive networks\n  --inactive  only inactive networks\n  --name      only the names, one a line',
  flags: ['--all', '--inactive', '--name'],
  args: { min: 0, max: 0 },
  async run(ctx, f) {
    const nets = (await ctx.call('network.list', {})).filter((n) => (f.has('--all') ? true : f.has('--inactive') ? !n.active : n.active));
    if (ctx.json) ctx.out(JSON.stringify(nets.map((n) => ({ name: n.name, active: n.active, autostart: n.autostart, persistent: true, mode: n.mode })), null, 2) + '\n');
    else if (f.has('--name')) ctx.out(nets.map((n) => `${n.name}\n`).join(''));
    else ctx.out(netListTable(nets) + '\n');
    return 0;
  },
});

registerVerb({
  name: 'net-info',
  summary: 'basic facts about a virtual network',
  usage: '<network>',
  args: netArg,
  async run(ctx, _f, [name]) {
    const n = await network(ctx, name!);
    const rows: Array<[string, string]> = [
      ['Name', n.name],
      ['Active', yn(n.active)],
      ['Persistent', 'yes'],
      ['Autostart', yn(n.autostart)],
      ['Mode', n.mode],
      ...(n.mode === 'bridge' ? ([['Bridge', n.bridge ?? '']] as Array<[string, string]>) : []),
      ['IPv4', `${n.ipv4.address}/${n.ipv4.prefix} (gateway ${n.ipv4.gateway}, DNS ${n.ipv4.dns})`],
      ['DHCP range', `${n.ipv4.dhcpStart} - ${n.ipv4.dhcpEnd}`],
      ['Used by', n.usedBy.map((u) => `${u.name}${u.running ? ' (running)' : ''}`).join(', ') || '-'],
      ...(n.engineProblem ? ([['Problem', n.engineProblem]] as Array<[string, string]>) : []),
    ];
    if (ctx.json) ctx.out(JSON.stringify(n, null, 2) + '\n');
    else ctx.out(rows.map(([k, v]) => `${(k + ':').padEnd(16)}${v}`).join('\n') + '\n\n');
    return 0;
  },
});

function netAction(name: string, summary: string, call: (ctx: VerbContext, n: string) => Promise<unknown>, done: string, help?: string): void {
  registerVerb({
    name,
    summary,
    usage: '<network>',
    ...(help ? { help } : {}),
    args: netArg,
    async run(ctx, _f, [n]) {
      const net = await network(ctx, n!);
      try {
        await call(ctx, net.name);
      } catch (e) {
        throw new VerbError(`Failed to ${name.slice(4)} network ${net.name}: ${(e as Error).message}`);
      }
      ctx.out(ctx.json ? JSON.stringify({ name: net.name, action: name, ok: true }) + '\n' : `Network ${net.name} ${done}\n\n`);
      return 0;
    },
  });
}

netAction('net-start', 'start a virtual network (VMs on it may start)', (c, n) => c.call('network.start', { name: n }), 'started');
netAction('net-destroy', 'stop a virtual network (refused while running VMs use it)', (c, n) => c.call('network.stop', { name: n }), 'destroyed');
netAction('net-undefine', "remove a virtual network's definition (refused while VMs have a NIC on it, and for 'default')", (c, n) => c.call('network.undefine', { name: n }), 'has been undefined');

registerVerb({
  name: 'net-autostart',
  summary: 'start a virtual network with the service (--disable: do not)',
  usage: '[--disable] <network>',
  flags: ['--disable'],
  args: netArg,
  async run(ctx, f, [n]) {
    const net = await network(ctx, n!);
    const on = !f.has('--disable');
    try {
      await ctx.call('network.autostart', { name: net.name, autostart: on });
    } catch (e) {
      throw new VerbError(`failed to ${on ? 'mark' : 'unmark'} network ${net.name} as autostarted: ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify({ name: net.name, autostart: on }) + '\n' : `Network ${net.name} ${on ? 'marked' : 'unmarked'} as autostarted\n\n`);
    return 0;
  },
});

registerVerb({
  name: 'net-dumpxml',
  summary: "a virtual network's definition as libvirt network XML",
  usage: '<network>',
  help: "  Prints XML that libvirt's schema accepts (virt-xml-validate FILE network) and that\n  `vireo net-define` reads back. The DNS address and port forwards are Vireo metadata.",
  args: netArg,
  async run(ctx, _f, [n]) {
    const net = await network(ctx, n!);
    const xml = toNetworkXml(defOf(net));
    ctx.out(ctx.json ? JSON.stringify({ name: net.name, xml }) + '\n' : xml);
    return 0;
  },
});

registerVerb({
  name: 'net-define',
  summary: 'define a virtual network from libvirt network XML (inactive, not autostarted)',
  usage: '<file>',
  help:
    "  <forward mode='nat'/>: a NAT network (the engine's user-mode NAT); no <forward>:\n" +
    "  isolated; <ip address netmask|prefix>: the gateway and subnet; <dhcp><range start end/>:\n" +
    "  the DHCP range. What Vireo does not take over is listed as warnings. '-' reads standard input.",
  args: { min: 1, max: 1, names: ['file'] },
  async run(ctx, _f, [file]) {
    let xml: string;
    try {
      xml = file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file!, 'utf8');
    } catch (e) {
      throw new VerbError(`Failed to open file '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (e as Error).message}`);
    }
    let parsed;
    try {
      parsed = fromNetworkXml(xml);
    } catch (e) {
      if (e instanceof NetworkXmlError) throw new VerbError(`Failed to define network from ${file}\n${e.message}`);
      throw e;
    }
    const r = await ctx.call('network.define', { def: parsed.def });
    if (r.errors.length || !r.network) {
      throw new VerbError(`Failed to define network from ${file}\n${r.errors.map((e) => `${e.field}: ${e.message}`).join('\n') || 'the service defined nothing'}`);
    }
    if (ctx.json) ctx.out(JSON.stringify({ name: r.network.name, ignored: parsed.ignored }, null, 2) + '\n');
    else {
      for (const i of parsed.ignored) process.stderr.write(`warning: ${i.path}: ${i.reason}\n`);
      ctx.out(`Network ${r.network.name} defined from ${file}\n\n`);
    }
    return 0;
  },
});

registerVerb({
  name: 'net-dhcp-leases',
  summary: "a virtual network's DHCP leases (not known to the service: see --help)",
  usage: '<network>',
  help:
    "  The engine's user-mode NAT (libslirp) hands out leases inside each VM's process and\n" +
    '  does not report them, so the service has none to show. This says so and exits 1;\n' +
    "  `vireo domiflist VM` lists a VM's NICs and MACs.",
  args: netArg,
  async run(ctx, _f, [n]) {
    const net = await network(ctx, n!);
    throw new VerbError(`the DHCP leases of network ${net.name} are not known: the engine's user-mode NAT (libslirp) hands them out inside each VM's process and does not report them`);
  },
});
