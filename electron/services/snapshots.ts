// VM snapshots (virsh snapshot-create-as / snapshot-list --tree / snapshot-revert /
// snapshot-delete / snapshot-current). A snapshot named N is an internal qcow2 snapshot
// N on every writable disk of the VM; one taken while the VM runs (or is paused) also
// has the whole machine state in a state file. Per VM, under <config>/snapshots/<uuid>/:
//   snapshots.json     the tree: name, description, time, parent, kind, the VM's definition
//                      then, and which one is current (written atomically)
//   <16 hex>.vstate    a disk + RAM snapshot's machine state (docs/state.md's format)
// The state lives beside the metadata, not in the qcow2 vmstate area: the machine state
// belongs to the whole VM, not to one of its disks, it is one file the engine's
// save/restore already writes and checks, and the images stay what qemu-img expects
// (vm-state-size 0; QEMU could not load Vireo's state anyway).
// Disks are touched through the engine while the VM runs (its images are locked and open)
// and through vireo-img when it is off. Deleting a snapshot never deletes a disk.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { UUID_PATTERN, type VmDefinition } from '../common/contracts/vm';
import {
  type Snapshot,
  type SnapshotFieldError,
  type SnapshotIndex,
  type SnapshotRecord,
  SnapshotIndexSchema,
  snapshotNameProblem,
} from '../common/contracts/snapshots';
import { syncDir, writeFileAtomic } from './atomic';
import { sweepTemps } from './disk-journal';

/** A refusal the user should read (turned into a UserError by the app service). */
export class SnapshotError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

/** Internal snapshots of one image, as vireo-img info lists them. */
export interface DiskSnapshotInfo {
  name: string;
  /** The qcow2 snapshot ID ("1", "2"...), where the tool gives it. */
  id?: string;
  /** Seconds since the epoch. */
  dateSec: number;
}

/** The block layer on images no engine has open (vireo-img in the app; tests may use the same). */
export interface DiskSnapshotTool {
  list(file: string): Promise<DiskSnapshotInfo[]>;
  create(file: string, name: string): Promise<void>;
  apply(file: string, name: string): Promise<void>;
  remove(file: string, name: string): Promise<void>;
}

export interface SnapshotDeps {
  /** <config>/snapshots */
  dir: string;
  disks: DiskSnapshotTool;
  /** The VM's run state, undefined when it is not running. */
  runState(uuid: string): string | undefined;
  /** Started with temporary changes (throwaway overlays): no snapshot reaches its disks. */
  temporary(uuid: string): boolean;
  /** Has a managed save (virsh managedsave). */
  saved(uuid: string): boolean;
  /** The engine host's snapshot op (pause, state file, disk snapshots, resume). */
  engine(uuid: string, op: 'create' | 'delete', name: string, statePath?: string): Promise<void>;
  forceOff(uuid: string): Promise<void>;
  discardSave(uuid: string): Promise<void>;
  /** Writes the VM's definition (the revert restores the snapshot's hardware). */
  saveDefinition(def: VmDefinition): Promise<void>;
  /** Starts the VM restoring `stateFile` (kept afterwards). */
  startFrom(uuid: string, stateFile: string): Promise<void>;
  changed(uuid: string): void;
}

/** The disks a snapshot covers: every writable disk with a file. */
function writableDisks(def: VmDefinition) {
  return def.disks.filter((d) => d.media === 'disk' && !d.readOnly && d.path);
}

/** Why the VM's disks can't take snapshots (raw ones), or null. */
export function diskProblem(def: VmDefinition): string | null {
  const raw = writableDisks(def).filter((d) => d.format !== 'qcow2');
  if (raw.length) return `snapshots need qcow2 disks: ${raw.map((d) => path.basename(d.path)).join(', ')}`;
  if (!writableDisks(def).length) return `${def.name} has no writable disk to snapshot`;
  return null;
}

export class SnapshotService {
  /** One operation per VM at a time. */
  private readonly busy = new Set<string>();

  constructor(private readonly deps: SnapshotDeps) {}

