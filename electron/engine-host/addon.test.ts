// The native addon through its one loader: events arrive off the vCPU
// threads, and dropping machines leaves no fds or threads behind.
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { NativeMachine, StateEvent } from '../common/engine-api';
import { addonPath, appRoot, loadAddon } from './addon';

const guests = path.join(appRoot(), 'native', 'out', 'core', 'guests');
const why = !fs.existsSync(addonPath())
  ? 'the addon is not built (run scripts/setup.sh)'
  : !fs.existsSync(path.join(guests, 'hello.bin'))
    ? 'test guests are not built (needs nasm)'
    : (loadAddon().kvmProblem() ?? '');
if (why) console.log(`SKIP native addon tests: ${why}`);

function runToEnd(m: NativeMachine): Promise<{ out: string; ev: StateEvent }> {
  return new Promise((resolve) => {
    let out = '';
    m.onSerial((port, data) => {
      if (port === 0) out += Buffer.from(data).toString('latin1');
    });
    m.onState((ev) => {
      if (ev.state === 'stopped' || ev.state === 'crashed') resolve({ out, ev });
    });
    m.start();
  });
}

const count = (dir: string) => fs.readdirSync(dir).length;

describe.skipIf(!!why)('native addon', () => {
  it('boots a guest and reports serial output, then the exit', async () => {
    const { Machine } = loadAddon();
    const m = new Machine({ memoryMiB: 64, cpus: 1, kernel: path.join(guests, 'hello.bin') });
    const { out, ev } = await runToEnd(m);
    expect(out).toBe('Hello from a Vireo test guest\r\n');
    expect(ev.state).toBe('stopped');
    expect(ev.reason).toMatchObject({ kind: 'exit', code: 0x21 });
    expect(m.state).toBe('stopped');
    m.stop();
    expect(m.state).toBe('stopped');
    expect(() => m.start()).toThrow(/cannot start a machine that is stopped/);
  });

  it('perfStats: vCPU time, touched RAM and the CD-ROM bytes SeaBIOS read over ATAPI', async () => {
    const bios = '/usr/share/seabios/bios.bin';
    const iso = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
    if (!fs.existsSync(bios) || !fs.existsSync(iso)) return console.log('SKIP perfStats addon test: no SeaBIOS or GRUB rescue ISO');
    const { Machine } = loadAddon();
    const m = new Machine({ memoryMiB: 64, cpus: 1, bios, disks: [{ path: iso, media: 'cdrom', format: 'raw', readOnly: true }] });
    const before = m.perfStats();
    expect(before).toMatchObject({ vcpus: 1, cpuNs: 0, ramBytes: 64 << 20 });
    expect(before.disks).toEqual([{ path: iso, cdrom: true, readBytes: 0, readOps: 0, writeBytes: 0, writeOps: 0, flushOps: 0 }]);
    expect(before.nics).toEqual([]);
    expect(before.input).toEqual({ droppedKeys: 0, mergedClicks: 0 });
    // Keys typed before the machine runs wait for the guest; past 4,096 the newest are dropped, counted.
    for (let i = 0; i < 5000; i++) m.sendKey('KeyA', i % 2 === 0);
    expect(m.perfStats({ memory: false }).input?.droppedKeys).toBeGreaterThan(0);
    expect(m.perfStats({ memory: false }).input?.droppedKeys).toBeLessThanOrEqual(5000 - 4096);
    m.start();
    try {
      const deadline = Date.now() + 60000;
      while (m.perfStats({ memory: false }).disks[0]!.readBytes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      const p = m.perfStats();
      expect(p.disks[0]!.readBytes).toBeGreaterThan(0);
      expect(p.disks[0]!.readOps).toBeGreaterThan(0);
      expect(p.cpuNs).toBeGreaterThan(0);
      expect(p.residentBytes).toBeGreaterThan(0);
      expect(p.residentBytes).toBeLessThanOrEqual(64 << 20);
      expect(m.perfStats({ memory: false }).residentBytes).toBe(-1);
    } finally {
      m.stop();
    }
  }, 90000);

  it('rejects a bad configuration with a clear error', () => {
    const { Machine } = loadAddon();
    expect(() => new Machine({ memoryMiB: 64, cpus: 1, kernel: '/nonexistent/k' })).toThrow(/\/nonexistent\/k.*No such file/);
    expect(() => new Machine({ memoryMiB: 64, cpus: 0, kernel: path.join(guests, 'hello.bin') })).toThrow(/cpus must be between/);
    expect(() => new Machine({ memoryMiB: 64, cpus: 1, kernel: path.join(guests, 'hello.bin'), uuid: 'not-a-uuid' })).toThrow(
      /uuid 'not-a-uuid' is not a UUID/,
    );
  });

  it('takes network cards: counters and link per NIC, bad ones refused naming the card', () => {
    const bios = '/usr/share/seabios/bios.bin';
    if (!fs.existsSync(bios)) return console.log('SKIP NIC addon test: no SeaBIOS (Debian package seabios)');
    const { Machine } = loadAddon();
    const m = new Machine({
      memoryMiB: 64, cpus: 1, bios,
      nics: [{ backend: 'user', hostfwd: ['tcp:127.0.0.1:0-:22'] }, { mac: '52:54:00:00:00:09', linkUp: false, restrict: true }],
    });
    const stats = m.nicStats();
    expect(stats).toHaveLength(2);
    // The guest's config space shows two virtio-net functions (1af4:1041, Ethernet) at slots 3 and 4.
    const nets = m.pciDevices().filter((d) => d.classCode === 0x020000);
    expect(nets.map((d) => [d.slot, d.fn, d.vendorId, d.deviceId, d.name])).toEqual([[3, 0, 0x1af4, 0x1041, 'virtio-net@3'], [4, 0, 0x1af4, 0x1041, 'virtio-net@4']]);
    expect(m.pciDevices().find((d) => d.slot === 0)).toMatchObject({ vendorId: 0x8086, deviceId: 0x1237 }); // i440FX host bridge
    expect(stats[1]).toEqual({ linkUp: false, rxPackets: 0, rxBytes: 0, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0, txMalformed: 0, rxBadBuffers: 0, leases: [] });
    expect(stats[0]!.linkUp).toBe(true);
    expect(m.setNicLink(1, true)).toBe(true);
    expect(m.nicStats()[1]!.linkUp).toBe(true);
    expect(m.setNicLink(2, true)).toBe(false);
    m.stop();
    expect(m.nicStats()).toEqual([]);
    expect(() => new Machine({ memoryMiB: 64, cpus: 1, bios, nics: [{}, { mac: '52:54:00:12:34:56' }] })).toThrow(
      /network card 2: MAC address 52:54:00:12:34:56 is used by another card/,
    );
    // A Vireo network's addresses reach slirp; bad ones are refused naming the card.
    const n = new Machine({ memoryMiB: 64, cpus: 1, bios, nics: [{ net: '192.168.122.0/24', host: '192.168.122.1', dhcpStart: '192.168.122.100', dns: '192.168.122.3' }] });
    n.stop();
    expect(() => new Machine({ memoryMiB: 64, cpus: 1, bios, nics: [{ net: '192.168.122.0/24', host: '10.0.2.2' }] })).toThrow(
      /network card 1: user networking: host \(gateway\) address '10.0.2.2' is outside the network/,
    );
    expect(() => new Machine({ memoryMiB: 64, cpus: 1, kernel: path.join(guests, 'hello.bin'), nics: [{}] })).toThrow(
      /network cards need the PC board/,
    );
  });

  it("puts a NIC on an isolated network's switch, and says when the switch is not running or the bridge is missing", () => {
    const bios = '/usr/share/seabios/bios.bin';
    if (!fs.existsSync(bios)) return console.log('SKIP switch addon test: no SeaBIOS (Debian package seabios)');
    const { Machine, NetSwitch } = loadAddon();
    expect(NetSwitch).toBeDefined();
    const dir = fs.mkdtempSync('/tmp/vireo-addon-sw-');
    try {
      const socket = path.join(dir, 'lab.sock');
      expect(() => new Machine({ memoryMiB: 64, cpus: 1, bios, nics: [{ backend: 'switch', socket }] })).toThrow(
        /network card 1: no network switch listens on .*lab.sock \(the network is not started/,
      );
      const sw = new NetSwitch!({ path: socket, dhcp: { server: '192.168.100.2', prefix: 24, start: '192.168.100.15', end: '192.168.100.30' } });
      expect((fs.statSync(socket).mode & 0o777).toString(8)).toBe('600');
      const m = new Machine({ memoryMiB: 64, cpus: 1, bios, nics: [{ backend: 'switch', socket }, { backend: 'switch', socket, mac: '52:54:00:00:00:02' }] });
      expect(m.pciDevices().filter((d) => d.classCode === 0x020000).length).toBe(2);
      const deadline = Date.now() + 2000;
      while (sw.counters().ports < 2 && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      expect(sw.counters().ports).toBe(2);
      m.stop();
      expect(sw.leases()).toEqual([]);
      expect(() => new NetSwitch!({ path: socket, dhcp: { server: '192.168.100.20', prefix: 24, start: '192.168.100.15', end: '192.168.100.30' } })).toThrow(/server address lies inside the range/);
      sw.stop();
      expect(fs.existsSync(socket)).toBe(false);
      expect(() => new Machine({ memoryMiB: 64, cpus: 1, bios, nics: [{ backend: 'tap', bridge: 'nosuchbr9' }] })).toThrow(
        /network card 1: there is no network interface 'nosuchbr9' on this host to bridge to/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has a USB tablet on the PC unless usbTablet is false', () => {
    const bios = '/usr/share/seabios/bios.bin';
    if (!fs.existsSync(bios)) return console.log('SKIP tablet addon test: no SeaBIOS (Debian package seabios)');
    const { Machine } = loadAddon();
    const m = new Machine({ memoryMiB: 64, cpus: 1, bios });
    expect(m.sendPointer(10, 20, 1, 0, 0)).toBe(true);
    expect(m.tabletActive()).toBe(false); // no guest driver has configured it
    m.stop();
    const off = new Machine({ memoryMiB: 64, cpus: 1, bios, usbTablet: false });
    expect(off.sendPointer(10, 20, 1, 0, 0)).toBe(false);
    expect(off.tabletActive()).toBe(false);
    off.stop();
  });

  it('offers a preferred display size: from the config, changed while running, bad ones refused naming the size', () => {
    const bios = '/usr/share/seabios/bios.bin';
    if (!fs.existsSync(bios)) return console.log('SKIP display size addon test: no SeaBIOS (Debian package seabios)');
    const { Machine } = loadAddon();
    const m = new Machine({ memoryMiB: 64, cpus: 1, bios, display: { width: 1920, height: 1080 } });
    expect(m.setDisplaySize(1280, 800)).toBe(true);
    expect(m.setDisplaySize(100, 100)).toBe(false);
    expect(m.setDisplaySize(2560, 1700)).toBe(false); // beyond 16 MiB at 32 bpp
    m.stop();
    expect(() => new Machine({ memoryMiB: 64, cpus: 1, bios, display: { width: 9000, height: 1080 } })).toThrow(/display size 9000x1080 is not possible/);
  });

  it('machines without a PC board say so for display calls', () => {
    const { Machine } = loadAddon();
    const m = new Machine({ memoryMiB: 32, cpus: 1, kernel: path.join(guests, 'hello.bin') });
    expect(m.pollFrame()).toBeNull();
    expect(m.screenText()).toBe('');
    expect(m.powerButton()).toBe(false);
    expect(() => m.sendKey('KeyA', true)).toThrow(/needs the PC board/);
    expect(() => m.sendPointer(1, 1, 0, 0, 0)).toThrow(/needs the PC board/);
    expect(m.tabletActive()).toBe(false);
    m.stop();
  });

  it('50 machines started and stopped leave no fds or threads', async () => {
    const { Machine } = loadAddon();
    const once = async (i: number) => {
      const m = new Machine({ memoryMiB: 32, cpus: 1 + (i % 2), kernel: path.join(guests, i % 3 ? 'hello.bin' : 'echo.bin') });
      if (i % 3) await runToEnd(m);
      else m.start();
      m.stop();
    };
    await once(1); // warm-up: process-wide lazy resources count as baseline
    const fds = count('/proc/self/fd');
    const tasks = count('/proc/self/task');
    for (let i = 0; i < 50; i++) await once(i);
    expect(count('/proc/self/fd')).toBe(fds);
    expect(count('/proc/self/task')).toBe(tasks);
  });

  it('the engine host confines itself before any guest runs: no_new_privs, a seccomp filter, no core files', async () => {
    const entry = path.join(appRoot(), 'dist', 'electron', 'engine-host', 'main.js');
    expect(fs.existsSync(entry), `${entry} is not built (npx tsc -p tsconfig.json)`).toBe(true);
    const child = fork(entry, ['--vm', 'confine-test'], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += String(d)));
    try {
      const ready = await new Promise<{ t: string; pid: number }>((resolve, reject) => {
        child.on('message', (m) => (m as { t?: string }).t === 'ready' && resolve(m as { t: string; pid: number }));
        child.on('exit', (code) => reject(new Error(`the engine host exited (${code}): ${stderr}`)));
      });
      const status = fs.readFileSync(`/proc/${ready.pid}/status`, 'utf8');
      expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
      expect(status).toMatch(/^Seccomp:\s+2$/m);
      expect(fs.readFileSync(`/proc/${ready.pid}/limits`, 'utf8')).toMatch(/^Max core file size\s+0\s+0\s/m);
      expect(stderr).not.toMatch(/confinement incomplete|cannot confine/);
      // A running guest: its two vCPU threads carry the device threads' allow list on top
      // of the process's filter (Seccomp_filters 2), the main thread only the process's.
      child.send({ t: 'start', config: { memoryMiB: 32, cpus: 2, kernel: path.join(guests, 'echo.bin') } });
      const filtersOf = (tid: string | number) =>
        Number(/^Seccomp_filters:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${ready.pid}/task/${tid}/status`, 'utf8'))?.[1] ?? -1);
      const filters = () => fs.readdirSync(`/proc/${ready.pid}/task`).map(filtersOf);
      const deadline = Date.now() + 20_000;
      while (filters().filter((n) => n === 2).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const f = filters();
      expect(f.filter((n) => n === 2).length, `filters per thread: ${f.join(',')}; stderr: ${stderr}`).toBeGreaterThanOrEqual(2);
      expect(filtersOf(ready.pid), 'the main thread keeps only the process filter').toBe(1);
      expect(stderr).not.toMatch(/sandbox: .* may not/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
