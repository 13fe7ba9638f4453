// The default storage pool ($XDG_DATA_HOME/vireo/images): sparse raw disks, and
// sparse-aware copies with progress and cancel (for Clone).
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

export const GiB = 1024 * 1024 * 1024;
const CHUNK = 4 * 1024 * 1024;
const HOLE_GRAIN = 64 * 1024;

export class StoragePool {
  constructor(readonly dir: string) {}

  async ensure(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o755 });
  }

  /** A file name in the pool that nothing uses yet: <base>.img, <base>-1.img, ... */
  async freePath(base: string, ext = '.img', reserved: Set<string> = new Set()): Promise<string> {
    for (let i = 0; ; i++) {
      const p = path.join(this.dir, `${base}${i ? `-${i}` : ''}${ext}`);
      if (reserved.has(p)) continue;
      if (!(await exists(p))) return p;
    }
  }

  /** Creates a sparse raw disk of sizeBytes (no blocks written). Fails if the file exists. */
  async createRaw(file: string, sizeBytes: number): Promise<void> {
    await this.ensure();
    const fh = await fs.open(file, 'wx', 0o644);
    try {
      await fh.truncate(sizeBytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.stat(p);
    return true;
  } catch {
    return false;
  }
}

export interface CopyProgress {
  (doneBytes: number, totalBytes: number): void;
}

/**
 * Copies src to dst without allocating zero blocks: chunks that read as all zeros
 * are skipped (left as holes) and the size is set at the end. The destination must
 * not exist. On error or cancel the partial destination is removed.
 */
export async function copySparse(src: string, dst: string, onProgress: CopyProgress, signal?: AbortSignal): Promise<void> {
  const inp = await fs.open(src, 'r');
  let out: fs.FileHandle | undefined;
  try {
    const { size } = await inp.stat();
    out = await fs.open(dst, 'wx', 0o644);
    const buf = Buffer.alloc(CHUNK);
    let pos = 0;
    let lastReport = 0;
    onProgress(0, size);
    while (pos < size) {
      if (signal?.aborted) throw new CopyCancelled();
      const { bytesRead } = await inp.read(buf, 0, Math.min(CHUNK, size - pos), pos);
      if (bytesRead === 0) break;
      // Write only the runs of non-zero 64 KiB blocks: holes stay holes at that grain.
      let runStart = -1;
      for (let o = 0; o < bytesRead; o += HOLE_GRAIN) {
        const zero = isZero(buf.subarray(o, Math.min(o + HOLE_GRAIN, bytesRead)));
        if (!zero && runStart < 0) runStart = o;
        if (zero && runStart >= 0) {
          await out.write(buf, runStart, o - runStart, pos + runStart);
          runStart = -1;
        }
      }
      if (runStart >= 0) await out.write(buf, runStart, bytesRead - runStart, pos + runStart);
      pos += bytesRead;
      const now = Date.now();
      if (now - lastReport > 50 || pos >= size) {
        lastReport = now;
        onProgress(pos, size);
      }
    }
    await out.truncate(size);
    await out.sync();
    await out.close();
    out = undefined;
  } catch (e) {
    if (out) await out.close().catch(() => undefined);
    await fs.rm(dst, { force: true });
    throw e;
  } finally {
    await inp.close();
  }
}

export class CopyCancelled extends Error {
  constructor() {
    super('cancelled');
  }
}

const ZEROS = Buffer.alloc(HOLE_GRAIN);

function isZero(b: Buffer): boolean {
  // memcmp against a zero block (native): a disk image is mostly holes or data.
  for (let o = 0; o < b.byteLength; o += HOLE_GRAIN) {
    const n = Math.min(HOLE_GRAIN, b.byteLength - o);
    if (ZEROS.compare(b, o, o + n, 0, n) !== 0) return false;
  }
  return true;
}
