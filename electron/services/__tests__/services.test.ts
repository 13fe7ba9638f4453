import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type EventName, RequestEnvelope } from '../../common/contracts/api';
import { decodeHostToUi, encodeUiToHost } from '../../common/contracts/stream';
import type { NewVmRequest } from '../../common/contracts/vm';
import { VireoService } from '../app';
import { dispatch } from '../dispatch';
import { resolvePaths } from '../paths';
import { copySparse } from '../pool';
import { exitReasonOf } from '../supervisor';
import { FakeMachine, inProcessLauncher, newVmRequest } from './fake-engine';

let tmp: string;
let svc: VireoService;
let iso: string;
let events: Array<{ name: EventName; payload: any }>;

function waitEvent(pred: (e: { name: EventName; payload: any }) => boolean, ms = 5000): Promise<any> {
  return new Promise((resolve, reject) => {
    const found = events.find(pred);
    if (found) return resolve(found.payload);
    const t = setTimeout(() => reject(new Error('timed out waiting for an event')), ms);
    const off = svc.onEvent((name, payload) => {
      if (pred({ name, payload })) {
        clearTimeout(t);
        off();
        resolve(payload);
      }
    });
  });
}

const req = (over: Partial<NewVmRequest> = {}): NewVmRequest => newVmRequest(iso, over);

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-svc-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
  const paths = resolvePaths({ HOME: tmp, XDG_CONFIG_HOME: path.join(tmp, 'cfg'), XDG_DATA_HOME: path.join(tmp, 'data') });
  svc = await new VireoService({ paths, launcher: inProcessLauncher(), host: { cpus: 2, memoryMiB: 4096 } }).init();
  events = [];
  svc.onEvent((name, payload) => events.push({ name, payload }));
});

