// What stops, pauses, clones and temporary changes leave in a qcow2 image, with the real
// service and engine and a guest that keeps writing its disk (native/guests/diskw.asm: pass after
// pass it writes sectors 1..64 through the BIOS and prints "pass N" once each pass is written):
// - SIGTERM to the VM's engine host: the VM stops gracefully, `qemu-img check` finds the image
//   clean and every pass the guest reported written is there;
// - a paused VM cloned in full: the clone checks clean, holds whole passes, and after the source
//   stops `qemu-img compare` finds the two identical (pause flushed; nothing was written since);
// - run with temporary changes: the guest writes on, the image stays byte-identical.
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, apiCall, buildGuest, distReady, engineCapability, servicePid, startServe } from './harness';

const notBuilt = distReady();
const noEngine = engineCapability();
const noQemuImg = spawnSync('qemu-img', ['--version']).status === 0 ? null : 'qemu-img is not installed';
type Srv = Awaited<ReturnType<typeof startServe>>;
let srv: Srv | undefined;

const NSECT = 64;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Passes the guest has reported written in `log` from `from` on. */
function passes(log: string, from = 0): number[] {
  const t = fs.existsSync(log) ? fs.readFileSync(log, 'latin1') : '';
  return [...t.slice(from > t.length ? 0 : from).matchAll(/pass ([0-9a-f]{8})\r\n/g)].map((m) => parseInt(m[1]!, 16));
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(300);
  }
}

const vmOf = async (s: Srv, name: string) => (await apiCall(s, 'vm.list', {})).find((v: any) => v.name === name);
const waitState = (s: Srv, name: string, state: string, ms = 60000) =>
  waitFor(`${name} ${state}`, async () => {
    const v = await vmOf(s, name);
    return v?.state === state ? v : undefined;
  }, ms);

/**
 * Reads sectors 1..NSECT of a qcow2 image (converted to raw by qemu-img) and checks that each is
 * whole (magic, its number, one pass in all 128 dwords) and that the passes step down by at most one
 * over the range; returns the lowest and highest pass.
 */
