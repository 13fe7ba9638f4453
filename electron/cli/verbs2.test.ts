// Option parsing and output layout of install, clone, net-*, dom*, vol-*/pool-* (no service).
import { describe, expect, it } from 'vitest';
import { freeName, optionOf, parseBoot, parseDisk, parseInstall, parseNetwork, parseOsVariant, subopts } from './virt-install';
import { progressLine } from './virt-clone';
import { netListTable } from './virsh-net';
import { blkListTable, ifAddrTable, ifStatLines, ifListTable } from './virsh-dom';
import { parseSize } from './virsh-storage';
import { editorCommand } from './virsh-xml';
import { runVerb, VerbError } from './virsh';
import { snapshotTable, snapshotTime, snapshotTree } from './virsh-snapshot';
import type { Snapshot } from '../common/contracts/snapshots';
import { fromNetworkXml, toNetworkXml } from '../services/libvirt/network-xml';
import { defaultIpv4, type NetworkSummary } from '../common/contracts/network';

const opts = (o: Record<string, string[]>) => new Map(Object.entries(o));
const usage = (fn: () => unknown, msg: RegExp) => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(VerbError);
    expect((e as VerbError).exitCode).toBe(2);
    expect((e as Error).message).toMatch(msg);
    return;
  }
  throw new Error('no error');
};

