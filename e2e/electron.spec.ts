// The desktop app itself, where an Electron binary is installed (`npm start` downloads
// it on a machine that can reach Electron's download host): Playwright's _electron
// drives the real main process, preload and renderer against the real engine. Where
// no binary exists (the development hosts), the spec says so and skips.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { _electron } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, distReady, servicePid, stopServiceAndWait } from './harness';

function electronBinary(): string | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const p = require(path.join(ROOT, 'node_modules', 'electron')) as unknown;
    return typeof p === 'string' && fs.existsSync(p) ? p : null;
  } catch {
    return null;
  }
}

const bin = electronBinary();
const why = distReady() ?? (bin ? null : "no Electron binary is installed (its download host can't be reached here)");
if (why) console.log(`SKIP Electron app e2e: ${why}`);

let close: (() => Promise<void>) | undefined;

describe.skipIf(!!why)('the Electron desktop app', () => {
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  it('opens the manager over IPC, with a CSP that allows no connections and no permissions beyond the allow-list', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-electron-'));
    // Its own runtime directory: the app starts its own Vireo service there (and this test stops it).
    const env = { ...process.env, HOME: dir, XDG_RUNTIME_DIR: path.join(dir, 'run'), XDG_CONFIG_HOME: path.join(dir, 'config'), XDG_DATA_HOME: path.join(dir, 'data') };
    const app = await _electron.launch({ executablePath: bin!, args: [ROOT, '--no-sandbox'], env });
    close = async () => {
      await app.close();
      await stopServiceAndWait(env);
      fs.rmSync(dir, { recursive: true, force: true });
    };
    const win = await app.firstWindow();
    await win.waitForFunction(() => document.documentElement.dataset.vireoReady === 'manager', undefined, { timeout: 30000 });
    // The manager came up through the service that the app started (its binary with --vireo-service), not in the app's process.
    const pid = servicePid(env);
    expect(pid).not.toBeNull();
    expect(pid).not.toBe(await app.evaluate(() => process.pid));
    // The renderer has no Node and no way out: a WebSocket to anywhere is refused by the CSP.
    const blocked = await win.evaluate(
      () =>
        new Promise<boolean>((resolve) => {
          document.addEventListener('securitypolicyviolation', () => resolve(true), { once: true });
          try {
            new WebSocket('ws://127.0.0.1:9/');
          } catch {
            resolve(true);
          }
          setTimeout(() => resolve(false), 3000);
        }),
    );
    expect(blocked).toBe(true);
    expect(await win.evaluate(() => typeof (globalThis as { require?: unknown }).require)).toBe('undefined');
    const geo = await win.evaluate(() => navigator.permissions.query({ name: 'geolocation' }).then((s) => s.state));
    expect(geo).not.toBe('granted');
  });

  it('runs `vireo` verbs headless from the app binary: output, exit codes, no window (launch-mode.ts)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-electron-cli-'));
    const env = { ...process.env, HOME: dir, XDG_RUNTIME_DIR: path.join(dir, 'run'), XDG_CONFIG_HOME: path.join(dir, 'config'), XDG_DATA_HOME: path.join(dir, 'data') };
    const app = (...args: string[]) => spawnSync(bin!, ['--no-sandbox', ROOT, ...args], { env, encoding: 'utf8', timeout: 60000 });
    try {
      // The verb starts the service as this binary with --vireo-service, lists, and the process exits 0.
      const list = app('list', '--all');
      expect(list.status, list.stderr).toBe(0);
      expect(list.stdout).toMatch(/Id\s+Name\s+State/);
      expect(servicePid(env)).not.toBeNull();
      const help = app('--help');
      expect(help.status).toBe(0);
      expect(help.stdout).toContain('usage: vireo <command>');
      const typo = app('lsit');
      expect(typo.status).toBe(2);
      expect(typo.stderr).toContain("unknown command 'lsit'");
    } finally {
      await stopServiceAndWait(env);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
