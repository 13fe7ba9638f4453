// E2E harness: a real `vireo serve` (compiled dist) in fresh XDG dirs, and Debian's
// Chromium driven by playwright-core. Waits on app events (the printed URL, DOM
// state the app sets), never on sleeps.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BrowserContext, type Locator, type Page, chromium } from 'playwright-core';

export const ROOT = path.resolve(__dirname, '..');
export const CHROMIUM = process.env.VIREO_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
];

export interface App {
  dir: string;
  env: NodeJS.ProcessEnv;
  url: string;
  token: string;
  origin: string;
  server: ChildProcess;
  output: () => string;
  context: BrowserContext;
  page: Page;
  configDir: string;
  poolDir: string;
  close(): Promise<void>;
}

export function distReady(): string | null {
  for (const f of ['dist/electron/cli/main.js', 'dist/electron/engine-host/main.js', 'dist/renderer/index.html']) {
    if (!fs.existsSync(path.join(ROOT, f))) return `${f} is missing: build first (npx tsc -p tsconfig.json && npx vite build --config renderer/vite.config.ts)`;
  }
  return null;
}

/** `reuseDir` (startServe): start on the files an earlier server left there (cli-service.spec.ts). */
/** A private home for one spec: HOME and the XDG config, data and runtime directories under a fresh temp dir. */
export function isolatedEnv(prefix: string): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_DATA_HOME: path.join(dir, 'data'),
    XDG_RUNTIME_DIR: path.join(dir, 'run'),
  };
  return { dir, env };
}

export interface CliRun {
  code: number | null;
  out: string;
  err: string;
}

/** Runs `vireo ARGS` (the compiled CLI, bin/vireo.js) to its end in `env`; past `timeoutMs` it is killed and this rejects. */
export function runVireo(env: NodeJS.ProcessEnv, args: string[], timeoutMs = 60000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => (p.kill('SIGKILL'), reject(new Error(`vireo ${args.join(' ')} timed out:\n${out}\n${err}`))), timeoutMs);
    p.on('exit', (code) => (clearTimeout(t), resolve({ code, out, err })));
  });
}

