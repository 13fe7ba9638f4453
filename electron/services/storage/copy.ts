// Full copies for Clone: a reflink first (instant and shared on btrfs/XFS; Node can't
// issue FICLONE, so `cp --reflink=always` does it), else the block layer's convert
// (`vireo-img convert -U -p -f raw -O raw`, the same path as `vireo img convert`: the
// image file copied byte for byte, qcow2 metadata, snapshots and backing name
// included, holes found by SEEK_DATA/SEEK_HOLE and never read, copy_file_range in the
// kernel, one fdatasync; docs/block.md) with progress from its `(NN.NN/100%)` lines and
// cancel by SIGTERM (it removes its temporary), else coreutils' sparse copy
// (`cp --sparse=always`) with progress polled from the growing file and cancel by
// killing it; where neither can run, the JS sparse copy in pool.ts. -U: Clone copies
// a stopped or paused VM's disks (a paused VM still holds its write lock). The copy is made
// under a hidden temporary name, fsynced, and only then linked to its name: a
// failed or cancelled copy leaves nothing. `cp` and `vireo-img` run under `setpriv
// --pdeathsig KILL` and a guard where util-linux has it (die-with-parent.ts), so a copy
// never outlives a killed service (the hidden temporary it was writing is swept at the
// next start: disk-journal.ts).
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { imgToolPath } from '../../cli/img';
import { syncDir } from '../atomic';
import { type CopyProgress, CopyCancelled, copySparse } from '../pool';
import { dieWithParent } from './die-with-parent';

export type CopyMethod = 'reflink' | 'vireo-img' | 'cp-sparse' | 'sparse';

/** `cp …`, made to die with `parent` (this process) where it can be. */
export function cpCommand(args: string[], parent = process.pid): [string, string[]] {
  return dieWithParent('cp', args, parent);
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
      else if (code === 127 && /not found/.test(err)) resolve(false); // no cp (the guard's exec failed)
      else reject(new Error(`copying ${path.basename(src)} failed: ${err.trim() || `cp exited with ${code}`}`));
    });
  });
}

/** `vireo-img convert` of the file as raw bytes; resolves false when the tool isn't there. */
function imgCopy(src: string, dst: string, size: number, onProgress: CopyProgress, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CopyCancelled());
    const tool = imgToolPath();
    if (process.env.VIREO_CLONE_NO_IMG === '1' || !existsSync(tool)) return resolve(false);
    const [cmd, args] = dieWithParent(tool, ['convert', '-U', '-p', '-f', 'raw', '-O', 'raw', src, dst]);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let err = '';
    let out = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out = (out + d.toString()).slice(-200);
      const all = [...out.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)];
      const last = all[all.length - 1];
      if (last) onProgress(Math.min(size, Math.round((Number(last[1]) / 100) * size)), size);
    });
    const onAbort = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', onAbort);
    const end = () => signal?.removeEventListener('abort', onAbort);
    child.on('error', (e) => (end(), (e as NodeJS.ErrnoException).code === 'ENOENT' ? resolve(false) : reject(e)));
    child.on('exit', (code) => {
      end();
      if (signal?.aborted) reject(new CopyCancelled());
      else if (code === 0) resolve(true);
      else reject(new Error(`copying ${path.basename(src)} failed: ${err.trim().replace(/^vireo-img:\s*/, '') || `vireo-img exited with ${code}`}`));
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
      if (await imgCopy(src, tmp, size, onProgress, signal)) how = 'vireo-img';
      else if (await cpSparse(src, tmp, size, onProgress, signal)) how = 'cp-sparse';
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
