// vm.changeMedia: live CD change / eject through supervisor → engine host → (fake) engine,
// and the definition on disk following it.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NewVmRequest } from '../../common/contracts/vm';
import { VireoService } from '../app';
import { dispatch } from '../dispatch';
import { resolvePaths } from '../paths';
import { FakeMachine, inProcessLauncher, newVmRequest } from './fake-engine';

let tmp: string;
let svc: VireoService;
let iso: string;
let iso2: string;

const req = (over: Partial<NewVmRequest> = {}): NewVmRequest => newVmRequest(iso, { name: 'cd', network: 'none', ...over });

const onDisk = (uuid: string) => JSON.parse(fs.readFileSync(svc.store.fileOf(uuid), 'utf8'));
const cdPath = (uuid: string) => onDisk(uuid).disks.find((d: any) => d.media === 'cdrom')?.path;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-media-'));
  iso = path.join(tmp, 'one.iso');
  iso2 = path.join(tmp, 'two.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
  await fsp.writeFile(iso2, Buffer.alloc(4096, 2));
  const paths = resolvePaths({ HOME: tmp, XDG_CONFIG_HOME: path.join(tmp, 'cfg'), XDG_DATA_HOME: path.join(tmp, 'data') });
  svc = await new VireoService({ paths, launcher: inProcessLauncher(), host: { cpus: 2, memoryMiB: 4096 } }).init();
});

afterEach(async () => {
  svc.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('vm.changeMedia', () => {
  it('ejects and inserts live in a running VM and writes the definition', async () => {
    const { vm } = await svc['vm.create'](req());
    await svc['vm.action']({ uuid: vm!.uuid, action: 'start' });
    const m = FakeMachine.last!;
    expect(m.cdrom).toBe(iso);

    const ej = await svc['vm.changeMedia']({ uuid: vm!.uuid, path: null });
    expect(ej).toMatchObject({ live: true, ejected: true });
    expect(m.cdrom).toBeNull();
    expect(cdPath(vm!.uuid)).toBe('');
    expect(ej.vm!.disks.find((d) => d.media === 'cdrom')!.path).toBe('');

    const ins = await svc['vm.changeMedia']({ uuid: vm!.uuid, path: iso2 });
    expect(ins).toMatchObject({ live: true });
    expect(ins.locked).toBeUndefined();
    expect(m.cdrom).toBe(iso2);
    expect(cdPath(vm!.uuid)).toBe(iso2);

    // A Reset (a fresh machine in the same engine host) boots with the disc now in the drive.
    await svc['vm.action']({ uuid: vm!.uuid, action: 'reset' });
    await new Promise((r) => setTimeout(r, 20));
    expect(FakeMachine.last).not.toBe(m);
    expect(FakeMachine.last!.config.disks!.find((d) => d.media === 'cdrom')!.path).toBe(iso2);
  });

  it('goes through the contract: a missing ISO and an engine refusal are user errors; nothing is written', async () => {
    const { vm } = await svc['vm.create'](req());
    const uuid = vm!.uuid;
    await svc['vm.action']({ uuid, action: 'start' });
    const missing = path.join(tmp, 'nope.iso');
    expect(await dispatch(svc, { t: 'call', id: 1, method: 'vm.changeMedia', params: { uuid, path: missing } })).toMatchObject({
      t: 'error',
      code: 'user',
      message: `${missing} does not exist.`,
    });
    expect(await dispatch(svc, { t: 'call', id: 2, method: 'vm.changeMedia', params: { uuid, path: tmp } })).toMatchObject({
      code: 'user',
      message: `${tmp} is not a file.`,
    });
    expect(await dispatch(svc, { t: 'call', id: 3, method: 'vm.changeMedia', params: { uuid, path: 'rel.iso' } })).toMatchObject({ code: 'user' });
    expect(await dispatch(svc, { t: 'call', id: 4, method: 'vm.changeMedia', params: { uuid, path: '' } })).toMatchObject({ code: 'invalid' });
    expect(await dispatch(svc, { t: 'call', id: 5, method: 'vm.changeMedia', params: { uuid } })).toMatchObject({ code: 'invalid' });

    // The file vanishes between the check and the engine: the engine's message comes back.
    const gone = path.join(tmp, 'gone.iso');
    await fsp.writeFile(gone, 'x');
    const m = FakeMachine.last!;
    const orig = m.changeCdrom.bind(m);
    m.changeCdrom = (p) => (fs.rmSync(gone), orig(p));
    const r = await dispatch(svc, { t: 'call', id: 6, method: 'vm.changeMedia', params: { uuid, path: gone } });
    expect(r).toMatchObject({ t: 'error', code: 'user' });
    expect((r as { message: string }).message).toMatch(/^The disc was not changed: CD-ROM image .*gone\.iso/);
    expect(m.cdrom).toBe(iso);
    expect(cdPath(uuid)).toBe(iso);
  });

  it('a locked tray changes nothing and says so', async () => {
    const { vm } = await svc['vm.create'](req());
    await svc['vm.action']({ uuid: vm!.uuid, action: 'start' });
    FakeMachine.last!.trayLocked = true;
    expect(await svc['vm.changeMedia']({ uuid: vm!.uuid, path: null })).toEqual({ live: true, ejected: false, locked: true });
    expect(FakeMachine.last!.cdrom).toBe(iso);
    expect(cdPath(vm!.uuid)).toBe(iso);
  });

  it('a VM without a CD-ROM drive, or started with an empty one, gets a clear error', async () => {
    const { vm } = await svc['vm.create'](req({ media: { kind: 'import', path: iso }, storage: { kind: 'none' } }));
    await expect(svc['vm.changeMedia']({ uuid: vm!.uuid, path: iso2 })).rejects.toThrow(/has no CD-ROM drive/);

    const { vm: cd } = await svc['vm.create'](req({ name: 'cd2' }));
    await svc['vm.changeMedia']({ uuid: cd!.uuid, path: null }); // shut off: only the definition
    expect(cdPath(cd!.uuid)).toBe('');
    await svc['vm.action']({ uuid: cd!.uuid, action: 'start' });
    await expect(svc['vm.changeMedia']({ uuid: cd!.uuid, path: iso2 })).rejects.toThrow(/started with an empty CD-ROM drive/);
    expect(cdPath(cd!.uuid)).toBe('');
  });

  it('on a shut-off VM only the definition changes (live: false)', async () => {
    const { vm } = await svc['vm.create'](req());
    expect(await svc['vm.changeMedia']({ uuid: vm!.uuid, path: iso2 })).toMatchObject({ live: false });
    expect(cdPath(vm!.uuid)).toBe(iso2);
  });
});
