// Full copies for Clone: a reflink first (instant and shared on btrfs/XFS; Node can't
// issue FICLONE, so `cp --reflink=always` does it), else coreutils' sparse copy
// (`cp --sparse=always`: SEEK_DATA/SEEK_HOLE and copy_file_range, twice the speed of
// reading every byte in JS) with progress polled from the growing file and cancel by
// killing it; where cp can't run, the JS sparse copy in pool.ts. The copy is made
// under a hidden temporary name, fsynced, and only then linked to its name: a
// failed or cancelled copy leaves nothing. `cp` runs under `setpriv --pdeathsig KILL`
// where util-linux has it, so a copy never outlives a killed service (the hidden
// temporary it was writing is swept at the next start: disk-journal.ts).
import { execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { syncDir } from '../atomic';
import { type CopyProgress, CopyCancelled, copySparse } from '../pool';

export type CopyMethod = 'reflink' | 'cp-sparse' | 'sparse';

let pdeathsig: boolean | undefined;

/** `cp …`, made to die with this process (PR_SET_PDEATHSIG through setpriv) where it can be. */
export function cpCommand(args: string[]): [string, string[]] {
  pdeathsig ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
  return pdeathsig ? ['setpriv', ['--pdeathsig', 'KILL', '--', 'cp', ...args]] : ['cp', args];
}

function cpReflink(src: string, dst: string): Promise<boolean> {
  return new Promise((resolve) => {
    const [cmd, args] = cpCommand(['--reflink=always', '--', src, dst]);
    execFile(cmd, args, (err) => resolve(!err));
  });
}

/** `cp --sparse=always`; resolves false when cp can't be run at all. */
function cpSparse(src: string, dst: string, size: number, onProgress: CopyProgress, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CopyCancelled());
    const [cmd, args] = cpCommand(['--sparse=always', '--', src, dst]);
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setInterval(() => {
      fs.stat(dst).then((st) => onProgress(Math.min(st.size, size), size), () => undefined);
    }, 100);
    const onAbort = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', onAbort);
    const end = () => {
      clearInterval(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    child.on('error', (e) => (end(), (e as NodeJS.ErrnoException).code === 'ENOENT' ? resolve(false) : reject(e)));
    child.on('exit', (code) => {
      end();
      if (signal?.aborted) reject(new CopyCancelled());
      else if (code === 0) resolve(true);
      else reject(new Error(`copying ${path.basename(src)} failed: ${err.trim() || `cp exited with ${code}`}`));
    });
  });
}

/**
 * Copies src into `tmp` (a hidden temporary that must not exist), fsynced. Nothing is
 * linked: the caller puts it in place (DiskBatch). A failed or cancelled copy removes tmp.
 */
export async function copyDiskTemp(src: string, tmp: string, onProgress: CopyProgress, signal?: AbortSignal): Promise<CopyMethod> {
  const { size } = await fs.stat(src);
  onProgress(0, size);
  try {
    let how: CopyMethod | undefined;
    if (process.env.VIREO_NO_REFLINK !== '1' && (await cpReflink(src, tmp))) how = 'reflink';
    else {
      await fs.rm(tmp, { force: true });
      if (await cpSparse(src, tmp, size, onProgress, signal)) how = 'cp-sparse';
    }
    if (!how) {
      await copySparse(src, tmp, onProgress, signal);
      how = 'sparse';
    }
    const fh = await fs.open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    onProgress(size, size);
    return how;
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

/** Copies src to dst (which must not exist): a hidden temporary, then linked into place. Returns how. */
export async function copyDisk(src: string, dst: string, onProgress: CopyProgress, signal?: AbortSignal): Promise<CopyMethod> {
  const tmp = path.join(path.dirname(dst), `.${path.basename(dst)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const how = await copyDiskTemp(src, tmp, onProgress, signal);
    await fs.link(tmp, dst);
    await syncDir(path.dirname(dst));
    return how;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