afterEach(async () => {
  svc.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('paths', () => {
  it('uses XDG dirs and falls back to HOME', () => {
    expect(resolvePaths({ HOME: '/h' })).toEqual({ config: '/h/.config/vireo', vms: '/h/.config/vireo/vms', pool: '/h/.local/share/vireo/images', logs: '/h/.local/share/vireo/logs' });
    expect(resolvePaths({ HOME: '/h', XDG_CONFIG_HOME: '/c', XDG_DATA_HOME: '/d' }).pool).toBe('/d/vireo/images');
  });
});

describe('VM creation', () => {
  it('creates a definition file and a sparse disk in the pool', async () => {
    const r = await svc['vm.create'](req());
    expect(r.errors).toEqual([]);
    const vm = r.vm!;
    const file = path.join(svc.paths.vms, `${vm.uuid}.json`);
    const def = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(def.name).toBe('grub');
    expect(def.nics[0].mac).toMatch(/^52:54:00:/);
    expect(def.disks.map((d: any) => d.media)).toEqual(['disk', 'cdrom']);
    const disk = path.join(svc.paths.pool, 'grub.img');
    const st = fs.statSync(disk);
    expect(st.size).toBe(1024 ** 3);
    expect(st.blocks * 512).toBeLessThan(1024 * 1024); // sparse
    // Reloads from disk.
    await svc.store.load();
    expect(svc.store.byName('GRUB')?.uuid).toBe(vm.uuid);
  });

  it('returns field errors and writes nothing for a bad name, missing ISO, duplicate name', async () => {
    expect((await svc['vm.create'](req({ name: 'bad name!' }))).errors.map((e) => e.field)).toEqual(['name']);
    expect((await svc['vm.create'](req({ media: { kind: 'iso', path: '/nonexistent.iso' } }))).errors[0]).toMatchObject({ field: 'media' });
    expect((await svc['vm.create'](req({ memoryMiB: 999999, cpus: 9 }))).errors.map((e) => e.field)).toEqual(['memory', 'cpus']);
    expect(fs.readdirSync(svc.paths.vms)).toEqual([]);
    expect(fs.readdirSync(svc.paths.pool)).toEqual([]);
    await svc['vm.create'](req());
    const dup = await svc['vm.create'](req({ name: 'Grub' }));
    expect(dup.errors).toEqual([{ field: 'name', message: "A VM named 'Grub' already exists." }]);
    expect(fs.readdirSync(svc.paths.vms)).toHaveLength(1);
    expect(fs.readdirSync(svc.paths.pool)).toEqual(['grub.img']);
  });

  it('skips broken definition files and never overwrites them', async () => {
    await fsp.writeFile(path.join(svc.paths.vms, 'junk.json'), '{"version":1}');
    await svc.store.load();
    expect(svc.store.broken).toHaveLength(1);
    expect(svc.store.list()).toEqual([]);
  });
});

describe('contract dispatch', () => {
  it('validates params and results', async () => {
    expect(await dispatch(svc, { t: 'call', id: 1, method: 'vm.nope', params: {} })).toMatchObject({ t: 'error', code: 'bad-request' });
    expect(await dispatch(svc, { t: 'call', id: 2, method: 'vm.action', params: { uuid: 'x', action: 'explode' } })).toMatchObject({
      t: 'error',
      code: 'invalid',
    });
    expect(await dispatch(svc, { t: 'call', id: 3, method: 'vm.list', params: { extra: 1 } })).toMatchObject({ t: 'error', code: 'invalid' });
    const ok = await dispatch(svc, { t: 'call', id: 4, method: 'vm.list', params: {} });
    expect(ok).toEqual({ t: 'result', id: 4, value: [] });
    expect(() => RequestEnvelope.parse({ t: 'call', id: -1, method: 'x', params: 1 })).toThrow();
  });
});

describe('running, streams and exit reasons', () => {
  it('runs a VM, streams frames with credits, echoes serial, and reports shutdown', async () => {
    const vm = (await svc['vm.create'](req()).then((r) => r.vm))!;
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    expect(FakeMachine.last!.config.bios).toBe('/usr/share/seabios/bios.bin');
    expect(FakeMachine.last!.config.bootOrder).toBe('dc');
    expect(FakeMachine.last!.config.disks![1]).toMatchObject({ media: 'cdrom', readOnly: true, path: iso });
    const st = svc.openStream(vm.uuid);
    const got: any[] = [];
    st.onData((d) => got.push(decodeHostToUi(d)));
    st.send(encodeUiToHost({ op: 'subscribe', frames: true, serial: true }));
    await expect.poll(() => got.filter((m) => m.op === 'frame').length).toBeGreaterThanOrEqual(1);
    // Without acks, at most FRAME_WINDOW frames arrive even though the screen keeps changing.
    for (let i = 0; i < 5; i++) {
      st.send(encodeUiToHost({ op: 'key', code: 'KeyA', down: i % 2 === 0 }));
      await new Promise((r) => setTimeout(r, 40));
    }
    expect(got.filter((m) => m.op === 'frame').length).toBe(2);
    st.send(encodeUiToHost({ op: 'ackFrame' }));
    st.send(encodeUiToHost({ op: 'key', code: 'KeyB', down: true }));
    await expect.poll(() => got.filter((m) => m.op === 'frame').length).toBe(3);
    st.send(encodeUiToHost({ op: 'serialIn', port: 0, data: new TextEncoder().encode('hi') }));
    await expect.poll(() => got.filter((m) => m.op === 'serial').map((m) => new TextDecoder().decode(m.data)).join('')).toBe('hi');
    expect(FakeMachine.last!.keys.slice(0, 2)).toEqual(['KeyA:down', 'KeyA:up']);

    // Shut Down: refused while the guest has not enabled ACPI (nothing stops), then it waits.
    await expect(svc['vm.action']({ uuid: vm.uuid, action: 'shutdown' })).rejects.toThrow(/was not shut down: the guest has not enabled ACPI/);
    expect((await svc['vm.list']({}))[0]!.state).toBe('running');
    FakeMachine.last!.acpiEnabled = true;
    await svc['vm.action']({ uuid: vm.uuid, action: 'shutdown' });
    expect((await svc['vm.list']({}))[0]!.state).toBe('shuttingdown');
    FakeMachine.last!.powerOff();
    const ex = await waitEvent((e) => e.name === 'vm.exited');
    expect(ex.reason).toEqual({ kind: 'shutdown', detail: 'the guest powered off' });
    expect((await svc['vm.list']({}))[0]!.state).toBe('shutoff');
  });

  it('reports crashes with the engine reason and force off as forced off', async () => {
    const vm = (await svc['vm.create'](req()).then((r) => r.vm))!;
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    FakeMachine.last!.crash();
    const ex = await waitEvent((e) => e.name === 'vm.exited');
    expect(ex.reason).toEqual({ kind: 'crashed', reason: 'triple-fault: triple fault', rip: '0xfff0' });
    events.length = 0;
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    await svc['vm.action']({ uuid: vm.uuid, action: 'forceoff' });
    expect((await waitEvent((e) => e.name === 'vm.exited')).reason).toEqual({ kind: 'shutdown', detail: 'forced off' });
    expect(exitReasonOf(7, null)).toEqual({ kind: 'crashed', reason: 'the engine host exited with code 7' });
  });

  it('serial flow control: 10 MB arrive in order, paced by acks', async () => {
    const vm = (await svc['vm.create'](req()).then((r) => r.vm))!;
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    const st = svc.openStream(vm.uuid);
    let received = 0;
    let maxUnacked = 0;
    let unacked = 0;
    let ok = true;
    st.onData((d) => {
      const m = decodeHostToUi(d);
      if (m.op !== 'serial') return;
      for (let i = 0; i < m.data.length; i++) if (m.data[i] !== (received + i) % 251) ok = false;
      received += m.data.length;
      unacked += m.data.length;
      maxUnacked = Math.max(maxUnacked, unacked);
      setTimeout(() => {
        unacked -= m.data.length;
        st.send(encodeUiToHost({ op: 'ackSerial', bytes: m.data.length }));
      }, 0);
    });
    st.send(encodeUiToHost({ op: 'subscribe', frames: false, serial: true }));
    await new Promise((r) => setTimeout(r, 20));
    const total = 10 * 1024 * 1024;
    const block = new Uint8Array(64 * 1024);
    for (let o = 0; o < total; o += block.length) {
      for (let i = 0; i < block.length; i++) block[i] = (o + i) % 251;
      FakeMachine.last!.emitSerial(block);
    }
    await expect.poll(() => received, { timeout: 15000 }).toBe(total);
    expect(ok).toBe(true);
    expect(maxUnacked).toBeLessThanOrEqual(256 * 1024 + 16 * 1024);
  });
});

describe('clone and delete', () => {
  it('clones a shut-off VM with new UUID, MACs and copied sparse disks; delete removes chosen files', async () => {
    const vm = (await svc['vm.create'](req({ storage: { kind: 'create', sizeGiB: 0.25 } })).then((r) => r.vm))!;
    const disk = path.join(svc.paths.pool, 'grub.img');
    const fh = await fsp.open(disk, 'r+');
    await fh.write(Buffer.from('MBR!'), 0, 4, 510);
    await fh.close();
    const plan = await svc['vm.clonePlan']({ uuid: vm.uuid });
    expect(plan.suggestedName).toBe('grub-clone');
    expect(plan.blocker).toBeNull();
    const { jobId } = await svc['vm.clone']({ uuid: vm.uuid, name: 'grub-clone' });
    const done = await waitEvent((e) => e.name === 'job.done' && e.payload.jobId === jobId, 30000);
    expect(done.ok).toBe(true);
    const clone = svc.store.get(done.vmUuid)!;
    expect(clone.uuid).not.toBe(vm.uuid);
    expect(clone.nics[0]!.mac).not.toBe(vm.nics[0]!.mac);
    const cdisk = path.join(svc.paths.pool, 'grub-clone.img');
    expect(clone.disks[0]!.path).toBe(cdisk);
    expect(clone.disks[1]!.path).toBe(iso); // the ISO is shared, not copied
    const b = fs.readFileSync(cdisk).subarray(510, 514).toString();
    expect(b).toBe('MBR!');
    expect(fs.statSync(cdisk).size).toBe(0.25 * 1024 ** 3);
    expect(fs.statSync(cdisk).blocks * 512).toBeLessThanOrEqual(4 * 1024 * 1024); // one data chunk, the rest holes
    expect(events.some((e) => e.name === 'job.progress')).toBe(true);

    // The ISO is shared: not pre-checked. The own disk is.
    const dplan = await svc['vm.deletePlan']({ uuid: clone.uuid });
    expect(dplan.disks.map((d) => [d.media, d.defaultChecked, d.sharedWith])).toEqual([
      ['disk', true, []],
      ['cdrom', false, ['grub']],
    ]);
    await expect(svc['vm.delete']({ uuid: clone.uuid, deleteDisks: ['/etc/passwd'] })).rejects.toThrow(/not a disk/);
    await svc['vm.delete']({ uuid: clone.uuid, deleteDisks: [cdisk] });
    expect(fs.existsSync(cdisk)).toBe(false);
    expect(fs.existsSync(iso)).toBe(true);
    expect(fs.existsSync(path.join(svc.paths.vms, `${clone.uuid}.json`))).toBe(false);
  });

  it('refuses to clone a running VM and rejects a taken name', async () => {
    const vm = (await svc['vm.create'](req()).then((r) => r.vm))!;
    expect((await svc['vm.clone']({ uuid: vm.uuid, name: 'grub' })).errors[0]!.field).toBe('name');
    await svc['vm.action']({ uuid: vm.uuid, action: 'start' });
    expect((await svc['vm.clonePlan']({ uuid: vm.uuid })).blocker).toMatch(/shut off or paused/);
    await expect(svc['vm.clone']({ uuid: vm.uuid, name: 'x' })).rejects.toThrow(/shut off or paused/);
  });

  it('copySparse cancels and removes the partial file', async () => {
    const src = path.join(tmp, 'big');
    await fsp.writeFile(src, Buffer.alloc(8 * 1024 * 1024, 7));
    const ac = new AbortController();
    const dst = path.join(tmp, 'copy');
    const p = copySparse(src, dst, (done) => done > 0 && ac.abort(), ac.signal);
    await expect(p).rejects.toThrow(/cancelled/);
    expect(fs.existsSync(dst)).toBe(false);
  });
});

describe('copySparse', () => {
  it('copies odd sizes exactly, keeping holes at 64 KiB grain', async () => {
    const src = path.join(tmp, 'odd');
    const size = 9 * 1024 * 1024 + 12345;
    const fh = await fsp.open(src, 'w');
    await fh.truncate(size);
    await fh.write(Buffer.from('head'), 0, 4, 0);
    await fh.write(Buffer.from('mid'), 0, 3, 5 * 1024 * 1024 + 70000);
    await fh.write(Buffer.from('tail'), 0, 4, size - 4);
    await fh.close();
    const dst = path.join(tmp, 'odd-copy');
    await copySparse(src, dst, () => undefined);
    expect(Buffer.compare(fs.readFileSync(src), fs.readFileSync(dst))).toBe(0);
    expect(fs.statSync(dst).blocks * 512).toBeLessThanOrEqual(3 * 64 * 1024 + 8192);
  });
});
