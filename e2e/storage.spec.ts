// Storage window and linked clones, end to end: a real `vireo serve` in fresh XDG
// dirs, Debian's Chromium, the real vireo-img, and qemu-img as the outside judge of
// what was written. Waits on DOM state the app sets (rows, data-* attributes,
// dialogs detaching), never on sleeps.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Page, chromium } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type App,
  CHROMIUM,
  CHROMIUM_ARGS,
  ROOT,
  XVFB,
  apiCall,
  buildGuest,
  contextMenu,
  createViaWizard,
  distReady,
  engineCapability,
  launchApp,
  openConsole,
  startServe,
  startXvfb,
  terminalText,
  waitVmState,
} from './harness';

const GiB = 1024 ** 3;
const img = path.join(ROOT, 'native', 'out', 'core', 'vireo-img');
const why = distReady() ?? (fs.existsSync(img) ? null : `${img} is not built`) ?? (spawnSync('qemu-img', ['--version']).status === 0 ? null : 'qemu-img is not installed');
if (why) console.log(`SKIP storage e2e: ${why}`);
let app: App | undefined;

const qinfo = (f: string) => JSON.parse(spawnSync('qemu-img', ['info', '--output', 'json', f], { encoding: 'utf8' }).stdout);
const sha256 = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

async function openStorage(page: Page) {
  await page.getByRole('button', { name: 'Storage', exact: true }).click();
  const win = page.getByRole('dialog', { name: 'Storage' });
  await win.locator('table[data-loaded="yes"]').waitFor();
  return win;
}

async function newVolume(page: Page, v: { name: string; format?: 'qcow2' | 'raw'; sizeGiB?: number; basedOn?: string /* path */ }) {
  const win = page.getByRole('dialog', { name: 'Storage' });
  await win.getByRole('button', { name: 'New Volume…' }).click();
  const dlg = page.getByRole('dialog', { name: 'New Volume' });
  await dlg.getByLabel('Volume name').fill(v.name);
  if (v.basedOn) await dlg.getByLabel('Based on (linked)').selectOption(v.basedOn); // the option's value is the image's path
  else {
    if (v.format) await dlg.getByLabel('Format').selectOption(v.format);
    if (v.sizeGiB) await dlg.getByLabel('Capacity (GiB)').fill(String(v.sizeGiB));
  }
  await dlg.getByRole('button', { name: 'Create Volume' }).click();
  await dlg.waitFor({ state: 'detached' });
}

const row = (page: Page, name: string) => page.getByRole('dialog', { name: 'Storage' }).getByRole('row', { name, exact: true });

