// `vireo img`: disk image tool. The work is done by the native `vireo-img`
// executable (native/tools), which shares the engine's block layer; this
// only finds it and passes the arguments through, with the same meanings as
// qemu-img's create / info / check / convert / snapshot.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appRoot } from '../engine-host/addon';

export function imgToolPath(): string {
  if (process.env.VIREO_IMG) return process.env.VIREO_IMG;
  // In a packaged app the tool is unpacked beside the asar archive (a binary inside it cannot be run).
  return unpackedPath(path.join(appRoot(), 'native', 'out', 'core', 'vireo-img'));
}

/** The same path outside an Electron asar archive (`app.asar/x` → `app.asar.unpacked/x`); others unchanged. */
export function unpackedPath(p: string): string {
  return p.replace(`${path.sep}app.asar${path.sep}`, `${path.sep}app.asar.unpacked${path.sep}`);
}

export async function run(args: string[]): Promise<number> {
  const tool = imgToolPath();
  if (!fs.existsSync(tool)) {
    console.error(`vireo img: ${tool} is not built: run \`bash scripts/setup.sh\``);
    return 1;
  }
  const r = spawnSync(tool, args, { stdio: 'inherit' });
  if (r.error) {
    console.error(`vireo img: ${r.error.message}`);
    return 1;
  }
  return r.status ?? 1;
}
