// Managed save (virsh managedsave / virt-manager "Save", vm-state.ts): a running or paused
// VM's state goes to <config>/save/<uuid>.vstate and the VM shows "saved"; start restores it
// and removes the file; a refused file fails the start with the engine's message and a
// Discard hint, deleting nothing; discardSave removes it; hardware edits are refused while
// saved; delete removes the state; a clone has none; a new service finds the saved VMs.
// The fake engine writes and reads a real (small) state file.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { editOf } from '../../common/contracts/vm';
import type { VireoService } from '../app';
import { stateName } from '../../cli/virsh';
import { FakeMachine, newVmRequest, testService } from './fake-engine';

let tmp: string;
let iso: string;
const services: VireoService[] = [];
const open = async () => {
  const s = await testService(tmp);
  services.push(s);
  return s;
};
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-msave-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
});

afterEach(async () => {
  for (const s of services.splice(0)) await s.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function create(svc: VireoService, name = 'a'): Promise<string> {
  const r = await svc['vm.create'](newVmRequest(iso, { name, storage: { kind: 'none' }, network: 'none' }));
  expect(r.errors).toEqual([]);
  return r.vm!.uuid;
}
const summary = async (svc: VireoService, uuid: string) => (await svc['vm.list']({})).find((v) => v.uuid === uuid)!;

async function runningVm(svc: VireoService, name = 'a') {
  const uuid = await create(svc, name);
  await svc['vm.action']({ uuid, action: 'start' });
  const m = FakeMachine.last!;
  m.pixel = 0x77; // the "guest state" the save must carry
  m.keys.push('KeyQ:down');
  return { uuid, m };
}

describe('managed save', () => {
  it('Save: the state file is written, the VM is off and "saved" (dominfo: Managed save); Run restores it and removes the file', async () => {
    const svc = await open();
    const { uuid } = await runningVm(svc);
    const file = svc.saves.pathOf(uuid);
    expect(file).toBe(path.join(svc.paths.config, 'save', `${uuid}.vstate`));
    const states: string[] = [];
    svc.onEvent((n, p) => n === 'vm.changed' && (p as { vm: { uuid: string; state: string } }).vm.uuid === uuid && states.push((p as { vm: { state: string } }).vm.state));
    await svc['vm.action']({ uuid, action: 'save' });
    expect(svc.supervisor.isRunning(uuid)).toBe(false);
    expect(fs.existsSync(file)).toBe(true);
    expect(fs.existsSync(`${file}.partial`)).toBe(false);
    const vm = await summary(svc, uuid);
    expect(vm.state).toBe('saved');
    expect(vm.hasManagedSave).toBe(true);
    expect(vm.lastExit).toEqual({ kind: 'shutdown', detail: 'saved' });
    expect(stateName(vm.state)).toBe('shut off'); // virsh list shows it shut off
    // It never showed "shut off" on the way (the file is known before the host exits).
    expect(states).not.toContain('shutoff');
    expect(states.at(-1)).toBe('saved');

    await svc['vm.action']({ uuid, action: 'start' });
    const m2 = FakeMachine.last!;
    expect(m2.restored).toEqual({ pixel: 0x77, keys: ['KeyQ:down'] });
    expect(m2.state).toBe('running');
    expect(fs.existsSync(file)).toBe(false);
    const after = await summary(svc, uuid);
    expect(after.state).toBe('running');
    expect(after.hasManagedSave).toBeUndefined();
  });

  it('a paused VM can be saved; a shut-off one cannot; an engine error leaves it running with no file', async () => {
    const svc = await open();
    const { uuid, m } = await runningVm(svc);
    m.saveError = 'cannot save this machine\'s state: these devices cannot save theirs yet: gizmo';
    await expect(svc['vm.action']({ uuid, action: 'save' })).rejects.toThrow(/a was not saved: cannot save this machine's state: .*gizmo\. It is still running\./);
    await tick(10);
    expect(svc.supervisor.isRunning(uuid)).toBe(true);
    expect(m.state).toBe('running'); // resumed
    expect(fs.existsSync(svc.saves.pathOf(uuid))).toBe(false);
    expect((await summary(svc, uuid)).state).toBe('running');

    m.saveError = undefined;
    await svc['vm.action']({ uuid, action: 'pause' });
    await tick(10);
    expect((await summary(svc, uuid)).state).toBe('paused');
    await svc['vm.action']({ uuid, action: 'save' });
    expect((await summary(svc, uuid)).state).toBe('saved');

    const off = await create(svc, 'b');
    await expect(svc['vm.action']({ uuid: off, action: 'save' })).rejects.toThrow('b is not running: only a running or paused VM can be saved.');
    await expect(svc['vm.action']({ uuid: off, action: 'discardSave' })).rejects.toThrow('b has no saved state.');
  });

  it('a corrupted state file: the start fails with the engine\'s message and the Discard hint, the VM stays saved, nothing is deleted; Discard then boots fresh', async () => {
    const svc = await open();
    const { uuid } = await runningVm(svc);
    await svc['vm.action']({ uuid, action: 'save' });
    const file = svc.saves.pathOf(uuid);
    await fsp.writeFile(file, 'garbage');
    await expect(svc['vm.action']({ uuid, action: 'start' })).rejects.toThrow(
      `a could not be restored from its saved state: ${file} is not a Vireo state file. Use "Discard saved state"`,
    );
    await tick(30);
    expect(svc.supervisor.isRunning(uuid)).toBe(false);
    expect(fs.readFileSync(file, 'latin1')).toBe('garbage');
    const vm = await summary(svc, uuid);
    expect(vm.state).toBe('saved');
    expect(vm.hasManagedSave).toBe(true);

    await svc['vm.action']({ uuid, action: 'discardSave' });
    expect(fs.existsSync(file)).toBe(false);
    expect((await summary(svc, uuid)).state).toBe('shutoff');
    await svc['vm.action']({ uuid, action: 'start' });
    expect(FakeMachine.last!.restored).toBeUndefined(); // a fresh boot
    expect(FakeMachine.last!.pixel).toBe(0x20);
  });

  it('while saved: hardware edits are refused naming what changed, other edits pass; the disc and a temporary start are refused', async () => {
    const svc = await open();
    const { uuid } = await runningVm(svc);
    await svc['vm.action']({ uuid, action: 'save' });
    const def = await svc['vm.get']({ uuid });
    const r = await svc['vm.update']({ uuid, edit: { ...editOf(def), memoryMiB: 128, cpus: 2 } });
    expect(r.errors).toEqual([{ field: 'saved', message: expect.stringContaining('a has a saved state: its memory, CPUs can\'t change until it is restored') }]);
    expect((await svc['vm.get']({ uuid })).memoryMiB).toBe(256);
    const iso2 = path.join(tmp, 'other.iso');
    await fsp.writeFile(iso2, Buffer.alloc(4096, 2));
    const dry = await svc['vm.update']({ uuid, edit: { ...editOf(def), disks: def.disks.map((d) => ({ ...d, path: iso2 })) }, dryRun: true });
    expect(dry.errors[0]!.message).toContain('its disks can\'t change');
    const ok = await svc['vm.update']({ uuid, edit: { ...editOf(def), name: 'renamed', autostart: true } });
    expect(ok.errors).toEqual([]);
    expect(ok.vm!.state).toBe('saved');
    await expect(svc['vm.changeMedia']({ uuid, path: null })).rejects.toThrow(/has a saved state with its disc in the drive/);
    await expect(svc['vm.action']({ uuid, action: 'start', temporary: true })).rejects.toThrow(/has a saved state: start it normally to restore it/);
    expect(fs.existsSync(svc.saves.pathOf(uuid))).toBe(true);
  });

  it('delete removes the saved state; a clone of a saved VM has none', async () => {
    const svc = await open();
    const { uuid } = await runningVm(svc);
    await svc['vm.action']({ uuid, action: 'save' });
    const done = new Promise<{ ok: boolean; vmUuid?: string }>((r) => svc.onEvent((n, p) => n === 'job.done' && r(p as { ok: boolean; vmUuid?: string })));
    await svc['vm.clone']({ uuid, name: 'a-clone', mode: 'full' });
    const j = await done;
    expect(j.ok).toBe(true);
    const clone = await summary(svc, j.vmUuid!);
    expect(clone.state).toBe('shutoff');
    expect(clone.hasManagedSave).toBeUndefined();
    expect((await summary(svc, uuid)).state).toBe('saved');

    const file = svc.saves.pathOf(uuid);
    await svc['vm.delete']({ uuid, deleteDisks: [] });
    expect(fs.existsSync(file)).toBe(false);
  });

  it('a new service on the same configuration shows the VM saved and restores it; a leftover .partial and orphaned states are swept', async () => {
    const first = await open();
    const { uuid } = await runningVm(first);
    await first['vm.action']({ uuid, action: 'save' });
    const dir = path.join(first.paths.config, 'save');
    await fsp.writeFile(path.join(dir, `${uuid}.vstate.partial`), 'half');
    const orphan = path.join(dir, '00000000-0000-4000-8000-00000000dead.vstate');
    await fsp.writeFile(orphan, 'x');
    await first.shutdown();
    services.splice(0);
    const second = await open();
    expect((await summary(second, uuid)).state).toBe('saved');
    expect(fs.existsSync(path.join(dir, `${uuid}.vstate.partial`))).toBe(false);
    expect(fs.existsSync(orphan)).toBe(false);
    expect(second.recovered.temporaries).toContain(orphan);
    await second['vm.action']({ uuid, action: 'start' });
    expect(FakeMachine.last!.restored?.pixel).toBe(0x77);
    expect(fs.existsSync(second.saves.pathOf(uuid))).toBe(false);
  });
});