describe.skipIf(!!why)('storage', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('New Volume, Resize and Delete in the Storage window; a backing volume is not deleted', async () => {
    app = await launchApp();
    const { page } = app;
    const win = await openStorage(page);
    await win.getByRole('option', { name: 'default' }).waitFor();

    await newVolume(page, { name: 'data', format: 'qcow2', sizeGiB: 3 });
    const data = row(page, 'data.qcow2');
    await data.waitFor();
    expect(await data.getAttribute('data-format')).toBe('qcow2');
    expect(Number(await data.getAttribute('data-capacity'))).toBe(3 * GiB);
    await expect.poll(() => data.locator('td').nth(2).textContent()).toBe('3.0 GiB');
    const dataPath = path.join(app.poolDir, 'data.qcow2');
    expect(qinfo(dataPath)).toMatchObject({ format: 'qcow2', 'virtual-size': 3 * GiB });

    await newVolume(page, { name: 'scratch', format: 'raw', sizeGiB: 1 });
    await row(page, 'scratch.img').waitFor();
    expect(qinfo(path.join(app.poolDir, 'scratch.img'))).toMatchObject({ format: 'raw', 'virtual-size': GiB });

    // A name clash is refused on the name field; nothing is overwritten.
    const before = sha256(dataPath);
    await win.getByRole('button', { name: 'New Volume…' }).click();
    const dlg = page.getByRole('dialog', { name: 'New Volume' });
    await dlg.getByLabel('Volume name').fill('data.qcow2');
    await dlg.getByRole('button', { name: 'Create Volume' }).click();
    await expect.poll(() => dlg.getByRole('alert').textContent()).toMatch(/already exists/);
    await dlg.getByRole('button', { name: 'Cancel' }).click();
    expect(sha256(dataPath)).toBe(before);

    // An overlay based on data.qcow2.
    await newVolume(page, { name: 'overlay', basedOn: dataPath });
    const ov = row(page, 'overlay.qcow2');
    await ov.waitFor();
    expect(await ov.getAttribute('data-backing')).toBe(dataPath);
    expect(qinfo(path.join(app.poolDir, 'overlay.qcow2'))).toMatchObject({ format: 'qcow2', 'backing-filename': dataPath, 'virtual-size': 3 * GiB });

    // Delete data.qcow2: refused, with the reason in the dialog.
    await data.click();
    await win.getByRole('button', { name: 'Delete Volume' }).click();
    const del = page.getByRole('dialog', { name: 'Delete data.qcow2' });
    await del.getByRole('button', { name: 'Delete', exact: true }).click();
    await expect.poll(() => del.getByRole('alert').textContent()).toMatch(/data\.qcow2 is the backing file of overlay\.qcow2/);
    await del.getByRole('button', { name: 'Cancel' }).click();
    expect(fs.existsSync(dataPath)).toBe(true);

    // Resize the overlay: 3 -> 5 GiB, qemu-img agrees and finds it clean.
    await ov.click();
    await win.getByRole('button', { name: 'Resize…' }).click();
    const rs = page.getByRole('dialog', { name: 'Resize overlay.qcow2' });
    await rs.getByLabel('New capacity (GiB)').fill('5');
    await rs.getByRole('button', { name: 'Resize', exact: true }).click();
    await rs.waitFor({ state: 'detached' });
    await expect.poll(async () => Number(await ov.getAttribute('data-capacity'))).toBe(5 * GiB);
    expect(qinfo(path.join(app.poolDir, 'overlay.qcow2'))['virtual-size']).toBe(5 * GiB);
    expect(spawnSync('qemu-img', ['check', path.join(app.poolDir, 'overlay.qcow2')]).status).toBe(0);

    // Delete the overlay, then its base is free to go.
    await ov.click();
    await win.getByRole('button', { name: 'Delete Volume' }).click();
    await page.getByRole('dialog', { name: 'Delete overlay.qcow2' }).getByRole('button', { name: 'Delete', exact: true }).click();
    await ov.waitFor({ state: 'detached' });
    await data.click();
    await win.getByRole('button', { name: 'Delete Volume' }).click();
    await page.getByRole('dialog', { name: 'Delete data.qcow2' }).getByRole('button', { name: 'Delete', exact: true }).click();
    await data.waitFor({ state: 'detached' });
    expect(fs.readdirSync(app.poolDir)).toEqual(['scratch.img']);
  });

  it('linked clone via right-click: a qcow2 overlay on the source disk, it boots, the source is unchanged and protected', async (ctx) => {
    app = await launchApp();
    const { page } = app;
    const echo = buildGuest('echo', app.dir);
    if (!echo) return ctx.skip('nasm is not installed: cannot build the echo guest');
    await createViaWizard(page, { media: 'kernel', path: echo, diskGiB: 1, diskFormat: 'qcow2', name: 'echo', memoryMiB: 32, customize: true });
    const src = path.join(app.poolDir, 'echo.qcow2');
    expect(qinfo(src)).toMatchObject({ format: 'qcow2', 'virtual-size': GiB });
    const hash = sha256(src);

    await contextMenu(page, 'echo', 'Clone…');
    const dlg = page.getByRole('dialog', { name: 'Clone echo' });
    await expect.poll(() => dlg.getByLabel('Name for the clone').inputValue()).toBe('echo-clone');
    await dlg.getByLabel('Linked (qcow2 overlay)').check();
    await dlg.getByText('new qcow2 overlay backed by this disk').waitFor();
    await dlg.getByRole('button', { name: 'Clone', exact: true }).click();
    await dlg.waitFor({ state: 'detached', timeout: 60000 });
    await page.getByRole('option', { name: 'echo-clone', exact: true }).waitFor();

    const disk = path.join(app.poolDir, 'echo-clone.qcow2');
    const qi = qinfo(disk);
    expect(qi).toMatchObject({ format: 'qcow2', 'backing-filename': src, 'virtual-size': GiB });
    expect(qi['backing-filename-format']).toBe('qcow2');
    expect(fs.statSync(disk).blocks * 512).toBeLessThan(1024 * 1024);

    const eng = engineCapability();
    if (eng) console.log(`SKIP linked clone boot: ${eng}`);
    else {
      await contextMenu(page, 'echo-clone', 'Run');
      await waitVmState(page, 'echo-clone', ['running', 'crashed', 'shutoff']);
      const con = await openConsole(app, 'echo-clone');
      await con.getByRole('tab', { name: 'Serial' }).click();
      await expect.poll(() => terminalText(con), { timeout: 30000 }).toContain('echo ready');
      await con.close();
      if ((await page.getByRole('option', { name: 'echo-clone', exact: true }).getAttribute('data-state')) !== 'crashed') {
        await contextMenu(page, 'echo-clone', 'Force Off');
      }
      await waitVmState(page, 'echo-clone', ['shutoff', 'crashed']);
      expect(spawnSync('qemu-img', ['check', disk]).status).toBe(0);
    }
    expect(sha256(src)).toBe(hash);

    // The Storage window shows the link, and refuses to delete the source disk.
    const win = await openStorage(page);
    const srcRow = row(page, 'echo.qcow2');
    await srcRow.waitFor();
    expect(await row(page, 'echo-clone.qcow2').getAttribute('data-backing')).toBe(src);
    await srcRow.click();
    await win.getByRole('button', { name: 'Delete Volume' }).click();
    const del = page.getByRole('dialog', { name: 'Delete echo.qcow2' });
    await del.getByRole('button', { name: 'Delete', exact: true }).click();
    await expect.poll(() => del.getByRole('alert').textContent()).toMatch(/echo\.qcow2 is the backing file of echo-clone\.qcow2 \(echo-clone\)/);
    expect(fs.existsSync(src)).toBe(true);
    expect(sha256(src)).toBe(hash);
  });

  it('a volume of a user-defined pool (any directory) is deleted only after the dialog names it', async () => {
    app = await launchApp();
    const { page } = app;
    const dir = path.join(app.dir, 'elsewhere');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'notes.img');
    fs.writeFileSync(file, Buffer.alloc(4096, 7));
    const win = await openStorage(page);
    await win.getByRole('button', { name: 'Add Pool…' }).click();
    const add = page.getByRole('dialog', { name: 'Add Storage Pool' });
    await add.getByLabel('Pool name').fill('elsewhere');
    await add.getByLabel('Directory').fill(dir);
    await add.getByRole('button', { name: 'Add Pool' }).click();
    await add.waitFor({ state: 'detached' });
    await win.getByRole('option', { name: 'elsewhere' }).click();
    await row(page, 'notes.img').click();
    // Without the confirmation the service refuses (what a client that skips the dialog gets).
    await expect(apiCall(app, 'storage.volumeDelete', { pool: 'elsewhere', name: 'notes.img' })).rejects.toThrow(/outside Vireo's storage pool/);
    expect(fs.existsSync(file)).toBe(true);
    await win.getByRole('button', { name: 'Delete Volume' }).click();
    const del = page.getByRole('dialog', { name: 'Delete notes.img' });
    await del.getByText(file).waitFor();
    await del.getByText("outside Vireo's own storage pool").waitFor();
    await del.getByRole('button', { name: 'Delete', exact: true }).click();
    await del.waitFor({ state: 'detached' });
    expect(fs.existsSync(file)).toBe(false);
  });
});

