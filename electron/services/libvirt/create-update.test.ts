// vm.createXml (virt-install --print-xml), vm.updateXml (virsh edit) and vm.create's
// storage 'existing' / NIC MAC, through the service (fake engine, real files under a temp HOME).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VireoService } from '../app';
import { newVmRequest, testService } from '../__tests__/fake-engine';

let dir: string;
let svc: VireoService;
let iso: string;
beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-libvirt-cu-'));
  svc = await testService(dir);
  iso = path.join(dir, 'install.iso');
  fs.writeFileSync(iso, 'iso');
});
afterEach(() => {
  svc.shutdown();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('vm.createXml', () => {
  it('writes the XML vm.create would define, creating nothing; field errors as vm.create', async () => {
    const r = await svc['vm.createXml'](newVmRequest(iso, { name: 'px', storage: { kind: 'create', sizeGiB: 1, format: 'qcow2', bus: 'virtio' }, mac: '52:54:00:aa:bb:cc' }));
    expect(r.errors).toEqual([]);
    expect(r.xml).toContain('<name>px</name>');
    expect(r.xml).toContain(`<source file='${path.join(dir, 'data', 'vireo', 'images', 'px.qcow2')}'/>`);
    expect(r.xml).toContain("<target dev='vda' bus='virtio'/>");
    expect(r.xml).toContain(`<source file='${iso}'/>`);
    expect(r.xml).toContain("<mac address='52:54:00:aa:bb:cc'/>");
    expect(await svc['vm.list']({})).toHaveLength(0);
    expect(fs.existsSync(path.join(dir, 'data', 'vireo', 'images', 'px.qcow2'))).toBe(false);
    const bad = await svc['vm.createXml'](newVmRequest(path.join(dir, 'nope.iso'), { memoryMiB: 4 }));
    expect(bad.xml).toBeUndefined();
    expect(bad.errors.map((e) => e.field).sort()).toEqual(['media', 'memory']);
  });
});

describe("vm.create: storage 'existing' and the NIC's MAC", () => {
  it('puts an existing image first, next to the ISO; refuses a missing one and a taken or malformed MAC', async () => {
    const img = path.join(dir, 'old.img');
    fs.writeFileSync(img, Buffer.alloc(1024 * 1024));
    const r = await svc['vm.create'](newVmRequest(iso, { name: 'ex', storage: { kind: 'existing', path: img, format: 'raw', bus: 'virtio' }, mac: '52:54:00:12:34:56' }));
    expect(r.errors).toEqual([]);
    const def = svc.store.get(r.vm!.uuid)!;
    expect(def.disks).toEqual([
      { path: img, format: 'raw', media: 'disk', bus: 'virtio' },
      { path: iso, format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true },
    ]);
    expect(def.boot).toEqual({ kind: 'firmware', order: 'dc' });
    expect(def.nics[0]!.mac).toBe('52:54:00:12:34:56');
    const again = await svc['vm.create'](newVmRequest(iso, { name: 'ex2', storage: { kind: 'existing', path: path.join(dir, 'gone.img') }, mac: '52:54:00:12:34:56' }));
    expect(again.errors).toEqual([
      { field: 'storage', message: `${path.join(dir, 'gone.img')} does not exist.` },
      { field: 'network', message: 'MAC 52:54:00:12:34:56 is used by another VM.' },
    ]);
    const bad = await svc['vm.create'](newVmRequest(iso, { name: 'ex3', mac: 'aa:bb' }));
    expect(bad.errors).toEqual([{ field: 'network', message: 'MAC aa:bb is not of the form 52:54:00:xx:xx:xx.' }]);
  });
});

describe('vm.updateXml', () => {
  it('re-defines the VM from edited XML with the same UUID; a changed UUID or bad value changes nothing', async () => {
    const { vm } = await svc['vm.create'](newVmRequest(iso, { name: 'ed', cpus: 1 }));
    const { xml } = await svc['vm.exportXml']({ uuid: vm!.uuid });
    const before = svc.store.get(vm!.uuid)!;

    const other = await svc['vm.updateXml']({ uuid: vm!.uuid, xml: xml.replace(/<uuid>[^<]*</, '<uuid>11111111-2222-3333-4444-555555555555<') });
    expect(other.errors).toEqual([{ field: 'xml', message: expect.stringContaining("a VM's UUID cannot change") }]);
    const tiny = await svc['vm.updateXml']({ uuid: vm!.uuid, xml: xml.replace('<vcpu>1</vcpu>', '<vcpu>64</vcpu>') });
    expect(tiny.errors).toEqual([{ field: 'cpus', message: expect.stringContaining('CPUs') }]);
    expect(svc.store.get(vm!.uuid)).toEqual(before);

    const r = await svc['vm.updateXml']({ uuid: vm!.uuid, xml: xml.replace('<vcpu>1</vcpu>', '<vcpu>2</vcpu>').replace('<name>ed</name>', '<name>ed2</name>') });
    expect(r.errors).toEqual([]);
    expect(r.nextBoot).toBe(false);
    const after = svc.store.get(vm!.uuid)!;
    expect(after).toEqual({ ...before, cpus: 2, name: 'ed2', serial: after.serial });
    expect(after.createdAt).toBe(before.createdAt);
  });
});
