// The snapshot verbs against a real per-user service and the real engine: `vireo install`
// starts a VM from the GRUB rescue ISO with a new qcow2 disk; snapshot-create-as while it
// runs (disk + RAM: it keeps running), bad and taken names refused; destroy, then a
// disk-only snapshot on top; snapshot-list and --tree in virsh's shapes; snapshot-current;
// snapshot-revert to the live one starts the VM again; snapshot-delete; qemu-img agrees.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, distReady, engineCapability, stopServiceAndWait, isolatedEnv, runVireo } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const qemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const why =
  distReady() ??
  engineCapability() ??
  (fs.existsSync(ISO) ? null : `${ISO} is missing (apt-get install grub-rescue-pc)`) ??
  (qemuImg ? null : 'qemu-img is missing (apt-get install qemu-utils)');
if (why) console.log(`SKIP vireo snapshot verbs e2e: ${why}`);

const { dir, env } = isolatedEnv('vireo-snapverbs-');
const disk = path.join(dir, 'data', 'vireo', 'images', 'grub.qcow2');

const vireo = (args: string[], timeoutMs = 60000) => runVireo(env, args, timeoutMs);

afterAll(async () => {
  await stopServiceAndWait(env);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!!why)('vireo snapshot-* verbs', () => {
  it('create-as (live and offline), list, --tree, current, revert, delete', async () => {
    let r = await vireo(['install', '--name', 'grub', '--cdrom', ISO, '--disk', 'size=1', '--memory', '64', '--network', 'none', '--noautoconsole']);
    expect(r.code, r.err).toBe(0);
    expect(fs.existsSync(disk)).toBe(true);
    await new Promise((res) => setTimeout(res, 2000)); // SeaBIOS is up

    r = await vireo(['snapshot-create-as', 'grub', 'live', '--description', 'while running']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('Domain snapshot live created\n');
    expect((await vireo(['domstate', 'grub'])).out).toBe('running\n\n');
    r = await vireo(['snapshot-create-as', 'grub', 'live']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/name: grub already has a snapshot named 'live'/);
    r = await vireo(['snapshot-create-as', 'grub', 'a/b']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/name: Snapshot names cannot contain "\/"/);
    expect((await vireo(['snapshot-current', 'grub', '--name'])).out).toBe('live\n');

    expect((await vireo(['destroy', 'grub'])).code).toBe(0);
    r = await vireo(['snapshot-create-as', 'grub', '--name', 'off']);
    expect(r.code, r.err).toBe(0);
    r = await vireo(['snapshot-list', 'grub']);
    expect(r.out).toMatch(/^ Name\s+Creation Time\s+State\n-+\n live\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000\s+running\n off\s+.*\+0000\s+disk-snapshot\n/);
    r = await vireo(['snapshot-list', 'grub', '--tree']);
    expect(r.out).toBe('live\n  |\n  +- off\n\n');
    const listed = spawnSync('qemu-img', ['snapshot', '-l', disk], { encoding: 'utf8' }).stdout;
    expect(listed).toMatch(/\blive\b/);
    expect(listed).toMatch(/\boff\b/);

    // Back to the live one: the VM runs again from it.
    r = await vireo(['snapshot-revert', 'grub', 'live'], 120000);
    expect(r.code, r.err).toBe(0);
    expect((await vireo(['domstate', 'grub'])).out).toBe('running\n\n');
    expect((await vireo(['snapshot-current', 'grub'])).out).toBe('live\n');

    r = await vireo(['snapshot-delete', 'grub', 'off']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('Domain snapshot off deleted\n');
    r = await vireo(['snapshot-delete', 'grub', 'off']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/grub has no snapshot named 'off'/);
    expect((await vireo(['destroy', 'grub'])).code).toBe(0);
    const after = spawnSync('qemu-img', ['snapshot', '-l', disk], { encoding: 'utf8' }).stdout;
    expect(after).toMatch(/\blive\b/);
    expect(after).not.toMatch(/\boff\b/);
    const check = spawnSync('qemu-img', ['check', disk], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  }, 300000);
});
