// Storage pools and volumes: directory pools (the default one at
// $XDG_DATA_HOME/vireo/images plus user-defined ones, one JSON file each under
// $XDG_CONFIG_HOME/vireo/pools, written atomically), their volumes with format,
// virtual size, allocation and backing file, and create / resize / delete with
// the protections virt-manager + libvirt give: a disk a running VM uses is not
// resized or deleted, a disk that backs another image is not deleted, names never
// clash, and a failed create leaves nothing behind. qcow2 metadata is read and
// written only by `vireo-img` (the engine's block layer).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {
  POOL_NAME_PATTERN,
  type PoolSummary,
  type Volume,
  type VolumeFormat,
  volumeNameProblem,
} from '../../common/contracts/storage';
import * as s from '../../common/contracts/schema';
import { syncDir, writeFileAtomic } from '../atomic';
import { type ImgInfo, imgCreate, imgInfo, imgResize, looksQcow2 } from './img';

export const DEFAULT_POOL = 'default';

/** A storage problem the user caused or can fix: shown as is. */
/** Longest backing chain (images, the top one included), as in the engine (native/core/block/open.cc). */
export const MAX_CHAIN = 16;
export interface ChainLink {
  path: string;
  format: 'raw' | 'qcow2';
}

export class StorageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageError';
  }
}

const PoolDefSchema = s.object({ version: s.literal(1), name: s.string({ pattern: POOL_NAME_PATTERN }), path: s.string({ min: 1, max: 4096 }) });
type PoolDef = s.Infer<typeof PoolDefSchema>;

export interface VmUse {
  name: string;
  running: boolean;
  /** Paths of the VM's disks (any media). */
  paths: string[];
  /** The stated format of each disk, where known (path -> format). */
  formats?: Record<string, 'raw' | 'qcow2'>;
}

export interface StorageOptions {
  /** $XDG_CONFIG_HOME/vireo/pools */
  defsDir: string;
  /** $XDG_DATA_HOME/vireo/images */
  defaultPath: string;
  /** Which VMs name which files, and whether they run (the VM store + supervisor). */
  usage: () => VmUse[];
  onChanged?: (pool: string) => void;
}

interface CachedInfo {
  key: string;
  info: ImgInfo | null;
  problem: string | null;
}

