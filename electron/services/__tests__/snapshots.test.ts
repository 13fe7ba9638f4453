// Snapshots (snapshots.ts, virsh snapshot-*): the service on the in-process fake engine,
// with real qcow2 files and the real vireo-img (the fake engine makes its live disk
// snapshots with vireo-img too, since it opens no image). A shut-off VM takes disk-only
// snapshots, a running or paused one disk + RAM (a state file; the VM keeps its run
// state); names are checked on the field; the tree follows the current snapshot; revert
// restores the disks, the definition and, for disk + RAM, the machine (asking before it
// forces a running VM off); delete re-parents children and never deletes a disk; raw
// disks are refused; a snapshot made with the image tool alone is listed and revertible.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { editOf } from '../../common/contracts/vm';
import type { VireoService } from '../app';
import { imgToolPath } from '../../cli/img';
import { imgToolProblem } from '../storage/img';
import { FakeMachine, newVmRequest, testService } from './fake-engine';

const why = imgToolProblem();
const qemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const qemuIo = spawnSync('qemu-io', ['--version']).status === 0;
if (why) console.log(`snapshots tests skipped: ${why}`);

let tmp: string;
let iso: string;
const services: VireoService[] = [];
const open = async () => {
  const s = await testService(tmp);
  services.push(s);
  return s;
};

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-snap-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
});

