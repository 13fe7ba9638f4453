// The app services behind the contract: VM definitions, the storage pool, the engine
// supervisor, clone and delete jobs. No Electron here: the same object serves the
// Electron main process, `vireo serve` and the tests.
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { EventName, EventPayload, Params, Result, VireoApi } from '../common/contracts/api';
import {
  type Disk,
  type ExitReason,
  type FieldError,
  type NewVmRequest,
  type VmDefinition,
  type VmState,
  type VmSummary,
  MAC_PATTERN,
  editOf,
  nameProblem,
  nicModelFor,
} from '../common/contracts/vm';
import { DEFAULT_NETWORK } from '../common/contracts/network';
import { NetworkError, NetworkService } from './networks';
import { SwitchService } from './net-switches';
import { InterfaceError, InterfaceService } from './interfaces';
import { AddressWatch } from './vm-addresses';
import { VmPerf } from './vm-perf';
import { loadAddon } from '../engine-host/addon';
import { serviceLocation } from './service-host';
import { toMachineConfig, type FirmwarePaths, firmwarePaths } from './machine-config';
import { type VireoPaths, resolvePaths } from './paths';
import { CopyCancelled, GiB, StoragePool, exists } from './pool';
import { type Launcher, type StreamHandle, Supervisor } from './supervisor';
import { copyDiskTemp } from './storage/copy';
import { StorageError, StorageService } from './storage/storage';
import { sharedDiskProblem } from './delete-guard';
import { confirmProblem, inOwnPool, serialLogOutside } from './file-access';
import { DiskBatch, DiskJournal, removeIfSame, sweepTemps } from './disk-journal';
import { syncDir } from './atomic';
import { checkEdit } from './vm-edit';
import { VmStore } from './vm-store';
import { DISCARD_HINT, ManagedSaves, VmStateError } from './vm-state';
import { SnapshotError, SnapshotService } from './snapshots';
import { imgSnapshot, imgSnapshots } from './storage/img';
import { LibvirtXml } from './libvirt/service';
import { OsInfoDb } from './osinfo/db';
import { detectOs } from './osinfo/detect';

export const MAX_DISK_GIB = 16 * 1024;

export interface ServiceOptions {
  paths?: VireoPaths;
  launcher: Launcher;
  firmware?: FirmwarePaths;
  /** osinfo-db (tests point it elsewhere); default /usr/share/osinfo, loaded on first use. */
  osinfo?: OsInfoDb;
  /** Host limits the wizard is bounded by (tests make them small). */
  host?: { cpus: number; memoryMiB: number };
  /** Why the engine can't run here (addon missing, no /dev/kvm), or null. */
  engineProblem?: () => { kvm: string | null; engine: string | null };
  version?: string;
  /** Where isolated networks' switch sockets go (default: <service runtime dir>/networks; with explicit paths, <config>/run/networks). */
  switchDir?: string;
  /** How often a running VM's leased addresses are looked at for the manager list (default 3 s; tests make it short). */
  addressIntervalMs?: number;
}

type Listener = <E extends EventName>(name: E, payload: EventPayload<E>) => void;

export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

export class VireoService implements VireoApi {
  readonly paths: VireoPaths;
  readonly store: VmStore;
  readonly pool: StoragePool;
  readonly supervisor: Supervisor;
  readonly storage: StorageService;
  /** osinfo-db: the OS list and detection from install media (electron/services/osinfo). */
  readonly osinfo: OsInfoDb;
  /** libvirt domain XML import/export (electron/services/libvirt). */
  readonly libvirt: LibvirtXml;
  readonly networks: NetworkService;
  /** Isolated networks' switches (net-switches.ts). */
  readonly switches: SwitchService;
  readonly interfaces: InterfaceService;
  /** The running VMs' leased addresses for the summaries (vm-addresses.ts). */
  readonly addresses: AddressWatch;
  /** Managed saves (vm-state.ts): <config>/save/<uuid>.vstate. */
  readonly saves: ManagedSaves;
  /** Snapshots (snapshots.ts): <config>/snapshots/<uuid>/. */
  readonly snapshots: SnapshotService;
  /** Crash safety for disks vs. definitions (disk-journal.ts). */
  readonly journal: DiskJournal;
  /** What init() removed after an unclean stop: files of unfinished creates/clones/deletes, hidden temporaries. */
  readonly recovered: { journalled: string[]; temporaries: string[]; orphans: string[] } = { journalled: [], temporaries: [], orphans: [] };
  private readonly listeners = new Set<Listener>();
  private readonly runtime = new Map<string, { state: VmState; lastExit?: ExitReason; notice?: string; temporary?: boolean }>();
  private readonly jobs = new Map<string, AbortController>();
  /** uuid (or `name:<lower-case name>`) -> what it is busy with ('cloned', 'started', 'deleted', 'created'). */
  private readonly busy = new Map<string, string>();
  /** The last minutes of performance points per running VM (vm.statsHistory). */
  readonly perf = new VmPerf();
  private nextJob = 1;