  /**
   * At service start: the snapshot lists and machine states of VMs that have no
   * definition go (a delete killed after it removed the definition and before it removed
   * these: the journal finishes its disks, this its snapshots), and hidden temporaries
   * of unfinished snapshots.json writes are swept. `known`: a VM whose definition file
   * exists (one that does not load is kept, never acted on). Returns what it removed.
   */
  async init(known: (uuid: string) => boolean): Promise<{ orphans: string[]; temporaries: string[] }> {
    let names: string[];
    try {
      names = await fs.readdir(this.deps.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { orphans: [], temporaries: [] };
      throw e;
    }
    const removed: string[] = [];
    const kept: string[] = [];
    for (const n of names.sort()) {
      const full = path.join(this.deps.dir, n);
      const st = await fs.lstat(full).catch(() => null);
      if (!st?.isDirectory() || !UUID_PATTERN.test(n)) continue; // not a VM's: left alone
      if (known(n)) {
        kept.push(full);
        continue;
      }
      await fs.rm(full, { recursive: true, force: true });
      removed.push(full);
    }
    if (removed.length) await syncDir(this.deps.dir).catch(() => undefined);
    return { orphans: removed, temporaries: await sweepTemps(kept) };
  }

  dirOf(uuid: string): string {
    return path.join(this.deps.dir, uuid);
  }

  private indexFile(uuid: string): string {
    return path.join(this.dirOf(uuid), 'snapshots.json');
  }

  async load(uuid: string): Promise<SnapshotIndex> {
    let text: string;
    try {
      text = await fs.readFile(this.indexFile(uuid), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, current: null, snapshots: [] };
      throw e;
    }
    try {
      return SnapshotIndexSchema.parse(JSON.parse(text), 'snapshots.json');
    } catch (e) {
      throw new SnapshotError(`${this.indexFile(uuid)} is damaged (${(e as Error).message}); move it away to start a new snapshot list (the disks keep their snapshots).`);
    }
  }

  private async store(uuid: string, idx: SnapshotIndex): Promise<void> {
    await fs.mkdir(this.dirOf(uuid), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.indexFile(uuid), JSON.stringify(SnapshotIndexSchema.parse(idx), null, 2) + '\n', 0o600);
  }

  /** Disk snapshots on the VM's qcow2 disks that the metadata does not know (qemu-img snapshot -c). */
  private async foreign(def: VmDefinition, idx: SnapshotIndex): Promise<Map<string, DiskSnapshotInfo>> {
    const known = new Set(idx.snapshots.map((s) => s.name));
    const out = new Map<string, DiskSnapshotInfo>();
    for (const { list } of await this.qcow2Lists(def))
      for (const s of list) if (!known.has(s.name) && !out.has(s.name)) out.set(s.name, s);
    return out;
  }

  /** The internal snapshots of each of the VM's writable qcow2 disks (a missing disk is left out: the start will say so). */
  private async qcow2Lists(def: VmDefinition): Promise<Array<{ disk: string; list: DiskSnapshotInfo[] }>> {
    const out: Array<{ disk: string; list: DiskSnapshotInfo[] }> = [];
    for (const d of writableDisks(def)) {
      if (d.format !== 'qcow2') continue;
      try {
        out.push({ disk: d.path, list: await this.deps.disks.list(d.path) });
      } catch {
        continue;
      }
    }
    return out;
  }

  /** A snapshot on one of the VM's qcow2 disks whose qcow2 ID is `name`. */
  private async idClash(def: VmDefinition, name: string): Promise<{ name: string; disk: string } | undefined> {
    for (const { disk, list } of await this.qcow2Lists(def)) {
      const hit = list.find((s) => s.id === name && s.name !== name);
      if (hit) return { name: hit.name, disk };
    }
    return undefined;
  }

  async list(def: VmDefinition): Promise<{ snapshots: Snapshot[]; current: string | null; problem: string | null }> {
    const idx = await this.load(def.uuid);
    const foreign = await this.foreign(def, idx);
    const snaps: Snapshot[] = idx.snapshots.map((r) => ({
      name: r.name,
      description: r.description,
      createdAt: r.createdAt,
      parent: r.parent,
      children: idx.snapshots.filter((c) => c.parent === r.name).map((c) => c.name),
      kind: r.kind,
      state: r.state,
      current: idx.current === r.name,
    }));
    for (const [name, info] of foreign) {
      snaps.push({ name, description: '', createdAt: new Date(info.dateSec * 1000).toISOString(), parent: null, children: [], kind: 'disk', state: 'shutoff', current: false, external: true });
    }
    // Parents before children, each level by time (virsh snapshot-list --tree's order).
    const byTime = (a: Snapshot, b: Snapshot) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name);
    const ordered: Snapshot[] = [];
    const visit = (parent: string | null) => {
      for (const s of snaps.filter((x) => x.parent === parent).sort(byTime)) {
        ordered.push(s);
        visit(s.name);
      }
    };
    visit(null);
    for (const s of snaps) if (!ordered.includes(s)) ordered.push(s); // a parent lost: shown anyway
    return { snapshots: ordered, current: idx.current, problem: diskProblem(def) };
  }

