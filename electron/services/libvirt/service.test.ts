// vm.exportXml / vm.importXml through the service (fake engine, real files under a temp HOME).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dispatch } from '../dispatch';
import type { VireoService } from '../app';
import { newVmRequest, testService } from '../__tests__/fake-engine';

let dir: string;
let svc: VireoService;
beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-libvirt-'));
  svc = await testService(dir);
});
afterEach(() => {
  svc.shutdown();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('vm.exportXml / vm.importXml', () => {
  it('exports a VM and imports it again under a new name with the same hardware, new UUID and MACs', async () => {
    const iso = path.join(dir, 'install.iso');
    fs.writeFileSync(iso, 'iso');
    const { vm } = await svc['vm.create'](newVmRequest(iso, { name: 'orig', memoryMiB: 512, cpus: 2 }));
    const { xml, fileName } = await svc['vm.exportXml']({ uuid: vm!.uuid });
    expect(fileName).toBe('orig.xml');
    expect(xml).toContain('<name>orig</name>');

    // Same name: refused on the name field, nothing written.
    const clash = await svc['vm.importXml']({ xml });
    expect(clash.errors).toEqual([{ field: 'name', message: "A VM named 'orig' already exists: import it under another name." }]);
    expect(await svc['vm.list']({})).toHaveLength(1);

    const dry = await svc['vm.importXml']({ xml, name: 'copy', dryRun: true });
    expect(dry.errors).toEqual([]);
    expect(await svc['vm.list']({})).toHaveLength(1);

    const r = await svc['vm.importXml']({ xml, name: 'copy' });
    expect(r.errors).toEqual([]);
    const a = svc.store.get(vm!.uuid)!;
    const b = svc.store.get(r.vm!.uuid)!;
    expect(b.uuid).not.toBe(a.uuid);
    expect(b.nics.map((n) => n.mac)).not.toEqual(a.nics.map((n) => n.mac));
    expect({ ...b, uuid: '', name: '', createdAt: '', nics: b.nics.map((n) => ({ ...n, mac: '' })) }).toEqual({ ...a, uuid: '', name: '', createdAt: '', nics: a.nics.map((n) => ({ ...n, mac: '' })) });
    expect(r.ignored.map((i) => i.path)).toEqual(expect.arrayContaining(['/domain/uuid', '/domain/devices/interface/mac']));
    // It survives a reload from disk.
    await svc.store.load();
    expect(svc.store.byName('copy')).toBeDefined();
  });

  it('bad XML is an error on the xml field, through the transport', async () => {
    const r = await dispatch(svc, { t: 'call', id: 1, method: 'vm.importXml', params: { xml: '<domain><name>x</name>' } });
    expect(r).toMatchObject({ t: 'result', value: { errors: [{ field: 'xml', message: expect.stringContaining('<domain> is not closed') }] } });
    const r2 = await svc['vm.importXml']({ xml: "<domain type='kvm'><name>n</name><memory>1</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>" });
    expect(r2.errors[0]).toMatchObject({ field: 'xml', message: expect.stringContaining('/domain/memory') });
    expect(await svc['vm.list']({})).toHaveLength(0);
  });

  it('os.list and os.detect answer through the service', async () => {
    const all = await svc['os.list']({ query: 'generic' });
    expect(all[0].id).toBe('generic');
    const d = await svc['os.detect']({ path: '/nonexistent/debian-12.iso' });
    expect(d.source).toBe('filename');
    expect(d.os!.id).toBe('debian12');
  });
});
