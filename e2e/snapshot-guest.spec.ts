// Snapshot -> the guest writes to its disk -> revert, seen by the guest, through the real
// service, engine and CLI: native/guests/snapmark.asm (a boot sector on a qcow2 disk that
// writes a marker letter to sector 1 and, on COM1 commands sent with `vireo console`, writes
// the next letter or reads the sector back, numbering its operations in RAM) writes A and
// reads A; `vireo snapshot-create-as` takes a disk + RAM snapshot; it writes and reads B;
// `vireo snapshot-revert` brings back the snapshot's moment: the guest's next operation is
// "#02 read A (last wrote A)" (no new boot, the old content), and it goes on from there.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, ROOT, apiCall, buildGuest, distReady, engineCapability, launchApp, runVireo, waitVmState } from './harness';

const notBuilt = distReady();
const noEngine = engineCapability();
const qemuImg = spawnSync('qemu-img', ['--version']).status === 0;
let app: App | undefined;

/** Types `bytes` on the VM's serial console: `vireo console NAME` with them piped in (it leaves at the end of its input). */
function serialIn(env: NodeJS.ProcessEnv, name: string, bytes: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), 'console', name], { env, stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => (p.kill('SIGKILL'), reject(new Error(`vireo console ${name} did not leave:\n${err}`))), 30000);
    p.on('exit', (code) => (clearTimeout(t), resolve(code)));
    p.stdin.end(bytes);
  });
}

describe.skipIf(!!notBuilt)('snapshot, write, revert: what the guest reads', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('after snapshot-revert the guest goes on from the snapshot’s moment and reads the old marker from its disk', async (ctx) => {
    if (noEngine) return ctx.skip(`no engine: ${noEngine}`);
    if (!qemuImg) return ctx.skip('qemu-img is missing (apt-get install qemu-utils)');
    app = await launchApp();
    const a = app;
    const built = path.join(ROOT, 'native', 'out', 'core', 'guests', 'snapmark.bin');
    const bin = fs.existsSync(built) ? built : buildGuest('snapmark', a.dir);
    if (!bin) return ctx.skip('no snapmark guest (nasm missing)');
    const raw = path.join(a.dir, 'snapmark.img');
    const img = Buffer.alloc(1024 * 1024);
    fs.readFileSync(bin).copy(img, 0);
    fs.writeFileSync(raw, img);
    const disk = path.join(a.dir, 'snapmark.qcow2');
    const conv = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk], { encoding: 'utf8' });
    expect(conv.status, conv.stderr).toBe(0);

    const r0 = await apiCall(a, 'vm.create', {
      media: { kind: 'import', path: disk, format: 'qcow2' },
      os: 'generic',
      memoryMiB: 32,
      cpus: 1,
      storage: { kind: 'none' },
      name: 'snap',
      network: 'none',
    });
    expect(r0.errors).toEqual([]);
    const def = await apiCall(a, 'vm.get', { uuid: r0.vm.uuid });
    const edit = { name: 'snap', os: def.os, memoryMiB: def.memoryMiB, cpus: def.cpus, boot: def.boot, disks: def.disks, nics: [], serial: { logFile: 'snap.log' } };
    expect((await apiCall(a, 'vm.update', { uuid: r0.vm.uuid, edit })).errors).toEqual([]);
    const logFile = path.join(a.dir, 'data', 'vireo', 'logs', 'snap.log');
    const com1 = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''); // each engine host appends
    const count = (line: string) => com1().split(line).length - 1;
    const vireo = (args: string[]) => runVireo(a.env, args, 120000);
    const op = async (cmd: 'r' | 'w', reply: string, times = 1) => {
      expect(await serialIn(a.env, 'snap', cmd)).toBe(0);
      await expect.poll(() => count(reply + '\r\n'), { timeout: 60000, interval: 250 }).toBe(times);
    };

    let r = await vireo(['start', 'snap']);
    expect(r.code, r.err).toBe(0);
    await expect.poll(() => count('#00 wrote A\r\n'), { timeout: 90000, interval: 500 }).toBe(1);
    await op('r', '#01 read A (last wrote A)');

    r = await vireo(['snapshot-create-as', 'snap', 'markA']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('Domain snapshot markA created\n');
    expect((await vireo(['domstate', 'snap'])).out).toBe('running\n\n');
    await op('w', '#02 wrote B');
    await op('r', '#03 read B (last wrote B)');

    // As virsh, a running VM is stopped by the revert; the disk + RAM snapshot runs it again.
    const before = com1().length;
    r = await vireo(['snapshot-revert', 'snap', 'markA']);
    expect(r.code, r.err).toBe(0);
    expect((await vireo(['domstate', 'snap'])).out).toBe('running\n\n');
    await waitVmState(a.page, 'snap', ['running']);
    await op('r', '#02 read A (last wrote A)');
    await op('w', '#03 wrote B');
    await op('r', '#04 read B (last wrote B)');
    const after = com1().slice(before);
    console.log(`snapmark COM1 after the revert:\n${after.trimEnd()}`);
    expect(count('#00 wrote A')).toBe(1); // no new boot: it resumed at the snapshot's moment
    expect(after).not.toContain('?');
    expect(after.startsWith('#02 read A (last wrote A)\r\n')).toBe(true);

    r = await vireo(['destroy', 'snap']);
    expect(r.code, r.err).toBe(0);
    await waitVmState(a.page, 'snap', ['shutoff']);
    const check = spawnSync('qemu-img', ['check', disk], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(spawnSync('qemu-img', ['snapshot', '-l', disk], { encoding: 'utf8' }).stdout).toMatch(/\bmarkA\b/);
  }, 400000);
});
