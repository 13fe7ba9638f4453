// Full copies for Clone: a reflink first (instant and shared on btrfs/XFS; Node can't
// issue FICLONE, so `cp --reflink=always` does it), else the sparse-aware copy with
// progress and cancel from pool.ts (a failed or cancelled copy is removed).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { type CopyProgress, copySparse } from '../pool';

export type CopyMethod = 'reflink' | 'sparse';

function cpReflink(src: string, dst: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('cp', ['--reflink=always', '--', src, dst], (err) => resolve(!err));
  });
}

/** Copies src to dst (which must not exist). Returns how. */
export async function copyDisk(src: string, dst: string, onProgress: CopyProgress, signal?: AbortSignal): Promise<CopyMethod> {
  const tmp = path.join(path.dirname(dst), `.${path.basename(dst)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    if (process.env.VIREO_NO_REFLINK !== '1' && (await cpReflink(src, tmp))) {
      const { size } = await fs.stat(tmp);
      await fs.link(tmp, dst);
      onProgress(size, size);
      return 'reflink';
    }
  } finally {
    await fs.rm(tmp, { force: true });
  }
  await copySparse(src, dst, onProgress, signal);
  return 'sparse';
}
