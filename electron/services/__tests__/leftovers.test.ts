// Issue 15, finding 9: what a killed service leaves is cleaned up at the next start
// (journalled disk changes finished or undone, hidden temporaries swept), a failed
// final link never deletes someone else's file, and cp dies with its parent.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VireoService } from '../app';
import { DiskBatch } from '../disk-journal';
import { cpCommand } from '../storage/copy';
import { imgToolProblem } from '../storage/img';
import { newVmRequest, testService } from './fake-engine';

let tmp: string;
let iso: string;
const services: VireoService[] = [];

async function service(): Promise<VireoService> {
  const svc = await testService(tmp);
  services.push(svc);
  return svc;
}

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-left-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
});

afterEach(async () => {
  for (const s of services.splice(0)) s.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

const ls = (d: string) => fs.readdirSync(d).sort();

describe('the next start after a kill', () => {
  it('sweeps hidden temporaries from the pools, the VM store and the pool definitions', async () => {
    const svc = await service();
    const junk = [
      path.join(svc.paths.pool, '.grub-clone.img.0123456789ab.tmp'),
      // what a killed `vireo-img convert` (Clone's full copy) leaves
      path.join(svc.paths.pool, '..grub-clone.img.0123456789ab.tmp.vireo-convert-0123456789abcdef'),
      path.join(svc.paths.vms, '.0c4a1e4e-0000-4000-8000-000000000000.json.abcdef012345.tmp'),
    ];
    for (const j of junk) fs.writeFileSync(j, 'partial');
    fs.writeFileSync(path.join(svc.paths.pool, 'keep.img'), 'mine');
    fs.writeFileSync(path.join(svc.paths.pool, '.hidden-but-not-ours'), 'mine');
    await service();
    for (const j of junk) expect(fs.existsSync(j)).toBe(false);
    expect(ls(svc.paths.pool)).toEqual(['.hidden-but-not-ours', 'keep.img']);
  });

  it('removes disks linked into place whose definition was never saved (killed between link and save)', async () => {
    const svc = await service();
    const batch = new DiskBatch(svc.journal, svc.store.newUuid());
    const final = path.join(svc.paths.pool, 'orphan.img');
    fs.writeFileSync(batch.temp(final), 'disk');
    await batch.link();
    expect(fs.existsSync(final)).toBe(true);
    // "killed" here: no save, no done()
    await service();
    expect(ls(svc.paths.pool)).toEqual([]);
    expect(ls(svc.journal.dir)).toEqual([]);
  });

  it('keeps the disks of a definition that was saved (killed before the journal entry was dropped)', async () => {
    const svc = await service();
    const vm = (await svc['vm.create'](newVmRequest(iso, { name: 'alpha', storage: { kind: 'create', sizeGiB: 0.01 } }))).vm!;
    const batch = new DiskBatch(svc.journal, vm.uuid);
    fs.writeFileSync(batch.temp(path.join(svc.paths.pool, 'extra.img')), 'disk');
    await batch.link();
    const again = await service();
    expect(again.store.get(vm.uuid)).toBeDefined();
    expect(ls(svc.paths.pool)).toEqual(['alpha.img', 'extra.img']);
  });

  it('finishes a delete whose definition was removed before its disks (killed in between)', async () => {
    const svc = await service();
    const vm = (await svc['vm.create'](newVmRequest(iso, { name: 'alpha', storage: { kind: 'create', sizeGiB: 0.01 } }))).vm!;
    const disk = vm.disks[0]!.path;
    await svc.journal.record(vm.uuid, 'delete', [{ path: disk }]);
    await svc.store.remove(vm.uuid);
    const again = await service();
    expect(fs.existsSync(disk)).toBe(false);
    expect(again.store.list()).toEqual([]);
    expect(fs.existsSync(iso)).toBe(true);
  });

  it.skipIf(!!imgToolProblem())('removes the snapshots of a VM whose delete was killed after its definition went; a definition that does not load keeps its snapshots and saved state', async () => {
    const svc = await service();
    const mk = async (name: string) => {
      const vm = (await svc['vm.create'](newVmRequest(iso, { name, storage: { kind: 'create', sizeGiB: 0.01, format: 'qcow2' }, network: 'none' }))).vm!;
      expect((await svc['snapshot.create']({ uuid: vm.uuid, name: 's1' })).errors).toEqual([]);
      expect(fs.existsSync(svc.snapshots.dirOf(vm.uuid))).toBe(true);
      return vm;
    };
    const gone = await mk('alpha');
    const broken = await mk('beta');
    const kept = await mk('gamma');
    // alpha: a delete killed between the definition's removal and the snapshots' (app.ts 'vm.delete')
    await svc.journal.record(gone.uuid, 'delete', [{ path: gone.disks[0]!.path }]);
    await svc.store.remove(gone.uuid);
    // beta: its definition no longer loads (damaged by hand): nothing of it is touched
    fs.writeFileSync(svc.store.fileOf(broken.uuid), '{ not json');
    const brokenSave = svc.saves.pathOf(broken.uuid);
    fs.mkdirSync(path.dirname(brokenSave), { recursive: true });
    fs.writeFileSync(brokenSave, 'state');
    // gamma: an atomic write of its snapshot list was killed
    const partial = path.join(svc.snapshots.dirOf(kept.uuid), '.snapshots.json.0123456789ab.tmp');
    fs.writeFileSync(partial, '{');
    const again = await service();
    expect(fs.existsSync(svc.snapshots.dirOf(gone.uuid))).toBe(false);
    expect(fs.existsSync(gone.disks[0]!.path)).toBe(false);
    expect(again.recovered.orphans).toEqual([svc.snapshots.dirOf(gone.uuid)]);
    expect(fs.readdirSync(svc.snapshots.dirOf(broken.uuid))).toEqual(['snapshots.json']);
    expect(fs.existsSync(brokenSave)).toBe(true);
    expect(fs.existsSync(broken.disks[0]!.path)).toBe(true);
    expect(fs.existsSync(partial)).toBe(false);
    expect(again.recovered.temporaries).toContain(partial);
    expect((await again['snapshot.list']({ uuid: kept.uuid })).snapshots.map((x) => x.name)).toEqual(['s1']);
  });

  it('a journalled file replaced by someone else is never removed', async () => {
    const svc = await service();
    const batch = new DiskBatch(svc.journal, svc.store.newUuid());
    const final = path.join(svc.paths.pool, 'name.img');
    fs.writeFileSync(batch.temp(final), 'ours');
    await batch.link();
    fs.rmSync(final);
    fs.writeFileSync(final, 'theirs');
    await service();
    expect(fs.readFileSync(final, 'utf8')).toBe('theirs');
  });
});

describe('a failed final link', () => {
  it('never deletes the file someone else made under the clone\'s name', async () => {
    const svc = await service();
    const vm = (await svc['vm.create'](newVmRequest(iso, { name: 'alpha', storage: { kind: 'create', sizeGiB: 0.01 } }))).vm!;
    const target = path.join(svc.paths.pool, 'alpha-clone.img');
    // Someone creates the chosen name while the clone job runs (its first progress event).
    let planted = false;
    const done = new Promise<any>((resolve) =>
      svc.onEvent((name, p: any) => {
        if (name === 'job.progress' && !planted) {
          planted = true;
          fs.writeFileSync(target, 'someone else');
        }
        if (name === 'job.done') resolve(p);
      }),
    );
    const { jobId } = await svc['vm.clone']({ uuid: vm.uuid, name: 'alpha-clone' });
    expect(jobId).toBeDefined();
    const r = await done;
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/already exists/);
    expect(fs.readFileSync(target, 'utf8')).toBe('someone else');
    expect(ls(svc.paths.pool)).toEqual(['alpha-clone.img', 'alpha.img']);
  });
});

describe('cp and its parent', () => {
  /** A pid no process has (above pid_max): the parent script puts its own pid where cpCommand put this. */
  const PARENT = 4194305;
  const alive = (p: number) => {
    try {
      process.kill(p, 0);
      return !/\) Z /.test(fs.readFileSync(`/proc/${p}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  const comm = (p: number) => {
    try {
      return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  /**
   * A Node process that starts `cp` (blocked for good opening a FIFO nobody writes: only a
   * signal ends it) the way the service does; `prefix`: a command run first, in the same
   * process (exec). With `exitAtOnce` the parent exits as soon as it has started it.
   */
  async function cpUnderParent(prefix: string[], exitAtOnce: boolean): Promise<{ parent: ReturnType<typeof spawn>; pid: number }> {
    const fifo = path.join(tmp, 'fifo');
    const r = spawn('mkfifo', [fifo]);
    await new Promise((res) => r.on('exit', res));
    const [cmd, args] = cpCommand(['--sparse=always', '--', fifo, path.join(tmp, 'out')], PARENT);
    const argv = JSON.stringify([...prefix, cmd, ...args]);
    const parent = spawn(
      process.execPath,
      ['-e', `const a = ${argv}.map((x) => (x === '${PARENT}' ? String(process.pid) : x)); const c = require('child_process').spawn(a[0], a.slice(1), { stdio: 'ignore' }); console.log(c.pid); ${exitAtOnce ? 'process.exit(0)' : 'setInterval(() => {}, 1000)'};`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const pid = await new Promise<number>((resolve) => parent.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
    return { parent, pid };
  }

  it('a cp started by a process that is killed with SIGKILL dies with it', async () => {
    const { parent, pid } = await cpUnderParent([], false);
    // Wait until it is cp itself (setpriv and the guard have exec'd it), blocked on the FIFO.
    for (let i = 0; i < 100 && comm(pid) !== 'cp'; i++) await new Promise((r2) => setTimeout(r2, 20));
    expect(comm(pid)).toBe('cp');
    parent.kill('SIGKILL');
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      gone = !alive(pid);
      if (!gone) await new Promise((r2) => setTimeout(r2, 20));
    }
    if (!gone) process.kill(pid, 'SIGKILL'); // don't leave it behind, then fail
    expect(gone).toBe(true);
  });

  it('a cp whose parent died before it could arrange to die with it does not run (found by e2e/kill-recovery.spec.ts)', async () => {
    // What a service killed right after forking a helper leaves: the fork runs setpriv only
    // after its parent is gone, so PR_SET_PDEATHSIG never fires. Here the parent exits at
    // once and the helper reaches setpriv 0.5 s later, reparented.
    const { parent, pid } = await cpUnderParent(['sh', '-c', 'sleep 0.5; exec "$@"', 'sh'], true);
    await new Promise((r2) => parent.once('exit', r2));
    let gone = false;
    for (let i = 0; i < 150 && !gone; i++) {
      gone = !alive(pid);
      if (!gone) await new Promise((r2) => setTimeout(r2, 20));
    }
    const was = comm(pid);
    if (!gone) process.kill(pid, 'SIGKILL');
    expect(gone, `pid ${pid} (${was}) still runs without its parent`).toBe(true);
  });
});
