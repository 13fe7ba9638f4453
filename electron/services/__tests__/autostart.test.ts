// virsh autostart: the flag in the definition (vm.setAutostart, vm.update from Details),
// shown in summaries and dominfo, dropped by clones, and a new service on the same
// configuration starts the marked VMs (one that can't start is reported, the rest start).
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { editOf } from '../../common/contracts/vm';
import type { VireoService } from '../app';
import { newVmRequest, testService } from './fake-engine';

let tmp: string;
let iso: string;
const services: VireoService[] = [];
const open = async () => {
  const s = await testService(tmp);
  services.push(s);
  return s;
};

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-autostart-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
});

afterEach(async () => {
  for (const s of services.splice(0)) await s.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function create(svc: VireoService, name: string): Promise<string> {
  const r = await svc['vm.create'](newVmRequest(iso, { name, storage: { kind: 'none' }, network: 'none' }));
  expect(r.errors).toEqual([]);
  return r.vm!.uuid;
}

describe('autostart', () => {
  it('vm.setAutostart marks and unmarks the definition; the summary says so', async () => {
    const svc = await open();
    const uuid = await create(svc, 'a');
    expect((await svc['vm.get']({ uuid })).autostart).toBeUndefined();
    expect((await svc['vm.setAutostart']({ uuid, enabled: true })).vm.autostart).toBe(true);
    expect((await svc['vm.get']({ uuid })).autostart).toBe(true);
    const file = JSON.parse(await fsp.readFile(path.join(svc.paths.vms, `${uuid}.json`), 'utf8'));
    expect(file.autostart).toBe(true);
    expect((await svc['vm.list']({})).find((v) => v.uuid === uuid)!.autostart).toBe(true);
    const off = await svc['vm.setAutostart']({ uuid, enabled: false });
    expect(off.vm.autostart).toBeUndefined();
    expect((await svc['vm.get']({ uuid })).autostart).toBeUndefined();
  });

  it('Details: the edit carries the flag; an edit without it (an older client) keeps it', async () => {
    const svc = await open();
    const uuid = await create(svc, 'a');
    const def = await svc['vm.get']({ uuid });
    expect(editOf(def).autostart).toBe(false);
    expect((await svc['vm.update']({ uuid, edit: { ...editOf(def), autostart: true } })).errors).toEqual([]);
    expect((await svc['vm.get']({ uuid })).autostart).toBe(true);
    const { autostart: _, ...older } = editOf(await svc['vm.get']({ uuid }));
    expect((await svc['vm.update']({ uuid, edit: { ...older, memoryMiB: 128 } })).errors).toEqual([]);
    expect(await svc['vm.get']({ uuid })).toMatchObject({ memoryMiB: 128, autostart: true });
    expect((await svc['vm.update']({ uuid, edit: { ...editOf(await svc['vm.get']({ uuid })), autostart: false } })).errors).toEqual([]);
    expect((await svc['vm.get']({ uuid })).autostart).toBeUndefined();
  });

  it('a clone is not marked', async () => {
    const svc = await open();
    const uuid = await create(svc, 'a');
    await svc['vm.setAutostart']({ uuid, enabled: true });
    const done = new Promise<any>((r) => svc.onEvent((n, p) => n === 'job.done' && r(p)));
    await svc['vm.clone']({ uuid, name: 'a-clone', mode: 'full' });
    expect((await done).ok).toBe(true);
    expect(svc.store.byName('a-clone')!.autostart).toBeUndefined();
    expect(svc.store.byName('a')!.autostart).toBe(true);
  });

  it('a new service starts the marked VMs, not the others, and reports one that cannot start', async () => {
    const first = await open();
    const a = await create(first, 'a');
    const b = await create(first, 'b');
    const c = await create(first, 'c');
    await first['vm.setAutostart']({ uuid: a, enabled: true });
    await first['vm.setAutostart']({ uuid: c, enabled: true });
    // c's install medium disappears: its start fails with the usual message, a still starts.
    const cIso = path.join(tmp, 'c.iso');
    await fsp.writeFile(cIso, Buffer.alloc(4096, 1));
    const cDef = await first['vm.get']({ uuid: c });
    expect((await first['vm.update']({ uuid: c, edit: { ...editOf(cDef), disks: cDef.disks.map((d) => ({ ...d, path: cIso })) } })).errors).toEqual([]);
    await fsp.rm(cIso);
    await first.shutdown();
    services.splice(services.indexOf(first), 1);

    const svc = await open();
    const started = await svc.autostart();
    expect(started.map((r) => r.name).sort()).toEqual(['a', 'c']);
    expect(started.find((r) => r.name === 'a')!.error).toBeUndefined();
    expect(started.find((r) => r.name === 'c')!.error).toMatch(/c\.iso/);
    const state = async (u: string) => (await svc['vm.list']({})).find((v) => v.uuid === u)!.state;
    expect(await state(a)).toBe('running');
    expect(await state(b)).toBe('shutoff');
    expect(await state(c)).not.toBe('running');
    // Already running: a second pass starts nothing.
    expect(await svc.autostart()).toEqual([{ name: 'c', error: expect.any(String) }]);
  });
});