afterEach(async () => {
  for (const s of services.splice(0)) await s.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function create(svc: VireoService, name = 'a', format: 'qcow2' | 'raw' = 'qcow2') {
  const r = await svc['vm.create'](newVmRequest(iso, { name, storage: { kind: 'create', sizeGiB: 1, format }, network: 'none' }));
  expect(r.errors).toEqual([]);
  const uuid = r.vm!.uuid;
  const disk = svc.store.get(uuid)!.disks.find((d) => d.media === 'disk')!.path;
  return { uuid, disk };
}

function diskSnapshots(file: string): string[] {
  const r = spawnSync(imgToolPath(), ['info', '-U', '--output', 'json', file], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  return ((JSON.parse(r.stdout) as { snapshots?: Array<{ name: string }> }).snapshots ?? []).map((s) => s.name);
}

function qemuCheck(file: string) {
  if (!qemuImg) return;
  const r = spawnSync('qemu-img', ['check', '-U', file], { encoding: 'utf8' });
  expect(r.status, r.stdout + r.stderr).toBe(0);
}

describe.skipIf(!!why)('snapshots', () => {
  it('shut off: a disk-only snapshot on the qcow2 disk, listed as current; qemu-img agrees', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    const r = await svc['snapshot.create']({ uuid, name: 'clean install', description: 'before updates' });
    expect(r.errors).toEqual([]);
    expect(r.snapshot).toMatchObject({ name: 'clean install', description: 'before updates', kind: 'disk', state: 'shutoff', parent: null, current: true });
    expect(diskSnapshots(disk)).toEqual(['clean install']);
    qemuCheck(disk);
    if (qemuImg) expect(spawnSync('qemu-img', ['snapshot', '-l', disk], { encoding: 'utf8' }).stdout).toContain('clean install');
    const l = await svc['snapshot.list']({ uuid });
    expect(l.current).toBe('clean install');
    expect(l.problem).toBeNull();
    expect(l.snapshots.map((s) => s.name)).toEqual(['clean install']);
    // The metadata: <config>/snapshots/<uuid>/snapshots.json with the definition at that moment.
    const meta = JSON.parse(await fsp.readFile(path.join(svc.paths.config, 'snapshots', uuid, 'snapshots.json'), 'utf8'));
    expect(meta.snapshots[0].definition.uuid).toBe(uuid);
    expect(meta.snapshots[0].definition.memoryMiB).toBe(256);
  });

  it('names: empty, with a slash, too long or taken are refused on the field, and nothing is made', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    expect((await svc['snapshot.create']({ uuid, name: '' })).errors).toEqual([{ field: 'name', message: 'Enter a name.' }]);
    expect((await svc['snapshot.create']({ uuid, name: 'a/b' })).errors[0]).toMatchObject({ field: 'name', message: expect.stringContaining('"/"') });
    expect((await svc['snapshot.create']({ uuid, name: 'x'.repeat(65) })).errors[0]).toMatchObject({ field: 'name', message: expect.stringContaining('at most 64') });
    expect((await svc['snapshot.create']({ uuid, name: 'x'.repeat(64) })).errors).toEqual([]);
    expect((await svc['snapshot.create']({ uuid, name: 'x'.repeat(64) })).errors).toEqual([{ field: 'name', message: `a already has a snapshot named '${'x'.repeat(64)}'.` }]);
    expect(diskSnapshots(disk)).toEqual(['x'.repeat(64)]);
    // A name that only a disk has (made by qemu-img or vireo-img) is taken too.
    spawnSync(imgToolPath(), ['snapshot', '-c', 'from-qemu', disk]);
    expect((await svc['snapshot.create']({ uuid, name: 'from-qemu' })).errors[0]?.field).toBe('name');
  });

  it('names vs qcow2 IDs: a name that is another snapshot\'s ID is refused naming both; a name that is also an ID means the named one', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    expect((await svc['snapshot.create']({ uuid, name: 'base' })).errors).toEqual([]); // ID 1
    expect((await svc['snapshot.create']({ uuid, name: '1' })).errors).toEqual([
      { field: 'name', message: `'1' is the ID of snapshot 'base' on ${path.basename(disk)} (qemu-img would take '1' to mean that one): choose another name.` },
    ]);
    expect(diskSnapshots(disk)).toEqual(['base']);
    // "2" is free as a name and as an ID: taken; its ID skips 2 (IDs never equal a name).
    expect((await svc['snapshot.create']({ uuid, name: '2' })).errors).toEqual([]);
    const ids = spawnSync(imgToolPath(), ['info', '-U', '--output', 'json', disk], { encoding: 'utf8' });
    expect((JSON.parse(ids.stdout) as { snapshots: Array<{ id: string; name: string }> }).snapshots.map((x) => [x.id, x.name])).toEqual([['1', 'base'], ['3', '2']]);
  });

  it.skipIf(!qemuImg || !qemuIo)('names vs qcow2 IDs: qemu-img made "2" (ID 1) and "x" (ID 2); revert and delete of "2" mean the one named "2"', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    const sh = (cmd: string, args: string[]) => {
      const r = spawnSync(cmd, args, { encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      return r.stdout;
    };
    const pattern = (p: number) => !sh('qemu-io', ['-c', `read -P ${p} 0 64k`, disk]).includes('Pattern verification failed');
    sh('qemu-io', ['-c', 'write -P 1 0 64k', disk]);
    sh('qemu-img', ['snapshot', '-c', '2', disk]);
    sh('qemu-io', ['-c', 'write -P 2 0 64k', disk]);
    sh('qemu-img', ['snapshot', '-c', 'x', disk]);
    sh('qemu-io', ['-c', 'write -P 3 0 64k', disk]);
    expect((await svc['snapshot.list']({ uuid })).snapshots.map((x) => x.name).sort()).toEqual(['2', 'x']);
    await svc['snapshot.revert']({ uuid, name: '2' });
    expect(pattern(1)).toBe(true); // the snapshot named "2", not ID 2 ('x', pattern 2)
    await svc['snapshot.revert']({ uuid, name: 'x' });
    expect(pattern(2)).toBe(true);
    await svc['snapshot.delete']({ uuid, name: '2' });
    expect(diskSnapshots(disk)).toEqual(['x']);
    qemuCheck(disk);
  });

  it('running: disk + RAM, the VM runs on; paused stays paused; an engine failure leaves nothing', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    await svc['vm.action']({ uuid, action: 'start' });
    const m = FakeMachine.last!;
    m.pixel = 0x42;
    const r = await svc['snapshot.create']({ uuid, name: 'live' });
    expect(r.errors).toEqual([]);
    expect(r.snapshot).toMatchObject({ kind: 'disk+ram', state: 'running', current: true });
    expect(m.state).toBe('running');
    expect(svc.supervisor.stateOf(uuid)).toBe('running');
    expect(diskSnapshots(disk)).toEqual(['live']);
    const dir = path.join(svc.paths.config, 'snapshots', uuid);
    const states = (await fsp.readdir(dir)).filter((f) => f.endsWith('.vstate'));
    expect(states).toHaveLength(1);
    expect((await fsp.readFile(path.join(dir, states[0]!), 'latin1')).startsWith('FAKEVST\n')).toBe(true);

    await svc['vm.action']({ uuid, action: 'pause' });
    const p = await svc['snapshot.create']({ uuid, name: 'paused' });
    expect(p.snapshot).toMatchObject({ kind: 'disk+ram', state: 'paused', parent: 'live' });
    expect(m.state).toBe('paused');

    m.createError = 'the disk is full';
    await expect(svc['snapshot.create']({ uuid, name: 'fails' })).rejects.toThrow(/The snapshot was not taken: the disk is full/);
    expect((await svc['snapshot.list']({ uuid })).snapshots.map((s) => s.name)).toEqual(['live', 'paused']);
    expect((await fsp.readdir(dir)).filter((f) => f.endsWith('.vstate'))).toHaveLength(2);
    expect(diskSnapshots(disk)).toEqual(['live', 'paused']);
    expect(m.state).toBe('paused');
  });

  it('revert: a running VM is refused until confirmed, then forced off and resumed from the snapshot with its hardware', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    await svc['vm.action']({ uuid, action: 'start' });
    FakeMachine.last!.pixel = 0x42;
    FakeMachine.last!.keys = ['KeyA:down'];
    await svc['snapshot.create']({ uuid, name: 'menu' });
    FakeMachine.last!.pixel = 0x99; // the guest goes on after the snapshot
    const def = svc.store.get(uuid)!;
    await svc['vm.update']({ uuid, edit: { ...editOf(def), memoryMiB: 512 } }); // takes effect next boot
    expect(svc.store.get(uuid)!.memoryMiB).toBe(512);

    await expect(svc['snapshot.revert']({ uuid, name: 'menu' })).rejects.toThrow(/a is running: reverting to 'menu' forces it off and loses everything since the snapshot/);
    expect(svc.supervisor.stateOf(uuid)).toBe('running');

    const r = await svc['snapshot.revert']({ uuid, name: 'menu', force: true });
    expect(r.started).toBe(true);
    const m2 = FakeMachine.last!;
    expect(m2.restored).toEqual({ pixel: 0x42, keys: ['KeyA:down'] });
    expect(m2.config.memoryMiB).toBe(256);
    expect(svc.store.get(uuid)!.memoryMiB).toBe(256); // the definition is the snapshot's
    expect(svc.supervisor.stateOf(uuid)).toBe('running');
    // The state file stays: a snapshot can be reverted to again.
    const dir = path.join(svc.paths.config, 'snapshots', uuid);
    expect((await fsp.readdir(dir)).filter((f) => f.endsWith('.vstate'))).toHaveLength(1);
    expect(diskSnapshots(disk)).toEqual(['menu']);
  });

  it('tree: parents follow the current snapshot; delete re-parents children, removes the state file and the disk snapshot, never the disk', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    await svc['snapshot.create']({ uuid, name: 'a' });
    await svc['snapshot.create']({ uuid, name: 'b' });
    expect((await svc['snapshot.revert']({ uuid, name: 'a' })).started).toBe(false);
    await svc['snapshot.create']({ uuid, name: 'c' });
    let l = await svc['snapshot.list']({ uuid });
    expect(l.current).toBe('c');
    expect(l.snapshots.map((s) => [s.name, s.parent, s.children])).toEqual([
      ['a', null, ['b', 'c']],
      ['b', 'a', []],
      ['c', 'a', []],
    ]);
    await svc['snapshot.delete']({ uuid, name: 'a' });
    l = await svc['snapshot.list']({ uuid });
    expect(l.snapshots.map((s) => [s.name, s.parent])).toEqual([
      ['b', null],
      ['c', null],
    ]);
    expect(diskSnapshots(disk)).toEqual(['b', 'c']);
    expect(fs.existsSync(disk)).toBe(true);
    await svc['snapshot.delete']({ uuid, name: 'c' });
    expect((await svc['snapshot.list']({ uuid })).current).toBeNull(); // c's parent was a root
    await expect(svc['snapshot.delete']({ uuid, name: 'nope' })).rejects.toThrow(/a has no snapshot named 'nope'/);

    // Delete of a disk + RAM snapshot of a running VM goes through the engine.
    await svc['vm.action']({ uuid, action: 'start' });
    await svc['snapshot.create']({ uuid, name: 'live' });
    const dir = path.join(svc.paths.config, 'snapshots', uuid);
    expect((await fsp.readdir(dir)).filter((f) => f.endsWith('.vstate'))).toHaveLength(1);
    await svc['snapshot.delete']({ uuid, name: 'live' });
    expect((await fsp.readdir(dir)).filter((f) => f.endsWith('.vstate'))).toHaveLength(0);
    expect(diskSnapshots(disk)).toEqual(['b']);
    expect(FakeMachine.last!.state).toBe('running');
    qemuCheck(disk);
  });

  it('raw disks: refused with why; the list says so', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc, 'r', 'raw');
    await expect(svc['snapshot.create']({ uuid, name: 's' })).rejects.toThrow(`r can't take snapshots: snapshots need qcow2 disks: ${path.basename(disk)}`);
    expect((await svc['snapshot.list']({ uuid })).problem).toBe(`snapshots need qcow2 disks: ${path.basename(disk)}`);
    await svc['vm.action']({ uuid, action: 'start' });
    await expect(svc['snapshot.create']({ uuid, name: 's' })).rejects.toThrow(/snapshots need qcow2 disks/);
    expect(fs.existsSync(path.join(svc.paths.config, 'snapshots', uuid, 'snapshots.json'))).toBe(false);
  });

  it('a snapshot made outside Vireo (the image tool) is listed as disk-only and revertible, and deletable', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    const tool = qemuImg ? 'qemu-img' : imgToolPath();
    expect(spawnSync(tool, ['snapshot', '-c', 'outside', disk]).status).toBe(0);
    const l = await svc['snapshot.list']({ uuid });
    expect(l.snapshots).toEqual([expect.objectContaining({ name: 'outside', kind: 'disk', external: true, parent: null, current: false })]);
    expect(await svc['snapshot.revert']({ uuid, name: 'outside' })).toEqual({ started: false });
    await svc['snapshot.delete']({ uuid, name: 'outside' });
    expect(diskSnapshots(disk)).toEqual([]);
  });

  it('a saved VM is refused; deleting the VM removes its snapshot files but not kept disks', async () => {
    const svc = await open();
    const { uuid, disk } = await create(svc);
    await svc['snapshot.create']({ uuid, name: 'keep' });
    await svc['vm.action']({ uuid, action: 'start' });
    await svc['vm.action']({ uuid, action: 'save' });
    await expect(svc['snapshot.create']({ uuid, name: 'x' })).rejects.toThrow(/has a saved state/);
    await expect(svc['snapshot.revert']({ uuid, name: 'keep' })).rejects.toThrow(/a is saved: reverting to 'keep' discards its saved state/);
    await svc['vm.delete']({ uuid, deleteDisks: [] });
    expect(fs.existsSync(path.join(svc.paths.config, 'snapshots', uuid))).toBe(false);
    expect(diskSnapshots(disk)).toEqual(['keep']);
  });
});
