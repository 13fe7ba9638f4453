// The one file that loads the native addon (native/build/Release/vireo_native.node).
// Everything else imports the typed face from here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NativeAddon } from '../common/engine-api';

let cached: NativeAddon | undefined;

/** Repository (or packaged app) root: dist/electron/engine-host -> ../../.. ; electron/engine-host (ts via vitest) -> ../.. */
export function appRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the Vireo installation root from ' + __dirname);
}

export function addonPath(): string {
  return process.env.VIREO_ADDON ?? path.join(appRoot(), 'native', 'build', 'Release', 'vireo_native.node');
}

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const p = addonPath();
  if (!fs.existsSync(p)) {
    throw new Error(`the Vireo engine is not built (${p} is missing): run \`bash scripts/setup.sh\``);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  cached = require(p) as NativeAddon;
  return cached;
}
