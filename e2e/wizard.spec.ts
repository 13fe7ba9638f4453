// The New VM wizard against the real service and real files: field errors write
// nothing; a good run creates the definition and a sparse disk in the pool.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type App, distReady, launchApp } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const notBuilt = distReady();
let app: App;

const listFiles = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d, { recursive: true }).map(String) : []);

async function fillToName(page: App['page'], iso: string) {
  await page.getByRole('button', { name: 'New VM' }).click();
  const dlg = page.getByRole('dialog', { name: 'New VM' });
  await dlg.getByLabel('ISO image path').fill(iso);
  await dlg.getByRole('button', { name: 'Forward' }).click();
  return dlg;
}

describe.skipIf(!!notBuilt)('New VM wizard', () => {
  beforeEach(async () => {
    app = await launchApp();
  });
  afterEach(async () => {
    await app?.close();
  });

  it('missing ISO: an error on the media field, nothing written', async () => {
    const { page } = app;
    const dlg = await fillToName(page, '/nonexistent/missing.iso');
    await expect.poll(() => dlg.locator('#iso-path-error').textContent()).toContain('does not exist');
    expect(await dlg.getByLabel('ISO image path').getAttribute('aria-invalid')).toBe('true');
    expect(await dlg.locator('form').getAttribute('data-step')).toBe('1');
    expect(listFiles(path.join(app.configDir, 'vms'))).toEqual([]);
    expect(listFiles(app.poolDir)).toEqual([]);
  });

  it('bad name and duplicate name: an error on the name field, nothing written', async () => {
    const { page } = app;
    const dlg = await fillToName(page, ISO);
    for (let i = 0; i < 3; i++) await dlg.getByRole('button', { name: 'Forward' }).click();
    await dlg.locator('form[data-step="5"]').waitFor();
    await dlg.getByLabel('Name', { exact: true }).fill('bad name!');
    await dlg.getByRole('button', { name: 'Finish' }).click();
    await expect.poll(() => dlg.locator('#vm-name-error').textContent()).toContain('letters, digits');
    expect(listFiles(path.join(app.configDir, 'vms'))).toEqual([]);
    expect(listFiles(app.poolDir)).toEqual([]);

    // A good name with "customize before install" (no auto start) creates it.
    await dlg.getByLabel('Name', { exact: true }).fill('grub1');
    await dlg.getByLabel('Customize configuration before install').check();
    await dlg.getByRole('button', { name: 'Finish' }).click();
    await page.getByRole('option', { name: 'grub1' }).waitFor();
    // "Customize before install" opens the Details view; close it.
    await page.getByRole('dialog', { name: 'Details of grub1' }).getByRole('button', { name: 'Close' }).click();
    expect(listFiles(path.join(app.configDir, 'vms'))).toHaveLength(1);
    expect(listFiles(app.poolDir)).toEqual(['grub1.qcow2']);  // the wizard's default format, as virt-manager's

    // The same name again (case-insensitively).
    const dlg2 = await fillToName(page, ISO);
    for (let i = 0; i < 3; i++) await dlg2.getByRole('button', { name: 'Forward' }).click();
    await dlg2.locator('form[data-step="5"]').waitFor();
    await dlg2.getByLabel('Name', { exact: true }).fill('GRUB1');
    await dlg2.getByRole('button', { name: 'Finish' }).click();
    await expect.poll(() => dlg2.locator('#vm-name-error').textContent()).toContain('already exists');
    expect(listFiles(path.join(app.configDir, 'vms'))).toHaveLength(1);
    expect(listFiles(app.poolDir)).toEqual(['grub1.qcow2']);  // the wizard's default format, as virt-manager's
  });

  it('walks the five steps with a sensible OS default and host-bounded memory', async () => {
    const { page } = app;
    const dlg = await fillToName(page, ISO);
    await dlg.locator('form[data-step="2"]').waitFor();
    expect(await dlg.getByLabel('Operating system').inputValue()).toBe('generic');
    await dlg.getByRole('button', { name: 'Forward' }).click();
    await dlg.getByLabel('Memory (MiB)').fill('99999999');
    await dlg.getByRole('button', { name: 'Forward' }).click();
    await expect.poll(() => dlg.locator('#memory-error').textContent()).toMatch(/between 16 and \d+ MiB/);
    await dlg.getByLabel('Memory (MiB)').fill('256');
    await dlg.getByRole('button', { name: 'Forward' }).click();
    await dlg.locator('form[data-step="4"]').waitFor();
    await dlg.getByLabel('Disk size (GiB)').fill('1');
    await dlg.getByRole('button', { name: 'Forward' }).click();
    await dlg.locator('form[data-step="5"]').waitFor();
    expect(await dlg.getByLabel('Name', { exact: true }).inputValue()).toBe('grub-rescue-cdrom');
    await dlg.getByLabel('Customize configuration before install').check();
    await dlg.getByRole('button', { name: 'Finish' }).click();
    const row = page.getByRole('option', { name: 'grub-rescue-cdrom' });
    await row.waitFor();
    const defs = listFiles(path.join(app.configDir, 'vms'));
    const def = JSON.parse(fs.readFileSync(path.join(app.configDir, 'vms', defs[0]!), 'utf8'));
    expect(def).toMatchObject({ memoryMiB: 256, cpus: 1, os: 'generic', boot: { kind: 'firmware', order: 'dc' } });
    // A qcow2 disk (the default) of 1 GiB virtual size that takes almost no space yet.
    const disk = path.join(app.poolDir, 'grub-rescue-cdrom.qcow2');
    const header = fs.readFileSync(disk).subarray(0, 32);
    expect(header.subarray(0, 4).toString('latin1')).toBe('QFI\xfb');
    expect(header.readBigUInt64BE(24)).toBe(BigInt(1024 ** 3));
    expect(fs.statSync(disk).size).toBeLessThan(1024 * 1024);
    // "Customize before install" opened the Details view; close it.
    const details = page.getByRole('dialog', { name: /Details of/ });
    if (await details.isVisible()) await details.getByRole('button', { name: 'Close' }).click();
    // Keyboard: the context menu from the list (Shift+F10) has the accessible items.
    await row.click();
    await page.keyboard.press('Shift+F10');
    const menu = page.getByRole('menu');
    await menu.getByRole('menuitem', { name: 'Clone…' }).waitFor();
    await menu.getByRole('menuitem', { name: 'Delete…' }).waitFor();
    await page.keyboard.press('Escape');
  });
});
