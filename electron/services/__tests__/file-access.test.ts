// Issue 15, finding 4: the contract (the renderer, or whoever holds the token) does not
// get the user's whole file system. Serial logs live in Vireo's log directory and are
// never written through a symlink; deleting a file outside Vireo's own pool (a VM disk,
// a volume of a user-defined pool) needs a confirmation in the request naming that file.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VmEdit } from '../../common/contracts/vm';
import { editOf } from '../../common/contracts/vm';
import type { VireoService } from '../app';
import { dispatch } from '../dispatch';
import { FakeMachine, newVmRequest, testService } from './fake-engine';

let tmp: string;
let svc: VireoService;
let iso: string;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-fa-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
  svc = await testService(tmp);
});

afterEach(async () => {
  svc.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function vmWithEdit() {
  const vm = (await svc['vm.create'](newVmRequest(iso, { storage: { kind: 'none' } }))).vm!;
  return { vm, edit: editOf(await svc['vm.get']({ uuid: vm.uuid })) as VmEdit };
}

describe('serial log files', () => {
  it('a log path outside Vireo\'s log directory is refused on the field, and nothing is written there', async () => {
    const { vm, edit } = await vmWithEdit();
    const bashrc = path.join(tmp, '.bashrc');
    fs.writeFileSync(bashrc, 'echo hi\n');
    for (const bad of [bashrc, path.join(tmp, 'com1.log'), path.join(svc.paths.logs, '..', 'images', 'x.log')]) {
      const r = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, serial: { logFile: bad } } });
      expect(r.errors).toEqual([{ field: 'serial.logFile', message: expect.stringContaining(`Vireo's log directory ${svc.paths.logs}`) }]);
    }
    expect(svc.store.get(vm.uuid)!.serial).toBeUndefined();
    expect(fs.readFileSync(bashrc, 'utf8')).toBe('echo hi\n');
  });

  it('a bare file name goes into the log directory; a symlink there is refused', async () => {
    const { vm, edit } = await vmWithEdit();
    const r = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, serial: { logFile: 'grub-com1.log' } } });
    expect(r.errors).toEqual([]);
    const log = path.join(svc.paths.logs, 'grub-com1.log');
    expect(svc.store.get(vm.uuid)!.serial).toEqual({ logFile: log });
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    FakeMachine.last!.emitSerial(new TextEncoder().encode('hello\n'));
    expect(fs.readFileSync(log, 'utf8')).toBe('hello\n');
    await svc['vm.action']({ uuid: vm.uuid, action: 'forceoff' });

    const victim = path.join(tmp, 'victim');
    fs.writeFileSync(victim, '');
    fs.symlinkSync(victim, path.join(svc.paths.logs, 'link.log'));
    const r2 = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, serial: { logFile: 'link.log' } } });
    expect(r2.errors).toEqual([{ field: 'serial.logFile', message: expect.stringMatching(/symbolic link/) }]);
  });

  it('a clone gets its own serial log file (not the original\'s), unique in the log directory', async () => {
    const { vm, edit } = await vmWithEdit();
    expect((await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, serial: { logFile: 'web-com1.log' } } })).errors).toEqual([]);
    const clone = async (name: string) => {
      const done = new Promise<string>((resolve) => {
        const off = svc.onEvent((ev, p) => {
          if (ev === 'job.done') {
            off();
            resolve((p as { vmUuid?: string; error?: string }).vmUuid ?? `error: ${(p as { error?: string }).error}`);
          }
        });
      });
      const r = await svc['vm.clone']({ uuid: vm.uuid, name });
      expect(r.errors).toEqual([]);
      return svc.store.get(await done)!;
    };
    const a = await clone('web-clone');
    expect(a.serial).toEqual({ logFile: path.join(svc.paths.logs, 'web-clone-com1.log') });
    // A name whose file another VM already logs to gets the next free one.
    await svc.store.save({ ...svc.store.get(vm.uuid)!, serial: { logFile: path.join(svc.paths.logs, 'b-com1.log') } });
    const b = await clone('b');
    expect(b.serial).toEqual({ logFile: path.join(svc.paths.logs, 'b-2-com1.log') });
    expect(svc.store.get(vm.uuid)!.serial).toEqual({ logFile: path.join(svc.paths.logs, 'b-com1.log') });
  });

  it('a definition naming a log outside (edited by hand, or from an older version) does not start', async () => {
    const { vm } = await vmWithEdit();
    const outside = path.join(tmp, 'outside.log');
    await svc.store.save({ ...svc.store.get(vm.uuid)!, serial: { logFile: outside } });
    await expect(svc['vm.action']({ uuid: vm.uuid, action: 'start' })).rejects.toThrow(/serial log .*outside.log is outside Vireo's log directory/);
    expect(fs.existsSync(outside)).toBe(false);
  });
});