  async create(def: VmDefinition, name: string, description = ''): Promise<{ errors: SnapshotFieldError[]; snapshot?: Snapshot }> {
    const errors: SnapshotFieldError[] = [];
    const shape = snapshotNameProblem(name);
    if (shape) errors.push({ field: 'name', message: shape });
    if (description.length > 4096) errors.push({ field: 'description', message: 'Descriptions are at most 4096 characters.' });
    const idx = await this.load(def.uuid);
    if (!shape) {
      const taken = idx.snapshots.some((s) => s.name === name) || (await this.foreign(def, idx)).has(name);
      if (taken) errors.push({ field: 'name', message: `${def.name} already has a snapshot named '${name}'.` });
      else {
        // qemu-img (and QEMU's loadvm) take a number as a snapshot ID first: a name that is the ID
        // of another snapshot on a disk would address that one there, so it is refused.
        const clash = await this.idClash(def, name);
        if (clash) errors.push({ field: 'name', message: `'${name}' is the ID of snapshot '${clash.name}' on ${path.basename(clash.disk)} (qemu-img would take '${name}' to mean that one): choose another name.` });
      }
    }
    if (errors.length) return { errors };
    return this.exclusive(def, async () => {
      const problem = diskProblem(def);
      if (problem) throw new SnapshotError(problem.startsWith('snapshots need') ? `${def.name} can't take snapshots: ${problem} (internal snapshots live inside qcow2 images; convert raw disks to qcow2 to use them).` : `${problem}.`);
      if (this.deps.saved(def.uuid)) throw new SnapshotError(`${def.name} has a saved state: restore it (Run) or discard it before taking a snapshot.`);
      const st = this.deps.runState(def.uuid);
      if (st !== undefined && st !== 'running' && st !== 'paused') throw new SnapshotError(`${def.name} is ${st === 'shuttingdown' ? 'shutting down' : st}: take a snapshot when it runs, is paused or is shut off.`);
      if (st !== undefined && this.deps.temporary(def.uuid)) throw new SnapshotError(`${def.name} runs with temporary changes: its disks are not written, so there is nothing to snapshot. Shut it down first.`);
      let rec: SnapshotRecord;
      const base = { name, description, createdAt: new Date().toISOString(), parent: idx.current, definition: structuredClone(def) };
      if (st !== undefined) {
        const stateFile = `${randomBytes(8).toString('hex')}.vstate`;
        await fs.mkdir(this.dirOf(def.uuid), { recursive: true, mode: 0o700 });
        const full = path.join(this.dirOf(def.uuid), stateFile);
        try {
          await this.deps.engine(def.uuid, 'create', name, full);
        } catch (e) {
          await fs.rm(full, { force: true });
          throw new SnapshotError(`The snapshot was not taken: ${(e as Error).message}.`);
        }
        rec = { ...base, kind: 'disk+ram', state: st as 'running' | 'paused', stateFile };
      } else {
        const made: string[] = [];
        for (const d of writableDisks(def)) {
          try {
            await this.deps.disks.create(d.path, name);
            made.push(d.path);
          } catch (e) {
            for (const m of made) await this.deps.disks.remove(m, name).catch(() => undefined);
            throw new SnapshotError(`The snapshot was not taken: ${path.basename(d.path)}: ${(e as Error).message}.`);
          }
        }
        rec = { ...base, kind: 'disk', state: 'shutoff' };
      }
      idx.snapshots.push(rec);
      idx.current = name;
      await this.store(def.uuid, idx);
      this.deps.changed(def.uuid);
      const snap = (await this.list(def)).snapshots.find((s) => s.name === name)!;
      return { errors: [], snapshot: snap };
    });
  }

