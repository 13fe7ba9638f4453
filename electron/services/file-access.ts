// What the contract may do to the user's files (issue 15, finding 4). The renderer, or
// anyone holding the token, must not get the whole file system through Vireo:
// - serial logs are written only in Vireo's log directory ($XDG_DATA_HOME/vireo/logs),
//   never through a symlink (the engine host opens them with O_NOFOLLOW too);
// - a destructive action on a file outside Vireo's own pool ($XDG_DATA_HOME/vireo/images)
//   (Delete VM with storage, Delete or Resize Volume in a user-defined pool, which can
//   be any directory) needs a confirmation in the request that names that file. The UI sends
//   it after showing the user the path.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

async function real(p: string): Promise<string> {
  try {
    return await fs.realpath(p);
  } catch {
    return path.resolve(p);
  }
}

/** Whether `file` is directly in Vireo's own pool directory (symlinks resolved). */
export async function inOwnPool(file: string, poolDir: string): Promise<boolean> {
  const dir = await real(path.dirname(path.resolve(file)));
  return dir === (await real(poolDir)) && !(await fs.lstat(file).then((st) => st.isSymbolicLink(), () => false));
}

/** Why deleting these files needs a confirmation that the request lacks, or null. */
export async function confirmProblem(files: string[], poolDir: string, confirm: readonly string[] | undefined): Promise<string | null> {
  const ok = new Set((confirm ?? []).map((c) => path.resolve(c)));
  for (const f of files) {
    if (await inOwnPool(f, poolDir)) continue;
    if (!ok.has(path.resolve(f))) {
      return `${path.basename(f)} is outside Vireo's storage pool (${path.resolve(f)}): deleting or resizing it needs a confirmation naming that file.`;
    }
  }
  return null;
}

/**
 * The serial log a Details edit asks for, as a full path in the log directory, or why
 * not. A bare file name is taken as a file in that directory.
 */
export async function serialLogPath(wanted: string, logsDir: string): Promise<{ path: string } | { error: string }> {
  const p = path.isAbsolute(wanted) ? path.resolve(wanted) : path.join(logsDir, wanted);
  if (path.dirname(p) !== path.resolve(logsDir) || path.basename(p).startsWith('.')) {
    return { error: `Serial logs are kept in Vireo's log directory ${logsDir}: give a file name there (e.g. com1.log).` };
  }
  try {
    const st = await fs.lstat(p);
    if (st.isSymbolicLink()) return { error: `${p} is a symbolic link: choose another file name.` };
    if (!st.isFile()) return { error: `${p} is not a file.` };
  } catch {
    // a new file: created when the VM starts
  }
  return { path: p };
}

/** Why a definition's serial log may not be opened (not a file in the log directory), or null. */
export function serialLogOutside(logFile: string, logsDir: string): string | null {
  return path.isAbsolute(logFile) && path.dirname(path.resolve(logFile)) === path.resolve(logsDir) ? null : `its serial log ${logFile} is outside Vireo's log directory ${logsDir}`;
}