describe('vireo install options', () => {
  it('splits sub-options; kernel_args keeps its commas', () => {
    expect(subopts('/a.img,format=raw,bus=virtio')).toEqual({ bare: ['/a.img'], kv: new Map([['format', 'raw'], ['bus', 'virtio']]) });
    expect(parseBoot('kernel=/k,initrd=/i,kernel_args=console=ttyS0,115200 quiet')).toEqual({ kernel: '/k', initrd: '/i', append: 'console=ttyS0,115200 quiet' });
    usage(() => parseBoot('cdrom,hd'), /only direct kernel boot/);
    usage(() => parseBoot('initrd=/i'), /kernel= names the kernel/);
  });

  it('--disk: a new disk, an existing image, none; bad sub-options name --disk', () => {
    expect(parseDisk('size=1')).toEqual({ kind: 'create', sizeGiB: 1 });
    expect(parseDisk('size=0.5,format=raw,bus=virtio')).toEqual({ kind: 'create', sizeGiB: 0.5, format: 'raw', bus: 'virtio' });
    expect(parseDisk('path=/x.qcow2,format=qcow2')).toEqual({ kind: 'path', path: '/x.qcow2', format: 'qcow2' });
    expect(parseDisk('/x.img')).toEqual({ kind: 'path', path: '/x.img' });
    expect(parseDisk('none')).toEqual({ kind: 'none' });
    usage(() => parseDisk('size=1,format=vmdk'), /--disk: format 'vmdk'/);
    usage(() => parseDisk('size=1,bus=sata'), /--disk: bus 'sata'/);
    usage(() => parseDisk('size=x'), /--disk: size 'x'/);
    usage(() => parseDisk('size=1,path=/a'), /not both/);
    usage(() => parseDisk('cache=none'), /unknown sub-option 'cache'/);
  });

  it('--network, --os-variant', () => {
    expect(parseNetwork('network=lab,model=e1000,mac=52:54:00:01:02:03')).toEqual({ kind: 'network', network: 'lab', model: 'e1000', mac: '52:54:00:01:02:03' });
    expect(parseNetwork('default')).toEqual({ kind: 'network', network: 'default' });
    expect(parseNetwork('none')).toEqual({ kind: 'none' });
    usage(() => parseNetwork('bridge=br0'), /bridged and direct networking are not built yet/);
    usage(() => parseNetwork('bridge:br0'), /bridged and direct networking/);
    usage(() => parseNetwork('network=a,model=rtl8139'), /model 'rtl8139'/);
    expect(parseOsVariant(undefined)).toEqual({ kind: 'detect', require: false });
    expect(parseOsVariant('detect=on,require=on')).toEqual({ kind: 'detect', require: true });
    expect(parseOsVariant('debian12')).toEqual({ kind: 'id', id: 'debian12' });
    expect(parseOsVariant('name=win11')).toEqual({ kind: 'id', id: 'win11' });
    usage(() => parseOsVariant('detect=off'), /detect= is 'on'/);
  });

  it('the install method, memory and CPUs', () => {
    const p = parseInstall(new Set(), opts({ '--cdrom': ['/i.iso'], '--memory': ['512'], '--vcpus': ['2'], '--disk': ['size=1'], '--name': ['a'] }));
    expect(p).toEqual({ name: 'a', memoryMiB: 512, cpus: 2, media: { kind: 'iso', path: '/i.iso' }, disk: { kind: 'create', sizeGiB: 1 }, os: { kind: 'detect', require: false }, net: { kind: 'network', network: 'default' } });
    expect(parseInstall(new Set(['--import']), opts({ '--disk': ['path=/d.qcow2,bus=virtio'] })).media).toEqual({ kind: 'import', path: '/d.qcow2', bus: 'virtio' });
    expect(parseInstall(new Set(), opts({ '--boot': ['kernel=/k'], '--network': ['none'] }))).toMatchObject({ media: { kind: 'kernel', kernel: '/k' }, net: { kind: 'none' } });
    expect(parseInstall(new Set(), opts({ '--memory': ['memory=64'] })).memoryMiB).toBe(64);
    usage(() => parseInstall(new Set(['--import']), opts({ '--cdrom': ['/i.iso'] })), /--cdrom and --import: choose one/);
    usage(() => parseInstall(new Set(['--import']), opts({ '--disk': ['size=1'] })), /--import boots an existing disk/);
    usage(() => parseInstall(new Set(), opts({ '--memory': ['1G'] })), /--memory: '1G' is not a positive whole number/);
    usage(() => parseInstall(new Set(), opts({ '--name': ['a', 'b'] })), /--name is given 2 times/);
    usage(() => parseInstall(new Set(), opts({ '--disk': ['size=1', 'size=2'] })), /one disk here/);
  });

  it('maps service fields to options; names like virt-install', () => {
    const iso = { media: { kind: 'iso' as const, path: '/i' } };
    expect(optionOf('media', iso)).toBe('--cdrom');
    expect(optionOf('media', { media: { kind: 'import', path: '/d' } })).toBe('--disk (--import)');
    expect(optionOf('memory', iso)).toBe('--memory');
    expect(optionOf('cpus', iso)).toBe('--vcpus');
    expect(optionOf('storage', iso)).toBe('--disk');
    expect(optionOf('os', iso)).toBe('--os-variant');
    expect(optionOf('kernel', iso)).toBe('--boot');
    expect(freeName('debian12', [])).toBe('debian12');
    expect(freeName('debian12', ['Debian12', 'debian12-2'])).toBe('debian12-3');
  });

  it('usage problems exit 2 before any service is asked', async () => {
    const err: string[] = [];
    const orig = console.error;
    console.error = (m: string) => void err.push(m);
    try {
      expect(await runVerb('install', ['--memory'])).toBe(2);
      expect(await runVerb('install', ['--cdrom=/a.iso', '--import'])).toBe(2);
      expect(await runVerb('install', ['--bogus'])).toBe(2);
      expect(await runVerb('clone', ['--original', 'x'])).toBe(2);
      expect(await runVerb('clone', ['--original', 'x', '--name', 'y', '--file', '/f'])).toBe(2);
      expect(await runVerb('vol-create-as', ['default', 'v', '1Q'])).toBe(2);
      expect(await runVerb('pool-define-as', ['p', 'logical', '--target', '/x'])).toBe(2);
      expect(await runVerb('vol-resize', ['v', '-1G', '--delta'])).toBe(2);
      expect(await runVerb('vol-resize', ['v', '12Q'])).toBe(2);
    } finally {
      console.error = orig;
    }
    expect(err[0]).toMatch(/--memory wants a value/);
    expect(err[1]).toMatch(/--cdrom and --import: choose one/);
    expect(err[2]).toMatch(/unknown option '--bogus'/);
    expect(err[3]).toMatch(/--name NEW or --auto-clone is needed/);
    expect(err[4]).toMatch(/--file: the service names the clone's disks/);
    expect(err[5]).toMatch(/capacity '1Q'/);
    expect(err[6]).toMatch(/pool type 'logical'/);
    expect(err[7]).toMatch(/capacity '-1G': a negative size needs --shrink/);
    expect(err[8]).toMatch(/capacity '12Q': not a size/);
  });
});

describe('layouts', () => {
  const nics = [{ mac: '52:54:00:00:00:01', network: 'default', model: 'virtio' as const }];
  it('domiflist, domifaddr, domblklist like virsh', () => {
    expect(ifListTable({ nics })).toBe(' Interface   Type      Source    Model    MAC\n' + '-'.repeat(61) + '\n -           network   default   virtio   52:54:00:00:00:01\n');
    expect(ifAddrTable([{ name: 'net0', mac: nics[0]!.mac, addresses: [] }])).toBe(' Name   MAC address         Protocol   Address\n' + '-'.repeat(48) + '\n net0   52:54:00:00:00:01   -          -\n');
    const lease = { ip: '10.0.2.15', prefix: 24, source: 'lease' as const, expires: 0 };
    expect(ifAddrTable([{ name: 'net0', mac: nics[0]!.mac, addresses: [lease] }])).toBe(
      ' Name   MAC address         Protocol   Address\n' + '-'.repeat(53) + '\n net0   52:54:00:00:00:01   ipv4       10.0.2.15/24\n',
    );
    const counters = { rxPackets: 2, rxBytes: 700, rxDropped: 1, txPackets: 3, txBytes: 900, txDropped: 0, errors: 4 };
    expect(ifStatLines({ name: 'net0', counters })).toBe(
      'net0 rx_bytes 700\nnet0 rx_packets 2\nnet0 rx_errs 0\nnet0 rx_drop 1\nnet0 tx_bytes 900\nnet0 tx_packets 3\nnet0 tx_errs 4\nnet0 tx_drop 0\n',
    );
    const disks = [
      { path: '/p/a.qcow2', format: 'qcow2' as const, media: 'disk' as const, bus: 'virtio' as const },
      { path: '', format: 'raw' as const, media: 'cdrom' as const, bus: 'ide' as const },
    ];
    expect(blkListTable({ disks }, false)).toBe(' Target   Source\n' + '-'.repeat(22) + '\n vda      /p/a.qcow2\n hda      -\n');
    expect(blkListTable({ disks }, true)).toMatch(/^ Type   Device   Target   Source\n-+\n file   disk     vda      \/p\/a\.qcow2\n file   cdrom    hda      -\n$/);
  });

  it('net-list, clone progress, sizes, the editor', () => {
    const n = { name: 'default', active: true, autostart: true } as NetworkSummary;
    expect(netListTable([n, { ...n, name: 'lab', active: false, autostart: false }])).toBe(
      ' Name      State      Autostart   Persistent\n' + '-'.repeat(46) + '\n default   active     yes         yes\n lab       inactive   no          yes\n',
    );
    expect(progressLine('Copying a.img', 512 * 1024 ** 2, 1024 ** 3, 10)).toBe('Copying a.img                 50% [=====     ] 512.00 MiB/1.00 GiB');
    expect(parseSize('1G')).toBe(1024 ** 3);
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('1GB')).toBe(1e9);
    expect(parseSize('512M')).toBe(512 * 1024 ** 2);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('1.5k')).toBe(1536);
    expect(parseSize('-1')).toBeNull();
    expect(parseSize('1Q')).toBeNull();
    expect(editorCommand({ VISUAL: 'nano', EDITOR: 'ed' })).toBe('nano');
    expect(editorCommand({ EDITOR: 'ed' })).toBe('ed');
    expect(editorCommand({})).toBe('vi');
  });
});