  /**
   * Back to the snapshot: disks, definition (hardware), and for disk + RAM the running
   * machine. The VM must be off unless `force` (then it is forced off first).
   */
  async revert(def: VmDefinition, name: string, force = false): Promise<{ started: boolean }> {
    return this.exclusive(def, async () => {
      const idx = await this.load(def.uuid);
      const rec = idx.snapshots.find((s) => s.name === name);
      const foreign = rec ? undefined : (await this.foreign(def, idx)).get(name);
      if (!rec && !foreign) throw new SnapshotError(`${def.name} has no snapshot named '${name}'.`);
      const target = rec ? { ...structuredClone(rec.definition), uuid: def.uuid, name: def.name, autostart: def.autostart, createdAt: def.createdAt } : def;
      if (rec && target.autostart === undefined) delete target.autostart;
      // Everything checked before anything changes: the disks exist and hold the snapshot.
      const disks = writableDisks(target);
      for (const d of disks) {
        if (d.format !== 'qcow2') throw new SnapshotError(`${def.name} can't revert: snapshots need qcow2 disks: ${path.basename(d.path)}.`);
        let list: DiskSnapshotInfo[];
        try {
          list = await this.deps.disks.list(d.path);
        } catch (e) {
          throw new SnapshotError(`${def.name} can't revert to '${name}': ${d.path}: ${(e as Error).message}.`);
        }
        if (!list.some((s) => s.name === name)) throw new SnapshotError(`${def.name} can't revert to '${name}': its disk ${path.basename(d.path)} has no snapshot of that name (it was deleted outside Vireo, or the disk was added later).`);
      }
      const statePath = rec?.stateFile ? path.join(this.dirOf(def.uuid), rec.stateFile) : undefined;
      if (statePath) {
        try {
          await fs.access(statePath);
        } catch {
          throw new SnapshotError(`${def.name} can't revert to '${name}': its machine state ${statePath} is missing.`);
        }
      }
      const st = this.deps.runState(def.uuid);
      const saved = this.deps.saved(def.uuid);
      if ((st !== undefined || saved) && !force) {
        throw new SnapshotError(`${def.name} is ${st ?? 'saved'}: reverting to '${name}' ${st !== undefined ? 'forces it off' : 'discards its saved state'} and loses everything since the snapshot. Confirm to go on.`);
      }
      if (st !== undefined) await this.deps.forceOff(def.uuid);
      if (saved) await this.deps.discardSave(def.uuid);
      for (const d of disks) {
        try {
          await this.deps.disks.apply(d.path, name);
        } catch (e) {
          throw new SnapshotError(`Reverting ${def.name} to '${name}' failed on ${path.basename(d.path)}: ${(e as Error).message}.`);
        }
      }
      if (rec && JSON.stringify(target) !== JSON.stringify(def)) await this.deps.saveDefinition(target);
      if (rec) {
        idx.current = name;
        await this.store(def.uuid, idx);
      }
      this.deps.changed(def.uuid);
      if (!statePath) return { started: false };
      try {
        await this.deps.startFrom(def.uuid, statePath);
      } catch (e) {
        throw new SnapshotError(`${def.name}'s disks are back at '${name}', but its machine state did not start: ${(e as Error).message}`);
      }
      return { started: true };
    });
  }

  async remove(def: VmDefinition, name: string): Promise<void> {
    return this.exclusive(def, async () => {
      const idx = await this.load(def.uuid);
      const rec = idx.snapshots.find((s) => s.name === name);
      if (!rec && !(await this.foreign(def, idx)).has(name)) throw new SnapshotError(`${def.name} has no snapshot named '${name}'.`);
      const st = this.deps.runState(def.uuid);
      if (st !== undefined) {
        if (this.deps.temporary(def.uuid)) throw new SnapshotError(`${def.name} runs with temporary changes: shut it down to delete a snapshot from its disks.`);
        try {
          await this.deps.engine(def.uuid, 'delete', name);
        } catch (e) {
          throw new SnapshotError(`The snapshot was not deleted: ${(e as Error).message}.`);
        }
      } else {
        // The VM's disks now and the snapshot's: each one that holds it.
        const files = new Set(writableDisks(def).filter((d) => d.format === 'qcow2').map((d) => d.path));
        for (const d of rec ? writableDisks(rec.definition) : []) if (d.format === 'qcow2') files.add(d.path);
        for (const f of files) {
          let list: DiskSnapshotInfo[];
          try {
            list = await this.deps.disks.list(f);
          } catch {
            continue; // the disk is gone: nothing to delete there
          }
          if (!list.some((s) => s.name === name)) continue;
          try {
            await this.deps.disks.remove(f, name);
          } catch (e) {
            throw new SnapshotError(`The snapshot was not deleted from ${path.basename(f)}: ${(e as Error).message}.`);
          }
        }
      }
      if (rec) {
        for (const c of idx.snapshots) if (c.parent === name) c.parent = rec.parent;
        idx.snapshots = idx.snapshots.filter((s) => s !== rec);
        if (idx.current === name) idx.current = rec.parent;
        await this.store(def.uuid, idx);
        if (rec.stateFile) await fs.rm(path.join(this.dirOf(def.uuid), rec.stateFile), { force: true });
        await syncDir(this.dirOf(def.uuid)).catch(() => undefined);
      }
      this.deps.changed(def.uuid);
    });
  }

  /** The VM is deleted: its snapshot metadata and state files go (its disks' snapshots go with the disks, or stay on kept disks). */
  async forget(uuid: string): Promise<void> {
    await fs.rm(this.dirOf(uuid), { recursive: true, force: true });
  }

  private async exclusive<T>(def: VmDefinition, fn: () => Promise<T>): Promise<T> {
    if (this.busy.has(def.uuid)) throw new SnapshotError(`${def.name} is busy with another snapshot operation: try again when it is done.`);
    this.busy.add(def.uuid);
    try {
      return await fn();
    } finally {
      this.busy.delete(def.uuid);
    }
  }
}
