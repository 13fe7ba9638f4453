// Crash safety for the files a VM definition owns (issue 15, finding 9). Creating,
// cloning and deleting a VM change two things that can't change together: disk files
// in a pool and the definition in the store. So each such change first writes a
// journal entry, `<config>/pending/<id>.json`: "these files (path + device + inode)
// live and die with the definition <uuid>". Then:
//
//   create / clone:  disks made under hidden temporaries (`.<name>.<hex>.tmp`) → entry
//                    written (inodes of the temporaries) → temporaries hard-linked to
//                    their names → definition saved → entry removed, temporaries removed.
//   delete:          entry written → definition removed (directory fsynced) → files
//                    removed → entry removed.
//
// At the next service start `recover()` reads what is left: where the definition
// exists the files stay; where it does not, each file still carrying the recorded
// inode is removed (a file someone else made under that name is never touched).
// `sweepTemps()` then removes hidden temporaries from every directory Vireo writes.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as s from '../common/contracts/schema';
import { syncDir, writeFileAtomic } from './atomic';

/**
 * `.<name>.<12 hex>.tmp`: what writeFileAtomic, copyDisk, createImage and DiskBatch make;
 * `.<name>.vireo-convert-<16 hex>`: what `vireo-img convert` (Clone's full copy) writes
 * before its rename (native/core/block/convert.h; a killed one's is also swept by the
 * next convert into that directory).
 */
export const TEMP_PATTERN = /^\..+(\.[0-9a-f]{12}\.tmp|\.vireo-convert-[0-9a-f]{16})$/;

export function tempPathFor(final: string): string {
  return path.join(path.dirname(final), `.${path.basename(final)}.${randomBytes(6).toString('hex')}.tmp`);
}

const EntrySchema = s.object({
  version: s.literal(1),
  uuid: s.string({ min: 1, max: 64 }),
  op: s.enums(['create', 'delete'] as const),
  files: s.array(s.object({ path: s.string({ min: 1, max: 4096 }), dev: s.number(), ino: s.number() }), { max: 64 }),
});
type Entry = s.Infer<typeof EntrySchema>;
type FileId = Entry['files'][number];

async function idOf(p: string): Promise<{ dev: number; ino: number } | null> {
  try {
    const st = await fs.lstat(p);
    return st.isFile() || st.isSymbolicLink() ? { dev: st.dev, ino: st.ino } : null;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Removes `f.path` only if it is still the recorded file. True if it was removed (or already gone). */
export async function removeIfSame(f: FileId): Promise<boolean> {
  const now = await idOf(f.path);
  if (!now) return true;
  if (now.dev !== f.dev || now.ino !== f.ino) return false;
  await fs.rm(f.path, { force: true });
  return true;
}

export class DiskJournal {
  constructor(readonly dir: string) {}

  /** Writes an entry for these files (those that exist, as they are now). Returns its id. */
  async record(uuid: string, op: Entry['op'], files: Array<{ path: string; idFrom?: string }>): Promise<string> {
    const out: FileId[] = [];
    for (const f of files) {
      const id = await idOf(f.idFrom ?? f.path);
      if (id) out.push({ path: path.resolve(f.path), ...id });
    }
    const entryId = `${uuid}-${randomBytes(4).toString('hex')}`;
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(path.join(this.dir, `${entryId}.json`), JSON.stringify({ version: 1, uuid, op, files: out } satisfies Entry) + '\n', 0o600);
    return entryId;
  }

  async read(entryId: string): Promise<Entry> {
    return EntrySchema.parse(JSON.parse(await fs.readFile(path.join(this.dir, `${entryId}.json`), 'utf8')));
  }

  async clear(entryId: string): Promise<void> {
    await fs.rm(path.join(this.dir, `${entryId}.json`), { force: true });
    await syncDir(this.dir);
  }

  /** Finishes or undoes what a killed service left. Returns the files it removed. */
  async recover(hasVm: (uuid: string) => boolean): Promise<string[]> {
    const removed: string[] = [];
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return removed;
      throw e;
    }
    for (const n of names.sort()) {
      if (!n.endsWith('.json') || n.startsWith('.')) continue;
      const id = n.slice(0, -'.json'.length);
      let entry: Entry;
      try {
        entry = await this.read(id);
      } catch {
        continue; // unreadable: left alone, never acted on
      }
      if (!hasVm(entry.uuid)) {
        const dirs = new Set<string>();
        for (const f of entry.files) {
          if (await removeIfSame(f)) {
            removed.push(f.path);
            dirs.add(path.dirname(f.path));
          }
        }
        for (const d of dirs) await syncDir(d).catch(() => undefined);
      }
      await this.clear(id);
    }
    return removed;
  }
}

/** Removes hidden temporaries (TEMP_PATTERN) from these directories. Returns what it removed. */
export async function sweepTemps(dirs: string[]): Promise<string[]> {
  const removed: string[] = [];
  for (const dir of new Set(dirs.map((d) => path.resolve(d)))) {
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch {
      continue;
    }
    let any = false;
    for (const n of names) {
      if (!TEMP_PATTERN.test(n)) continue;
      const p = path.join(dir, n);
      const st = await fs.lstat(p).catch(() => null);
      if (!st?.isFile()) continue;
      await fs.rm(p, { force: true });
      removed.push(p);
      any = true;
    }
    if (any) await syncDir(dir).catch(() => undefined);
  }
  return removed;
}

/**
 * The disks of one new definition (create or clone), made crash-safe: `temp(final)` gives
 * a hidden path to make each disk at; `link()` journals and links them all into place;
 * after the definition is saved `done()` drops the journal entry; on any failure `abort()`
 * removes exactly what this batch made.
 */
export class DiskBatch {
  private readonly temps: Array<{ tmp: string; final: string }> = [];
  private linked: FileId[] = [];
  private entryId: string | undefined;

  constructor(
    private readonly journal: DiskJournal,
    readonly uuid: string,
  ) {}

  temp(final: string): string {
    const tmp = tempPathFor(final);
    this.temps.push({ tmp, final });
    return tmp;
  }

  /** Journals the temporaries' inodes under their final names, then links each into place (EEXIST: the name was taken). */
  async link(): Promise<void> {
    this.entryId = await this.journal.record(this.uuid, 'create', this.temps.map((t) => ({ path: t.final, idFrom: t.tmp })));
    const entry = await this.journal.read(this.entryId);
    const dirs = new Set<string>();
    for (const t of this.temps) {
      const id = entry.files.find((f) => f.path === path.resolve(t.final));
      if (!id) throw new Error(`${path.basename(t.final)} was not made`);
      try {
        await fs.link(t.tmp, t.final);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${path.basename(t.final)} already exists in ${path.dirname(t.final)}: someone took the name meanwhile.`);
        throw e;
      }
      this.linked.push(id); // only now is the file under that name ours
      dirs.add(path.dirname(t.final));
    }
    for (const d of dirs) await syncDir(d);
  }

  /** The definition is saved: the files are its own now. */
  async done(): Promise<void> {
    if (this.entryId) await this.journal.clear(this.entryId);
    this.entryId = undefined;
    await this.removeTemps();
  }

  async abort(): Promise<void> {
    for (const f of this.linked) await removeIfSame(f);
    this.linked = [];
    await this.removeTemps();
    if (this.entryId) await this.journal.clear(this.entryId);
    this.entryId = undefined;
  }

  private async removeTemps(): Promise<void> {
    for (const t of this.temps) await fs.rm(t.tmp, { force: true });
  }
}