describe('libvirt network XML', () => {
  it('round-trips a NAT network with forwards and a custom DNS', () => {
    const def = { name: 'lab', mode: 'nat' as const, ipv4: { ...defaultIpv4('192.168.50.0', 24), dns: '192.168.50.53' }, forwards: [{ proto: 'tcp' as const, hostAddress: '', hostPort: 2222, guestPort: 22 }, { proto: 'udp' as const, hostAddress: '127.0.0.1', hostPort: 5353, guestPort: 53, guestAddress: '192.168.50.16', vm: 'dns' }], autostart: false };
    const xml = toNetworkXml(def);
    expect(xml).toContain("<forward mode='nat'/>");
    expect(xml).toContain("<ip address='192.168.50.2' netmask='255.255.255.0'>");
    expect(xml).toContain("<range start='192.168.50.15' end='192.168.50.30'/>");
    expect(fromNetworkXml(xml)).toEqual({ def, ignored: [] });
  });

  it("reads libvirt's own: isolated without <forward>, prefix=, and lists what it does not take", () => {
    const r = fromNetworkXml(
      "<network><name>iso</name><uuid>11111111-2222-3333-4444-555555555555</uuid><bridge name='virbr3' stp='on'/><mac address='52:54:00:1:2:3'/>" +
        "<ip address='10.9.0.1' prefix='16'><dhcp><range start='10.9.0.100' end='10.9.0.200'/><range start='10.9.1.1' end='10.9.1.9'/></dhcp></ip>" +
        "<ip family='ipv6' address='fd00::1' prefix='64'/></network>",
    );
    expect(r.def).toEqual({ name: 'iso', mode: 'isolated', ipv4: { address: '10.9.0.0', prefix: 16, gateway: '10.9.0.1', dns: '10.9.0.3', dhcpStart: '10.9.0.100', dhcpEnd: '10.9.0.200' }, forwards: [], autostart: false });
    expect(r.ignored.map((i) => i.path)).toEqual(['/network/uuid', '/network/bridge', '/network/ip[2]', '/network/ip[1]/dhcp/range[2]', '/network/mac']);
    expect(toNetworkXml(r.def)).not.toContain('<forward');
  });

  it('refuses what it cannot map, naming the path', () => {
    expect(() => fromNetworkXml("<network><name>r</name><forward mode='route'/></network>")).toThrow(/\/network\/forward\/@mode: forward mode 'route'/);
    expect(() => fromNetworkXml("<network><name>r</name><ip address='10.0.0.1' netmask='255.0.255.0'/></network>")).toThrow(/not a contiguous netmask/);
    expect(() => fromNetworkXml('<network><name/></network>')).toThrow(/needs a <name>/);
    expect(() => fromNetworkXml('<domain/>')).toThrow(/not <network>/);
  });
});

