// A fake native addon and an in-process launcher, for unit tests only. The fake
// machine draws a 64x48 screen, echoes serial input, and stops on request.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FrameUpdate, MachineConfig, NativeAddon, NativeMachine, NicLease, NicStats, PciDeviceInfo, PerfStats, StateEvent } from '../../common/engine-api';
import { EngineHost } from '../../engine-host/host-core';
import type { HostChannel, Launcher } from '../supervisor';
import type { NewVmRequest } from '../../common/contracts/vm';
import { VireoService } from '../app';
import { resolvePaths } from '../paths';
import { imgToolPath } from '../../cli/img';

export class FakeMachine implements NativeMachine {
  static last: FakeMachine | undefined;
  state: NativeMachine['state'] = 'created';
  keys: string[] = [];
  private serialCb: (port: number, d: Uint8Array) => void = () => undefined;
  private stateCb: (ev: StateEvent) => void = () => undefined;
  dirty = true;
  pixel = 0x20;
  constructor(readonly config: MachineConfig) {
    FakeMachine.last = this;
    this.cdrom = config.disks?.find((d) => d.media === 'cdrom')?.path ?? null;
    this.hasCdrom = this.cdrom !== null;
    this.nicLinks = (config.nics ?? []).map((n) => n.linkUp !== false);
  }
  start() {
    this.state = 'running';
    this.stateCb({ state: 'running' });
  }
  pause() {
    this.state = 'paused';
  }
  /** Tests set it to make the next saveState fail like the engine would. */
  saveError: string | undefined;
  /** What loadState read (the restored fake state), for tests. */
  restored: { pixel: number; keys: string[] } | undefined;
  /** Like the engine: PATH.partial, then renamed; a small JSON "state" with its own magic. */
  saveState(path: string) {
    if (this.state !== 'paused') throw new Error('the machine must be paused to save its state');
    if (this.saveError) throw new Error(this.saveError);
    fs.writeFileSync(`${path}.partial`, 'FAKEVST\n' + JSON.stringify({ memoryMiB: this.config.memoryMiB, cpus: this.config.cpus, pixel: this.pixel, keys: this.keys }));
    fs.renameSync(`${path}.partial`, path);
  }
  loadState(path: string) {
    if (this.state !== 'created') throw new Error('load the state before start()');
    const text = fs.readFileSync(path, 'latin1');
    if (!text.startsWith('FAKEVST\n')) throw new Error(`${path} is not a Vireo state file`);
    let st: { memoryMiB: number; cpus: number; pixel: number; keys: string[] };
    try {
      st = JSON.parse(text.slice(8));
    } catch {
      throw new Error(`${path} is corrupted`);
    }
    if (st.memoryMiB !== this.config.memoryMiB) throw new Error(`RAM size: the state file has ${st.memoryMiB} MiB, this machine has ${this.config.memoryMiB} MiB`);
    this.pixel = st.pixel;
    this.keys = st.keys;
    this.restored = { pixel: st.pixel, keys: st.keys };
  }
  resume() {
    this.state = 'running';
  }
  /** Disk snapshot names the engine made/deleted (tests read it); createError makes the next create fail. */
  diskSnapshots: string[] = [];
  createError: string | undefined;
  /**
   * Like the engine: paused (or not started); a writable raw disk is refused by name; all or
   * nothing. The fake holds no image open, so the snapshots are made on the real qcow2 files
   * with vireo-img (the real block layer).
   */
  createDiskSnapshots(name: string) {
    if (this.state !== 'paused' && this.state !== 'created') throw new Error(`cannot snapshot the disks of a machine that is ${this.state}: pause it first`);
    const disks = (this.config.disks ?? []).filter((d) => d.media !== 'cdrom' && !d.readOnly);
    const raw = disks.filter((d) => d.format !== 'qcow2');
    if (raw.length) throw new Error(`snapshots need qcow2 disks: ${raw.map((d) => d.path).join(', ')}`);
    if (this.createError) throw new Error(this.createError);
    const made: string[] = [];
    for (const d of disks) {
      const r = spawnSync(imgToolPath(), ['snapshot', '-c', name, d.path], { encoding: 'utf8' });
      if (r.status !== 0) {
        for (const m of made) spawnSync(imgToolPath(), ['snapshot', '-d', name, m]);
        throw new Error(`could not create snapshot '${name}' on disk '${d.path}': ${(r.stderr || String(r.error)).trim()}`);
      }
      made.push(d.path);
    }
    this.diskSnapshots.push(name);
  }
  deleteDiskSnapshots(name: string) {
    if (this.state !== 'paused' && this.state !== 'created') throw new Error(`cannot delete disk snapshots of a machine that is ${this.state}: pause it first`);
    for (const d of (this.config.disks ?? []).filter((x) => x.media !== 'cdrom' && !x.readOnly && x.format === 'qcow2')) {
      const info = spawnSync(imgToolPath(), ['info', '-U', '--output', 'json', d.path], { encoding: 'utf8' });
      const names = ((JSON.parse(info.stdout || '{}') as { snapshots?: Array<{ name: string }> }).snapshots ?? []).map((x) => x.name);
      if (!names.includes(name)) continue;
      const r = spawnSync(imgToolPath(), ['snapshot', '-d', name, d.path], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`could not delete snapshot '${name}' on disk ${d.path}: ${r.stderr.trim()}`);
    }
    this.diskSnapshots = this.diskSnapshots.filter((n) => n !== name);
  }
  stop() {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.stateCb({ state: 'stopped', reason: { kind: 'stopped', message: 'stopped by host' } });
  }
  crash() {
    this.state = 'crashed';
    this.stateCb({ state: 'crashed', reason: { kind: 'triple-fault', message: 'triple fault', rip: '0xfff0' } });
  }
  writeSerial(port: number, data: Uint8Array) {
    this.serialCb(port, data);
  }
  emitSerial(data: Uint8Array) {
    this.serialCb(0, data);
  }
  onSerial(cb: (port: number, d: Uint8Array) => void) {
    this.serialCb = cb;
  }
  onState(cb: (ev: StateEvent) => void) {
    this.stateCb = cb;
  }
  sendKey(code: string, down: boolean) {
    this.keys.push(`${code}:${down ? 'down' : 'up'}`);
    this.pixel = (this.pixel + 1) & 0xff;
    this.dirty = true;
  }
  sendCombo(name: string) {
    this.keys.push(name);
  }
  sendMouse() {}
  sendPointer() {
    return true;
  }
  /** What setDisplaySize last offered (the console's "resize guest with window"). */
  displaySize: { width: number; height: number } | undefined;
  setDisplaySize(width: number, height: number) {
    this.displaySize = { width, height };
    return true;
  }
  tabletActive() {
    return false;
  }
  pollFrame(full?: boolean): FrameUpdate | null {
    if (!this.dirty && !full) return null;
    this.dirty = false;
    const data = new Uint8Array(64 * 48 * 4).fill(this.pixel);
    return { width: 64, height: 48, modeChanged: !!full, rects: [{ x: 0, y: 0, w: 64, h: 48, data }] };
  }
  /** Like the PC board: the first CD-ROM of the config is the drive; none, no drive. */
  cdrom: string | null;
  readonly hasCdrom: boolean;
  /** The guest has locked the tray (ejectCdrom answers false). */
  trayLocked = false;
  changeCdrom(path: string): void {
    if (!this.hasCdrom) throw new Error('this machine has no CD-ROM drive');
    if (!fs.existsSync(path)) throw new Error(`CD-ROM image ${path}: No such file or directory`);
    this.cdrom = path;
  }
  ejectCdrom(): boolean {
    if (!this.hasCdrom) throw new Error('this machine has no CD-ROM drive');
    if (this.trayLocked) return false;
    this.cdrom = null;
    return true;
  }
  /** Link state per NIC of the config, as the PC board keeps it. */
  nicLinks: boolean[] = [];
  setNicLink(index: number, up: boolean): boolean {
    if (index < 0 || index >= this.nicLinks.length) return false;
    this.nicLinks[index] = up;
    return true;
  }
  /** What a NIC's user-mode NAT leased, per NIC (tests set it). */
  nicLeases: NicLease[][] = [];
  nicStats(): NicStats[] {
    return this.nicLinks.map((linkUp, i) => ({
      linkUp, rxPackets: 0, rxBytes: 0, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0, txMalformed: 0, rxBadBuffers: 0,
      leases: this.nicLeases[i] ?? [],
    }));
  }
  /** Cumulative counters perfStats() reports; tests move them between samples (like a guest reading its disk). */
  perf = { cpuNs: 0, residentBytes: 0, readBytes: 0, readOps: 0, writeBytes: 0, writeOps: 0, rxBytes: 0, txBytes: 0, droppedKeys: 0, mergedClicks: 0 };
  perfStats(opts?: { memory?: boolean }): PerfStats {
    const p = this.perf;
    return {
      vcpus: this.config.cpus ?? 1,
      cpuNs: p.cpuNs,
      ramBytes: (this.config.memoryMiB ?? 0) * 1024 * 1024,
      residentBytes: opts?.memory === false ? -1 : p.residentBytes,
      disks: (this.config.disks ?? []).map((d, i) => ({
        path: d.path, cdrom: d.media === 'cdrom', flushOps: 0,
        ...(i === 0 ? { readBytes: p.readBytes, readOps: p.readOps, writeBytes: p.writeBytes, writeOps: p.writeOps } : { readBytes: 0, readOps: 0, writeBytes: 0, writeOps: 0 }),
      })),
      nics: this.nicLinks.map((_, i) => (i === 0 ? { rxBytes: p.rxBytes, rxPackets: 0, txBytes: p.txBytes, txPackets: 0 } : { rxBytes: 0, rxPackets: 0, txBytes: 0, txPackets: 0 })),
      input: { droppedKeys: p.droppedKeys, mergedClicks: p.mergedClicks },
    };
  }
  /** Like the PC board: a virtio-net (1af4:1041, Ethernet) function per NIC from slot 3. */
  pciDevices(): PciDeviceInfo[] {
    return this.nicLinks.map((_, i) => ({ slot: 3 + i, fn: 0, vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000, name: `virtio-net@${3 + i}` }));
  }
  /** The guest powers off by itself (ACPI S5), as after a power-button press. */
  powerOff() {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.stateCb({ state: 'stopped', reason: { kind: 'poweroff', message: 'the guest powered off (ACPI S5)' } });
  }
  powerButtonPresses = 0;
  /** Whether the guest has enabled ACPI (PM1 SCI_EN and the power-button enable): default not, like firmware. */
  acpiEnabled = false;
  powerButton(): boolean {
    this.powerButtonPresses++;
    return this.acpiEnabled;
  }

