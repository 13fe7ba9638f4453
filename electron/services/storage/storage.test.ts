// Pools and volumes with real files in temp dirs and the real vireo-img (skipped,
// with the reason printed, where it is not built). qemu-img, when installed, is
// asked to agree about what we made.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VireoService } from '../app';
import { dispatch } from '../dispatch';
import { resolvePaths } from '../paths';
import { inProcessLauncher } from '../__tests__/fake-engine';
import { copyDisk } from './copy';
import { imgToolProblem } from './img';
import { type VmUse, StorageError, StorageService } from './storage';

const why = imgToolProblem();
if (why) console.log(`SKIP storage tests: ${why}`);
const qemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let tmp: string;
let vms: VmUse[];
let changed: string[];
let st: StorageService;

const qinfo = (f: string) => JSON.parse(spawnSync('qemu-img', ['info', '--output', 'json', f], { encoding: 'utf8' }).stdout);

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-storage-'));
  vms = [];
  changed = [];
  st = await new StorageService({
    defsDir: path.join(tmp, 'cfg', 'pools'),
    defaultPath: path.join(tmp, 'images'),
    usage: () => vms,
    onChanged: (p) => changed.push(p),
  }).init();
});

afterEach(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe.skipIf(!!why)('storage pools and volumes', () => {
  it('creates qcow2 and raw volumes; lists format, virtual size, allocation', async () => {
    const q = await st.createVolume({ pool: 'default', name: 'data', format: 'qcow2', capacityBytes: 10 * GiB });
    expect(q).toMatchObject({ name: 'data.qcow2', format: 'qcow2', capacityBytes: 10 * GiB, backing: null, usedBy: [], backs: [] });
    expect(q.allocationBytes).toBeLessThan(2 * MiB);
    const r = await st.createVolume({ pool: 'default', name: 'scratch.img', format: 'raw', capacityBytes: 64 * MiB });
    expect(r).toMatchObject({ format: 'raw', capacityBytes: 64 * MiB, allocationBytes: 0 });
    const list = await st.listVolumes('default');
    expect(list.map((v) => [v.name, v.format, v.capacityBytes])).toEqual([
      ['data.qcow2', 'qcow2', 10 * GiB],
      ['scratch.img', 'raw', 64 * MiB],
    ]);
    expect(changed).toEqual(['default', 'default']);
    if (qemuImg) expect(qinfo(q.path)).toMatchObject({ format: 'qcow2', 'virtual-size': 10 * GiB });
  });

  it('refuses a name clash, a bad name, and leaves no temporary behind', async () => {
    await st.createVolume({ pool: 'default', name: 'a.qcow2', format: 'qcow2', capacityBytes: GiB });
    const before = fs.readFileSync(path.join(tmp, 'images', 'a.qcow2'));
    await expect(st.createVolume({ pool: 'default', name: 'a.qcow2', format: 'raw', capacityBytes: MiB })).rejects.toThrow(/already exists/);
    await expect(st.createVolume({ pool: 'default', name: '../evil', format: 'raw', capacityBytes: MiB })).rejects.toThrow(/letters, digits/);
    await expect(st.createVolume({ pool: 'nope', name: 'x', format: 'raw', capacityBytes: MiB })).rejects.toThrow(/No storage pool named 'nope'/);
    await expect(st.createVolume({ pool: 'default', name: 'zero', format: 'raw', capacityBytes: 0 })).rejects.toThrow(/larger than 0/);
    expect(fs.readFileSync(path.join(tmp, 'images', 'a.qcow2')).equals(before)).toBe(true);
    expect(fs.readdirSync(path.join(tmp, 'images'))).toEqual(['a.qcow2']);
  });

  it('a failed vireo-img create leaves nothing (backing that is not an image of that format)', async () => {
    const bogus = path.join(tmp, 'bogus.qcow2');
    fs.writeFileSync(bogus, 'QFI\xfbgarbage', 'latin1');
    await expect(st.createVolume({ pool: 'default', name: 'o', format: 'qcow2', capacityBytes: 0, backing: bogus })).rejects.toThrow(StorageError);
    expect(fs.readdirSync(path.join(tmp, 'images'))).toEqual([]);
  });

  it('a linked overlay: backing resolved, protected from delete, refused for raw; overlay deletable', async () => {
    const base = await st.createVolume({ pool: 'default', name: 'base', format: 'raw', capacityBytes: 32 * MiB });
    await expect(st.createVolume({ pool: 'default', name: 'bad', format: 'raw', capacityBytes: 0, backing: base.path })).rejects.toThrow(/Only a qcow2/);
    await expect(st.createVolume({ pool: 'default', name: 'small', format: 'qcow2', capacityBytes: MiB, backing: base.path })).rejects.toThrow(/at least/);
    const ov = await st.createVolume({ pool: 'default', name: 'ov', format: 'qcow2', capacityBytes: 0, backing: base.path });
    expect(ov).toMatchObject({ format: 'qcow2', capacityBytes: 32 * MiB, backing: base.path, backingFormat: 'raw' });
    // depth 2: an overlay of the overlay keeps both below it protected
    const ov2 = await st.createVolume({ pool: 'default', name: 'ov2', format: 'qcow2', capacityBytes: 0, backing: ov.path });
    const list = await st.listVolumes('default');
    expect(list.find((v) => v.name === 'base.img')!.backs.sort()).toEqual([ov.path, ov2.path].sort());
    await expect(st.deleteVolume({ pool: 'default', name: 'base.img' })).rejects.toThrow(/base\.img is the backing file of ov\.qcow2, ov2\.qcow2/);
    await expect(st.deleteVolume({ pool: 'default', name: 'ov.qcow2' })).rejects.toThrow(/backing file of ov2\.qcow2/);
    // nor shrunk (an overlay would read zeros past the base's new end); grown it may be
    await expect(st.resizeVolume({ pool: 'default', name: 'base.img', capacityBytes: 16 * MiB, shrink: true })).rejects.toThrow(/base\.img is the backing file of ov\.qcow2, ov2\.qcow2: shrinking/);
    expect(fs.statSync(base.path).size).toBe(32 * MiB);
    expect(fs.existsSync(base.path)).toBe(true);
    await st.deleteVolume({ pool: 'default', name: 'ov2.qcow2' });
    await st.deleteVolume({ pool: 'default', name: 'ov.qcow2' });
    await st.deleteVolume({ pool: 'default', name: 'base.img' });
    expect(fs.readdirSync(path.join(tmp, 'images'))).toEqual([]);
    if (qemuImg) expect(spawnSync('qemu-img', ['info', ov.path]).status).not.toBe(0);
  });

  it('an overlay in another pool (relative backing path) still protects its base', async () => {
    const other = path.join(tmp, 'other');
    fs.mkdirSync(other);
    await st.definePool('fast', other);
    const base = await st.createVolume({ pool: 'default', name: 'base', format: 'qcow2', capacityBytes: GiB });
    // qemu-img style relative backing name, resolved against the overlay's directory
    const r = spawnSync(path.join(__dirname, '../../../native/out/core/vireo-img'), ['create', '-f', 'qcow2', '-b', '../images/base.qcow2', '-F', 'qcow2', path.join(other, 'rel.qcow2')]);
    expect(r.status).toBe(0);
    const [rel] = await st.listVolumes('fast');
    expect(rel!.backing).toBe(base.path);
    await expect(st.deleteVolume({ pool: 'default', name: 'base.qcow2' })).rejects.toThrow(/backing file of rel\.qcow2/);
  });

  it('in use by a running VM: no resize, no delete; a shut-off VM\'s disk is not deleted either', async () => {
    const v = await st.createVolume({ pool: 'default', name: 'disk', format: 'qcow2', capacityBytes: GiB });
    vms = [{ name: 'web', running: true, paths: [v.path] }];
    expect((await st.listVolumes('default'))[0]!.usedBy).toEqual([{ name: 'web', running: true }]);
    await expect(st.resizeVolume({ pool: 'default', name: 'disk.qcow2', capacityBytes: 2 * GiB })).rejects.toThrow(/running VM web/);
    await expect(st.deleteVolume({ pool: 'default', name: 'disk.qcow2' })).rejects.toThrow(/running VM web/);
    vms = [{ name: 'web', running: false, paths: [v.path] }];
    await expect(st.deleteVolume({ pool: 'default', name: 'disk.qcow2' })).rejects.toThrow(/is a disk of web/);
    // a running VM reading it through an overlay blocks the resize too
    const ov = path.join(tmp, 'images', 'ov.qcow2');
    await st.createOverlay(ov, v.path);
    vms = [{ name: 'clone', running: true, paths: [ov] }];
    await expect(st.resizeVolume({ pool: 'default', name: 'disk.qcow2', capacityBytes: 2 * GiB })).rejects.toThrow(/running VM clone/);
    expect(fs.existsSync(v.path)).toBe(true);
  });

  it('resizes qcow2 and raw: grows, shrinks only when asked (vol-resize --shrink)', async () => {
    const q = await st.createVolume({ pool: 'default', name: 'q', format: 'qcow2', capacityBytes: GiB });
    const r = await st.createVolume({ pool: 'default', name: 'r', format: 'raw', capacityBytes: MiB });
    expect((await st.resizeVolume({ pool: 'default', name: 'q.qcow2', capacityBytes: 3 * GiB })).capacityBytes).toBe(3 * GiB);
    expect((await st.resizeVolume({ pool: 'default', name: 'r.img', capacityBytes: 8 * MiB })).capacityBytes).toBe(8 * MiB);
    await expect(st.resizeVolume({ pool: 'default', name: 'q.qcow2', capacityBytes: GiB })).rejects.toThrow(/Shrinking is not supported/);
    expect(fs.statSync(r.path).size).toBe(8 * MiB);
    // virsh vol-resize --shrink: both formats get smaller.
    expect((await st.resizeVolume({ pool: 'default', name: 'r.img', capacityBytes: 2 * MiB, shrink: true })).capacityBytes).toBe(2 * MiB);
    expect(fs.statSync(r.path).size).toBe(2 * MiB);
    expect((await st.resizeVolume({ pool: 'default', name: 'q.qcow2', capacityBytes: 2 * GiB, shrink: true })).capacityBytes).toBe(2 * GiB);
    if (qemuImg) {
      expect(qinfo(q.path)['virtual-size']).toBe(2 * GiB);
      expect(spawnSync('qemu-img', ['check', q.path]).status).toBe(0);
    }
  });

  it('user-defined pools: stored atomically, reloaded, validated; the default pool stays', async () => {
    const d = path.join(tmp, 'vmstore');
    fs.mkdirSync(d);
    const p = await st.definePool('bulk', d);
    expect(p).toMatchObject({ name: 'bulk', path: d, isDefault: false, volumeCount: 0, problem: null });
    expect(p.capacityBytes).toBeGreaterThan(0);
    expect(p.allocationBytes).toBeLessThanOrEqual(p.capacityBytes);
    await expect(st.definePool('bulk2', d)).rejects.toThrow(/already the pool 'bulk'/);
    await expect(st.definePool('BULK', path.join(tmp))).rejects.toThrow(/already exists/);
    await expect(st.definePool('x', path.join(tmp, 'missing'))).rejects.toThrow(/does not exist/);
    await expect(st.definePool('y', 'relative/dir')).rejects.toThrow(/full path/);
    await expect(st.undefinePool('default')).rejects.toThrow(/default pool/);
    expect(fs.readdirSync(path.join(tmp, 'cfg', 'pools'))).toEqual(['bulk.json']);
    const again = await new StorageService({ defsDir: path.join(tmp, 'cfg', 'pools'), defaultPath: path.join(tmp, 'images'), usage: () => [] }).init();
    expect((await again.listPools()).map((x) => [x.name, x.isDefault])).toEqual([
      ['default', true],
      ['bulk', false],
    ]);
    await again.undefinePool('bulk');
    expect(fs.readdirSync(path.join(tmp, 'cfg', 'pools'))).toEqual([]);
    expect(fs.existsSync(d)).toBe(true);
  });

  it('copyDisk: same bytes, holes kept (reflink or sparse)', async () => {
    const src = path.join(tmp, 'src.img');
    const fh = fs.openSync(src, 'w');
    fs.writeSync(fh, Buffer.from('HEAD'), 0, 4, 0);
    fs.writeSync(fh, Buffer.from('TAIL'), 0, 4, 256 * MiB - 4);
    fs.closeSync(fh);
    const dst = path.join(tmp, 'dst.img');
    const how = await copyDisk(src, dst, () => undefined);
    expect(['reflink', 'vireo-img', 'cp-sparse', 'sparse']).toContain(how);
    expect(fs.statSync(dst).size).toBe(256 * MiB);
    expect(fs.statSync(dst).blocks * 512).toBeLessThan(4 * MiB);
    const b = Buffer.alloc(4);
    const d = fs.openSync(dst, 'r');
    fs.readSync(d, b, 0, 4, 256 * MiB - 4);
    fs.closeSync(d);
    expect(b.toString()).toBe('TAIL');
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('copyDisk without reflink: vireo-img convert copies sparse with progress; cancel leaves nothing', async () => {
    if (imgToolProblem()) return console.log(`SKIP: ${imgToolProblem()}`);
    const prev = process.env.VIREO_NO_REFLINK;
    process.env.VIREO_NO_REFLINK = '1';
    try {
      const src = path.join(tmp, 'big.img');
      const fh = fs.openSync(src, 'w');
      const chunk = Buffer.alloc(MiB, 7);
      for (let i = 0; i < 64; i += 2) fs.writeSync(fh, chunk, 0, MiB, i * MiB);
      fs.ftruncateSync(fh, 128 * MiB);
      fs.closeSync(fh);
      const dst = path.join(tmp, 'big-copy.img');
      const seen: number[] = [];
      const how = await copyDisk(src, dst, (done) => seen.push(done));
      expect(how).toBe('vireo-img');
      expect(fs.readFileSync(dst).equals(fs.readFileSync(src))).toBe(true);
      expect(fs.statSync(dst).blocks * 512).toBeLessThan(40 * MiB);
      expect(seen[seen.length - 1]).toBe(128 * MiB);
      // cancelled before it starts and while it runs: no target, no temporary
      const ac = new AbortController();
      ac.abort();
      await expect(copyDisk(src, path.join(tmp, 'c1.img'), () => undefined, ac.signal)).rejects.toThrow(/cancelled/);
      const ac2 = new AbortController();
      const p = copyDisk(src, path.join(tmp, "c2.img"), (d) => void (d > 0 && ac2.abort()), ac2.signal);
      await p.then(() => undefined, (e) => expect(String(e)).toMatch(/cancelled/));
      expect(fs.existsSync(path.join(tmp, 'c1.img'))).toBe(false);
      await new Promise((r) => setTimeout(r, 200));
      expect(fs.readdirSync(tmp).filter((f) => f.startsWith('.') || /^c[12]\.img$/.test(f))).toEqual(fs.existsSync(path.join(tmp, 'c2.img')) ? ['c2.img'] : []);
    } finally {
      if (prev === undefined) delete process.env.VIREO_NO_REFLINK;
      else process.env.VIREO_NO_REFLINK = prev;
    }
  });
});

describe.skipIf(!!why)('VM service: linked clones and the wizard storage step', () => {
  let svc: VireoService;
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-svc-st-'));
    const paths = resolvePaths({ HOME: root, XDG_CONFIG_HOME: path.join(root, 'cfg'), XDG_DATA_HOME: path.join(root, 'data') });
    svc = await new VireoService({ paths, launcher: inProcessLauncher(), host: { cpus: 2, memoryMiB: 4096 } }).init();
  });
  afterEach(async () => {
    svc.shutdown();
    await fsp.rm(root, { recursive: true, force: true });
  });

  const kernel = async () => {
    const k = path.join(root, 'kernel.bin');
    await fsp.writeFile(k, Buffer.alloc(512, 0x90));
    return k;
  };
  const done = (jobId: string) =>
    new Promise<any>((resolve) => {
      const off = svc.onEvent((n, p: any) => {
        if (n === 'job.done' && p.jobId === jobId) (off(), resolve(p));
      });
    });

  it('wizard: qcow2 by request, virtio bus, a disk based on an existing image', async () => {
    const k = await kernel();
    const base = { media: { kind: 'kernel' as const, kernel: k }, os: 'generic', memoryMiB: 64, cpus: 1, network: 'none' as const };
    const a = await svc['vm.create']({ ...base, name: 'a', storage: { kind: 'create', sizeGiB: 2, format: 'qcow2', bus: 'virtio' } });
    expect(a.errors).toEqual([]);
    expect(a.vm!.disks[0]).toMatchObject({ format: 'qcow2', bus: 'virtio', path: path.join(svc.paths.pool, 'a.qcow2') });
    const bad = await svc['vm.create']({ ...base, name: 'b', storage: { kind: 'create', sizeGiB: 2, format: 'raw', backing: a.vm!.disks[0]!.path } });
    expect(bad.errors).toEqual([{ field: 'storage', message: 'A disk based on another image must be qcow2.' }]);
    const missing = await svc['vm.create']({ ...base, name: 'b', storage: { kind: 'create', sizeGiB: 2, backing: '/nonexistent.qcow2' } });
    expect(missing.errors[0]).toMatchObject({ field: 'storage' });
    const b = await svc['vm.create']({ ...base, name: 'b', storage: { kind: 'create', sizeGiB: 2, format: 'qcow2', backing: a.vm!.disks[0]!.path } });
    expect(b.errors).toEqual([]);
    const vol = (await svc['storage.volumes']({ pool: 'default' })).find((v) => v.name === 'b.qcow2')!;
    expect(vol.backing).toBe(a.vm!.disks[0]!.path);
    // no format given (an older client): raw, as before
    const c = await svc['vm.create']({ ...base, name: 'c', storage: { kind: 'create', sizeGiB: 1 } });
    expect(c.vm!.disks[0]).toMatchObject({ format: 'raw', bus: 'ide' });
  });

  it('linked clone: a qcow2 overlay per disk backed by the source; source protected; its VM will not start', async () => {
    const k = await kernel();
    const src = await svc['vm.create']({ media: { kind: 'kernel', kernel: k }, os: 'generic', memoryMiB: 64, cpus: 1, network: 'none', name: 'src', storage: { kind: 'create', sizeGiB: 1, format: 'raw' } });
    const disk = src.vm!.disks[0]!.path;
    const head = () => { const b = Buffer.alloc(4096); const fd = fs.openSync(disk, 'r'); fs.readSync(fd, b, 0, 4096, 0); fs.closeSync(fd); return b; };
    const before = head();
    const r = await svc['vm.clone']({ uuid: src.vm!.uuid, name: 'lc', mode: 'linked' });
    expect(r.errors).toEqual([]);
    const end = await done(r.jobId!);
    expect(end).toMatchObject({ ok: true });
    const clone = svc.store.get(end.vmUuid)!;
    expect(clone.disks[0]).toMatchObject({ format: 'qcow2', path: path.join(svc.paths.pool, 'lc.qcow2') });
    const vols = await svc['storage.volumes']({ pool: 'default' });
    expect(vols.find((v) => v.name === 'lc.qcow2')).toMatchObject({ backing: disk, backingFormat: 'raw', capacityBytes: GiB, usedBy: [{ name: 'lc', running: false }] });
    expect(vols.find((v) => v.name === 'src.img')!.backs).toEqual([clone.disks[0]!.path]);
    if (qemuImg) expect(qinfo(clone.disks[0]!.path)).toMatchObject({ format: 'qcow2', 'backing-filename': disk });

    // Storage tab: refused with the reason, through the contract.
    const del = await dispatch(svc, { t: 'call', id: 1, method: 'storage.volumeDelete', params: { pool: 'default', name: 'src.img' } });
    expect(del).toMatchObject({ t: 'error', code: 'user', message: expect.stringMatching(/src\.img is the backing file of lc\.qcow2 \(lc\)/) });
    // Delete the source VM with its disk: refused, nothing removed; the plan names the clone and does not pre-check it.
    const plan = await svc['vm.deletePlan']({ uuid: src.vm!.uuid });
    expect(plan.disks[0]).toMatchObject({ sharedWith: ['lc'], defaultChecked: false });
    await expect(svc['vm.delete']({ uuid: src.vm!.uuid, deleteDisks: [disk] })).rejects.toThrow(/backing file of lc\.qcow2/);
    expect(svc.store.get(src.vm!.uuid)).toBeDefined();
    // Starting the source would write into the clone's backing file.
    await expect(svc['vm.action']({ uuid: src.vm!.uuid, action: 'start' })).rejects.toThrow(/backing file of lc\.qcow2/);
    expect(head().equals(before)).toBe(true);
    // Delete the clone with its disk: then the source is free again.
    await svc['vm.delete']({ uuid: clone.uuid, deleteDisks: [clone.disks[0]!.path] });
    await svc['storage.volumeDelete']({ pool: 'default', name: 'src.img' }).catch((e) => expect(String(e)).toMatch(/is a disk of src/));
    expect((await svc['vm.deletePlan']({ uuid: src.vm!.uuid })).disks[0]).toMatchObject({ sharedWith: [], defaultChecked: true });
  });

  it('full clone still copies (reflink or sparse); mode omitted = full', async () => {
    const k = await kernel();
    const src = await svc['vm.create']({ media: { kind: 'kernel', kernel: k }, os: 'generic', memoryMiB: 64, cpus: 1, network: 'none', name: 'src', storage: { kind: 'create', sizeGiB: 1, format: 'qcow2' } });
    const r = await svc['vm.clone']({ uuid: src.vm!.uuid, name: 'fc' });
    const end = await done(r.jobId!);
    expect(end.ok).toBe(true);
    const clone = svc.store.get(end.vmUuid)!;
    expect(clone.disks[0]).toMatchObject({ format: 'qcow2', path: path.join(svc.paths.pool, 'fc.qcow2') });
    expect(fs.readFileSync(clone.disks[0]!.path).equals(fs.readFileSync(src.vm!.disks[0]!.path))).toBe(true);
    expect((await svc['storage.volumes']({ pool: 'default' })).find((v) => v.name === 'src.qcow2')!.backs).toEqual([]);
  });
});