describe('snapshot verbs (virsh layouts)', () => {
  const snap = (name: string, parent: string | null, over: Partial<Snapshot> = {}): Snapshot => ({
    name, description: '', createdAt: '2026-11-30T22:41:05.000Z', parent, children: [], kind: 'disk+ram', state: 'running', current: false, ...over,
  });
  it('snapshot-list: Name, Creation Time, State like virsh; disk-only shows disk-snapshot', () => {
    expect(snapshotTime('2026-01-02T03:04:05.000Z')).toBe('2026-01-02 03:04:05 +0000');
    expect(snapshotTable([snap('menu', null), snap('off', 'menu', { kind: 'disk', state: 'shutoff' })])).toBe(
      ' Name   Creation Time               State\n' + '-'.repeat(51) + '\n menu   2026-11-30 22:41:05 +0000   running\n off    2026-11-30 22:41:05 +0000   disk-snapshot\n',
    );
  });
  it('snapshot-list --tree: children under their parent, as virsh draws them', () => {
    expect(snapshotTree([snap('a', null), snap('b', 'a'), snap('c', 'b'), snap('d', 'a'), snap('e', null)])).toBe(
      ['a', '  |', '  +- b', '  |   |', '  |   +- c', '  |', '  +- d', '', 'e', '', ''].join('\n'),
    );
  });
});