  constructor(private readonly opts: ServiceOptions) {
    this.paths = opts.paths ?? resolvePaths();
    this.store = new VmStore(this.paths.vms);
    this.pool = new StoragePool(this.paths.pool);
    this.journal = new DiskJournal(path.join(this.paths.config, 'pending'));
    this.osinfo = opts.osinfo ?? new OsInfoDb();
    this.libvirt = new LibvirtXml({ store: this.store, osinfo: this.osinfo, nameBusy: (n) => this.busy.has(`name:${n.toLowerCase()}`) });
    this.supervisor = new Supervisor(opts.launcher, {
      state: (uuid, state, exit) => {
        const rt = this.runtime.get(uuid) ?? { state: 'shutoff' };
        rt.state = state;
        if (exit) rt.lastExit = exit;
        if (state !== 'shuttingdown') delete rt.notice;
        if (state === 'shutoff' || state === 'crashed') {
          delete rt.temporary;
          this.perf.drop(uuid);
          this.addresses.drop(uuid);
        }
        this.runtime.set(uuid, rt);
        if (exit) this.emit('vm.exited', { uuid, reason: exit });
        this.changed(uuid);
      },
      stats: (uuid, cpuPercent, memoryMiB, perf) => {
        const point = this.perf.ingest(uuid, cpuPercent, memoryMiB, perf);
        this.emit('vm.stats', { uuid, cpuPercent: point.cpuPercent, memoryMiB: point.memoryMiB, point });
        void this.addresses.tick(uuid);
      },
      notice: (uuid, message) => {
        const rt = this.runtime.get(uuid);
        if (!rt) return;
        if (message) rt.notice = message;
        else delete rt.notice;
        this.changed(uuid);
      },
    });
    this.storage = new StorageService({
      defsDir: path.join(this.paths.config, 'pools'),
      defaultPath: this.paths.pool,
      usage: () => this.store.list().map((d) => ({ name: d.name, running: this.supervisor.isRunning(d.uuid), paths: d.disks.map((x) => x.path).filter(Boolean), formats: Object.fromEntries(d.disks.filter((x) => x.path).map((x) => [x.path, x.format])) })),
      onChanged: (pool) => this.emit('storage.changed', { pool }),
    });
    this.switches = new SwitchService({
      dir: opts.switchDir ?? (opts.paths ? path.join(opts.paths.config, 'run', 'networks') : path.join(serviceLocation().dir, 'networks')),
      factory: () => {
        try {
          return loadAddon().NetSwitch ?? 'this engine build has no network switch: rebuild it (`bash scripts/setup.sh`)';
        } catch (e) {
          return e instanceof Error ? e.message : String(e);
        }
      },
    });
    this.networks = new NetworkService({
      switches: this.switches,
      dir: path.join(this.paths.config, 'networks'),
      usage: () => this.store.list().map((d) => ({ name: d.name, running: this.supervisor.isRunning(d.uuid), networks: d.nics.map((n) => n.network) })),
      onChanged: (name) => this.emit('network.changed', { name }),
    });
    this.interfaces = new InterfaceService({
      network: (name) => this.networks.get(name),
      switchLeases: (name) => this.switches.leases(name),
      running: (uuid) => this.supervisor.isRunning(uuid),
      engineNics: (uuid, link) => this.supervisor.nics(uuid, link),
    });
    this.addresses = new AddressWatch({
      look: async (uuid) => {
        const def = this.store.get(uuid);
        if (!def || def.nics.length === 0 || !this.supervisor.isRunning(uuid)) return undefined;
        const { interfaces } = await this.interfaces.list(def);
        return interfaces.flatMap((i) => i.addresses.map((a) => a.ip));
      },
      onChange: (uuid) => this.changed(uuid),
      ...(opts.addressIntervalMs !== undefined ? { intervalMs: opts.addressIntervalMs } : {}),
    });
    this.saves = new ManagedSaves({
      dir: path.join(this.paths.config, 'save'),
      save: (uuid, file, written) => this.supervisor.save(uuid, file, written),
      runState: (uuid) => this.supervisor.stateOf(uuid),
    });
    this.snapshots = new SnapshotService({
      dir: path.join(this.paths.config, 'snapshots'),
      disks: {
        list: (f) => imgSnapshots(f),
        create: (f, n) => imgSnapshot('create', f, n),
        apply: (f, n) => imgSnapshot('apply', f, n),
        remove: (f, n) => imgSnapshot('delete', f, n),
      },
      runState: (uuid) => this.supervisor.stateOf(uuid),
      temporary: (uuid) => !!this.runtime.get(uuid)?.temporary,
      saved: (uuid) => this.saves.has(uuid),
      engine: (uuid, op, name, statePath) => this.supervisor.snapshot(uuid, op, name, statePath),
      forceOff: (uuid) => this.supervisor.forceOff(uuid),
      discardSave: (uuid) => this.saves.remove(uuid),
      saveDefinition: async (def) => {
        await this.store.save(def);
        this.changed(def.uuid);
      },
      startFrom: (uuid, file) => this.startVm(this.need(uuid), { restoreFrom: file }),
      changed: (uuid) => {
        this.emit('snapshot.changed', { uuid });
        this.changed(uuid);
      },
    });
  }

  async init(): Promise<this> {
    await this.store.load();
    await this.pool.ensure();
    await this.storage.init();
    await this.networks.init();
    await fs.mkdir(this.paths.logs, { recursive: true, mode: 0o700 });
    // What a killed service left: finish or undo journalled disk changes, then sweep
    // the hidden temporaries of unfinished copies, creates and atomic writes.
    // A VM is known while its definition file exists: one that does not load (store.broken)
    // keeps its disks, saved state and snapshots; nothing of it is acted on.
    const defined = (uuid: string) => this.store.get(uuid) !== undefined || this.store.broken.some((b) => path.basename(b.file) === `${uuid}.json`);
    this.recovered.journalled = await this.journal.recover(defined);
    this.recovered.temporaries = (await this.saves.init(defined)).concat(await sweepTemps([...this.storage.poolDirs().map((d) => d.path), this.paths.vms, path.join(this.paths.config, 'pools'), path.join(this.paths.config, 'networks'), this.journal.dir]));
    // The snapshot lists of VMs whose definition is gone (a delete killed after it removed the definition).
    const snaps = await this.snapshots.init(defined);
    this.recovered.orphans = snaps.orphans;
    this.recovered.temporaries.push(...snaps.temporaries);
    return this;
  }

