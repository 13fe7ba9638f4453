// VM definitions: one schema-checked JSON file per VM under $XDG_CONFIG_HOME/vireo/vms,
// written atomically. Names are unique (case-insensitively), UUIDs and MACs too.
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ValidationError } from '../common/contracts/schema';
import { type VmDefinition, VmDefinitionSchema, migrateNics } from '../common/contracts/vm';
import { syncDir, writeFileAtomic } from './atomic';

export class VmStore {
  private readonly vms = new Map<string, VmDefinition>();
  /** Files that failed to load, with why (shown in logs, never overwritten). */
  readonly broken: Array<{ file: string; problem: string }> = [];

  constructor(readonly dir: string) {}

  async load(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    this.vms.clear();
    this.broken.length = 0;
    for (const file of (await fs.readdir(this.dir)).sort()) {
      if (!file.endsWith('.json') || file.startsWith('.')) continue;
      const full = path.join(this.dir, file);
      try {
        const def = VmDefinitionSchema.parse(migrateNics(JSON.parse(await fs.readFile(full, 'utf8'))));
        if (file !== `${def.uuid}.json`) throw new ValidationError('uuid', `does not match the file name ${file}`);
        if (this.byName(def.name)) throw new ValidationError('name', `'${def.name}' is used by another VM`);
        this.vms.set(def.uuid, def);
      } catch (e) {
        this.broken.push({ file: full, problem: e instanceof Error ? e.message : String(e) });
      }
    }
  }

  list(): VmDefinition[] {
    return [...this.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(uuid: string): VmDefinition | undefined {
    return this.vms.get(uuid);
  }

  byName(name: string): VmDefinition | undefined {
    const n = name.toLowerCase();
    for (const vm of this.vms.values()) if (vm.name.toLowerCase() === n) return vm;
    return undefined;
  }

  fileOf(uuid: string): string {
    return path.join(this.dir, `${uuid}.json`);
  }

  newUuid(): string {
    let u: string;
    do u = randomUUID();
    while (this.vms.has(u));
    return u;
  }

  /** A random locally administered MAC in QEMU's 52:54:00 range, unique among our VMs. */
  newMac(taken: Set<string> = new Set()): string {
    const used = new Set(taken);
    for (const vm of this.vms.values()) for (const nic of vm.nics) used.add(nic.mac);
    for (;;) {
      const b = randomBytes(3);
      const mac = `52:54:00:${[...b].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
      if (!used.has(mac)) return mac;
    }
  }

  /** Saves a new or changed definition. Refuses a name another VM has. */
  async save(def: VmDefinition): Promise<void> {
    const checked = VmDefinitionSchema.parse(def);
    const other = this.byName(checked.name);
    if (other && other.uuid !== checked.uuid) throw new ValidationError('name', `'${checked.name}' is already used`);
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.fileOf(checked.uuid), JSON.stringify(checked, null, 2) + '\n', 0o600);
    this.vms.set(checked.uuid, checked);
  }

  /** Removes a definition; the directory is fsynced, so the removal survives a crash. */
  async remove(uuid: string): Promise<void> {
    await fs.rm(this.fileOf(uuid), { force: true });
    await syncDir(this.dir);
    this.vms.delete(uuid);
  }
}
