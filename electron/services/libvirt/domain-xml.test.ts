// toDomainXml / fromDomainXml against libvirt's own schema and tools where installed
// (virt-xml-validate, virsh with the test driver: Debian libvirt-clients) and against
// fixtures written by virt-install and virsh (fixtures/README.md).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { VmDefinition } from '../../common/contracts/vm';
import { DomainXmlError, fromDomainXml, scaledBytes, toDomainXml } from './domain-xml';

const FIX = path.join(__dirname, 'fixtures');
const fixture = (f: string) => fs.readFileSync(path.join(FIX, f), 'utf8');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const noValidate = has('virt-xml-validate') && has('xmllint') ? null : 'virt-xml-validate or xmllint missing (Debian libvirt-clients, libxml2-utils)';
const noVirsh = has('virsh') ? null : 'virsh missing (Debian libvirt-clients)';
if (noValidate) console.log(`skipping the schema checks: ${noValidate}`);
if (noVirsh) console.log(`skipping the virsh define/dumpxml round trip: ${noVirsh}`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-xml-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const VM: VmDefinition = {
  version: 1,
  uuid: '1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b',
  name: 'deb-test',
  os: 'debian11',
  memoryMiB: 2048,
  cpus: 2,
  boot: { kind: 'firmware', order: 'dcn', menu: true },
  disks: [
    { path: '/var/lib/vireo/deb.qcow2', format: 'qcow2', media: 'disk', bus: 'virtio' },
    { path: '/srv/iso/debian & more.iso', format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true },
    { path: '/var/lib/vireo/data.img', format: 'raw', media: 'disk', bus: 'ide' },
    { path: '', format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true },
  ],
  nics: [
    { mac: '52:54:00:12:34:56', network: 'default', model: 'virtio' },
    { mac: '52:54:00:ab:cd:ef', network: 'isolated', model: 'e1000' },
  ],
  createdAt: '2025-01-02T03:04:05.000Z',
  serial: { logFile: '/home/u/.local/state/vireo/logs/deb.log' },
  display: { width: 1920, height: 1080 },
};
const KERNEL_VM: VmDefinition = {
  ...VM,
  name: 'k1',
  uuid: '2b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b',
  boot: { kind: 'kernel', kernel: '/boot/vmlinuz', initrd: '/boot/initrd.img', append: 'console=ttyS0 root=/dev/vda1 quiet', flatAddress: 0x7c00 },
  disks: [{ path: '/var/lib/vireo/k1.img', format: 'raw', media: 'disk', bus: 'ide' }],
  nics: [],
  serial: undefined,
  display: undefined,
};
delete (KERNEL_VM as Partial<VmDefinition>).serial;
delete (KERNEL_VM as Partial<VmDefinition>).display;

function validate(xml: string): { ok: boolean; out: string } {
  const f = path.join(tmp, `v${Math.random().toString(36).slice(2)}.xml`);
  fs.writeFileSync(f, xml);
  const r = spawnSync('virt-xml-validate', [f, 'domain'], { encoding: 'utf8' });
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

/** `virsh define` then `virsh dumpxml` in one test-driver session (nothing touches this host). */
function defineDump(xml: string, name: string): string {
  const f = path.join(tmp, `${name}.xml`);
  fs.writeFileSync(f, xml);
  return execFileSync('virsh', ['-q', '-c', 'test:///default', `define ${f}; dumpxml ${name}`], { encoding: 'utf8' });
}

describe('toDomainXml', () => {
  it('writes the hardware as libvirt elements', () => {
    const xml = toDomainXml(VM, { osinfoUrl: 'http://debian.org/debian/11' });
    expect(xml).toContain("<domain type='kvm'>");
    expect(xml).toContain("<memory unit='KiB'>2097152</memory>");
    expect(xml).toContain("<currentMemory unit='KiB'>2097152</currentMemory>");
    expect(xml).toContain("<type arch='x86_64' machine='pc'>hvm</type>");
    expect(xml).toMatch(/<boot dev='cdrom'\/>\s*<boot dev='hd'\/>\s*<boot dev='network'\/>\s*<bootmenu enable='yes'\/>/);
    expect(xml).toContain("<source file='/srv/iso/debian &amp; more.iso'/>");
    expect(xml).toMatch(/<target dev='vda' bus='virtio'\/>[\s\S]*<target dev='hda' bus='ide'\/>[\s\S]*<target dev='hdb' bus='ide'\/>/);
    expect(xml).toMatch(/<interface type='network'>\s*<source network='default'\/>/);
    expect(xml).toContain("<source network='isolated'/>");
    expect(xml).toContain("<log file='/home/u/.local/state/vireo/logs/deb.log'/>");
    expect(xml).toContain("<graphics type='vnc' port='-1' autoport='yes'/>");
    expect(xml).toMatch(/<model type='vga'>\s*<resolution x='1920' y='1080'\/>\s*<\/model>/);
    expect(xml).toContain("<libosinfo:os id='http://debian.org/debian/11'/>");
  });

  it.skipIf(!!noValidate)('passes libvirt\'s schema (virt-xml-validate … domain), firmware and kernel boots', () => {
    for (const vm of [VM, KERNEL_VM]) {
      const v = validate(toDomainXml(vm, { osinfoUrl: 'http://debian.org/debian/11' }));
      expect(v.out).toContain('validates');
      expect(v.ok).toBe(true);
    }
  });

  it.skipIf(!!noValidate)('what is imported from virt-install and virsh XML exports as valid XML again', () => {
    for (const f of ['virt-install-cdrom.xml', 'virt-install-kernel.xml', 'virsh-dumpxml.xml']) {
      const v = validate(toDomainXml(fromDomainXml(fixture(f)).vm));
      expect(v.ok, `${f}: ${v.out}`).toBe(true);
    }
  });

  it.skipIf(!!noValidate)('the schema check can fail (a broken document is refused)', () => {
    const bad = toDomainXml(VM).replace("<vcpu>2</vcpu>", '<vcpu>two</vcpu>');
    expect(validate(bad).ok).toBe(false);
  });
});

describe('fromDomainXml', () => {
  it('reads back what toDomainXml writes, ignoring nothing', () => {
    for (const vm of [VM, KERNEL_VM]) {
      const r = fromDomainXml(toDomainXml(vm));
      expect(r.vm).toEqual(vm);
      expect(r.ignored).toEqual([]);
    }
  });

  it.skipIf(!!noVirsh)('round trip define → dumpxml → define is stable (libvirt test driver)', () => {
    for (const vm of [VM, KERNEL_VM]) {
      const first = toDomainXml(vm);
      const dumped = defineDump(first, vm.name);
      expect(dumped).toContain(`<uuid>${vm.uuid}</uuid>`);
      const r = fromDomainXml(dumped);
      expect(r.vm).toEqual(vm);
      // What libvirt adds on define (addresses, controllers, defaults) is listed, never dropped silently.
      expect(r.ignored.map((i) => i.path)).toEqual(expect.arrayContaining(['/domain/vcpu/@placement']));
      if (vm.disks.length) expect(r.ignored.some((i) => /\/domain\/devices\/disk(\[\d\])?\/address/.test(i.path))).toBe(true);
      // Our second XML equals the first: define → dump → define is a fixed point.
      expect(toDomainXml(r.vm)).toBe(first);
      const again = fromDomainXml(defineDump(toDomainXml(r.vm), vm.name));
      expect(again.vm).toEqual(vm);
    }
  });

  it('virt-install --print-xml (cdrom install): UUID, MAC, boot order, disks, metadata', () => {
    const xml = fixture('virt-install-cdrom.xml');
    const uuid = /<uuid>([^<]+)<\/uuid>/.exec(xml)![1];
    const r = fromDomainXml(xml, { osFromOsinfo: (u) => (u === 'http://debian.org/debian/11' ? 'debian11' : undefined) });
    expect(r.vm).toMatchObject({
      uuid,
      name: 'deb11',
      os: 'debian11',
      memoryMiB: 2048,
      cpus: 2,
      boot: { kind: 'firmware', order: 'dc' },
      disks: [
        { path: '/tmp/vireo-fixtures/debian.qcow2', format: 'qcow2', media: 'disk', bus: 'virtio' },
        { path: '/tmp/vireo-fixtures/debian-11.5.0-amd64-netinst.iso', format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true },
      ],
      nics: [{ mac: '52:54:00:12:34:56', network: 'default', model: 'virtio' }],
    });
    const paths = r.ignored.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['/domain/@type', '/domain/pm', '/domain/devices/emulator', '/domain/devices/controller[1]', '/domain/devices/controller[4]', '/domain/devices/input']));
    // <source network='default'/> is Vireo's own `default` network: taken over as is, nothing to say.
    expect(paths).not.toContain('/domain/devices/interface');
    expect(r.ignored.find((i) => i.path === '/domain/devices/disk[1]')!.reason).toContain('qcow2 assumed');
  });

  it('virt-install --print-xml (direct kernel boot, SATA disk, user NIC)', () => {
    const r = fromDomainXml(fixture('virt-install-kernel.xml'));
    expect(r.vm.boot).toEqual({ kind: 'kernel', kernel: '/tmp/vireo-fixtures/vmlinuz', initrd: '/tmp/vireo-fixtures/initrd.img', append: 'console=ttyS0 quiet' });
    expect(r.vm.disks).toEqual([{ path: '/tmp/vireo-fixtures/data.img', format: 'raw', media: 'disk', bus: 'ide' }]);
    expect(r.vm.nics).toEqual([{ mac: '52:54:00:ab:cd:ef', network: 'default', model: 'e1000' }]);
    expect(r.vm.memoryMiB).toBe(512);
    expect(r.vm.os).toBe('generic');
    expect(r.ignored.find((i) => i.path === '/domain/devices/disk/target/@bus')!.reason).toContain('no sata controller');
    expect(r.ignored.some((i) => i.path === '/domain/metadata/libosinfo:libosinfo/libosinfo:os')).toBe(true);
  });

  it('virsh dumpxml: KiB units, boot menu, empty CD-ROM, bridge NIC mapped and said so', () => {
    const r = fromDomainXml(fixture('virsh-dumpxml.xml'));
    expect(r.vm).toMatchObject({
      uuid: '6f1c2e8a-5d0b-4a8e-9c1d-2b3a4c5d6e7f',
      memoryMiB: 1024,
      cpus: 2,
      boot: { kind: 'firmware', order: 'cd', menu: true },
      disks: [
        { path: '/tmp/vireo-fixtures/data.img', format: 'raw', media: 'disk', bus: 'ide' },
        { path: '', format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true },
      ],
      nics: [{ mac: '52:54:00:00:00:01', network: 'default', model: 'virtio' }],
    });
    const why = Object.fromEntries(r.ignored.map((i) => [i.path, i.reason]));
    expect(why['/domain/devices/interface']).toContain('bridge br0');
    expect(why['/domain/devices/interface/target']).toContain('libvirt-assigned');
    expect(why['/domain/devices/controller']).toBeDefined();
    expect(why['/domain/vcpu/@placement']).toBe('not used by Vireo');
  });

  it("<bootmenu timeout>: kept in ms both ways, a bad value refused by name", () => {
    const vm = { ...VM, boot: { kind: 'firmware' as const, order: 'dc', menu: true, menuTimeoutMs: 10000 } };
    const xml = toDomainXml(vm);
    expect(xml).toContain("<bootmenu enable='yes' timeout='10000'/>");
    expect(fromDomainXml(xml).vm.boot).toEqual({ kind: 'firmware', order: 'dc', menu: true, menuTimeoutMs: 10000 });
    expect(() => fromDomainXml(xml.replace("timeout='10000'", "timeout='70000'"))).toThrow(/bootmenu timeout '70000'/);
    expect(() => fromDomainXml(xml.replace("timeout='10000'", "timeout='soon'"))).toThrow(/not a number of milliseconds/);
    // A menu that is off has no wait to keep.
    expect(fromDomainXml(xml.replace("enable='yes'", "enable='no'")).vm.boot).toEqual({ kind: 'firmware', order: 'dc' });
  });

  it('a video resolution the display cannot offer is said, not used', () => {
    const xml = toDomainXml(VM).replace("<resolution x='1920' y='1080'/>", "<resolution x='8192' y='8192'/>");
    const r = fromDomainXml(xml);
    expect(r.vm.display).toBeUndefined();
    expect(r.ignored).toEqual(expect.arrayContaining([expect.objectContaining({ path: expect.stringContaining('resolution'), reason: expect.stringContaining('8192x8192 not used') })]));
  });

  it('units: b, KB, KiB, MiB, GiB, TB…; no unit is KiB', () => {
    expect(scaledBytes('2', 'GiB', 'x')).toBe(2 * 1024 ** 3);
    expect(scaledBytes('1048576', undefined, 'x')).toBe(1024 ** 3);
    expect(scaledBytes('512', 'M', 'x')).toBe(512 * 1024 ** 2);
    expect(scaledBytes('1000', 'KB', 'x')).toBe(1e6);
    expect(scaledBytes('4096', 'b', 'x')).toBe(4096);
    expect(() => scaledBytes('1', 'parsecs', '/domain/memory')).toThrow(/\/domain\/memory\/@unit: unknown unit 'parsecs'/);
    expect(() => scaledBytes('1.5', 'GiB', '/domain/memory')).toThrow(/not a whole number/);
    const xml = (mem: string) => `<domain type='kvm'><name>u</name><memory ${mem}</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`;
    expect(fromDomainXml(xml("unit='GiB'>3")).vm.memoryMiB).toBe(3072);
    expect(fromDomainXml(xml("unit='bytes'>268435456")).vm.memoryMiB).toBe(256);
    const mb = fromDomainXml(xml("unit='MB'>1000"));
    expect(mb.vm.memoryMiB).toBe(954);
    expect(mb.ignored.find((i) => i.path === '/domain/memory')!.reason).toContain('rounded to 954 MiB');
  });

  const base = (devices: string, os = '<type>hvm</type>') => `<domain type='kvm'><name>e</name><memory>262144</memory><vcpu>1</vcpu><os>${os}</os><devices>${devices}</devices></domain>`;
  it.each([
    ['<domain><name>x</name>', /line 1, column \d+: <domain> is not closed/],
    ['<domain type="kvm"><name>a&b</name></domain>', /bare '&'/],
    ['<!DOCTYPE domain><domain/>', /DOCTYPE is not accepted/],
    ['<network><name>default</name></network>', /root element is <network>, not <domain>/],
    ["<domain type='kvm'><memory>1</memory></domain>", /<name> is missing/],
    ["<domain type='kvm'><name>bad name</name></domain>", /\/domain\/name: 'bad name' is not a name/],
    [base('', "<type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"), /\/domain\/os\/loader: UEFI/],
    [base('', "<type arch='aarch64'>hvm</type>"), /arch: architecture aarch64/],
    [base('', '<type>xen</type>'), /os type must be hvm/],
    [base("<disk type='network' device='disk'><source protocol='nbd' name='x'/><target dev='vda' bus='virtio'/></disk>"), /\/domain\/devices\/disk\/@type: a network disk is not supported/],
    [base("<disk type='file' device='disk'><driver name='qemu' type='vmdk'/><source file='/x.vmdk'/><target dev='vda' bus='virtio'/></disk>"), /disk format vmdk is not supported/],
    [base("<disk type='file' device='floppy'><source file='/f.img'/><target dev='fda' bus='fdc'/></disk>"), /a floppy drive is not supported/],
    [base("<disk type='file' device='disk'><source file='rel.img'/><target dev='hda' bus='ide'/></disk>"), /'rel.img' is not an absolute path/],
    [base("<interface type='network'><source network='default'/><mac address='00:11:22:33:44:55'/></interface>"), /00:11:22:33:44:55 is not in QEMU's range/],
    [base("<interface type='network'><source network='default'/></interface>"), /without <mac address>/],
    [base("<interface type='direct'><mac address='52:54:00:00:00:09'/></interface>"), /a direct interface is not supported/],
  ])('refuses %s', (xml, msg) => {
    expect(() => fromDomainXml(xml)).toThrow(DomainXmlError);
    expect(() => fromDomainXml(xml)).toThrow(msg);
  });
});