export class StorageService {
  private readonly defs = new Map<string, PoolDef>();
  private readonly infoCache = new Map<string, CachedInfo>();
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: StorageOptions) {}

  async init(): Promise<this> {
    await fs.mkdir(this.opts.defaultPath, { recursive: true, mode: 0o755 });
    await fs.mkdir(this.opts.defsDir, { recursive: true, mode: 0o700 });
    this.defs.clear();
    for (const f of (await fs.readdir(this.opts.defsDir)).sort()) {
      if (!f.endsWith('.json') || f.startsWith('.')) continue;
      try {
        const d = PoolDefSchema.parse(JSON.parse(await fs.readFile(path.join(this.opts.defsDir, f), 'utf8')));
        if (f === `${d.name}.json` && d.name !== DEFAULT_POOL) this.defs.set(d.name, d);
      } catch {
        // A broken definition is skipped, never overwritten.
      }
    }
    return this;
  }

  /** Serialises every change: two creates can't both take one name, a delete can't race a clone's scan. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  poolDirs(): Array<{ name: string; path: string; isDefault: boolean }> {
    return [
      { name: DEFAULT_POOL, path: this.opts.defaultPath, isDefault: true },
      ...[...this.defs.values()].sort((a, b) => a.name.localeCompare(b.name)).map((d) => ({ name: d.name, path: d.path, isDefault: false })),
    ];
  }

  poolPath(name: string): string {
    const p = this.poolDirs().find((d) => d.name === name);
    if (!p) throw new StorageError(`No storage pool named '${name}'.`);
    return p.path;
  }

  /** The pool whose directory holds this file, if any. */
  poolOf(file: string): string | undefined {
    const dir = path.dirname(path.resolve(file));
    return this.poolDirs().find((d) => path.resolve(d.path) === dir)?.name;
  }

  async listPools(): Promise<PoolSummary[]> {
    const out: PoolSummary[] = [];
    for (const d of this.poolDirs()) {
      try {
        const st = await fs.statfs(d.path);
        const files = await this.files(d.path);
        out.push({
          name: d.name,
          path: d.path,
          isDefault: d.isDefault,
          capacityBytes: st.blocks * st.bsize,
          allocationBytes: (st.blocks - st.bfree) * st.bsize,
          availableBytes: st.bavail * st.bsize,
          volumeCount: files.length,
          problem: null,
        });
      } catch (e) {
        out.push({ name: d.name, path: d.path, isDefault: d.isDefault, capacityBytes: 0, allocationBytes: 0, availableBytes: 0, volumeCount: 0, problem: (e as Error).message });
      }
    }
    return out;
  }

  async definePool(name: string, dir: string): Promise<PoolSummary> {
    return this.exclusive(async () => {
      if (!POOL_NAME_PATTERN.test(name)) throw new StorageError('Pool names use letters, digits, ".", "_" and "-", starting with a letter or digit.');
      if (this.poolDirs().some((d) => d.name.toLowerCase() === name.toLowerCase())) throw new StorageError(`A pool named '${name}' already exists.`);
      if (!path.isAbsolute(dir)) throw new StorageError('Give the full path of the pool directory (starting with /).');
      const resolved = path.resolve(dir);
      const same = this.poolDirs().find((d) => path.resolve(d.path) === resolved);
      if (same) throw new StorageError(`${resolved} is already the pool '${same.name}'.`);
      const st = await fs.stat(resolved).catch(() => null);
      if (!st) throw new StorageError(`${resolved} does not exist.`);
      if (!st.isDirectory()) throw new StorageError(`${resolved} is not a directory.`);
      const def: PoolDef = { version: 1, name, path: resolved };
      await writeFileAtomic(path.join(this.opts.defsDir, `${name}.json`), JSON.stringify(def, null, 2) + '\n', 0o600);
      this.defs.set(name, def);
      return (await this.listPools()).find((p) => p.name === name)!;
    });
  }

  async undefinePool(name: string): Promise<void> {
    return this.exclusive(async () => {
      if (name === DEFAULT_POOL) throw new StorageError('The default pool cannot be removed.');
      if (!this.defs.has(name)) throw new StorageError(`No storage pool named '${name}'.`);
      await fs.rm(path.join(this.opts.defsDir, `${name}.json`), { force: true });
      await syncDir(this.opts.defsDir);
      this.defs.delete(name);
    });
  }

  private async files(dir: string): Promise<string[]> {
    const out: string[] = [];
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue; // temporaries of an unfinished create
      if (e.isFile()) out.push(path.join(dir, e.name));
    }
    return out.sort();
  }

  /** vireo-img info, cached by (size, mtime, inode). Null info = the tool could not read it (problem says why). */
  async info(file: string): Promise<CachedInfo> {
    const st = await fs.stat(file);
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const hit = this.infoCache.get(file);
    if (hit && hit.key === key) return hit;
    let c: CachedInfo;
    try {
      c = { key, info: await imgInfo(file), problem: null };
    } catch (e) {
      c = { key, info: null, problem: (e as Error).message };
    }
    this.infoCache.set(file, c);
    return c;
  }

  /** The backing file of an image as an absolute path (relative names are against the image's directory), or null. */
  async backingOf(file: string): Promise<{ path: string; format: string | null } | null> {
    if (!(await looksQcow2(file))) return null;
    const { info } = await this.info(file);
    if (!info?.backingFilename) return null;
    return { path: path.resolve(path.dirname(file), info.backingFilename), format: info.backingFormat };
  }

  /**
   * The stated format of a file some VM uses as a disk (its definition says), or
   * null. A disk's contents are its guest's: its format is never re-probed.
   */
  statedFormat(file: string): 'raw' | 'qcow2' | null {
    const p = path.resolve(file);
    for (const vm of this.opts.usage()) for (const [f, fmt] of Object.entries(vm.formats ?? {})) if (path.resolve(f) === p) return fmt;
    return null;
  }

  /**
   * Checks the backing chain of `file` opened as `format`, the way the engine will
   * open it: each backing file with the format its overlay states (never probed),
   * at most MAX_CHAIN images, no loops. Returns the chain, `file` first; throws a
   * StorageError naming the chain so far and how to fix it.
   */
  async backingChain(file: string, format: 'raw' | 'qcow2'): Promise<ChainLink[]> {
    const chain: ChainLink[] = [];
    const seen = new Set<string>();
    const show = (): string => chain.map((c) => `${c.path} (${c.format})`).join(' → ');
    let cur: ChainLink | null = { path: path.resolve(file), format };
    while (cur) {
      const real = await fs.realpath(cur.path).catch(() => null);
      if (!real) throw new StorageError(chain.length ? `${show()}: its backing file ${cur.path} does not exist.` : `${cur.path} does not exist.`);
      if (seen.has(real)) throw new StorageError(`The backing chain loops: ${show()} → ${cur.path}.`);
      seen.add(real);
      chain.push(cur);
      if (chain.length > MAX_CHAIN) throw new StorageError(`The backing chain is longer than ${MAX_CHAIN} images: ${show()}.`);
      if (cur.format === 'raw') break;
      const { info, problem } = await this.info(cur.path);
      if (!info) throw new StorageError(`${cur.path} can't be read: ${problem}`);
      if (info.format !== 'qcow2') throw new StorageError(`${show()}: ${cur.path} is stated to be qcow2 but is not a qcow2 image.`);
      if (!info.backingFilename) break;
      const next = path.resolve(path.dirname(cur.path), info.backingFilename);
      const bf = info.backingFormat;
      if (bf !== 'raw' && bf !== 'qcow2') {
        throw new StorageError(
          `${show()}: ${cur.path} names the backing file ${next} but ${bf ? `an unsupported format '${bf}'` : 'not its format'}, so it is not opened ` +
            `(a guessed format could let a guest read host files). If you trust ${next}, state its format: ` +
            `vireo-img rebase -u -b ${info.backingFilename} -F raw|qcow2 ${cur.path}`,
        );
      }
      cur = { path: next, format: bf };
    }
    return chain;
  }

  /** Every file in this image's backing chain, nearest first. */
  async chainOf(file: string): Promise<string[]> {
    const chain: string[] = [];
    let cur = path.resolve(file);
    for (let i = 0; i < 64; i++) {
      const b = await this.backingOf(cur).catch(() => null);
      if (!b || chain.includes(b.path) || b.path === path.resolve(file)) break;
      chain.push(b.path);
      cur = b.path;
    }
    return chain;
  }

  /** Map: a file -> the images (absolute paths) whose backing chain includes it. Scans every pool and every VM disk. */
  async backingIndex(): Promise<Map<string, string[]>> {
    const images = new Set<string>();
    for (const d of this.poolDirs()) for (const f of await this.files(d.path).catch(() => [])) images.add(path.resolve(f));
    for (const vm of this.opts.usage()) for (const p of vm.paths) images.add(path.resolve(p));
    const idx = new Map<string, string[]>();
    for (const img of images) {
      for (const b of await this.chainOf(img)) {
        const list = idx.get(b) ?? [];
        list.push(img);
        idx.set(b, list);
      }
    }
    return idx;
  }

  usedBy(file: string): Array<{ name: string; running: boolean }> {
    const p = path.resolve(file);
    return this.opts.usage()
      .filter((vm) => vm.paths.some((x) => path.resolve(x) === p))
      .map((vm) => ({ name: vm.name, running: vm.running }));
  }

  /** Running VMs that read this file: directly, or through a backing chain. */
  async runningReaders(file: string): Promise<string[]> {
    const p = path.resolve(file);
    const out: string[] = [];
    for (const vm of this.opts.usage()) {
      if (!vm.running) continue;
      for (const d of vm.paths) {
        if (path.resolve(d) === p || (await this.chainOf(d)).includes(p)) {
          out.push(vm.name);
          break;
        }
      }
    }
    return out;
  }

  async volume(file: string, idx?: Map<string, string[]>): Promise<Volume> {
    const st = await fs.stat(file);
    const c = await this.info(file);
    const b = c.info?.backingFilename ? path.resolve(path.dirname(file), c.info.backingFilename) : null;
    return {
      name: path.basename(file),
      path: file,
      format: c.info?.format ?? 'raw',
      capacityBytes: c.info?.virtualSize ?? st.size,
      allocationBytes: st.blocks * 512,
      backing: b,
      backingFormat: b ? (c.info?.backingFormat ?? null) : null,
      usedBy: this.usedBy(file),
      backs: (idx ?? (await this.backingIndex())).get(path.resolve(file)) ?? [],
      problem: c.problem,
    };
  }

  async listVolumes(pool: string): Promise<Volume[]> {
    const dir = this.poolPath(pool);
    const idx = await this.backingIndex();
    const out: Volume[] = [];
    for (const f of await this.files(dir)) {
      try {
        out.push(await this.volume(f, idx));
      } catch {
        // removed while we listed it
      }
    }
    return out;
  }

  private volumePath(pool: string, name: string): string {
    const np = volumeNameProblem(name);
    if (np) throw new StorageError(np);
    return path.join(this.poolPath(pool), name);
  }

  /**
   * Creates an image at `file` (which must not exist) without ever leaving a half-made
   * file under that name: vireo-img writes a hidden temporary in the same directory,
   * which is hard-linked into place (EEXIST = someone took the name) and removed.
   */
  async createImage(file: string, format: VolumeFormat, sizeBytes: number | undefined, backing?: { path: string; format: string }): Promise<void> {
    const dir = path.dirname(file);
    const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await this.createImageAt(tmp, format, sizeBytes, backing);
      try {
        await fs.link(tmp, file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new StorageError(`${path.basename(file)} already exists in ${dir}.`);
        throw e;
      }
      await syncDir(dir);
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  /** Makes the image at `tmp` itself (a hidden temporary the caller links into place; DiskBatch). */
  async createImageAt(tmp: string, format: VolumeFormat, sizeBytes: number | undefined, backing?: { path: string; format: string }): Promise<void> {
    try {
      await imgCreate(tmp, format, sizeBytes, backing);
      const fh = await fs.open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      await fs.rm(tmp, { force: true });
      throw e;
    }
  }

  /** A qcow2 overlay at `file` whose backing file is `backing` (absolute path): a linked copy, made in milliseconds. */
  async createOverlay(file: string, backing: string, backingFormat?: string): Promise<void> {
    await this.createImage(file, 'qcow2', undefined, await this.overlayBacking(backing, backingFormat));
  }

  /** Like createOverlay, at a temporary the caller links into place. */
  async createOverlayAt(tmp: string, backing: string, backingFormat?: string): Promise<void> {
    await this.createImageAt(tmp, 'qcow2', undefined, await this.overlayBacking(backing, backingFormat));
  }

  /** The backing file and its format for a new overlay, after checking the chain as the engine will open it. */
  private async overlayBacking(backing: string, backingFormat?: string): Promise<{ path: string; format: string }> {
    const fmt = (backingFormat as 'raw' | 'qcow2' | undefined) ?? this.statedFormat(backing) ?? ((await looksQcow2(backing)) ? 'qcow2' : 'raw');
    await this.backingChain(backing, fmt);
    return { path: path.resolve(backing), format: fmt };
  }

  async createVolume(p: { pool: string; name: string; format: VolumeFormat; capacityBytes: number; backing?: string | undefined }): Promise<Volume> {
    const v = await this.exclusive(async () => {
      let name = p.name.trim();
      if (name && !name.includes('.')) name += p.format === 'qcow2' ? '.qcow2' : '.img';
      const file = this.volumePath(p.pool, name);
      if (await exists(file)) throw new StorageError(`A volume named '${name}' already exists in pool '${p.pool}'.`);
      if (p.backing) {
        if (p.format !== 'qcow2') throw new StorageError('Only a qcow2 volume can be based on another image.');
        if (!path.isAbsolute(p.backing)) throw new StorageError('Give the full path of the backing image (starting with /).');
        const bst = await fs.stat(p.backing).catch(() => null);
        if (!bst?.isFile()) throw new StorageError(`${p.backing} does not exist.`);
        const bi = await this.info(p.backing);
        if (!bi.info) throw new StorageError(`${p.backing} can't be read: ${bi.problem}`);
        // A VM's disk keeps the format its definition states; another file's is read once, here, and its chain checked.
        const bfmt = this.statedFormat(p.backing) ?? bi.info.format;
        await this.backingChain(p.backing, bfmt);
        if (path.resolve(p.backing) === path.resolve(file)) throw new StorageError('A volume can not be based on itself.');
        const vsize = bfmt === bi.info.format ? bi.info.virtualSize : bst.size;
        const size = p.capacityBytes || vsize;
        if (size < vsize) throw new StorageError(`The size must be at least the backing image's ${fmtBytes(vsize)}.`);
        await this.createImage(file, 'qcow2', size === vsize ? undefined : size, { path: path.resolve(p.backing), format: bfmt });
      } else {
        if (!(p.capacityBytes > 0)) throw new StorageError('Enter a size larger than 0.');
        await this.createImage(file, p.format, p.capacityBytes);
      }
      return this.volume(file);
    });
    this.opts.onChanged?.(p.pool);
    return v;
  }

  /** Grows a volume; with `shrink` (virsh vol-resize --shrink) also shrinks it: the data past the new end is lost. */
  async resizeVolume(p: { pool: string; name: string; capacityBytes: number; shrink?: boolean }): Promise<Volume> {
    const v = await this.exclusive(async () => {
      const file = this.volumePath(p.pool, p.name);
      if (!(await exists(file))) throw new StorageError(`No volume named '${p.name}' in pool '${p.pool}'.`);
      const readers = await this.runningReaders(file);
      if (readers.length) throw new StorageError(`${p.name} is in use by the running VM ${readers.join(', ')}: shut it down before resizing.`);
      const c = await this.info(file);
      if (!c.info) throw new StorageError(`${p.name} can't be read: ${c.problem}`);
      const shrinking = p.capacityBytes < c.info.virtualSize;
      if (shrinking && !p.shrink) throw new StorageError(`Shrinking is not supported: ${p.name} is ${fmtBytes(c.info.virtualSize)}; enter a larger size.`);
      if (shrinking) {
        // An overlay reads its base past the base's new end as zeros: its disk would change under it.
        const backs = (await this.backingIndex()).get(path.resolve(file)) ?? [];
        if (backs.length) throw new StorageError(`${p.name} is the backing file of ${backs.map((b) => path.basename(b)).join(', ')}: shrinking it would change what they read.`);
      }
      if (p.capacityBytes === c.info.virtualSize) return this.volume(file);
      if (c.info.format === 'qcow2') {
        try {
          await imgResize(file, p.capacityBytes, shrinking);
        } catch (e) {
          throw new StorageError(`Could not resize ${p.name}: ${(e as Error).message}`);
        }
      } else {
        const fh = await fs.open(file, 'r+');
        try {
          await fh.truncate(p.capacityBytes); // grown: the new space is a hole; shrunk (asked for): the tail is gone
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      return this.volume(file);
    });
    this.opts.onChanged?.(p.pool);
    return v;
  }

  /** Why this file may not be deleted now, or null. */
  async deleteProblem(file: string, idx?: Map<string, string[]>): Promise<string | null> {
    const name = path.basename(file);
    const backs = (idx ?? (await this.backingIndex())).get(path.resolve(file)) ?? [];
    if (backs.length) {
      const who = backs.map((b) => {
        const vms = this.usedBy(b).map((u) => u.name);
        return vms.length ? `${path.basename(b)} (${vms.join(', ')})` : path.basename(b);
      });
      return `${name} is the backing file of ${who.join(', ')}: delete ${backs.length === 1 ? 'that image' : 'those images'} first.`;
    }
    const running = this.usedBy(file).filter((u) => u.running).map((u) => u.name);
    if (running.length) return `${name} is in use by the running VM ${running.join(', ')}: shut it down first.`;
    return null;
  }

  async deleteVolume(p: { pool: string; name: string }): Promise<void> {
    await this.exclusive(async () => {
      const file = this.volumePath(p.pool, p.name);
      if (!(await exists(file))) throw new StorageError(`No volume named '${p.name}' in pool '${p.pool}'.`);
      const why = await this.deleteProblem(file);
      if (why) throw new StorageError(why);
      const users = this.usedBy(file).map((u) => u.name);
      if (users.length) throw new StorageError(`${p.name} is a disk of ${users.join(', ')}: delete the VM with its storage, or remove the disk from it first.`);
      await fs.rm(file);
      await syncDir(path.dirname(file));
      this.infoCache.delete(file);
    });
    this.opts.onChanged?.(p.pool);
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}

export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${u[i]}`;
}
