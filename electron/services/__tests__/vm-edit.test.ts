// The hardware details editor's service side: vm.update checks every field, writes the
// definition atomically, keeps it schema-valid, and says when changes wait for the next boot.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type NewVmRequest, type VmEdit, VmDefinitionSchema, editOf } from '../../common/contracts/vm';
import { VireoService } from '../app';
import { dispatch } from '../dispatch';
import { toMachineConfig } from '../machine-config';
import { resolvePaths } from '../paths';
import { FakeMachine, inProcessLauncher, newVmRequest } from './fake-engine';

let tmp: string;
let svc: VireoService;
let iso: string;

const req = (over: Partial<NewVmRequest> = {}): NewVmRequest => newVmRequest(iso, over);

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-edit-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
  const paths = resolvePaths({ HOME: tmp, XDG_CONFIG_HOME: path.join(tmp, 'cfg'), XDG_DATA_HOME: path.join(tmp, 'data') });
  svc = await new VireoService({ paths, launcher: inProcessLauncher(), host: { cpus: 4, memoryMiB: 4096 } }).init();
});

afterEach(async () => {
  svc.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function created(over: Partial<NewVmRequest> = {}) {
  const vm = (await svc['vm.create'](req(over))).vm!;
  return { vm, edit: editOf(await svc['vm.get']({ uuid: vm.uuid })) };
}
const onDisk = (uuid: string) => VmDefinitionSchema.parse(JSON.parse(fs.readFileSync(path.join(svc.paths.vms, `${uuid}.json`), 'utf8')));

describe('vm.update (hardware details)', () => {
  it('saves CPUs, memory, boot order and menu, disk bus and serial log; the engine config follows', async () => {
    const { vm, edit } = await created();
    const events: string[] = [];
    svc.onEvent((name, p: any) => name === 'vm.changed' && events.push(`${p.vm.memoryMiB}/${p.vm.cpus}`));
    const log = path.join(svc.paths.logs, 'com1.log');
    const next: VmEdit = {
      ...edit,
      memoryMiB: 512,
      cpus: 2,
      boot: { kind: 'firmware', order: 'cd', menu: true, menuTimeoutMs: 10000 },
      disks: edit.disks.map((d) => (d.media === 'disk' ? { ...d, bus: 'virtio' as const } : d)),
      serial: { logFile: log },
    };
    const r = await svc['vm.update']({ uuid: vm.uuid, edit: next });
    expect(r.errors).toEqual([]);
    expect(r.nextBoot).toBe(false);
    const def = onDisk(vm.uuid);
    expect(def).toMatchObject({ memoryMiB: 512, cpus: 2, boot: { kind: 'firmware', order: 'cd', menu: true, menuTimeoutMs: 10000 }, serial: { logFile: log } });
    expect(def.disks.map((d) => `${d.media}:${d.bus}`)).toEqual(['disk:virtio', 'cdrom:ide']);
    expect(events).toEqual(['512/2']);
    const cfg = toMachineConfig(def, { bios: '/b', vgaBios: '/v' });
    expect(cfg).toMatchObject({ memoryMiB: 512, cpus: 2, bootOrder: 'cd', bootMenu: true, bootMenuTimeout: 10000, serialFile: log, uuid: vm.uuid });
    // No temp files left next to the definition (atomic write = temp + rename).
    expect(fs.readdirSync(svc.paths.vms)).toEqual([`${vm.uuid}.json`]);
  });

  it('saves the display\'s preferred size, refuses one the display cannot offer, and the default is no setting', async () => {
    const { vm, edit } = await created();
    expect(edit.display).toEqual({});
    expect(toMachineConfig(onDisk(vm.uuid), { bios: '/b', vgaBios: '/v' }).display).toBeUndefined();
    let r = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, display: { width: 1920, height: 1080 } } });
    expect(r.errors).toEqual([]);
    expect(onDisk(vm.uuid).display).toEqual({ width: 1920, height: 1080 });
    expect(toMachineConfig(onDisk(vm.uuid), { bios: '/b', vgaBios: '/v' }).display).toEqual({ width: 1920, height: 1080 });
    for (const [d, msg] of [
      [{ width: 320, height: 200 }, 'The smallest preferred size is 640×480.'],
      [{ width: 2560, height: 1700 }, '2560×1700 at 32 bits per pixel needs more than the 16 MiB of video memory.'],
      [{ width: 1920 }, 'Give both the width and the height.'],
      [{ width: 1920.5, height: 1080 }, 'Give the width and height in whole pixels.'],
    ] as const) {
      r = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, display: d } });
      expect(r.errors).toEqual([{ field: 'display', message: msg }]);
    }
    expect(onDisk(vm.uuid).display).toEqual({ width: 1920, height: 1080 }); // nothing written
    // Omitted (an older client): unchanged. {} or 1024x768: back to the default, no setting kept.
    const { display: _omit, ...older } = edit;
    expect((await svc['vm.update']({ uuid: vm.uuid, edit: { ...older, cpus: 2 } })).errors).toEqual([]);
    expect(onDisk(vm.uuid).display).toEqual({ width: 1920, height: 1080 });
    expect((await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, display: { width: 1024, height: 768 } } })).errors).toEqual([]);
    expect(onDisk(vm.uuid).display).toBeUndefined();
  });

  it('a direct-kernel VM runs on the PC: firmware, and its disks go to the engine', async () => {
    const { vm } = await created();
    const def = { ...onDisk(vm.uuid), boot: { kind: 'kernel' as const, kernel: '/k/vmlinuz', initrd: '/k/initrd', append: 'quiet' } };
    const cfg = toMachineConfig(def, { bios: '/b', vgaBios: '/v' });
    expect(cfg).toMatchObject({ kernel: '/k/vmlinuz', initrd: '/k/initrd', append: 'quiet', bios: '/b', vgaBios: '/v' });
    expect(cfg.disks!.map((d) => d.media)).toEqual(['disk', 'cdrom']);
  });

  it('returns each problem on its field and writes nothing', async () => {
    const { vm, edit } = await created();
    await created({ name: 'other', storage: { kind: 'none' } });
    const before = fs.readFileSync(path.join(svc.paths.vms, `${vm.uuid}.json`), 'utf8');
    const qcow = path.join(tmp, 'q.qcow2');
    await fsp.writeFile(qcow, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(508)]));
    const otherMac = svc.store.byName('other')!.nics[0]!.mac;
    const bad: VmEdit = {
      ...edit,
      name: 'Other',
      memoryMiB: 99999,
      cpus: 1.5,
      boot: { kind: 'firmware', order: 'cc' },
      disks: [
        { path: 'relative.img', format: 'raw', media: 'disk', bus: 'ide' },
        { path: qcow, format: 'raw', media: 'disk', bus: 'virtio' },
        { path: iso, format: 'raw', media: 'cdrom', bus: 'virtio' },
        { path: '/nonexistent.iso', format: 'raw', media: 'cdrom', bus: 'ide' },
      ],
      nics: [{ mac: otherMac, network: 'user', model: 'e1000' }, { mac: '00:11:22:33:44:55', network: 'user', model: 'virtio' }],
      serial: { logFile: '/nonexistent-dir/com1.log' },
    };
    const r = await svc['vm.update']({ uuid: vm.uuid, edit: bad });
    expect(Object.fromEntries(r.errors.map((e) => [e.field, e.message]))).toEqual({
      name: "A VM named 'Other' already exists.",
      cpus: 'CPUs must be a whole number between 1 and 4.',
      memory: 'Memory must be a whole number of MiB between 16 and 4096.',
      'disks.0.path': 'Give the full path of a disk image (starting with /).',
      'disks.2.bus': 'CD-ROM drives are IDE only (the engine has no virtio CD-ROM).',
      'disks.3.path': '/nonexistent.iso does not exist.',
      'boot.order': 'Choose at least one boot device, each once.',
      'nics.0.mac': `${otherMac} is used by other.`,
      'nics.1.mac': 'Use a MAC in the 52:54:00:xx:xx:xx range.',
      'serial.logFile': `Serial logs are kept in Vireo's log directory ${svc.paths.logs}: give a file name there (e.g. com1.log).`,
    });
    expect(fs.readFileSync(path.join(svc.paths.vms, `${vm.uuid}.json`), 'utf8')).toBe(before);
    // dryRun checks without writing, also when everything is fine.
    const dry = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, memoryMiB: 1024 }, dryRun: true });
    expect(dry.errors).toEqual([]);
    expect(onDisk(vm.uuid).memoryMiB).toBe(256);
  });

  it('a raw disk whose guest wrote a qcow2 header stays raw: no switch suggested, a switch refused (issue 15, finding 3)', async () => {
    const { vm, edit } = await created();
    const disk = vm.disks.find((d) => d.media === 'disk')!;
    expect(disk.format).toBe('raw');
    // What a guest can write to the start of its own disk: a qcow2 header.
    const fh = await fsp.open(disk.path, 'r+');
    await fh.write(Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(508)]), 0, 512, 0);
    await fh.close();
    expect((await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, memoryMiB: 300 } })).errors).toEqual([]);
    expect(onDisk(vm.uuid).disks.find((d) => d.media === 'disk')!.format).toBe('raw');
    const i = edit.disks.findIndex((d) => d.media === 'disk');
    const switched: VmEdit = { ...edit, disks: edit.disks.map((d, j) => (j === i ? { ...d, format: 'qcow2' as const } : d)) };
    const r = await svc['vm.update']({ uuid: vm.uuid, edit: switched });
    expect(r.errors).toEqual([{ field: `disks.${i}.format`, message: expect.stringMatching(/stays raw: the format of an attached disk is not changed/) }]);
    expect(onDisk(vm.uuid).disks.find((d) => d.media === 'disk')!.format).toBe('raw');
  });

  it('ejects and changes the CD, adds and removes disks; an empty drive is left out of the engine config', async () => {
    const { vm, edit } = await created();
    const ejected: VmEdit = { ...edit, disks: edit.disks.map((d) => (d.media === 'cdrom' ? { ...d, path: '' } : d)) };
    expect((await svc['vm.update']({ uuid: vm.uuid, edit: ejected })).errors).toEqual([]);
    let def = onDisk(vm.uuid);
    expect(def.disks[1]).toEqual({ path: '', format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true });
    expect(toMachineConfig(def, { bios: '/b', vgaBios: '/v' }).disks!.map((d) => d.media)).toEqual(['disk']);
    // Starting with an empty drive works (no "missing file" for it).
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    expect(FakeMachine.last!.config.disks!.length).toBe(1);
    await svc['vm.action']({ uuid: vm.uuid, action: 'forceoff' });
    // Insert another ISO, add an existing disk image, remove the first disk.
    const iso2 = path.join(tmp, 'other.iso');
    const extra = path.join(tmp, 'extra.img');
    await fsp.writeFile(iso2, Buffer.alloc(2048));
    await fsp.writeFile(extra, Buffer.alloc(512));
    const changed: VmEdit = {
      ...edit,
      disks: [
        { path: iso2, format: 'raw', media: 'cdrom', bus: 'ide' },
        { path: extra, format: 'raw', media: 'disk', bus: 'virtio', readOnly: true },
      ],
    };
    expect((await svc['vm.update']({ uuid: vm.uuid, edit: changed })).errors).toEqual([]);
    def = onDisk(vm.uuid);
    expect(def.disks).toEqual([
      { path: iso2, format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true },
      { path: extra, format: 'raw', media: 'disk', bus: 'virtio', readOnly: true },
    ]);
    // A boot order naming only devices that are not attached is refused.
    const noDevs = await svc['vm.update']({ uuid: vm.uuid, edit: { ...changed, disks: [], boot: { kind: 'firmware', order: 'dc' } } });
    expect(noDevs.errors.map((e) => e.field)).toEqual(['boot.order']);
  });

  it('on a running VM the definition changes at once and nextBoot says the machine picks it up later', async () => {
    const { vm, edit } = await created({ storage: { kind: 'none' } });
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    const running = FakeMachine.last!;
    const r = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, memoryMiB: 128, name: 'renamed' } });
    expect(r).toMatchObject({ errors: [], nextBoot: true, vm: { name: 'renamed', memoryMiB: 128, state: 'running' } });
    expect(running.config.memoryMiB).toBe(256); // the running machine is untouched
    await svc['vm.action']({ uuid: vm.uuid, action: 'forceoff' });
    await new Promise((r) => setTimeout(r, 50));
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    expect(FakeMachine.last!.config.memoryMiB).toBe(128);
    await svc['vm.action']({ uuid: vm.uuid, action: 'forceoff' });
  });

  it('the serial log file gets COM1 output of the running VM', async () => {
    const { vm, edit } = await created({ storage: { kind: 'none' } });
    const log = path.join(svc.paths.logs, 'com1.log');
    expect((await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, serial: { logFile: log } } })).errors).toEqual([]);
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    FakeMachine.last!.emitSerial(new TextEncoder().encode('hello from COM1\n'));
    expect(fs.readFileSync(log, 'utf8')).toBe('hello from COM1\n');
    await svc['vm.action']({ uuid: vm.uuid, action: 'forceoff' });
  });

  it('kernel boot paths are checked and the contract rejects off-schema edits', async () => {
    const { vm, edit } = await created({ media: { kind: 'kernel', kernel: iso }, storage: { kind: 'none' } });
    expect(edit.boot.kind).toBe('kernel');
    const r = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, boot: { kind: 'kernel', kernel: '/nope/vmlinuz', initrd: 'x' } } });
    expect(r.errors.map((e) => e.field)).toEqual(['boot.kernel', 'boot.initrd']);
    const off = await dispatch(svc, { t: 'call', id: 1, method: 'vm.update', params: { uuid: vm.uuid, edit: { ...edit, disks: [{ path: iso, format: 'vmdk', media: 'disk', bus: 'ide' }] } } });
    expect(off).toMatchObject({ t: 'error', code: 'invalid' });
    const missing = await dispatch(svc, { t: 'call', id: 2, method: 'vm.update', params: { uuid: '00000000-0000-0000-0000-000000000000', edit } });
    expect(missing).toMatchObject({ t: 'error' });
  });
});