function sectorPasses(img: string, dir: string): { min: number; max: number } {
  const raw = path.join(dir, `${path.basename(img)}.raw`);
  const r = spawnSync('qemu-img', ['convert', '-U', '-O', 'raw', img, raw], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const b = fs.readFileSync(raw);
  fs.rmSync(raw);
  const ps: number[] = [];
  for (let n = 1; n <= NSECT; n++) {
    const o = n * 512;
    expect(b.toString('latin1', o, o + 4), `sector ${n} magic`).toBe('VDW1');
    const p = b.readUInt32LE(o + 4);
    expect(b.readUInt32LE(o + 8), `sector ${n} number`).toBe(n);
    for (let i = 12; i < 512; i += 4) expect(b.readUInt32LE(o + i), `sector ${n} dword ${i / 4}`).toBe(((p << 16) | n) >>> 0);
    ps.push(p);
  }
  for (let i = 1; i < ps.length; i++) expect(ps[i - 1]! - ps[i]!, `passes ${ps.join(',')}`).toBeGreaterThanOrEqual(0);
  const min = Math.min(...ps);
  const max = Math.max(...ps);
  expect(max - min).toBeLessThanOrEqual(1);
  return { min, max };
}

const check = (img: string) => spawnSync('qemu-img', ['check', img], { encoding: 'utf8' });
const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

describe.skipIf(!!notBuilt)('disks through stop, pause, clone and temporary changes', () => {
  afterEach(async () => {
    await srv?.stop();
    srv = undefined;
  });

  it('SIGTERM to the engine host, a paused full clone, a temporary-changes run', async (ctx) => {
    if (noEngine) return ctx.skip(`no engine: ${noEngine}`);
    if (noQemuImg) return ctx.skip(noQemuImg);
    srv = await startServe();
    const s = srv;
    const built = path.join(ROOT, 'native', 'out', 'core', 'guests', 'diskw.bin');
    const bin = fs.existsSync(built) ? built : buildGuest('diskw', s.dir);
    if (!bin) return ctx.skip('no diskw guest (nasm missing)');
    const raw = path.join(s.dir, 'w.raw');
    const disk = Buffer.alloc(4 * 1024 * 1024);
    fs.readFileSync(bin).copy(disk, 0);
    fs.writeFileSync(raw, disk);
    const img = path.join(s.dir, 'w.qcow2');
    expect(spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, img]).status).toBe(0);

    const created = await apiCall(s, 'vm.create', {
      media: { kind: 'import', path: img, format: 'qcow2' },
      os: 'generic',
      memoryMiB: 32,
      cpus: 1,
      storage: { kind: 'none' },
      name: 'w',
      network: 'none',
    });
    expect(created.errors).toEqual([]);
    const uuid = created.vm.uuid as string;
    const def = await apiCall(s, 'vm.get', { uuid });
    const edit = { name: def.name, os: def.os, memoryMiB: def.memoryMiB, cpus: def.cpus, boot: def.boot, disks: def.disks, nics: [], serial: { logFile: 'w.log' } };
    expect((await apiCall(s, 'vm.update', { uuid, edit })).errors).toEqual([]);
    const log = path.join(s.dir, 'data', 'vireo', 'logs', 'w.log');
    const logSize = () => (fs.existsSync(log) ? fs.statSync(log).size : 0);
    const waitPasses = async (from: number, n: number, ms = 120000) =>
      waitFor(`${n} passes written`, () => {
        const p = passes(log, from);
        return p.length >= n ? p : undefined;
      }, ms);

    // 1. SIGTERM to the engine host while the guest writes.
    await apiCall(s, 'vm.action', { uuid, action: 'start' });
    await waitPasses(0, 3);
    const svc = servicePid(s.env)!;
    const ps = spawnSync('ps', ['-o', 'pid=,args=', '--ppid', String(svc)], { encoding: 'utf8' }).stdout;
    const host = ps.split('\n').find((l) => l.includes(`--vm ${uuid}`));
    expect(host, ps).toBeTruthy();
    process.kill(Number(host!.trim().split(/\s+/)[0]), 'SIGTERM');
    const off = await waitState(s, 'w', 'shutoff', 30000);
    expect(off.lastExit.kind, JSON.stringify(off.lastExit)).toBe('shutdown');
    const reported = passes(log);
    const lastWritten = reported.at(-1)!;
    const c1 = check(img);
    expect(c1.status, c1.stdout + c1.stderr).toBe(0);
    expect(c1.stdout).toMatch(/No errors were found/);
    const got = sectorPasses(img, s.dir);
    console.log(`SIGTERM: the guest reported pass ${lastWritten}; the image holds passes ${got.min}..${got.max}`);
    expect(got.min).toBeGreaterThanOrEqual(lastWritten);

    // 2. Paused, cloned in full: the clone is consistent and equals the source once it stops.
    let from = logSize();
    await apiCall(s, 'vm.action', { uuid, action: 'start' });
    await waitPasses(from, 2);
    await apiCall(s, 'vm.action', { uuid, action: 'pause' });
    await waitState(s, 'w', 'paused');
    const plan = await apiCall(s, 'vm.clone', { uuid, name: 'w-clone', mode: 'full' });
    expect(plan.errors).toEqual([]);
    const clone = await waitFor('the clone', async () => vmOf(s, 'w-clone'), 60000);
    const cloneImg = clone.disks[0].path as string;
    expect(cloneImg).not.toBe(img);
    const c2 = check(cloneImg);
    expect(c2.status, c2.stdout + c2.stderr).toBe(0);
    const inClone = sectorPasses(cloneImg, s.dir);
    expect(inClone.min).toBeGreaterThanOrEqual(passes(log, from).at(-1)!);
    await apiCall(s, 'vm.action', { uuid, action: 'forceoff' });
    await waitState(s, 'w', 'shutoff', 30000);
    const cmp = spawnSync('qemu-img', ['compare', img, cloneImg], { encoding: 'utf8' });
    expect(cmp.status, cmp.stdout + cmp.stderr).toBe(0);
    expect(cmp.stdout).toMatch(/Images are identical/);

    // 3. Temporary changes: the guest writes on, the image is not touched.
    const before = sha(img);
    const mtime = fs.statSync(img).mtimeMs;
    from = logSize();
    await apiCall(s, 'vm.action', { uuid, action: 'start', temporary: true });
    const tmp = await waitPasses(from, 3);
    expect((await vmOf(s, 'w')).temporary).toBe(true);
    await apiCall(s, 'vm.action', { uuid, action: 'forceoff' });
    await waitState(s, 'w', 'shutoff', 30000);
    console.log(`temporary: the guest wrote passes ${tmp[0]}..${tmp.at(-1)}; the image was not touched`);
    expect(sha(img)).toBe(before);
    expect(fs.statSync(img).mtimeMs).toBe(mtime);
    expect(check(img).status).toBe(0);
  }, 300000);
});
