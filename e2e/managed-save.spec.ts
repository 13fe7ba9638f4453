// Managed save end to end (virsh managedsave / virt-manager "Save"), real engine, real
// browser: a VM from the GRUB rescue ISO shows GRUB's menu; Down stops its countdown and
// moves the highlight; Save → the row says "Saved" and the state file exists; Restore →
// running, and the first screenshot is already GRUB's menu with the countdown gone (it
// resumed, no SeaBIOS banner, no fresh boot), Down moves the highlight again, the file is
// gone. Then a corrupted state file: Restore shows the engine's error and the Discard hint
// in the manager, the VM stays Saved, "Discard saved state" removes the file.
// Chromium runs under Xvfb (the console captures the keyboard with a pointer lock).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, type Xvfb, XVFB, apiCall, contextMenu, distReady, engineCapability, launchApp, ocr, openConsole, startXvfb, waitVmState } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const why =
  distReady() ??
  engineCapability() ??
  (fs.existsSync(ISO) ? null : `${ISO} is missing (apt-get install grub-rescue-pc)`) ??
  (fs.existsSync(XVFB) ? null : `${XVFB} is missing (apt-get install xvfb)`) ??
  (fs.existsSync('/usr/bin/tesseract') ? null : 'tesseract is missing (apt-get install tesseract-ocr): the test reads the screen');
if (why) console.log(`SKIP managed-save e2e: ${why}`);
let app: App | undefined;
let x: Xvfb | undefined;

const MENU = /GNU\/Linux|GNU \(aka|Use the|highlighted/;

describe.skipIf(!!why)('managed save', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
    x?.stop();
    x = undefined;
  });

  it('Save → Saved; Restore resumes GRUB where it was (no reboot) and keys still work; a corrupted state → clear error, still Saved, Discard works', async () => {
    const t0 = Date.now();
    const step = (what: string) => console.log(`[managed-save +${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);
    x = await startXvfb();
    app = await launchApp({ display: x.display });
    const a = app;
    const { page } = a;
    const r = await apiCall(a, 'vm.create', { media: { kind: 'iso', path: ISO }, os: 'generic', memoryMiB: 128, cpus: 1, storage: { kind: 'none' }, name: 'grub', network: 'none' });
    expect(r.errors).toEqual([]);
    const uuid: string = r.vm.uuid;
    const configPath: string = (await apiCall(a, 'host.info', {})).configPath;
    const stateFile = path.join(configPath, 'save', `${uuid}.vstate`);
    const shot = async () => Buffer.from((await apiCall(a, 'vm.screenshot', { uuid })).pngBase64, 'base64');
    const waitScreen = async (re: RegExp, ms: number): Promise<{ png: Buffer; text: string }> => {
      const deadline = Date.now() + ms;
      step(`waiting up to ${ms / 1000} s for ${re}`);
      for (;;) {
        const png = await shot();
        const text = ocr(png, a.dir) ?? '';
        if (re.test(text)) return { png, text };
        if (Date.now() > deadline) throw new Error(`the screen never matched ${re}; last read:\n${text}`);
        await new Promise((res) => setTimeout(res, 1000));
      }
    };
    const capture = async (con: Page) => {
      await con.locator('canvas').click();
      await con.getByText('press Ctrl+Alt to release').waitFor();
      await con.waitForFunction(() => document.pointerLockElement?.tagName === 'CANVAS', undefined, { timeout: 10000 });
    };

    const row = page.getByRole('option', { name: 'grub', exact: true });
    await row.waitFor();
    await contextMenu(page, 'grub', 'Run');
    await waitVmState(page, 'grub', ['running']);
    let con = await openConsole(a, 'grub');
    await capture(con);
    // GRUB's menu with its 30 s countdown; Down stops the countdown and highlights the second entry.
    await waitScreen(/executed automatically/, 240000);
    step('menu shown; pressing Down');
    await con.keyboard.press('ArrowDown');
    const before = await waitScreen(new RegExp(`^(?![\\s\\S]*executed automatically)[\\s\\S]*(${MENU.source})`), 60000);
    step('countdown stopped');

    // Save (the toolbar button, as virt-manager's).
    await row.click();
    await page.getByRole('toolbar').getByRole('button', { name: 'Save', exact: true }).click();
    await waitVmState(page, 'grub', ['saved'], 120000);
    step('saved');
    expect(await row.textContent()).toContain('Saved');
    expect(fs.statSync(stateFile).size).toBeGreaterThan(4096);
    expect((await apiCall(a, 'vm.list', {})).find((v: { uuid: string }) => v.uuid === uuid).hasManagedSave).toBe(true);
    await con.close().catch(() => undefined);

    // Restore: the toolbar's Run says so.
    await expect.poll(() => page.getByRole('toolbar').getByRole('button', { name: 'Restore', exact: true }).isEnabled()).toBe(true);
    await page.getByRole('toolbar').getByRole('button', { name: 'Restore', exact: true }).click();
    await waitVmState(page, 'grub', ['running']);
    const first = await shot();
    const firstText = ocr(first, a.dir) ?? '';
    step(`first screen after restore:\n${firstText}`);
    expect(firstText).toMatch(MENU);
    expect(firstText, 'a fresh boot would show SeaBIOS').not.toMatch(/SeaBIOS|Booting from/);
    expect(firstText, 'a fresh boot would count down again').not.toMatch(/executed automatically/);
    expect(first.equals(before.png) || firstText === before.text, 'the same screen as at the save').toBe(true);
    expect(fs.existsSync(stateFile)).toBe(false);
    expect((await apiCall(a, 'vm.list', {})).find((v: { uuid: string }) => v.uuid === uuid).hasManagedSave).toBeUndefined();
    // Keys reach the restored guest: Down moves the highlight.
    con = await openConsole(a, 'grub');
    await capture(con);
    await con.keyboard.press('ArrowDown');
    await expect.poll(async () => (await shot()).equals(first), { timeout: 60000, interval: 1000 }).toBe(false);
    expect(ocr(await shot(), a.dir) ?? '').toMatch(MENU);
    step('Down moved the highlight');

    // Save again and corrupt the file: Restore fails with the engine's message, the VM stays Saved.
    await contextMenu(page, 'grub', 'Save');
    await waitVmState(page, 'grub', ['saved'], 120000);
    await con.close().catch(() => undefined);
    const fd = fs.openSync(stateFile, 'r+');
    fs.writeSync(fd, Buffer.from('garbage!'), 0, 8, 4096);
    fs.closeSync(fd);
    await contextMenu(page, 'grub', 'Restore');
    await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 60000 }).toMatch(/grub could not be restored from its saved state: .*corrupted.*Discard saved state/);
    step(`error shown: ${await page.getByRole('alert').textContent()}`);
    expect(await row.getAttribute('data-state')).toBe('saved');
    expect(fs.existsSync(stateFile)).toBe(true);
    await contextMenu(page, 'grub', 'Discard saved state');
    await waitVmState(page, 'grub', ['shutoff']);
    expect(fs.existsSync(stateFile)).toBe(false);
  }, 540000);
});
