// `vireo boot`: argument parsing, and the real command against the real engine
// (skipped with the reason when the engine or /dev/kvm is unavailable).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitStatus, parseBootArgs, parseMemory, UsageError } from './boot';

const root = path.resolve(__dirname, '..', '..');
const vireo = path.join(root, 'bin', 'vireo.js');
const guests = path.join(root, 'native', 'out', 'core', 'guests');
const built = fs.existsSync(path.join(root, 'dist', 'electron', 'cli', 'main.js')) && fs.existsSync(path.join(guests, 'hello.bin'));
const kvmOk = (() => {
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();
const why = !built ? 'vireo is not built (run scripts/setup.sh)' : !kvmOk ? '/dev/kvm is not usable here' : '';
if (why) console.log(`SKIP vireo boot end-to-end: ${why}`);

function run(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  return spawnSync(process.execPath, [vireo, 'boot', ...args], {
    input: opts.input ?? '',
    encoding: 'utf8',
    timeout: 60000,
    env: { ...process.env, ...opts.env },
  });
}

describe('parseBootArgs', () => {
  it('reads kernel boot options', () => {
    const o = parseBootArgs(['--kernel', 'k', '--initrd', 'i', '--append', 'console=ttyS0', '--memory', '1G', '--cpus', '2']);
    expect(o.config).toMatchObject({ kernel: 'k', initrd: 'i', append: 'console=ttyS0', memoryMiB: 1024, cpus: 2 });
    expect(o.config.bios).toBeUndefined();
  });
  it('defaults to SeaBIOS with CD-ROM and disks', () => {
    const o = parseBootArgs(['--cdrom', 'a.iso', '--disk', 'd.img', '--boot', 'order=dc', '--screenshot-at', '5:s.png', '--keys-at', '7:ctrl-alt-del']);
    expect(o.config.bios).toBe('/usr/share/seabios/bios.bin');
    expect(o.config.disks).toEqual([
      { path: 'a.iso', media: 'cdrom', readOnly: true, bus: 'ide' },
      { path: 'd.img', media: 'disk', bus: 'ide' },
    ]);
    expect(o.config.bootOrder).toBe('dc');
    expect(o.screenshots).toEqual([{ atS: 5, file: 's.png' }]);
    expect(o.keys).toEqual([{ atS: 7, keys: 'ctrl-alt-del' }]);
  });
  it('--virtio-disk attaches a virtio-blk disk beside IDE ones, with a kernel too', () => {
    const o = parseBootArgs(['--kernel', 'k', '--disk', 'i.qcow2', '--virtio-disk', 'v.img', '--cdrom', 'c.iso']);
    expect(o.config.disks).toEqual([
      { path: 'i.qcow2', media: 'disk', bus: 'ide' },
      { path: 'v.img', media: 'disk', bus: 'virtio' },
      { path: 'c.iso', media: 'cdrom', readOnly: true, bus: 'ide' },
    ]);
    expect(() => parseBootArgs(['--virtio-disk'])).toThrow(/needs a value/);
  });
  it('serial to a file', () => {
    expect(parseBootArgs(['--kernel', 'k', '--serial', 'file:/tmp/x']).serial).toEqual({ kind: 'file', path: '/tmp/x' });
  });
  it('rejects bad input with a usage error', () => {
    expect(() => parseBootArgs(['--kernel', 'k', '--flat', 'f'])).toThrow(UsageError);
    expect(() => parseBootArgs(['--memory', 'lots'])).toThrow(/not a size/);
    expect(() => parseBootArgs(['--cpus', '0', '--kernel', 'k'])).toThrow(/1 to 64/);
    expect(() => parseBootArgs(['--append', 'x'])).toThrow(/need --kernel/);
    expect(() => parseBootArgs(['--bogus'])).toThrow(/unknown option/);
  });
  it('parses memory sizes', () => {
    expect(parseMemory('256M')).toBe(256);
    expect(parseMemory('2G')).toBe(2048);
    expect(parseMemory('512')).toBe(512);
    expect(() => parseMemory('8M')).toThrow(/at least 16M/);
  });
  it('maps final states to exit statuses', () => {
    expect(exitStatus({ state: 'stopped', reason: { kind: 'exit', code: 0x21, message: '' } })).toBe(67);
    expect(exitStatus({ state: 'stopped', reason: { kind: 'poweroff', message: '' } })).toBe(0);
    expect(exitStatus({ state: 'crashed', reason: { kind: 'triple-fault', message: '' } })).toBe(2);
  });
});

describe.skipIf(!!why)('vireo boot (real engine)', () => {
  it('prints the guest serial output and exits with its debug-exit status', () => {
    const r = run(['--kernel', path.join(guests, 'hello.bin'), '--memory', '64M']);
    expect(r.stdout).toBe('Hello from a Vireo test guest\r\n');
    expect(r.status).toBe(67);
  });
  it('forwards stdin to the serial port', () => {
    const r2 = spawnSync(process.execPath, [vireo, 'boot', '--kernel', path.join(guests, 'echo.bin'), '--memory', '64M'], {
      input: 'x\u0004',
      encoding: 'utf8',
      timeout: 60000,
    });
    expect(r2.stdout).toContain('echo ready');
    expect(r2.stdout).toContain('bye');
    expect(r2.status).toBe(33);
  });
  it('reports a crashed guest with the reason, RIP and bytes there', () => {
    const r = run(['--kernel', path.join(guests, 'crash.bin'), '--memory', '32M']);
    expect(r.status).toBe(2);
    expect(r.stdout).toContain('about to crash');
    expect(r.stderr).toMatch(/the guest stopped: (the guest triple-faulted|KVM internal error)/);
    expect(r.stderr).toMatch(/bytes at RIP 0x[0-9a-f]+: 0f 0b/);
  });
  it('names a missing or non-kernel file', () => {
    const r = run(['--kernel', '/nonexistent/vmlinuz']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("kernel '/nonexistent/vmlinuz' does not exist");
    const r2 = run(['--kernel', '/etc/hostname']);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/'\/etc\/hostname'.*(too small to be a kernel|not a kernel Vireo can boot)/);
  });
  it('says what to do when /dev/kvm is missing', () => {
    const r = run(['--kernel', path.join(guests, 'hello.bin')], { env: { VIREO_KVM_DEVICE: '/nonexistent/kvm' } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('/nonexistent/kvm does not exist');
    expect(r.stderr).toContain('modprobe');
  });
  it('times out with status 124', () => {
    const r = run(['--kernel', path.join(guests, 'echo.bin'), '--memory', '32M', '--timeout', '1']);
    expect(r.status).toBe(124);
    expect(r.stderr).toContain('timed out after 1 s');
  });
});