  onEvent(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private emit<E extends EventName>(name: E, payload: EventPayload<E>): void {
    for (const l of this.listeners) l(name, payload);
  }

  private changed(uuid: string): void {
    const def = this.store.get(uuid);
    if (def) this.emit('vm.changed', { vm: this.summary(def) });
  }

  summary(def: VmDefinition): VmSummary {
    const rt = this.runtime.get(def.uuid);
    const saved = this.saves.has(def.uuid);
    let state: VmState = rt?.state ?? 'shutoff';
    if (saved && (state === 'shutoff' || state === 'crashed')) state = 'saved';
    return {
      uuid: def.uuid,
      name: def.name,
      os: def.os,
      memoryMiB: def.memoryMiB,
      cpus: def.cpus,
      state,
      ...(rt?.lastExit ? { lastExit: rt.lastExit } : {}),
      ...(rt?.notice ? { notice: rt.notice } : {}),
      ...(rt?.temporary ? { temporary: true } : {}),
      ...(def.autostart ? { autostart: true } : {}),
      ...(saved ? { hasManagedSave: true } : {}),
      ...(this.addresses.get(def.uuid).length ? { addresses: this.addresses.get(def.uuid) } : {}),
      disks: def.disks,
      boot: def.boot,
      nics: def.nics,
    };
  }

  hostLimits(): { cpus: number; memoryMiB: number } {
    return this.opts.host ?? { cpus: os.cpus().length, memoryMiB: Math.floor(os.totalmem() / (1024 * 1024)) };
  }

  // ---- the contract ----

  async 'host.info'(): Promise<Result<'host.info'>> {
    const lim = this.hostLimits();
    const p = this.opts.engineProblem?.() ?? { kvm: null, engine: null };
    return {
      cpus: lim.cpus,
      memoryMiB: lim.memoryMiB,
      kvmProblem: p.kvm,
      engineProblem: p.engine,
      poolPath: this.paths.pool,
      logsPath: this.paths.logs,
      configPath: this.paths.config,
      version: this.opts.version ?? '0.1.0',
    };
  }

  async 'vm.list'(): Promise<Result<'vm.list'>> {
    return this.store.list().map((d) => this.summary(d));
  }

  async 'vm.get'({ uuid }: Params<'vm.get'>): Promise<Result<'vm.get'>> {
    return this.need(uuid);
  }

  async 'fs.probe'({ path: p }: Params<'fs.probe'>): Promise<Result<'fs.probe'>> {
    if (!path.isAbsolute(p)) return { exists: false, kind: 'missing', sizeBytes: 0 };
    try {
      const st = await fs.stat(p);
      return { exists: true, kind: st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other', sizeBytes: st.size };
    } catch {
      return { exists: false, kind: 'missing', sizeBytes: 0 };
    }
  }

  /** Every problem with a wizard request, each tied to its field. Writes nothing. */
  async validate(req: NewVmRequest): Promise<FieldError[]> {
    const errors: FieldError[] = [];
    const lim = this.hostLimits();
    const file = async (field: FieldError['field'], p: string | undefined, what: string, optional = false) => {
      if (!p) {
        if (!optional) errors.push({ field, message: `Choose ${what}.` });
        return;
      }
      if (!path.isAbsolute(p)) return void errors.push({ field, message: `Give the full path of ${what} (starting with /).` });
      const st = await this['fs.probe']({ path: p });
      if (!st.exists) errors.push({ field, message: `${p} does not exist.` });
      else if (st.kind !== 'file') errors.push({ field, message: `${p} is not a file.` });
    };
    const m = req.media;
    if (m.kind === 'iso') await file('media', m.path, 'an ISO image');
    else if (m.kind === 'import') {
      const before = errors.length;
      await file('media', m.path, 'a disk image');
      if (errors.length === before) {
        const e = await this.importProblem(m.path, m.format);
        if (e) errors.push({ field: 'media', message: e });
      }
    }
    else {
      await file('kernel', m.kernel, 'a kernel');
      await file('kernel', m.initrd, 'an initrd', true);
    }
    await this.osinfo.ready();
    if (!this.osinfo.knows(req.os)) errors.push({ field: 'os', message: 'Choose an operating system.' });
    if (!Number.isInteger(req.memoryMiB) || req.memoryMiB < 16 || req.memoryMiB > lim.memoryMiB) {
      errors.push({ field: 'memory', message: `Memory must be between 16 and ${lim.memoryMiB} MiB.` });
    }
    if (!Number.isInteger(req.cpus) || req.cpus < 1 || req.cpus > lim.cpus) {
      errors.push({ field: 'cpus', message: `CPUs must be between 1 and ${lim.cpus}.` });
    }
    if (req.storage.kind === 'create') {
      const g = req.storage.sizeGiB;
      if (!(g > 0) || g > MAX_DISK_GIB) errors.push({ field: 'storage', message: `Disk size must be between 0.1 and ${MAX_DISK_GIB} GiB.` });
      const b = req.storage.backing;
      if (b !== undefined) {
        if (req.storage.format === 'raw') errors.push({ field: 'storage', message: 'A disk based on another image must be qcow2.' });
        else await file('storage', b, 'the image to base the disk on');
      }
    }
    const np = nameProblem(req.name);
    if (np) errors.push({ field: 'name', message: np });
    else if (this.store.byName(req.name)) errors.push({ field: 'name', message: `A VM named '${req.name}' already exists.` });
    if (req.storage.kind === 'existing') {
      const before = errors.length;
      await file('storage', req.storage.path, 'a disk image');
      if (errors.length === before) {
        const e = await this.importProblem(req.storage.path, req.storage.format);
        if (e) errors.push({ field: 'storage', message: e });
      }
    }
    const net = wizardNetwork(req.network);
    if (net !== null && !this.networks.get(net)) errors.push({ field: 'network', message: `No network named '${net}': choose one from the list, or define it under Networks.` });
    if (req.mac !== undefined) {
      const mac = req.mac.toLowerCase();
      if (net === null) errors.push({ field: 'network', message: 'A MAC address needs a network (the VM has no NIC).' });
      else if (!MAC_PATTERN.test(mac)) errors.push({ field: 'network', message: `MAC ${req.mac} is not of the form 52:54:00:xx:xx:xx.` });
      else if (this.store.list().some((d) => d.nics.some((n) => n.mac === mac))) errors.push({ field: 'network', message: `MAC ${mac} is used by another VM.` });
    }
    return errors;
  }

  async 'vm.create'(req: Params<'vm.create'>): Promise<Result<'vm.create'>> {
    const errors = await this.validate(req);
    if (errors.length || req.dryRun) return { errors };
    if (this.busy.has(`name:${req.name.toLowerCase()}`)) return { errors: [{ field: 'name', message: `A VM named '${req.name}' is being created.` }] };
    this.busy.set(`name:${req.name.toLowerCase()}`, 'created');
    const batch = new DiskBatch(this.journal, this.store.newUuid());
    try {
      const m = req.media;
      let made: Disk | null = null;
      if (req.storage.kind === 'create' && m.kind !== 'import') {
        const st = req.storage;
        const format = st.backing ? 'qcow2' : (st.format ?? 'raw');
        const p = await this.pool.freePath(req.name, format === 'qcow2' ? '.qcow2' : '.img');
        // Made under a hidden temporary, journalled and linked into place (disk-journal.ts).
        const tmp = batch.temp(p);
        if (st.backing) await this.storage.createOverlayAt(tmp, st.backing);
        else if (format === 'qcow2') await this.storage.createImageAt(tmp, 'qcow2', Math.round(st.sizeGiB * GiB));
        else await this.pool.createRaw(tmp, Math.round(st.sizeGiB * GiB));
        await batch.link();
        made = { path: p, format, media: 'disk', bus: st.bus ?? 'ide' };
      }
      const def = await this.newDefinition(req, batch.uuid, made);
      await this.store.save(def);
      await batch.done();
      if (made) this.emit('storage.changed', { pool: 'default' });
      const vm = this.summary(def);
      this.emit('vm.changed', { vm });
      return { errors: [], vm };
    } catch (e) {
      await batch.abort();
      throw e;
    } finally {
      this.busy.delete(`name:${req.name.toLowerCase()}`);
    }
  }

  /** The definition a checked wizard request makes; `made`: the disk created for it (storage 'create'). */
  private async newDefinition(req: NewVmRequest, uuid: string, made: Disk | null): Promise<VmDefinition> {
    const disks: Disk[] = [];
    const m = req.media;
    if (made) disks.push(made);
    if (req.storage.kind === 'existing' && m.kind !== 'import') {
      const st = req.storage;
      disks.push({ path: st.path, format: await this.importFormat(st.path, st.format), media: 'disk', bus: st.bus ?? 'ide' });
    }
    if (m.kind === 'iso') disks.push({ path: m.path, format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true });
    if (m.kind === 'import') disks.push({ path: m.path, format: await this.importFormat(m.path, m.format), media: 'disk', bus: m.bus ?? 'ide' });
    const net = wizardNetwork(req.network);
    return {
      version: 1,
      uuid,
      name: req.name,
      os: req.os,
      memoryMiB: req.memoryMiB,
      cpus: req.cpus,
      boot:
        m.kind === 'kernel'
          ? {
              kind: 'kernel',
              kernel: m.kernel,
              ...(m.initrd ? { initrd: m.initrd } : {}),
              ...(m.append ? { append: m.append } : {}),
              ...(m.flatAddress !== undefined ? { flatAddress: m.flatAddress } : {}),
            }
          : { kind: 'firmware', order: m.kind === 'iso' ? 'dc' : 'c' },
      disks,
      nics: net === null ? [] : [{ mac: req.mac?.toLowerCase() ?? this.store.newMac(), network: net, model: req.nicModel ?? nicModelFor(req.os) }],
      createdAt: new Date().toISOString(),
    };
  }

  /** The details editor: checks every field, then writes the definition atomically. */
  async 'vm.update'({ uuid, edit, dryRun }: Params<'vm.update'>): Promise<Result<'vm.update'>> {
    const def = this.need(uuid);
    const nextBoot = this.supervisor.isRunning(uuid);
    if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
    const { errors, next } = await checkEdit(def, edit, {
      store: this.store,
      host: this.hostLimits(),
      logsDir: this.paths.logs,
      chainProblem: async (p, fmt) => this.storage.backingChain(p, fmt).then(() => null, (e: Error) => e.message),
      networkExists: (n) => this.networks.get(n) !== undefined,
    });
    if (errors.length || !next) return { errors, nextBoot };
    const savedProblem = this.saves.editProblem(def, edit);
    if (savedProblem) return { errors: [{ field: 'saved', message: savedProblem }], nextBoot };
    if (dryRun) return { errors, nextBoot };
    if (next.name.toLowerCase() !== def.name.toLowerCase() && this.busy.has(`name:${next.name.toLowerCase()}`)) {
      return { errors: [{ field: 'name', message: `A VM named '${next.name}' is being created.` }], nextBoot };
    }
    if (this.store.get(uuid) !== def) throw new UserError(`${def.name} changed while saving: try again.`);
    await this.store.save(next);
    const vm = this.summary(next);
    this.emit('vm.changed', { vm });
    return { errors: [], vm, nextBoot };
  }

  async 'vm.setAutostart'({ uuid, enabled }: Params<'vm.setAutostart'>): Promise<Result<'vm.setAutostart'>> {
    const def = this.need(uuid);
    if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
    const next: VmDefinition = { ...def };
    if (enabled) next.autostart = true;
    else delete next.autostart;
    if (!!def.autostart !== enabled) await this.store.save(next);
    const vm = this.summary(this.store.get(uuid) ?? next);
    this.emit('vm.changed', { vm });
    return { vm };
  }

  /**
   * Starts every VM marked autostart that is not running (virsh autostart: libvirtd does it
   * when it starts; here the Vireo service, `vireo service` or the app, right after init).
   * Each is started like the Run button, checks included; one that can't start is reported
   * and the others still start.
   */
  async autostart(): Promise<Array<{ name: string; error?: string }>> {
    const out: Array<{ name: string; error?: string }> = [];
    for (const def of this.store.list()) {
      if (!def.autostart || this.supervisor.isRunning(def.uuid)) continue;
      try {
        await this['vm.action']({ uuid: def.uuid, action: 'start' });
        out.push({ name: def.name });
      } catch (e) {
        out.push({ name: def.name, error: (e as Error).message });
      }
    }
    return out;
  }

  /**
   * CD-ROM Connect/Disconnect: on a running VM the engine inserts or ejects the disc now;
   * then the definition's first CD-ROM drive (the engine's one drive) gets the new path,
   * written atomically, so a restart keeps it. A locked tray changes nothing.
   */
  async 'vm.changeMedia'({ uuid, path: p }: Params<'vm.changeMedia'>): Promise<Result<'vm.changeMedia'>> {
    const def = this.need(uuid);
    if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
    if (!def.disks.some((d) => d.media === 'cdrom')) throw new UserError(`${def.name} has no CD-ROM drive: add one under Disks.`);
    if (this.saves.has(uuid)) throw new UserError(`${def.name} has a saved state with its disc in the drive: restore it (Run) or discard the saved state before changing the disc.`);
    if (p !== null) {
      if (!path.isAbsolute(p)) throw new UserError('Give the full path of the ISO image (starting with /).');
      const st = await this['fs.probe']({ path: p });
      if (!st.exists) throw new UserError(`${p} does not exist.`);
      if (st.kind !== 'file') throw new UserError(`${p} is not a file.`);
    }
    const live = this.supervisor.isRunning(uuid);
    let ejected: boolean | undefined;
    if (live) {
      try {
        ({ ejected } = await this.supervisor.changeMedia(uuid, p));
      } catch (e) {
        const msg = (e as Error).message;
        if (/no CD-ROM drive/.test(msg)) {
          throw new UserError(`${def.name} started with an empty CD-ROM drive, which the engine leaves out: shut it down, choose the disc, and start it again.`);
        }
        throw new UserError(`The disc was not changed: ${msg}`);
      }
      if (ejected === false) return { live, ejected: false, locked: true };
    }
    // Re-read: the definition may have been edited while the engine worked.
    const cur = this.need(uuid);
    const i = cur.disks.findIndex((d) => d.media === 'cdrom');
    if (i < 0) throw new UserError(`${cur.name} no longer has a CD-ROM drive in its definition.`);
    const next: VmDefinition = { ...cur, disks: cur.disks.map((d, j) => (j === i ? { ...d, path: p ?? '' } : d)) };
    await this.store.save(next);
    const vm = this.summary(next);
    this.emit('vm.changed', { vm });
    return { live, ...(ejected !== undefined ? { ejected } : {}), vm };
  }

  async 'vm.action'({ uuid, action, temporary }: Params<'vm.action'>): Promise<Result<'vm.action'>> {
    const def = this.need(uuid);
    const running = this.supervisor.isRunning(uuid);
    switch (action) {
      case 'start':
        await this.startVm(def, { temporary: !!temporary });
        break;
      case 'save':
        if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
        await this.stateCall(() => this.saves.save(def, () => this.changed(uuid)));
        this.changed(uuid);
        break;
      case 'discardSave':
        if (running) throw new UserError(`${def.name} is running: its saved state was already restored.`);
        await this.stateCall(() => this.saves.discard(def));
        this.changed(uuid);
        break;
      case 'pause':
        this.needRunning(def).pause(uuid);
        break;
      case 'resume':
        this.needRunning(def).resume(uuid);
        break;
      case 'reboot':
        this.needRunning(def).reboot(uuid);
        break;
      case 'reset':
        this.needRunning(def).reset(uuid);
        break;
      case 'shutdown':
        try {
          await this.needRunning(def).shutdown(uuid);
        } catch (e) {
          throw new UserError(`${def.name} was not shut down: ${(e as Error).message}`);
        }
        break;
      case 'forceoff':
        await this.needRunning(def).forceOff(uuid);
        break;
    }
    return {};
  }

  /**
   * Starts a VM: its managed save restored when it has one, or `restoreFrom` (a snapshot's
   * machine state, kept afterwards), or fresh (with throwaway overlays when `temporary`).
   */
  private async startVm(def: VmDefinition, o: { temporary?: boolean; restoreFrom?: string }): Promise<void> {
    const uuid = def.uuid;
    const temporary = o.temporary;
    const running = this.supervisor.isRunning(uuid);
    if (running) throw new UserError(`${def.name} is already running.`);
    if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
    // Busy while the disks are checked: a delete in that window is refused.
    this.busy.set(uuid, 'started');
    let cfg;
    try {
      await this.startChecks(def);
      cfg = toMachineConfig(def, this.opts.firmware ?? firmwarePaths(), (n) => this.networks.get(n), (n) => (this.switches.isRunning(n) ? this.switches.socketPath(n) : undefined));
    } finally {
      this.busy.delete(uuid);
    }
    const managed = this.saves.has(uuid) ? this.saves.pathOf(uuid) : undefined;
    if (managed && o.restoreFrom) throw new UserError(`${def.name} has a saved state: discard it before starting from a snapshot.`);
    const restore = managed ?? o.restoreFrom;
    if (restore && temporary) throw new UserError(`${def.name} has a saved state: start it normally to restore it, or discard the saved state to run it with temporary changes.`);
    // Run with temporary changes: every writable disk gets a throwaway overlay (QEMU -snapshot).
    if (temporary) cfg.disks = cfg.disks?.map((d) => (d.media === 'cdrom' || d.readOnly ? d : { ...d, snapshot: true }));
    const before = this.runtime.get(uuid);
    this.runtime.set(uuid, { state: 'starting', ...(temporary ? { temporary: true } : {}) });
    try {
      await this.supervisor.start(uuid, cfg, restore);
    } catch (e) {
      if (restore) {
        // The state file was refused (or the machine died restoring it): the VM stays Saved, nothing is deleted.
        this.runtime.set(uuid, { state: 'shutoff', ...(before?.lastExit ? { lastExit: before.lastExit } : {}) });
        this.changed(uuid);
        if (!managed) throw new UserError(`${def.name} could not be started from the snapshot's machine state: ${(e as Error).message}`);
        throw new UserError(`${def.name} could not be restored from its saved state: ${(e as Error).message}. ${DISCARD_HINT}`);
      }
      const err = await this.startError(def, e as Error);
      // Refused for a locked disk: the machine never ran, so the VM is shut off as it
      // was (with its earlier last exit), not "crashed"; the message says why.
      if (err !== e && !this.supervisor.isRunning(uuid)) {
        this.runtime.set(uuid, { state: 'shutoff', ...(before?.lastExit ? { lastExit: before.lastExit } : {}) });
        this.changed(uuid);
      }
      throw err;
    }
    // Like libvirt: the state file goes once the restored machine runs (a snapshot's stays).
    if (managed) {
      await this.saves.remove(uuid);
      this.changed(uuid);
    }
  }

  private async stateCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof VmStateError) throw new UserError(e.message);
      throw e;
    }
  }

  /**
   * A start the engine refused because a disk is locked (block/lock.h: another process
   * writes it, or reads it while we would write): name the Vireo VM that holds it.
   */
  private async startError(def: VmDefinition, e: Error): Promise<Error> {
    const m = /'([^']+)' is in use by another process/.exec(e.message);
    if (!m) return e;
    const file = path.resolve(m[1]!);
    const holders: string[] = [];
    for (const o of this.store.list()) {
      if (o.uuid === def.uuid || !this.supervisor.isRunning(o.uuid)) continue;
      for (const d of o.disks) {
        if (!d.path) continue;
        let chain: string[] = [path.resolve(d.path)];
        try {
          if (d.format === 'qcow2') chain = (await this.storage.backingChain(d.path, 'qcow2')).map((c) => path.resolve(c.path));
        } catch {
          /* keep the disk itself */
        }
        if (chain.includes(file)) {
          holders.push(o.name);
          break;
        }
      }
    }
    const who = holders.length
      ? `the running VM ${holders.map((h) => `"${h}"`).join(', ')} uses it`
      : 'another process (a VM outside Vireo, QEMU or an image tool) has it open';
    return new UserError(`${def.name} can't start: its disk ${file} is in use: ${who}. Shut that down first: two machines writing one disk would corrupt it.`);
  }

  /** Why this VM may not start now (a missing disk, a disk that backs a linked clone), thrown. */
  private async startChecks(def: VmDefinition): Promise<void> {
    const net = this.networks.startProblem(def.name, def.nics);
    if (net) throw new UserError(net);
    const log = def.serial?.logFile ? serialLogOutside(def.serial.logFile, this.paths.logs) : null;
    if (log) throw new UserError(`${def.name} can't start: ${log}. Choose a log file there under Details → Serial, or none.`);
    for (const d of def.disks) {
      if (d.path && !(await exists(d.path))) throw new UserError(`${def.name} can't start: ${d.path} is missing.`);
    }

    const idx = await this.storage.backingIndex();
    for (const d of def.disks) {
      if (d.media !== 'disk' || d.readOnly || !d.path) continue;
      const backs = idx.get(path.resolve(d.path));
      if (backs?.length) {
        throw new UserError(
          `${def.name} can't start: its disk ${path.basename(d.path)} is the backing file of ${backs.map((b) => path.basename(b)).join(', ')}, and writing to it would corrupt ${backs.length === 1 ? 'that linked clone' : 'those linked clones'}. Delete the linked clones, or run a full clone instead.`,
        );
      }
    }
  }

  // ---- snapshots (snapshots.ts) ----

  async 'snapshot.list'({ uuid }: Params<'snapshot.list'>): Promise<Result<'snapshot.list'>> {
    return this.snapshotCall(() => this.snapshots.list(this.need(uuid)));
  }

  async 'snapshot.create'({ uuid, name, description }: Params<'snapshot.create'>): Promise<Result<'snapshot.create'>> {
    const def = this.need(uuid);
    if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
    return this.snapshotCall(() => this.snapshots.create(def, name, description ?? ''));
  }

  async 'snapshot.revert'({ uuid, name, force }: Params<'snapshot.revert'>): Promise<Result<'snapshot.revert'>> {
    const def = this.need(uuid);
    if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
    return this.snapshotCall(() => this.snapshots.revert(def, name, !!force));
  }

  async 'snapshot.delete'({ uuid, name }: Params<'snapshot.delete'>): Promise<Result<'snapshot.delete'>> {
    const def = this.need(uuid);
    if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
    await this.snapshotCall(() => this.snapshots.remove(def, name));
    return {};
  }

  private async snapshotCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof SnapshotError) throw new UserError(e.message);
      throw e;
    }
  }

  async 'vm.screenshot'({ uuid }: Params<'vm.screenshot'>): Promise<Result<'vm.screenshot'>> {
    const def = this.need(uuid);
    const png = await this.needRunning(def).screenshot(uuid);
    return { pngBase64: Buffer.from(png).toString('base64') };
  }

  async 'vm.devices'({ uuid }: Params<'vm.devices'>): Promise<Result<'vm.devices'>> {
    const def = this.need(uuid);
    return { pci: await this.needRunning(def).devices(uuid) };
  }

  async 'vm.statsHistory'({ uuid }: Params<'vm.statsHistory'>): Promise<Result<'vm.statsHistory'>> {
    this.need(uuid);
    return { points: this.perf.history(uuid) };
  }

  async 'vm.interfaces'({ uuid }: Params<'vm.interfaces'>): Promise<Result<'vm.interfaces'>> {
    return this.interfaceCall(() => this.interfaces.list(this.need(uuid)));
  }

  async 'vm.setLink'({ uuid, iface, up }: Params<'vm.setLink'>): Promise<Result<'vm.setLink'>> {
    return this.interfaceCall(() => this.interfaces.setLink(this.need(uuid), iface, up));
  }

  private async interfaceCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof InterfaceError) throw new UserError(e.message);
      throw e;
    }
  }

  openStream(uuid: string): StreamHandle {
    return this.needRunning(this.need(uuid)).openStream(uuid);
  }

  private async diskPlans(def: VmDefinition) {
    const out = [];
    const idx = await this.storage.backingIndex();
    for (const d of def.disks) {
      const sharedWith = this.store
        .list()
        .filter((o) => o.uuid !== def.uuid && o.disks.some((od) => path.resolve(od.path) === path.resolve(d.path)))
        .map((o) => o.name);
      // Linked clones read this disk through their overlay: they use it too.
      for (const img of idx.get(path.resolve(d.path)) ?? []) {
        const users = this.storage.usedBy(img).map((u) => u.name).filter((n) => n !== def.name);
        for (const n of users.length ? users : [path.basename(img)]) if (!sharedWith.includes(n)) sharedWith.push(n);
      }
      const st = await this['fs.probe']({ path: d.path });
      const outsidePool = !(await inOwnPool(d.path, this.paths.pool));
      out.push({
        path: d.path,
        media: d.media,
        sizeBytes: st.sizeBytes,
        exists: st.exists,
        sharedWith,
        defaultChecked: d.media === 'disk' && !d.readOnly && sharedWith.length === 0 && st.exists && !outsidePool,
        outsidePool,
      });
    }
    return out;
  }

  private cloneBlocker(def: VmDefinition): string | null {
    const st = this.runtime.get(def.uuid)?.state ?? 'shutoff';
    if (this.busy.has(def.uuid)) return `${def.name} is busy: it is being ${this.busy.get(def.uuid)}.`;
    if (st !== 'shutoff' && st !== 'paused' && st !== 'crashed') return `${def.name} must be shut off or paused to be cloned.`;
    return null;
  }

  suggestCloneName(name: string): string {
    const base = `${name}-clone`.slice(0, 63);
    if (!this.store.byName(base)) return base;
    for (let i = 2; ; i++) {
      const n = `${base.slice(0, 58)}${i}`;
      if (!this.store.byName(n)) return n;
    }
  }

  async 'vm.clonePlan'({ uuid }: Params<'vm.clonePlan'>): Promise<Result<'vm.clonePlan'>> {
    const def = this.need(uuid);
    return { suggestedName: this.suggestCloneName(def.name), disks: await this.diskPlans(def), blocker: this.cloneBlocker(def) };
  }

  async 'vm.clone'({ uuid, name, mode }: Params<'vm.clone'>): Promise<Result<'vm.clone'>> {
    const def = this.need(uuid);
    const np = nameProblem(name) ?? (this.store.byName(name) ? `A VM named '${name}' already exists.` : null);
    if (np) return { errors: [{ field: 'name', message: np }] };
    const blocker = this.cloneBlocker(def);
    if (blocker) throw new UserError(blocker);
    if (mode === 'linked' && this.supervisor.isRunning(uuid)) {
      throw new UserError(`${def.name} must be shut off for a linked clone: its disks become the clone's read-only base.`);
    }
    const jobId = `job-${this.nextJob++}`;
    const ac = new AbortController();
    this.jobs.set(jobId, ac);
    this.busy.set(uuid, 'cloned');
    this.busy.set(`name:${name.toLowerCase()}`, 'created');
    void this.runClone(jobId, def, name, ac.signal, mode ?? 'full').finally(() => {
      this.jobs.delete(jobId);
      this.busy.delete(uuid);
      this.busy.delete(`name:${name.toLowerCase()}`);
    });
    return { errors: [], jobId };
  }

  private async runClone(jobId: string, def: VmDefinition, name: string, signal: AbortSignal, mode: 'full' | 'linked' = 'full'): Promise<void> {
    const copies: Array<{ from: string; to: string; size: number; format: Disk['format'] }> = [];
    const reserved = new Set<string>();
    const batch = new DiskBatch(this.journal, this.store.newUuid());
    try {
      const disks: Disk[] = [];
      for (const d of def.disks) {
        if (d.media === 'cdrom' || d.readOnly) {
          disks.push(d); // install media and read-only disks are shared, not copied
          continue;
        }
        const ext = mode === 'linked' ? '.qcow2' : path.extname(d.path) || '.img';
        const to = await this.pool.freePath(name, ext, reserved);
        reserved.add(to);
        copies.push({ from: d.path, to, size: (await fs.stat(d.path)).size, format: d.format });
        disks.push({ ...d, path: to, ...(mode === 'linked' ? { format: 'qcow2' as const } : {}) });
      }
      const total = copies.reduce((a, c) => a + c.size, 0);
      let before = 0;
      this.emit('job.progress', { jobId, doneBytes: 0, totalBytes: total, label: `Cloning ${def.name}` });
      // Each disk is made under a hidden temporary; only when all are made are they
      // journalled and linked into place, just before the definition is saved.
      for (const c of copies) {
        if (signal.aborted) throw new CopyCancelled();
        const tmp = batch.temp(c.to);
        if (mode === 'linked') {
          // A qcow2 overlay whose backing file is the source disk (absolute path): no data copied.
          await this.storage.createOverlayAt(tmp, path.resolve(c.from), c.format);
          before += c.size;
          this.emit('job.progress', { jobId, doneBytes: before, totalBytes: total, label: `Linked ${path.basename(c.to)} to ${path.basename(c.from)}` });
          continue;
        }
        await copyDiskTemp(
          c.from,
          tmp,
          (done) => this.emit('job.progress', { jobId, doneBytes: before + done, totalBytes: total, label: `Copying ${path.basename(c.from)}` }),
          signal,
        );
        before += c.size;
      }
      if (signal.aborted) throw new CopyCancelled();
      await batch.link();
      const taken = new Set<string>();
      const clone: VmDefinition = {
        ...def,
        uuid: batch.uuid,
        name,
        disks,
        nics: def.nics.map((n) => {
          const mac = this.store.newMac(taken);
          taken.add(mac);
          return { ...n, mac };
        }),
        createdAt: new Date().toISOString(),
      };
      delete clone.autostart; // like virt-clone: a clone does not start with the host
      // Its own serial log: two VMs appending to one file would interleave their consoles.
      if (def.serial?.logFile) clone.serial = { logFile: this.cloneLogPath(name) };
      await this.store.save(clone);
      await batch.done();
      this.emit('vm.changed', { vm: this.summary(clone) });
      if (copies.length) this.emit('storage.changed', { pool: 'default' });
      this.emit('job.done', { jobId, ok: true, cancelled: false, vmUuid: clone.uuid });
    } catch (e) {
      await batch.abort().catch(() => undefined); // best effort; the next start's recovery finishes it
      const cancelled = e instanceof CopyCancelled;
      this.emit('job.done', { jobId, ok: false, cancelled, ...(cancelled ? {} : { error: (e as Error).message }) });
    }
  }

  /** `<name>-com1.log` in the log directory (name made file-safe), with -2, -3... if another VM logs there. */
  private cloneLogPath(name: string): string {
    const used = new Set(this.store.list().map((d) => d.serial?.logFile).filter((f): f is string => !!f));
    const base = name.replace(/[^\w.-]/g, '_');
    for (let i = 1; ; i++) {
      const f = path.join(this.paths.logs, `${base}${i > 1 ? `-${i}` : ''}-com1.log`);
      if (!used.has(f)) return f;
    }
  }

  async 'job.cancel'({ jobId }: Params<'job.cancel'>): Promise<Result<'job.cancel'>> {
    this.jobs.get(jobId)?.abort();
    return {};
  }

  async 'vm.deletePlan'({ uuid }: Params<'vm.deletePlan'>): Promise<Result<'vm.deletePlan'>> {
    return { disks: await this.diskPlans(this.need(uuid)) };
  }

  async 'vm.delete'({ uuid, deleteDisks, confirm }: Params<'vm.delete'>): Promise<Result<'vm.delete'>> {
    const def = this.need(uuid);
    if (this.supervisor.isRunning(uuid)) throw new UserError(`${def.name} is running: shut it down or force it off first.`);
    if (this.busy.has(uuid)) throw new UserError(`${def.name} is being ${this.busy.get(uuid)}.`);
    const own = new Set(def.disks.map((d) => path.resolve(d.path)));
    for (const p of deleteDisks) {
      if (!own.has(path.resolve(p))) throw new UserError(`${p} is not a disk of ${def.name}.`);
    }
    // Busy from here: a start (or clone, edit) while the backing files are scanned is refused.
    this.busy.set(uuid, 'deleted');
    try {
      if (deleteDisks.length) {
        const unconfirmed = await confirmProblem(deleteDisks, this.paths.pool, confirm);
        if (unconfirmed) throw new UserError(unconfirmed);
        const why = await sharedDiskProblem(def, deleteDisks, {
          others: this.store.list(),
          isRunning: (u) => this.supervisor.isRunning(u),
          backing: await this.storage.backingIndex(),
        });
        if (why) throw new UserError(why);
      }
      // Journalled: a kill after the definition is gone still removes these files at the
      // next start; a kill before leaves the VM and its files as they were.
      const entry = await this.journal.record(uuid, 'delete', deleteDisks.map((p) => ({ path: p })));
      await this.store.remove(uuid);
      this.runtime.delete(uuid);
      await this.saves.remove(uuid); // its saved state goes with it (a kill here: init() removes it)
      await this.snapshots.forget(uuid); // and its snapshot list and machine states (never a disk)
      const deleted: string[] = [];
      const dirs = new Set<string>();
      for (const f of (await this.journal.read(entry)).files) {
        if (await removeIfSame(f)) {
          deleted.push(deleteDisks.find((p) => path.resolve(p) === f.path) ?? f.path);
          dirs.add(path.dirname(f.path));
        }
      }
      for (const d of dirs) await syncDir(d);
      await this.journal.clear(entry);
      this.emit('vm.removed', { uuid });
      if (deleted.length) this.emit('storage.changed', { pool: 'default' });
      return { deleted };
    } finally {
      this.busy.delete(uuid);
    }
  }

  // ---- storage pools and volumes (electron/services/storage) ----

  private async storageCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof StorageError) throw new UserError(e.message);
      throw e;
    }
  }

  async 'storage.pools'(): Promise<Result<'storage.pools'>> {
    return this.storageCall(() => this.storage.listPools());
  }

  async 'storage.poolDefine'({ name, path: p }: Params<'storage.poolDefine'>): Promise<Result<'storage.poolDefine'>> {
    return this.storageCall(() => this.storage.definePool(name, p));
  }

  async 'storage.poolUndefine'({ name }: Params<'storage.poolUndefine'>): Promise<Result<'storage.poolUndefine'>> {
    return this.storageCall(async () => (await this.storage.undefinePool(name), {}));
  }

  async 'storage.volumes'({ pool }: Params<'storage.volumes'>): Promise<Result<'storage.volumes'>> {
    return this.storageCall(() => this.storage.listVolumes(pool));
  }

  async 'storage.volumeCreate'(p: Params<'storage.volumeCreate'>): Promise<Result<'storage.volumeCreate'>> {
    return this.storageCall(() => this.storage.createVolume(p));
  }

  async 'storage.volumeResize'(p: Params<'storage.volumeResize'>): Promise<Result<'storage.volumeResize'>> {
    return this.storageCall(async () => {
      const unconfirmed = await confirmProblem([path.join(this.storage.poolPath(p.pool), p.name)], this.paths.pool, p.confirm ? [p.confirm] : []);
      if (unconfirmed) throw new UserError(unconfirmed);
      return this.storage.resizeVolume({ pool: p.pool, name: p.name, capacityBytes: p.capacityBytes, ...(p.shrink ? { shrink: true } : {}) });
    });
  }

  async 'storage.volumeDelete'(p: Params<'storage.volumeDelete'>): Promise<Result<'storage.volumeDelete'>> {
    return this.storageCall(async () => {
      // A user-defined pool can be any directory: outside Vireo's own pool the request must name the file.
      const file = path.join(this.storage.poolPath(p.pool), p.name);
      const unconfirmed = await confirmProblem([file], this.paths.pool, p.confirm ? [p.confirm] : []);
      if (unconfirmed) throw new UserError(unconfirmed);
      await this.storage.deleteVolume({ pool: p.pool, name: p.name });
      return {};
    });
  }

  // ---- libvirt domain XML (electron/services/libvirt) and osinfo-db (electron/services/osinfo) ----

  async 'vm.exportXml'({ uuid }: Params<'vm.exportXml'>): Promise<Result<'vm.exportXml'>> {
    const def = this.need(uuid);
    await this.osinfo.ready();
    return this.libvirt.export(def);
  }

  async 'vm.importXml'(p: Params<'vm.importXml'>): Promise<Result<'vm.importXml'>> {
    await this.osinfo.ready();
    const { errors, def, ignored } = this.libvirt.plan(p);
    if (errors.length || !def || p.dryRun) return { errors, ignored };
    await this.store.save(def);
    const vm = this.summary(def);
    this.emit('vm.changed', { vm });
    return { errors: [], vm, ignored };
  }

  /** virt-install --print-xml: the domain XML a wizard request would define (nothing is written). */
  async 'vm.createXml'(req: Params<'vm.createXml'>): Promise<Result<'vm.createXml'>> {
    const errors = await this.validate(req);
    if (errors.length) return { errors };
    let made: Disk | null = null;
    if (req.storage.kind === 'create' && req.media.kind !== 'import') {
      const st = req.storage;
      const format = st.backing ? 'qcow2' : (st.format ?? 'raw');
      made = { path: await this.pool.freePath(req.name, format === 'qcow2' ? '.qcow2' : '.img'), format, media: 'disk', bus: st.bus ?? 'ide' };
    }
    const def = await this.newDefinition(req, this.store.newUuid(), made);
    return { errors: [], xml: this.libvirt.export(def).xml };
  }

  /** virsh edit: the VM's definition replaced from domain XML (same UUID), through the details editor's checks. */
  async 'vm.updateXml'({ uuid, xml, dryRun }: Params<'vm.updateXml'>): Promise<Result<'vm.updateXml'>> {
    const def = this.need(uuid);
    await this.osinfo.ready();
    const { errors, def: parsed, ignored } = this.libvirt.planUpdate(def, xml);
    if (errors.length || !parsed) return { errors, ignored, nextBoot: false };
    const r = await this['vm.update']({ uuid, edit: editOf(parsed), ...(dryRun !== undefined ? { dryRun } : {}) });
    return { ...r, ignored };
  }

  async 'os.detect'({ path: p }: Params<'os.detect'>): Promise<Result<'os.detect'>> {
    await this.osinfo.ready();
    return detectOs(this.osinfo, p);
  }

  async 'os.list'({ query, limit }: Params<'os.list'>): Promise<Result<'os.list'>> {
    await this.osinfo.ready();
    return this.osinfo.search(query ?? '', limit ?? 50);
  }

  // ---- virtual networks (networks.ts) ----

  private async networkCall<T>(fn: () => Promise<T> | T): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof NetworkError) throw new UserError(e.message);
      throw e;
    }
  }

  async 'network.list'(): Promise<Result<'network.list'>> {
    return this.networks.list();
  }

  async 'network.define'({ def, start, dryRun }: Params<'network.define'>): Promise<Result<'network.define'>> {
    return this.networkCall(() => this.networks.define(def, { ...(start !== undefined ? { start } : {}), ...(dryRun !== undefined ? { dryRun } : {}) }));
  }

  async 'network.edit'({ name, def, dryRun }: Params<'network.edit'>): Promise<Result<'network.edit'>> {
    return this.networkCall(() => this.networks.edit(name, def, dryRun ?? false));
  }

  async 'network.start'({ name }: Params<'network.start'>): Promise<Result<'network.start'>> {
    return this.networkCall(() => this.networks.start(name));
  }

  async 'network.stop'({ name }: Params<'network.stop'>): Promise<Result<'network.stop'>> {
    return this.networkCall(() => this.networks.stop(name));
  }

  async 'network.leases'({ name }: Params<'network.leases'>): Promise<Result<'network.leases'>> {
    return this.networkCall(() => {
      if (!this.networks.get(name)) throw new NetworkError(`No network named '${name}'.`);
      const owner = new Map<string, string>();
      for (const d of this.store.list()) for (const n of d.nics) if (n.network === name) owner.set(n.mac.toLowerCase(), d.name);
      return this.switches.leases(name).map((l) => ({ ...l, ...(owner.has(l.mac) ? { vm: owner.get(l.mac)! } : {}) }));
    });
  }

  async 'network.autostart'({ name, autostart }: Params<'network.autostart'>): Promise<Result<'network.autostart'>> {
    return this.networkCall(() => this.networks.setAutostart(name, autostart));
  }

  async 'network.undefine'({ name }: Params<'network.undefine'>): Promise<Result<'network.undefine'>> {
    return this.networkCall(async () => (await this.networks.undefine(name), {}));
  }

  /**
   * App quit: jobs are cancelled and every running VM is stopped gracefully (its engine
   * host gets SIGTERM: vCPUs stop, disk I/O completes, qcow2 metadata is flushed), then
   * killed only if it does not exit in time. Resolves with what happened to each VM.
   */
  async shutdown(): Promise<Array<{ name: string; how: 'stopped' | 'killed' }>> {
    for (const ac of this.jobs.values()) ac.abort();
    const done = await this.supervisor.shutdownAll();
    this.switches.stopAll();
    return done.map((d) => ({ name: this.store.get(d.uuid)?.name ?? d.uuid, how: d.how }));
  }

  private need(uuid: string): VmDefinition {
    const def = this.store.get(uuid);
    if (!def) throw new UserError('No such VM (it may have been deleted).');
    return def;
  }

  /** The format an imported disk is opened with: stated in the request, or by a VM's definition, else read once from the file. */
  private async importFormat(p: string, stated?: 'raw' | 'qcow2'): Promise<'raw' | 'qcow2'> {
    return stated ?? this.storage.statedFormat(p) ?? (await probeFormat(p));
  }

  /**
   * Why `p` can't be imported, or null: its backing chain (checked as the engine opens
   * it) is broken, loops, is too deep, or names a backing file while its format was
   * only read from the file, not stated: the user then sees the chain and states it.
   */
  private async importProblem(p: string, stated?: 'raw' | 'qcow2'): Promise<string | null> {
    const fmt = await this.importFormat(p, stated);
    let chain;
    try {
      chain = await this.storage.backingChain(p, fmt);
    } catch (e) {
      return (e as Error).message;
    }
    if (chain.length > 1 && !stated && !this.storage.statedFormat(p)) {
      return `${p} is a qcow2 image that reads from other files: ${chain.map((c) => `${c.path} (${c.format})`).join(' → ')}. ` +
        'Import it as qcow2 only if you trust that chain, or as raw to use the file itself as the disk.';
    }
    return null;
  }

  private needRunning(def: VmDefinition): Supervisor {
    if (!this.supervisor.isRunning(def.uuid)) throw new UserError(`${def.name} is not running.`);
    return this.supervisor;
  }
}

/** The network a wizard request puts its NIC on: null for none; 'user' (older clients) is 'default'. */
function wizardNetwork(n: string): string | null {
  if (n === 'none') return null;
  return n === 'user' ? DEFAULT_NETWORK : n;
}

async function probeFormat(p: string): Promise<'raw' | 'qcow2'> {
  const fh = await fs.open(p, 'r');
  try {
    const b = Buffer.alloc(4);
    await fh.read(b, 0, 4, 0);
    return b.toString('latin1') === 'QFI\xfb' ? 'qcow2' : 'raw';
  } finally {
    await fh.close();
  }
}
