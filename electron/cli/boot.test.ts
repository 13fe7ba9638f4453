// `vireo boot`: argument parsing, and the real command against the real engine
// (skipped with the reason when the engine or /dev/kvm is unavailable).
import { spawn, spawnSync } from 'node:child_process';
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as os from 'node:os';
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
  it('--snapshot gives every writable disk a throwaway overlay; CD-ROMs stay as they are', () => {
    const o = parseBootArgs(['--snapshot', '--cdrom', 'a.iso', '--disk', 'd.qcow2,format=qcow2', '--disk', 'e.img,format=raw']);
    expect(o.config.disks!.map((d) => [d.path, !!d.snapshot])).toEqual([['a.iso', false], ['d.qcow2', true], ['e.img', true]]);
    expect(parseBootArgs(['--disk', 'd.qcow2,format=qcow2']).config.disks![0]!.snapshot).toBeUndefined();
  });

  it('reads --nic user with QEMU-style options, repeatable; none is the default and clears', () => {
    expect(parseBootArgs(['--cdrom', 'a.iso']).config.nics).toBeUndefined();
    const o = parseBootArgs([
      '--nic', 'user,model=virtio,mac=52:54:00:AA:bb:01,hostfwd=tcp::2222-:22,hostfwd=udp:127.0.0.1:5353-:53,restrict=on',
      '--nic=user',
      '--nic', 'user,model=e1000',
    ]);
    expect(o.config.nics).toEqual([
      { backend: 'user', model: 'virtio', mac: '52:54:00:aa:bb:01', hostfwd: ['tcp::2222-:22', 'udp:127.0.0.1:5353-:53'], restrict: true },
      { backend: 'user' },
      { backend: 'user', model: 'e1000' },
    ]);
    expect(parseBootArgs(['--nic', 'user', '--nic', 'none']).config.nics).toEqual([]);
    expect(parseBootArgs(['--nic', 'user,net=192.168.122.0/24,host=192.168.122.1,dhcpstart=192.168.122.100,dns=192.168.122.3']).config.nics).toEqual([
      { backend: 'user', net: '192.168.122.0/24', host: '192.168.122.1', dhcpStart: '192.168.122.100', dns: '192.168.122.3' },
    ]);
  });
  it('refuses bad --nic values with the reason', () => {
    const bad: Array<[string[], RegExp]> = [
      [['--nic', 'bridge=br0'], /not built yet/],
      [['--nic', 'user,model=rtl8139'], /model=virtio or model=e1000/],
      [['--nic', 'user,mac=01:00:5e:00:00:01'], /multicast/],
      [['--nic', 'user,mac=52:54:00'], /mac=/],
      [['--nic', 'user,hostfwd=tcp::2222'], /hostfwd=/],
      [['--nic', 'user,restrict=maybe'], /restrict=on or off/],
      [['--nic', 'user,net=192.168.122'], /net=A.B.C.D/],
      [['--nic', 'user,dns=fec0::3'], /dns=A.B.C.D/],
      [['--nic', 'user,speed=10'], /unknown option 'speed'/],
      [['--flat', 'k', '--nic', 'user'], /needs the PC/],
      [['--disk', 'd.img,format=vmdk'], /format=raw or qcow2/],
      [['--disk', 'd.img,if=scsi'], /if=ide or virtio/],
    ];
    for (const [args, re] of bad) {
      expect(() => parseBootArgs(args)).toThrow(UsageError);
      expect(() => parseBootArgs(args)).toThrow(re);
    }
  });
  it('reads kernel boot options', () => {
    const o = parseBootArgs(['--kernel', 'k', '--initrd', 'i', '--append', 'console=ttyS0', '--memory', '1G', '--cpus', '2']);
    expect(o.config).toMatchObject({ kernel: 'k', initrd: 'i', append: 'console=ttyS0', memoryMiB: 1024, cpus: 2 });
    // A kernel boots on the full PC: SeaBIOS, then Vireo's option ROM.
    expect(o.config.bios).toBe('/usr/share/seabios/bios.bin');
    expect(o.config.vgaBios).toBe('/usr/share/seabios/vgabios-stdvga.bin');
  });
  it('gives a kernel boot the PC options and keeps --flat bare', () => {
    const o = parseBootArgs(['--kernel', 'k', '--disk', 'd.img', '--cdrom', 'c.iso', '--screenshot-at', '20:s.png', '--keys-at', '3:<Enter>']);
    expect(o.config.disks).toEqual([
      { path: 'd.img', media: 'disk', bus: 'ide', format: 'raw' },
      { path: 'c.iso', media: 'cdrom', readOnly: true, bus: 'ide', format: 'raw' },
    ]);
    // The format comes from format= or the name, never from the content.
    expect(parseBootArgs(['--disk', 'x.qcow2']).config.disks![0]).toMatchObject({ format: 'qcow2', bus: 'ide' });
    expect(parseBootArgs(['--disk', 'x.img,format=qcow2,if=virtio']).config.disks![0]).toEqual({ path: 'x.img', media: 'disk', bus: 'virtio', format: 'qcow2' });
    expect(parseBootArgs(['--disk', 'a,b.img']).config.disks![0]).toMatchObject({ path: 'a,b.img', format: 'raw' });
    expect(o.screenshots).toEqual([{ atS: 20, file: 's.png' }]);
    expect(o.keys).toEqual([{ atS: 3, keys: '<Enter>' }]);
    const f = parseBootArgs(['--flat', 'f.bin']);
    expect(f.config.bios).toBeUndefined();
    expect(() => parseBootArgs(['--flat', 'f.bin', '--disk', 'd.img'])).toThrow(/--flat runs a bare machine/);
    expect(() => parseBootArgs(['--flat', 'f.bin', '--screenshot-at', '1:s.png'])).toThrow(/--flat runs a bare machine/);
  });
  it('defaults to SeaBIOS with CD-ROM and disks', () => {
    const o = parseBootArgs(['--cdrom', 'a.iso', '--disk', 'd.img', '--boot', 'order=dc', '--screenshot-at', '5:s.png', '--keys-at', '7:ctrl-alt-del']);
    expect(o.config.bios).toBe('/usr/share/seabios/bios.bin');
    expect(o.config.disks).toEqual([
      { path: 'a.iso', media: 'cdrom', readOnly: true, bus: 'ide', format: 'raw' },
      { path: 'd.img', media: 'disk', bus: 'ide', format: 'raw' },
    ]);
    expect(o.config.bootOrder).toBe('dc');
    expect(o.screenshots).toEqual([{ atS: 5, file: 's.png' }]);
    expect(o.keys).toEqual([{ atS: 7, keys: 'ctrl-alt-del' }]);
  });
  it('--disk PATH,if=virtio attaches a virtio-blk disk beside IDE ones, with a kernel too', () => {
    const o = parseBootArgs(['--kernel', 'k', '--disk', 'i.qcow2', '--disk', 'v.img,if=virtio', '--cdrom', 'c.iso']);
    expect(o.config.disks).toEqual([
      { path: 'i.qcow2', media: 'disk', bus: 'ide', format: 'qcow2' },
      { path: 'v.img', media: 'disk', bus: 'virtio', format: 'raw' },
      { path: 'c.iso', media: 'cdrom', readOnly: true, bus: 'ide', format: 'raw' },
    ]);
    expect(() => parseBootArgs(['--disk'])).toThrow(/needs a value/);
  });
  it('reads --save-at SECONDS:FILE and --restore FILE', () => {
    const o = parseBootArgs(['--flat', 'f.bin', '--save-at', '2.5:/tmp/s.vstate', '--restore', '/tmp/r.vstate']);
    expect(o.saveAt).toEqual({ atS: 2.5, file: '/tmp/s.vstate' });
    expect(o.restore).toBe('/tmp/r.vstate');
    expect(() => parseBootArgs(['--flat', 'f.bin', '--save-at', 'x:/tmp/s'])).toThrow(UsageError);
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
  it('takes --uuid, or makes a random one', () => {
    const u = '6F1A7B2C-3D4E-4F50-8A61-72839405A6B7';
    expect(parseBootArgs(['--uuid', u]).config.uuid).toBe(u.toLowerCase());
    const a = parseBootArgs(['--kernel', 'k']).config.uuid!;
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseBootArgs(['--kernel', 'k']).config.uuid).not.toBe(a);
    expect(() => parseBootArgs(['--uuid', '6f1a7b2c-3d4e-4f50-8a61-72839405a6b'])).toThrow(/--uuid/);
    expect(() => parseBootArgs(['--uuid', 'not-a-uuid'])).toThrow(/--uuid/);
  });
  it('parses --keys-on TEXT:KEYS (the first unescaped colon ends TEXT) and the power-button options', () => {
    const o = parseBootArgs(['--kernel', 'k', '--keys-on', 'VIREO-KEYS ready:echo a:b >/dev/ttyS0<Enter>', '--keys-on', 'login\\: :root<Enter>',
      '--power-button-on', 'VIREO-BUTTON ready', '--power-button-at', '12.5']);
    expect(o.keysOn).toEqual([{ text: 'VIREO-KEYS ready', keys: 'echo a:b >/dev/ttyS0<Enter>' }, { text: 'login: ', keys: 'root<Enter>' }]);
    expect(o.powerButton).toEqual([{ text: 'VIREO-BUTTON ready' }, { atS: 12.5 }]);
    expect(() => parseBootArgs(['--kernel', 'k', '--keys-on', 'no-colon'])).toThrow(/TEXT:KEYS/);
    expect(() => parseBootArgs(['--kernel', 'k', '--keys-on', ':x'])).toThrow(/TEXT:KEYS/);
    expect(() => parseBootArgs(['--kernel', 'k', '--power-button-at', 'soon'])).toThrow(/seconds/);
    expect(() => parseBootArgs(['--flat', 'f', '--power-button-on', 'x'])).toThrow(/need the PC/);
  });

  it('parses --screenshot-on TEXT:FILE.png (the last colon ends TEXT)', () => {
    const o = parseBootArgs(['--kernel', 'k', '--screenshot-on', 'login: ready:/tmp/a.png', '--screenshot-on', 'x:b.png']);
    expect(o.screenshotsOn).toEqual([{ text: 'login: ready', file: '/tmp/a.png' }, { text: 'x', file: 'b.png' }]);
    expect(() => parseBootArgs(['--kernel', 'k', '--screenshot-on', 'no-colon.png'])).toThrow(/TEXT:FILE.png/);
    expect(() => parseBootArgs(['--kernel', 'k', '--screenshot-on', ':a.png'])).toThrow(/TEXT:FILE.png/);
    expect(() => parseBootArgs(['--kernel', 'k', '--screenshot-on', 'ready:a.jpg'])).toThrow(/must end in .png/);
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
  it('--save-at saves a counting guest and --restore goes on counting in a new process', () => {
    const file = path.join(os.tmpdir(), `vireo-boot-state-${process.pid}.vstate`);
    const args = ['--flat', path.join(guests, 'count.bin'), '--memory', '32M'];
    const a = run([...args, '--save-at', `3:${file}`]);
    expect(a.status).toBe(0);
    expect(a.stderr).toContain(`saved the machine's state to ${file}`);
    const before = a.stdout.split('\r\n').filter((x) => x !== '').map(Number);
    expect(before.length).toBeGreaterThan(2);
    expect(before).toEqual(before.map((_, i) => i + 1));
    const b = run([...args, '--restore', file, '--timeout', '2']);
    expect(b.status).toBe(124);
    // The output of both runs is one count from 1 (a number cut by the save ends in the second).
    const all = (a.stdout + b.stdout).split('\r\n').filter((x) => x !== '').map(Number);
    expect(all.length).toBeGreaterThan(before.length + 2);
    expect(all).toEqual(all.map((_, i) => i + 1));
    // A different machine is refused, naming what differs.
    const c = run(['--flat', path.join(guests, 'count.bin'), '--memory', '64M', '--restore', file]);
    expect(c.status).toBe(1);
    expect(c.stderr).toContain('RAM size: the state file has 32 MiB, this machine has 64 MiB');
    fs.rmSync(file, { force: true });
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
    // A PC reboots on a triple fault; --no-reboot (as QEMU's) ends the run with the crash instead.
    const r = run(['--kernel', path.join(guests, 'crash.bin'), '--memory', '32M', '--no-reboot']);
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
    // An initrd larger than the guest's RAM: named, before anything runs.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-initrd-'));
    try {
      const big = path.join(dir, 'big.img');
      fs.writeFileSync(big, '');
      fs.truncateSync(big, 64 << 20);
      const r3 = run(['--kernel', path.join(guests, 'hello.bin'), '--initrd', big, '--memory', '32M']);
      expect(r3.status).toBe(1);
      expect(r3.stderr).toContain(`initrd '${big}'`);
      expect(r3.stderr).toContain('does not fit in guest RAM');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('boots a kernel on the PC: VGA screenshot, and the disk is there for it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-kboot-cli-'));
    try {
      const disk = path.join(dir, 'd.img');
      fs.writeFileSync(disk, Buffer.alloc(4 << 20));
      const png = path.join(dir, 's.png');
      const onText = path.join(dir, 'on-text.png');
      const never = path.join(dir, 'never.png');
      const r = run(['--kernel', path.join(guests, 'vgabanner.bin'), '--memory', '64M', '--disk', disk,
        '--screenshot-at', `20:${png}`, '--screenshot-on', `disk: VIREO HARDDISK:${onText}`,
        '--screenshot-on', `text the guest never prints:${never}`, '--timeout', '22']);
      expect(r.stdout).toContain('Vireo multiboot guest on the PC board');
      expect(r.stdout).toContain('disk: VIREO HARDDISK');
      expect(r.status).toBe(124);
      for (const f of [png, onText]) {
        const b = fs.readFileSync(f);
        expect(b.subarray(1, 4).toString()).toBe('PNG');
        expect(b.length).toBeGreaterThan(1000);
      }
      // --screenshot-on fired when the line came (well before the 20 s one), and only for text that came.
      expect(fs.statSync(onText).mtimeMs).toBeLessThan(fs.statSync(png).mtimeMs - 5000);
      expect(fs.existsSync(never)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60000);
  it('--keys-on types on the keyboard when the serial port shows TEXT', () => {
    // input.bin (native/guests/input.asm) prints "INPUT ready", then "KEY <text>" for each line typed on the i8042.
    const r = run(['--kernel', path.join(guests, 'input.bin'), '--memory', '64M', '--timeout', '20',
      '--keys-on', 'INPUT ready:vireo Keys-On 42<Enter>', '--keys-on', 'KEY vireo Keys-On 42:second line<Enter>']);
    expect(r.stdout).toContain('INPUT ready');
    expect(r.stdout).toContain('KEY vireo Keys-On 42');
    expect(r.stdout).toContain('KEY second line');  // the second trigger is the first line's echo
    expect(r.status).toBe(124);
  }, 60000);
  it('--power-button-on presses the ACPI power button when the serial port shows TEXT; the guest powers off', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-pwrbtn-'));
    try {
      // acpi_off.bin (native/guests/acpi_off.asm): a boot sector that prints "acpi ready", waits for the
      // button, prints "power button", waits the delay in byte 509 and enters S5 ("powering off").
      const disk = path.join(dir, 'd.img');
      const img = Buffer.alloc(1 << 20);
      fs.readFileSync(path.join(guests, 'acpi_off.bin')).copy(img);
      img[509] = 1;
      fs.writeFileSync(disk, img);
      const r = run(['--disk', `${disk},format=raw`, '--memory', '64M', '--timeout', '60', '--power-button-on', 'acpi ready']);
      expect(r.stdout).toContain('power button');
      expect(r.stdout).toContain('powering off');
      expect(r.status).toBe(0);  // the guest's own power-off
      // Never pressed: the same guest waits until the time limit.
      const idle = run(['--disk', `${disk},format=raw`, '--memory', '64M', '--timeout', '15', '--power-button-on', 'text the guest never prints']);
      expect(idle.stdout).toContain('acpi ready');
      expect(idle.stdout).not.toContain('power button');
      expect(idle.status).toBe(124);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120000);
  it('says what to do when /dev/kvm is missing', () => {
    const r = run(['--kernel', path.join(guests, 'hello.bin')], { env: { VIREO_KVM_DEVICE: '/nonexistent/kvm' } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('/nonexistent/kvm does not exist');
    expect(r.stderr).toContain('modprobe');
  });
  const rescueIso = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
  it.skipIf(!fs.existsSync(rescueIso))('--nic user: a taken host port for a forward is an error naming the card and the port', async () => {
    const held = net.createServer();
    await new Promise<void>((res) => held.listen(0, '127.0.0.1', res));
    const port = (held.address() as net.AddressInfo).port;
    const r = run(['--cdrom', rescueIso, '--nic', `user,hostfwd=tcp:127.0.0.1:${port}-:22`]);
    held.close();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`network card 1: port forward tcp 127.0.0.1:${port} -> guest port 22`);
    expect(r.stderr).toContain('already in use');
  });
  it.skipIf(!fs.existsSync(rescueIso)).each(['virtio', 'e1000'])('--nic user,model=%s: the host side of a port forward listens while the VM runs', async (model) => {
    const probe = net.createServer();
    await new Promise<void>((res) => probe.listen(0, '127.0.0.1', res));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((res) => probe.close(() => res()));
    const child = spawn(process.execPath, [vireo, 'boot', '--cdrom', rescueIso,
      '--nic', `user,model=${model},hostfwd=tcp:127.0.0.1:${port}-:22`, '--timeout', '15'], { stdio: ['pipe', 'ignore', 'pipe'] });
    // Up to 12 s for the engine to come up: a busy 2-core host (CI beside a guest boot) is slow to start it.
    const connects = async () => {
      for (let i = 0; i < 120; i++) {
        const ok = await new Promise<boolean>((res) => {
          const s = net.connect(port, '127.0.0.1', () => { s.destroy(); res(true); });
          s.on('error', () => res(false));
        });
        if (ok) return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };
    expect(await connects()).toBe(true);
    const status = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    expect(status).toBe(124);
  }, 45000);
  it('times out with status 124', () => {
    const r = run(['--kernel', path.join(guests, 'echo.bin'), '--memory', '32M', '--timeout', '1']);
    expect(r.status).toBe(124);
    expect(r.stderr).toContain('timed out after 1 s');
  });
});
