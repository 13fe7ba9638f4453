// Delete VM with storage: which of the chosen files may go. A file another VM uses
// (any other definition naming it, running or not, or whose disk has it in its
// backing chain) is refused with the other VM's name; nothing is deleted then.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { VmDefinition } from '../common/contracts/vm';

/** One name per file however it is spelled: the real path where it exists, else the resolved one. */
export async function fileKey(p: string): Promise<string> {
  try {
    return await fs.realpath(p);
  } catch {
    return path.resolve(p);
  }
}

export interface DeleteScan {
  /** Every other definition. */
  others: VmDefinition[];
  isRunning(uuid: string): boolean;
  /** File (absolute) -> images (absolute) whose backing chain includes it (StorageService.backingIndex). */
  backing: Map<string, string[]>;
}

/** Why these files of `def` may not be deleted, or null. */
export async function sharedDiskProblem(def: VmDefinition, files: string[], scan: DeleteScan): Promise<string | null> {
  const doomed = new Set(await Promise.all(files.map(fileKey)));
  // Which VM owns which file key (its disks, and the files their disks are overlays of).
  const owners = new Map<string, string[]>();
  const add = (key: string, who: string) => {
    const l = owners.get(key) ?? [];
    if (!l.includes(who)) l.push(who);
    owners.set(key, l);
  };
  const keyToImages = new Map<string, string[]>();
  for (const [file, images] of scan.backing) keyToImages.set(await fileKey(file), images);
  for (const o of scan.others) {
    if (o.uuid === def.uuid) continue;
    const who = `'${o.name}'${scan.isRunning(o.uuid) ? ' (running)' : ''}`;
    for (const d of o.disks) if (d.path) add(await fileKey(d.path), who);
  }
  for (const f of files) {
    const key = await fileKey(f);
    const direct = owners.get(key);
    if (direct?.length) {
      return `${path.basename(f)} is also a disk of the VM ${direct.join(', ')}: keep it (untick it), or remove it from ${direct.length === 1 ? 'that VM' : 'those VMs'} first.`;
    }
    // Images that read this file through their backing chain and are not deleted with it.
    const readers = [];
    for (const img of keyToImages.get(key) ?? []) if (!doomed.has(await fileKey(img))) readers.push(img);
    if (readers.length) {
      const who = [];
      for (const img of readers) {
        const vms = owners.get(await fileKey(img));
        who.push(vms?.length ? `${path.basename(img)} (VM ${vms.join(', ')})` : path.basename(img));
      }
      return `${path.basename(f)} is the backing file of ${who.join(', ')}: keep it, or delete ${readers.length === 1 ? 'that linked clone' : 'those linked clones'} first.`;
    }
  }
  return null;
}
