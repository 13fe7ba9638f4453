// The one way the app touches qcow2 metadata: the native `vireo-img` tool, which
// shares the engine's block layer (native/core/block). Nothing here parses or
// writes qcow2 itself beyond sniffing the 4-byte magic.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { imgToolPath } from '../../cli/img';
import { dieWithParent } from './die-with-parent';

export class ImgError extends Error {
  constructor(
    message: string,
    readonly code: number | null,
  ) {
    super(message);
    this.name = 'ImgError';
  }
}

/** Why vireo-img can't be used here, or null. */
export function imgToolProblem(): string | null {
  const tool = imgToolPath();
  return fs.existsSync(tool) ? null : `${tool} is not built: run \`bash scripts/setup.sh\``;
}

export function runImg(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const tool = imgToolPath();
  if (!fs.existsSync(tool)) return Promise.reject(new ImgError(`${tool} is not built: run \`bash scripts/setup.sh\``, null));
  // Dies with the service (die-with-parent.ts): a killed service leaves no image change running on.
  const [cmd, argv] = dieWithParent(tool, args);
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { maxBuffer: 4 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr });
      const code = typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new ImgError(`${tool} is not built: run \`bash scripts/setup.sh\``, null));
      const msg = (stderr || err.message).trim().split('\n').filter(Boolean).pop() ?? err.message;
      reject(new ImgError(msg.replace(/^vireo-img:\s*/, ''), code));
    });
  });
}

export interface ImgInfo {
  format: 'qcow2' | 'raw';
  virtualSize: number;
  actualSize: number;
  /** As written in the image (may be relative to the image's directory). */
  backingFilename: string | null;
  backingFormat: string | null;
}

export async function imgInfo(file: string): Promise<ImgInfo> {
  const { stdout } = await runImg(['info', '-U', '--output', 'json', file]); // -U: a running VM's disk is locked; reading its header is safe
  const j = JSON.parse(stdout) as Record<string, unknown>;
  const format = j['format'] === 'qcow2' ? 'qcow2' : 'raw';
  return {
    format,
    virtualSize: Number(j['virtual-size'] ?? 0),
    actualSize: Number(j['actual-size'] ?? 0),
    backingFilename: typeof j['backing-filename'] === 'string' ? (j['backing-filename'] as string) : null,
    backingFormat: typeof j['backing-filename-format'] === 'string' ? (j['backing-filename-format'] as string) : null,
  };
}

/** Creates an image. The file must not exist (callers create under a temporary name and link it into place). */
export async function imgCreate(file: string, format: 'qcow2' | 'raw', sizeBytes: number | undefined, backing?: { path: string; format: string }): Promise<void> {
  const args = ['create', '-f', format];
  if (backing) args.push('-b', backing.path, '-F', backing.format);
  args.push(file);
  if (sizeBytes !== undefined) args.push(String(sizeBytes));
  await runImg(args);
}

/** `vireo-img resize`; `shrink` allows a smaller size (--shrink: the data past it is lost). */
export async function imgResize(file: string, sizeBytes: number, shrink = false): Promise<void> {
  await runImg(['resize', ...(shrink ? ['--shrink'] : []), file, String(sizeBytes)]);
}

/** `vireo-img check`: null when clean (or raw), else what it said. */
export async function imgCheck(file: string): Promise<string | null> {
  try {
    await runImg(['check', file]);
    return null;
  } catch (e) {
    if (e instanceof ImgError && e.code === 63) return null; // raw: nothing to check
    return (e as Error).message;
  }
}

/** qcow2 magic ("QFI\xfb") at offset 0: a cheap test before spawning the tool. */
export async function looksQcow2(file: string): Promise<boolean> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'r');
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && b.readUInt32BE(0) === 0x514649fb;
  } catch {
    return false;
  } finally {
    await fh?.close();
  }
}

/** Internal snapshots of a qcow2 image (`vireo-img info -U`: a running VM's disk is locked; reading the table is safe). */
export async function imgSnapshots(file: string): Promise<Array<{ name: string; id: string; dateSec: number }>> {
  const { stdout } = await runImg(['info', '-U', '--output', 'json', file]);
  const j = JSON.parse(stdout) as { snapshots?: Array<{ name?: unknown; id?: unknown; 'date-sec'?: unknown }> };
  return (j.snapshots ?? []).map((s) => ({ name: String(s.name ?? ''), id: String(s.id ?? ''), dateSec: Number(s['date-sec'] ?? 0) }));
}

/**
 * `vireo-img snapshot -c|-a|-d NAME FILE` on an image no VM has open (the lock refuses otherwise).
 * Apply and delete pass `--by-name`: the app's snapshots are names (as libvirt's are), so a name
 * that is also another snapshot's qcow2 ID means the named one.
 */
export async function imgSnapshot(op: 'create' | 'apply' | 'delete', file: string, name: string): Promise<void> {
  await runImg(['snapshot', ...(op === 'create' ? [] : ['--by-name']), op === 'create' ? '-c' : op === 'apply' ? '-a' : '-d', name, file]);
}
