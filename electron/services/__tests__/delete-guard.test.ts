// Issue 15, finding 2: Delete VM with storage never deletes a disk another VM uses
// (directly, or as the backing file of its disk), whether or not that VM runs, and a
// delete marks the VM busy while it scans, so a start in that window is refused.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VireoService } from '../app';
import { newVmRequest, testService } from './fake-engine';

let tmp: string;
let svc: VireoService;
let iso: string;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-del-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
  svc = await testService(tmp);
});

afterEach(async () => {
  svc.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function twoVmsSharingADisk() {
  const a = (await svc['vm.create'](newVmRequest(iso, { name: 'alpha', storage: { kind: 'create', sizeGiB: 0.01 } }))).vm!;
  const disk = path.join(svc.paths.pool, 'alpha.img');
  // beta imports alpha's disk: the same file in two definitions.
  const b = (await svc['vm.create'](newVmRequest(iso, { name: 'beta', media: { kind: 'import', path: disk }, storage: { kind: 'none' } }))).vm!;
  expect(b.disks[0]!.path).toBe(disk);
  return { a, b, disk };
}

describe('vm.delete and shared disks', () => {
  it('refuses to delete a disk another (shut off) VM uses, naming it, and changes nothing', async () => {
    const { a, disk } = await twoVmsSharingADisk();
    await expect(svc['vm.delete']({ uuid: a.uuid, deleteDisks: [disk] })).rejects.toThrow(/alpha\.img is also a disk of the VM 'beta'/);
    expect(fs.existsSync(disk)).toBe(true);
    expect(svc.store.get(a.uuid)).toBeDefined();
    expect(fs.existsSync(path.join(svc.paths.vms, `${a.uuid}.json`))).toBe(true);
    // Spelled differently (../, //) it is the same file.
    const alias = path.join(svc.paths.pool, '..', 'images', '.', 'alpha.img').replace('/images/', '//images/');
    await expect(svc['vm.delete']({ uuid: a.uuid, deleteDisks: [alias] })).rejects.toThrow(/also a disk of the VM 'beta'/);
    // Keeping the disk is fine.
    await svc['vm.delete']({ uuid: a.uuid, deleteDisks: [] });
    expect(fs.existsSync(disk)).toBe(true);
  });

  it('refuses while the other VM runs', async () => {
    const { a, b, disk } = await twoVmsSharingADisk();
    await svc['vm.action']({ uuid: b.uuid, action: 'start' });
    await expect(svc['vm.delete']({ uuid: a.uuid, deleteDisks: [disk] })).rejects.toThrow(/also a disk of the VM 'beta' \(running\)/);
    expect(fs.existsSync(disk)).toBe(true);
  });

  it('refuses a disk that backs another VM\'s disk, naming that VM', async () => {
    const a = (await svc['vm.create'](newVmRequest(iso, { name: 'alpha', storage: { kind: 'create', sizeGiB: 0.01, format: 'qcow2' } }))).vm!;
    const disk = a.disks[0]!.path;
    await svc['vm.create'](newVmRequest(iso, { name: 'gamma', storage: { kind: 'create', sizeGiB: 0.01, backing: disk } }));
    await expect(svc['vm.delete']({ uuid: a.uuid, deleteDisks: [disk] })).rejects.toThrow(/backing file of .*gamma/);
    expect(fs.existsSync(disk)).toBe(true);
  });

  it('marks the VM busy while it scans: a start in that window is refused', async () => {
    const a = (await svc['vm.create'](newVmRequest(iso, { name: 'alpha', storage: { kind: 'create', sizeGiB: 0.01 } }))).vm!;
    const disk = a.disks[0]!.path;
    const del = svc['vm.delete']({ uuid: a.uuid, deleteDisks: [disk] });
    await expect(svc['vm.action']({ uuid: a.uuid, action: 'start' })).rejects.toThrow(/being deleted/);
    await del;
    expect(fs.existsSync(disk)).toBe(false);
    expect(svc.supervisor.isRunning(a.uuid)).toBe(false);
  });

  it('a delete waits for nothing a start holds: a delete during a start\'s checks is refused', async () => {
    const a = (await svc['vm.create'](newVmRequest(iso, { name: 'alpha', storage: { kind: 'create', sizeGiB: 0.01 } }))).vm!;
    const start = svc['vm.action']({ uuid: a.uuid, action: 'start' });
    await expect(svc['vm.delete']({ uuid: a.uuid, deleteDisks: [a.disks[0]!.path] })).rejects.toThrow(/being started|is running/);
    await start;
    expect(fs.existsSync(a.disks[0]!.path)).toBe(true);
  });
});
