// Managed save (virsh managedsave / virt-manager's "Save"): a running or paused VM's
// whole machine state goes to one file per VM under the config dir, the engine stops,
// and the VM shows "Saved". The next start loads that file into a fresh machine
// (docs/state.md) and the file is removed once the restored VM runs. A file the engine
// refuses is kept: the start fails with the engine's message, and only "Discard saved
// state" (virsh managedsave-remove) deletes it.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { VmDefinition, VmEdit } from '../common/contracts/vm';
import { syncDir } from './atomic';

/** A refusal the user should read (turned into a UserError by the app service). */
export class VmStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VmStateError';
  }
}

export const STATE_EXT = '.vstate';

export const DISCARD_HINT = 'Use "Discard saved state" (virsh managedsave-remove) to start it fresh; the saved state is kept until then.';

export interface ManagedSaveDeps {
  /** <config>/vireo/save */
  dir: string;
  /** The supervisor's save: pause, write `file`, stop. `written` runs once the file is complete, before the host exits. */
  save(uuid: string, file: string, written: () => void): Promise<void>;
  /** The VM's run state, undefined when it is not running. */
  runState(uuid: string): string | undefined;
}

export class ManagedSaves {
  private readonly saved = new Set<string>();

  constructor(private readonly deps: ManagedSaveDeps) {}

  get dir(): string {
    return this.deps.dir;
  }

  /**
   * Finds the state files there are. A `.partial` left by a save that was killed is
   * removed (the engine renames only a complete, fsynced file); files of VMs that no
   * longer exist are removed too (a delete killed halfway). Returns what was removed.
   */
  async init(known: (uuid: string) => boolean): Promise<string[]> {
    await fs.mkdir(this.deps.dir, { recursive: true, mode: 0o700 });
    const removed: string[] = [];
    for (const f of await fs.readdir(this.deps.dir)) {
      const full = path.join(this.deps.dir, f);
      if (f.endsWith(`${STATE_EXT}.partial`)) {
        await fs.rm(full, { force: true });
        removed.push(full);
        continue;
      }
      if (!f.endsWith(STATE_EXT)) continue;
      const uuid = f.slice(0, -STATE_EXT.length);
      if (!known(uuid)) {
        await fs.rm(full, { force: true });
        removed.push(full);
        continue;
      }
      this.saved.add(uuid);
    }
    return removed;
  }

  pathOf(uuid: string): string {
    return path.join(this.deps.dir, `${uuid}${STATE_EXT}`);
  }

  has(uuid: string): boolean {
    return this.saved.has(uuid);
  }

  /** Saves a running or paused VM; the VM is off afterwards, its state in pathOf(uuid). */
  async save(def: VmDefinition, onWritten: () => void): Promise<void> {
    const st = this.deps.runState(def.uuid);
    if (st === undefined) throw new VmStateError(`${def.name} is not running: only a running or paused VM can be saved.`);
    if (st !== 'running' && st !== 'paused') throw new VmStateError(`${def.name} is ${st === 'shuttingdown' ? 'shutting down' : st}: only a running or paused VM can be saved.`);
    await fs.mkdir(this.deps.dir, { recursive: true, mode: 0o700 });
    const file = this.pathOf(def.uuid);
    try {
      await this.deps.save(def.uuid, file, () => {
        this.saved.add(def.uuid);
        onWritten();
      });
    } catch (e) {
      if (!this.saved.has(def.uuid)) throw new VmStateError(`${def.name} was not saved: ${(e as Error).message}. It is still running.`);
      throw e;
    }
  }

  /** virsh managedsave-remove: the saved state is deleted; the next start boots fresh. */
  async discard(def: VmDefinition): Promise<void> {
    if (!this.saved.has(def.uuid)) throw new VmStateError(`${def.name} has no saved state.`);
    await this.remove(def.uuid);
  }

  /** The restored VM runs (or the VM is deleted): its state file goes. */
  async remove(uuid: string): Promise<void> {
    if (!this.saved.has(uuid)) return;
    await fs.rm(this.pathOf(uuid), { force: true });
    this.saved.delete(uuid);
    await syncDir(this.deps.dir).catch(() => undefined);
  }

  /**
   * Why an edit can't be saved while the VM has a saved state, or null: the machine in
   * the state file has this hardware, and a restore into other hardware would be refused
   * (memory, CPUs, devices) or worse, run on other disks. Name, OS label, serial log and
   * autostart may change.
   */
  editProblem(def: VmDefinition, edit: VmEdit): string | null {
    if (!this.saved.has(def.uuid)) return null;
    const changed: string[] = [];
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (edit.memoryMiB !== def.memoryMiB) changed.push('memory');
    if (edit.cpus !== def.cpus) changed.push('CPUs');
    if (!same(edit.boot, def.boot)) changed.push('boot options');
    if (!same(edit.disks.map(norm), def.disks.map(norm))) changed.push('disks');
    if (!same(edit.nics, def.nics)) changed.push('network cards');
    if (!changed.length) return null;
    return `${def.name} has a saved state: its ${changed.join(', ')} can't change until it is restored (Run) or the saved state is discarded, because the saved machine would no longer match.`;
  }
}

function norm(d: VmEdit['disks'][number]): unknown {
  return { path: d.path, format: d.format, media: d.media, bus: d.bus, readOnly: !!d.readOnly };
}