  screenText(): string {
    return '';
  }
  screenshotPng(): Buffer {
    return Buffer.from([0x89, 0x50, 0x4e, 0x47]);
  }
}

export const fakeAddon: NativeAddon = {
  Machine: FakeMachine,
  kvmProblem: () => null,
  kvmIsPvm: () => false,
};

/** Runs EngineHost in this process; messages go through structuredClone like real IPC. */
export function inProcessLauncher(): Launcher & { hosts: Map<string, EngineHost> } {
  const hosts = new Map<string, EngineHost>();
  const launch = ((uuid: string) => {
    let onMsg: (m: unknown) => void = () => undefined;
    let onExit: (code: number | null, sig: string | null) => void = () => undefined;
    let alive = true;
    const host = new EngineHost(
      fakeAddon,
      (m) => queueMicrotask(() => alive && onMsg(structuredClone(m))),
      (code) => {
        if (!alive) return;
        alive = false;
        onExit(code, null);
      },
    );
    hosts.set(uuid, host);
    const ch: HostChannel = {
      pid: 1234,
      send: (m) => queueMicrotask(() => alive && host.handle(structuredClone(m))),
      onMessage: (cb) => (onMsg = cb),
      onExit: (cb) => (onExit = cb),
      kill: (sig) => {
        if (!alive) return;
        alive = false;
        setTimeout(() => onExit(null, sig), 1);
      },
    };
    return ch;
  }) as Launcher & { hosts: Map<string, EngineHost> };
  launch.hosts = hosts;
  return launch;
}

/** A New VM request from `iso` with small defaults (256 MiB, 1 CPU, a new 1 GiB disk, named "grub", user networking). */
export const newVmRequest = (iso: string, over: Partial<NewVmRequest> = {}): NewVmRequest => ({
  media: { kind: 'iso', path: iso },
  os: 'generic',
  memoryMiB: 256,
  cpus: 1,
  storage: { kind: 'create', sizeGiB: 1 },
  name: 'grub',
  network: 'user',
  ...over,
});

/** A service whose XDG directories all live under `dir` (HOME, cfg/, data/), on the in-process fake engine. */
export function testService(dir: string): Promise<VireoService> {
  const paths = resolvePaths({ HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'cfg'), XDG_DATA_HOME: path.join(dir, 'data') });
  return new VireoService({ paths, launcher: inProcessLauncher(), host: { cpus: 2, memoryMiB: 4096 } }).init();
}
