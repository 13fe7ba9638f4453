// Backing chains are checked where a disk enters a VM (import, Details) the way
// the engine opens them: each backing file with the format its overlay states,
// never probed; loops, missing formats and over-deep chains refused with the
// chain named (issue 15, finding 3). Real files and the real vireo-img.
import { spawnSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { editOf } from '../../common/contracts/vm';
import { imgToolPath } from '../../cli/img';
import { VireoService } from '../app';
import { resolvePaths } from '../paths';
import { inProcessLauncher, newVmRequest } from '../__tests__/fake-engine';
import { imgToolProblem } from './img';

const why = imgToolProblem();
if (why) console.log(`SKIP backing chain tests: ${why}`);
const qemuImg = spawnSync('qemu-img', ['--version']).status === 0;

const img = (...args: string[]) => {
  const r = spawnSync(imgToolPath(), args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`vireo-img ${args.join(' ')}: ${r.stderr}`);
};

describe.skipIf(!!why)('backing chains on import and attach', () => {
  let svc: VireoService;
  let root: string;
  let iso: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-chain-'));
    iso = path.join(root, 'media.iso');
    await fsp.writeFile(iso, Buffer.alloc(4096, 1));
    const paths = resolvePaths({ HOME: root, XDG_CONFIG_HOME: path.join(root, 'cfg'), XDG_DATA_HOME: path.join(root, 'data') });
    svc = await new VireoService({ paths, launcher: inProcessLauncher(), host: { cpus: 2, memoryMiB: 4096 } }).init();
  });
  afterEach(async () => {
    svc.shutdown();
    await fsp.rm(root, { recursive: true, force: true });
  });
  const importReq = (p: string, format?: 'raw' | 'qcow2', name = 'imp') =>
    newVmRequest(iso, { name, media: { kind: 'import', path: p, ...(format ? { format } : {}) }, storage: { kind: 'none' } });
  // A qcow2 image naming `backing` whose backing-format extension is gone (an old qemu-img, or a guest, wrote it).
  const unstated = async (p: string, backing: string) => {
    img('create', '-q', '-f', 'qcow2', '-b', backing, '-F', 'raw', p);
    const fh = await fsp.open(p, 'r+');
    await fh.write(Buffer.from([0x0b, 0xad, 0xf0, 0x0d]), 0, 4, 112);
    await fh.close();
  };

  it('import: a qcow2 image with a backing file is shown with its chain and needs its format stated', async () => {
    const base = path.join(root, 'base.raw');
    const top = path.join(root, 'top.qcow2');
    img('create', '-q', '-f', 'raw', base, '1M');
    img('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', top);
    const guessed = await svc['vm.create']({ ...importReq(top), dryRun: true });
    expect(guessed.errors).toEqual([{ field: 'media', message: `${top} is a qcow2 image that reads from other files: ${top} (qcow2) → ${base} (raw). Import it as qcow2 only if you trust that chain, or as raw to use the file itself as the disk.` }]);
    const stated = await svc['vm.create'](importReq(top, 'qcow2'));
    expect(stated.errors).toEqual([]);
    expect(stated.vm!.disks[0]).toMatchObject({ path: top, format: 'qcow2' });
    const asRaw = await svc['vm.create'](importReq(top, 'raw', 'imp2'));
    expect(asRaw.vm!.disks[0]).toMatchObject({ path: top, format: 'raw' });
  });

  it('import and attach: a backing file without a stated format is refused with the fix', async () => {
    const secret = path.join(root, 'secret.raw');
    await fsp.writeFile(secret, Buffer.alloc(65536, 0x53));
    const top = path.join(root, 'nofmt.qcow2');
    await unstated(top, secret);
    const r = await svc['vm.create']({ ...importReq(top, 'qcow2'), dryRun: true });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toContain(`names the backing file ${secret} but not its format`);
    expect(r.errors[0]!.message).toContain(`vireo-img rebase -u -b ${secret} -F raw|qcow2 ${top}`);
    // Details: attaching it as a new qcow2 disk is refused the same way.
    const vm = (await svc['vm.create'](newVmRequest(iso, { name: 'host', storage: { kind: 'none' } }))).vm!;
    const edit = editOf(await svc['vm.get']({ uuid: vm.uuid }));
    const att = await svc['vm.update']({ uuid: vm.uuid, edit: { ...edit, disks: [...edit.disks, { path: top, format: 'qcow2', media: 'disk', bus: 'ide' }] } });
    expect(att.errors).toEqual([{ field: `disks.${edit.disks.length}.path`, message: expect.stringContaining('not its format') }]);
    // The fix the message names works; then the chain is accepted.
    img('rebase', '-u', '-b', secret, '-F', 'raw', top);
    expect((await svc['vm.create']({ ...importReq(top, 'qcow2'), dryRun: true })).errors).toEqual([]);
  });

  it.skipIf(!qemuImg)('import: a backing loop is refused and named', async () => {
    const a = path.join(root, 'a.qcow2');
    const b = path.join(root, 'b.qcow2');
    img('create', '-q', '-f', 'qcow2', a, '1M');
    img('create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', b);
    expect(spawnSync('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', a]).status).toBe(0);
    const r = await svc['vm.create']({ ...importReq(b, 'qcow2'), dryRun: true });
    expect(r.errors).toEqual([{ field: 'media', message: `The backing chain loops: ${b} (qcow2) → ${a} (qcow2) → ${b}.` }]);
  });

  it("import: another VM's raw disk stays raw even if its guest wrote a qcow2 header", async () => {
    const owner = (await svc['vm.create'](newVmRequest(iso, { name: 'owner' }))).vm!;
    const disk = owner.disks.find((d) => d.media === 'disk')!;
    expect(disk.format).toBe('raw');
    // The guest writes a real qcow2 image naming a host file into its disk.
    const fake = path.join(root, 'fake.qcow2');
    img('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', fake);
    const bytes = await fsp.readFile(fake);
    const fh = await fsp.open(disk.path, 'r+');
    await fh.write(bytes, 0, bytes.length, 0);
    await fh.close();
    const r = await svc['vm.create'](importReq(disk.path));
    expect(r.errors).toEqual([]);
    expect(r.vm!.disks[0]).toMatchObject({ path: disk.path, format: 'raw' });
  });
});