export async function startServe(extraEnv: NodeJS.ProcessEnv = {}, reuseDir?: string): Promise<Omit<App, 'context' | 'page' | 'close'> & { stop(): Promise<void> }> {
  const dir = reuseDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-e2e-'));
  const env = {
    ...process.env,
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_DATA_HOME: path.join(dir, 'data'),
    // Its own Vireo service (the socket lives here), ended by stop().
    XDG_RUNTIME_DIR: path.join(dir, 'run'),
    ...extraEnv,
  };
  const server = spawn(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  // A test run that ends early (a timed-out hook) must not leave the server and its VMs running.
  const killServer = () => {
    if (server.exitCode === null) server.kill('SIGKILL');
    stopService(env, 'SIGKILL');
  };
  process.once('exit', killServer);
  server.once('exit', () => process.off('exit', killServer));
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vireo serve printed no URL:\n${out}`)), 20000);
    const on = (d: Buffer) => {
      out += d.toString();
      const m = /Vireo is serving on (http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    server.stdout!.on('data', on);
    server.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    server.on('exit', (code) => reject(new Error(`vireo serve exited with ${code}:\n${out}`)));
  });
  const u = new URL(url);
  return {
    dir,
    env,
    url,
    token: u.searchParams.get('token')!,
    origin: u.origin,
    server,
    output: () => out,
    configDir: path.join(dir, 'config', 'vireo'),
    poolDir: path.join(dir, 'data', 'vireo', 'images'),
    stop: async () => {
      if (server.exitCode === null) {
        const gone = new Promise((r) => server.once('exit', r));
        server.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
        if (server.exitCode === null) server.kill('SIGKILL');
      }
      await stopServiceAndWait(env);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The pid of the Vireo service that `vireo serve` started under this env (its pid file), or null. */
export function servicePid(env: NodeJS.ProcessEnv): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(env.XDG_RUNTIME_DIR!, 'vireo', 'service.pid'), 'utf8'));
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export function stopService(env: NodeJS.ProcessEnv, sig: NodeJS.Signals = 'SIGTERM'): number | null {
  const pid = servicePid(env);
  if (pid) {
    try {
      process.kill(pid, sig);
    } catch {
      return null;
    }
  }
  return pid;
}

/** Stops the service (and its VMs): SIGTERM, then SIGKILL after 5 s. */
export async function stopServiceAndWait(env: NodeJS.ProcessEnv): Promise<void> {
  const pid = stopService(env);
  if (!pid) return;
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 50)); // polling for the service's exit
  if (alive()) process.kill(pid, 'SIGKILL');
}

/** A private X server (Xvfb) for headful Chromium; stop() ends it. */
export interface Xvfb {
  display: string;
  stop(): void;
}

export const XVFB = '/usr/bin/Xvfb';

export async function startXvfb(width = 1280, height = 800): Promise<Xvfb> {
  for (let n = 90 + Math.floor(Math.random() * 150); ; n++) {
    if (fs.existsSync(`/tmp/.X11-unix/X${n}`) || fs.existsSync(`/tmp/.X${n}-lock`)) continue;
    const p = spawn(XVFB, [`:${n}`, '-screen', '0', `${width}x${height}x24`, '-nolisten', 'tcp'], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      if (fs.existsSync(`/tmp/.X11-unix/X${n}`)) {
        const kill = () => p.kill('SIGTERM');
        process.once('exit', kill);
        return {
          display: `:${n}`,
          stop: () => {
            process.off('exit', kill);
            kill();
          },
        };
      }
      await new Promise((r) => setTimeout(r, 50)); // polling for the X socket to appear
    }
    p.kill();
  }
}

export async function launchApp(
  opts: { headless?: boolean; display?: string; viewport?: { width: number; height: number }; env?: NodeJS.ProcessEnv; deviceScaleFactor?: number } = {},
): Promise<App> {
  const srv = await startServe(opts.env);
  const userDataDir = path.join(srv.dir, 'chromium');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: opts.display ? false : (opts.headless ?? true),
    args: CHROMIUM_ARGS,
    viewport: opts.viewport ?? { width: 1200, height: 760 },
    ...(opts.deviceScaleFactor ? { deviceScaleFactor: opts.deviceScaleFactor } : {}),
    ...(opts.display ? { env: { ...process.env, DISPLAY: opts.display } } : {}),
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => console.error('[page error]', e.message));
  await page.goto(srv.url);
  await page.waitForFunction(() => document.documentElement.dataset.vireoReady === 'manager');
  return {
    ...srv,
    context,
    page,
    close: async () => {
      // A page that no longer answers must not keep the server (and its VMs) alive.
      await Promise.race([context.close().catch(() => undefined), new Promise((r) => setTimeout(r, 10000))]);
      await srv.stop();
    },
  };
}

/** Tries to boot a configuration with the real engine; returns why it can't, or null. */
export function engineCapability(): string | null {
  const addon = process.env.VIREO_ADDON ?? path.join(ROOT, 'native', 'build', 'Release', 'vireo_native.node');
  if (!fs.existsSync(addon)) return `the engine addon is not built (${addon})`;
  if (!fs.existsSync('/dev/kvm')) return '/dev/kvm is missing';
  return null;
}

export function skipReason(reason: string | null, what: string): string | null {
  if (reason) console.log(`SKIP ${what}: ${reason}`);
  return reason;
}

export interface WizardInput {
  media: 'iso' | 'kernel';
  path: string;
  diskGiB?: number; // omitted: no disk
  /** The new disk's format; default raw here (the wizard's own default is qcow2) so older specs keep their .img files. */
  diskFormat?: 'qcow2' | 'raw';
  name: string;
  memoryMiB?: number;
  /** Leave the VM shut off after Finish ("customize before install"); its Details dialog opens and is closed again. */
  customize?: boolean;
  /** With customize: leave the Details dialog open. */
  keepDetails?: boolean;
}

/** Walks the New VM wizard like a user. */
export async function createViaWizard(page: Page, w: WizardInput): Promise<void> {
  await page.getByRole('button', { name: 'New VM' }).click();
  const dlg = page.getByRole('dialog', { name: 'New VM' });
  const forward = () => dlg.getByRole('button', { name: 'Forward' }).click();
  if (w.media === 'iso') await dlg.getByLabel('ISO image path').fill(w.path);
  else {
    await dlg.getByLabel('Direct kernel boot').check();
    await dlg.getByLabel('Kernel path').fill(w.path);
  }
  await forward();
  await dlg.locator('form[data-step="2"]').waitFor();
  await forward();
  await dlg.locator('form[data-step="3"]').waitFor();
  if (w.memoryMiB) await dlg.getByLabel('Memory (MiB)').fill(String(w.memoryMiB));
  await forward();
  await dlg.locator('form[data-step="4"]').waitFor();
  const create = dlg.getByLabel('Create a disk image for the virtual machine');
  if (w.diskGiB) {
    await create.check();
    await dlg.getByLabel('Disk size (GiB)').fill(String(w.diskGiB));
    await dlg.getByLabel('Disk format').selectOption(w.diskFormat ?? 'raw');
  } else await create.uncheck();
  await forward();
  await dlg.locator('form[data-step="5"]').waitFor();
  await dlg.getByLabel('Name', { exact: true }).fill(w.name);
  if (w.customize) await dlg.getByLabel('Customize configuration before install').check();
  await dlg.getByRole('button', { name: 'Finish' }).click();
  await dlg.waitFor({ state: 'detached' });
  await page.getByRole('option', { name: w.name, exact: true }).waitFor();
  if (w.customize && !w.keepDetails) {
    const details = page.getByRole('dialog', { name: `Details of ${w.name}` });
    await details.getByRole('button', { name: 'Close', exact: true }).click();
    await details.waitFor({ state: 'detached' });
  }
}

export async function contextMenu(page: Page, vmName: string, item: string): Promise<void> {
  await page.getByRole('option', { name: vmName, exact: true }).click({ button: 'right' });
  await page.getByRole('menu').getByRole('menuitem', { name: item, exact: true }).click();
}

export async function waitVmState(page: Page, vmName: string, states: string[], timeout = 60000): Promise<string> {
  const row = page.getByRole('option', { name: vmName, exact: true });
  const sel = states.map((s) => `[data-state="${s}"]`).join(',');
  // Read from the element as it matched (a second read of the row can see a later state).
  const matched = row.and(page.locator(sel));
  await matched.waitFor({ timeout });
  return (await matched.getAttribute('data-state'))!;
}

/** Opens the console window of a VM from the context menu. */
export async function openConsole(app: App, vmName: string): Promise<Page> {
  const popup = app.context.waitForEvent('page');
  await contextMenu(app.page, vmName, 'Open');
  const con = await popup;
  con.on('pageerror', (e) => console.error('[console page error]', e.message));
  await con.waitForFunction(() => document.documentElement.dataset.vireoReady === 'console');
  return con;
}

/** Builds native/guests/<name>.asm with nasm into dir; null when nasm is missing. */
export function buildGuest(name: string, dir: string): string | null {
  const out = path.join(dir, `${name}.bin`);
  const src = path.join(ROOT, 'native', 'guests');
  const r = spawnSync('nasm', ['-f', 'bin', '-I', src + '/', '-o', out, path.join(src, `${name}.asm`)]);
  return r.status === 0 ? out : null;
}

export async function terminalText(con: Page): Promise<string> {
  return (await con.locator('.xterm-rows').textContent()) ?? '';
}

/** Calls the contract from the test itself, as a client holding the token (like a second browser tab). */
export async function apiCall(app: { url: string; token: string; origin: string }, method: string, params: unknown): Promise<any> {
  const WebSocket = (await import('ws')).default;
  const u = new URL(app.url);
  const ws = new WebSocket(`ws://${u.host}/api?token=${app.token}`, { origin: app.origin });
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return await new Promise((resolve, reject) => {
      ws.on('message', (d) => {
        const m = JSON.parse(String(d));
        if (m.id !== 1) return;
        if (m.t === 'result') resolve(m.value);
        else reject(new Error(m.message));
      });
      ws.send(JSON.stringify({ t: 'call', id: 1, method, params }));
    });
  } finally {
    ws.close();
  }
}