// docs/screenshots/storage.png: a real (headful) Chromium window under Xvfb, grabbed
// with xwd like e2e/screenshots.spec.ts (written to docs/ when VIREO_UPDATE_SCREENSHOTS=1).
const noX = [XVFB, '/usr/bin/xwd', '/usr/bin/convert'].find((f) => !fs.existsSync(f));
describe.skipIf(!!why || !!noX)('storage screenshot', () => {
  it('captures the Storage window with pools, volumes and a linked overlay', async () => {
    const W = 1280;
    const H = 800;
    const xvfb = await startXvfb(W, H);
    const { display } = xvfb;
    const srv = await startServe();
    const ctx = await chromium.launchPersistentContext(path.join(srv.dir, 'chromium'), {
      executablePath: CHROMIUM,
      headless: false,
      args: [...CHROMIUM_ARGS, '--test-type', `--window-size=${W},${H}`, '--window-position=0,0', `--app=${srv.url}`],
      viewport: null,
      env: { ...process.env, DISPLAY: display },
    });
    try {
      const page = ctx.pages()[0] ?? (await ctx.waitForEvent('page'));
      await page.waitForFunction(() => document.documentElement.dataset.vireoReady === 'manager');
      const iso = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
      await createViaWizard(page, { media: 'iso', path: iso, diskGiB: 20, diskFormat: 'qcow2', name: 'debian-12', customize: true });
      const win = await openStorage(page);
      await newVolume(page, { name: 'data', format: 'raw', sizeGiB: 4 });
      await newVolume(page, { name: 'debian-12-test', basedOn: path.join(srv.poolDir, 'debian-12.qcow2') });
      await row(page, 'debian-12-test.qcow2').click();
      await win.locator('table[data-loaded="yes"] tbody tr').nth(2).waitFor();
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      const outDir = process.env.VIREO_UPDATE_SCREENSHOTS === '1' ? path.join(ROOT, 'docs', 'screenshots') : fs.mkdtempSync('/tmp/vireo-shots-');
      const f = path.join(outDir, 'storage.png');
      const xwd = spawnSync('/usr/bin/xwd', ['-root', '-silent', '-display', display], { maxBuffer: 64 << 20 });
      expect(xwd.status).toBe(0);
      expect(spawnSync('/usr/bin/convert', ['xwd:-', f], { input: xwd.stdout }).status).toBe(0);
      const png = fs.readFileSync(f);
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([W, H]);
      const ocr = spawnSync('tesseract', [f, 'stdout'], { encoding: 'utf8' });
      if (ocr.status === 0) expect(ocr.stdout).toMatch(/Volumes|Storage/);
    } finally {
      await ctx.close().catch(() => undefined);
      await srv.stop();
      xvfb.stop();
    }
  });
});