describe('deleting files outside Vireo\'s pool', () => {
  it('Delete VM with storage needs the file named in `confirm` for a disk outside the pool', async () => {
    const disk = path.join(tmp, 'precious.img');
    fs.writeFileSync(disk, Buffer.alloc(65536, 3));
    const vm = (await svc['vm.create'](newVmRequest(iso, { media: { kind: 'import', path: disk }, storage: { kind: 'none' } }))).vm!;
    const plan = await svc['vm.deletePlan']({ uuid: vm.uuid });
    expect(plan.disks.map((d) => [d.path, d.outsidePool, d.defaultChecked])).toEqual([[disk, true, false]]);
    await expect(svc['vm.delete']({ uuid: vm.uuid, deleteDisks: [disk] })).rejects.toThrow(/precious\.img is outside Vireo's storage pool/);
    await expect(svc['vm.delete']({ uuid: vm.uuid, deleteDisks: [disk], confirm: [path.join(tmp, 'other.img')] })).rejects.toThrow(/outside Vireo's storage pool/);
    expect(fs.existsSync(disk)).toBe(true);
    expect(svc.store.get(vm.uuid)).toBeDefined();
    // Through the contract too (the params schema knows `confirm`).
    const r = await dispatch(svc, { t: 'call', id: 1, method: 'vm.delete', params: { uuid: vm.uuid, deleteDisks: [disk], confirm: [disk] } });
    expect(r).toMatchObject({ t: 'result', value: { deleted: [disk] } });
    expect(fs.existsSync(disk)).toBe(false);
  });

  it('a disk in Vireo\'s own pool needs no confirmation', async () => {
    const vm = (await svc['vm.create'](newVmRequest(iso, { storage: { kind: 'create', sizeGiB: 0.01 } }))).vm!;
    const plan = await svc['vm.deletePlan']({ uuid: vm.uuid });
    expect(plan.disks.map((d) => [d.media, d.outsidePool])).toEqual([['disk', false], ['cdrom', true]]);
    await svc['vm.delete']({ uuid: vm.uuid, deleteDisks: [vm.disks[0]!.path] });
    expect(fs.existsSync(vm.disks[0]!.path)).toBe(false);
  });

  it('a volume of a user-defined pool (any directory) is deleted only with its path in `confirm`', async () => {
    const home = path.join(tmp, 'home');
    fs.mkdirSync(home);
    fs.writeFileSync(path.join(home, '.profile'), 'x');
    fs.writeFileSync(path.join(home, 'notes.txt'), 'mine');
    await svc['storage.poolDefine']({ name: 'home', path: home });
    await expect(svc['storage.volumeDelete']({ pool: 'home', name: 'notes.txt' })).rejects.toThrow(/outside Vireo's storage pool/);
    await expect(svc['storage.volumeDelete']({ pool: 'home', name: 'notes.txt', confirm: path.join(home, 'other') })).rejects.toThrow(/outside Vireo's storage pool/);
    expect(fs.readFileSync(path.join(home, 'notes.txt'), 'utf8')).toBe('mine');
    const r = await dispatch(svc, { t: 'call', id: 1, method: 'storage.volumeDelete', params: { pool: 'home', name: 'notes.txt', confirm: path.join(home, 'notes.txt') } });
    expect(r).toMatchObject({ t: 'result' });
    expect(fs.existsSync(path.join(home, 'notes.txt'))).toBe(false);
  });

  it('resizing a file of a user-defined pool (a raw grow writes into it) needs its path in `confirm` too', async () => {
    const home = path.join(tmp, 'home');
    fs.mkdirSync(home);
    fs.writeFileSync(path.join(home, 'rc.img'), 'alias ls=ls\n');
    await svc['storage.poolDefine']({ name: 'home', path: home });
    await expect(svc['storage.volumeResize']({ pool: 'home', name: 'rc.img', capacityBytes: 1 << 20 })).rejects.toThrow(/outside Vireo's storage pool/);
    expect(fs.statSync(path.join(home, 'rc.img')).size).toBe(12);
    await svc['storage.volumeResize']({ pool: 'home', name: 'rc.img', capacityBytes: 1 << 20, confirm: path.join(home, 'rc.img') });
    expect(fs.statSync(path.join(home, 'rc.img')).size).toBe(1 << 20);
  });
});