/** Fraction of pixels that differ between the display canvas and a PNG. */
export async function diffWithCanvas(con: Page, pngBase64: string): Promise<number> {
  return con.evaluate(async (b64) => {
    const c = document.querySelector('canvas')!;
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    if (img.width !== c.width || img.height !== c.height) return 1;
    const off = document.createElement('canvas');
    off.width = img.width;
    off.height = img.height;
    const octx = off.getContext('2d')!;
    octx.drawImage(img, 0, 0);
    const a = octx.getImageData(0, 0, off.width, off.height).data;
    const b = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let diff = 0;
    for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) diff++;
    return diff / (a.length / 4);
  }, pngBase64);
}

/** The text tesseract reads in a screenshot (VGA text screens read well), or null without tesseract. */
export function ocr(png: Buffer, dir: string): string | null {
  const f = path.join(dir, 'screen.png');
  fs.writeFileSync(f, png);
  const r = spawnSync('tesseract', [f, 'stdout'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : null;
}

/** The engine's reason when the VM crashed (shown in the console), else null. */
export async function crashReason(con: Page): Promise<string | null> {
  if ((await con.getByTestId('console-state').textContent()) !== 'crashed') return null;
  return (await con.locator('.display .off .hint').textContent().catch(() => null)) ?? 'crashed';
}

/** Details → Apply, then waits for "Saved." (throws with what the dialog said otherwise). */
export async function applyDetails(details: Locator, timeout = 15000): Promise<void> {
  await details.getByRole('button', { name: 'Apply' }).click();
  const status = details.getByTestId('details-status');
  const end = Date.now() + timeout;
  let text = '';
  while (Date.now() < end) {
    text = (await status.count()) ? ((await status.textContent()) ?? '') : '';
    if (text === 'Saved.') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Details did not save within ${timeout} ms; it says: ${JSON.stringify(text)}`);
}

/**
 * Details → Serial: COM1 is also logged to `file` in Vireo's log directory; applies, closes
 * the dialog, and returns a reader of the log's text so far ('' before the VM writes).
 */
export async function logCom1(app: App, details: Locator, file: string): Promise<() => string> {
  await details.getByRole('tab', { name: 'Serial' }).click();
  await details.getByLabel('Also log COM1 output to a file').fill(file);
  await applyDetails(details);
  await details.getByRole('button', { name: 'Close', exact: true }).click();
  await details.waitFor({ state: 'detached' });
  const logFile = path.join(app.dir, 'data', 'vireo', 'logs', file);
  return () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');
}
