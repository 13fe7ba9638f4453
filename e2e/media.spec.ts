// Live CD change (virt-manager's Details → CDROM → Connect/Disconnect): a running
// firmware-boot VM gets its disc ejected, a new ISO inserted, and a missing ISO refused
// on the field, all from Details; the definition on disk follows each change.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, contextMenu, createViaWizard, distReady, engineCapability, launchApp, skipReason, waitVmState } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const notBuilt = distReady();
const noEngine = skipReason(engineCapability() ?? (fs.existsSync(ISO) ? null : `${ISO} is missing`), 'live CD change');
let app: App | undefined;

const cdOf = (a: App, name: string): string | undefined => {
  const dir = path.join(a.configDir, 'vms');
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.json'))) {
    const def = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    if (def.name === name) return def.disks.find((d: { media: string }) => d.media === 'cdrom')?.path;
  }
  return undefined;
};

describe.skipIf(!!notBuilt || !!noEngine)('live CD change', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('Details of a running VM: Eject → Ejected now, Change… → Inserted now, a missing ISO → error on the field', async () => {
    app = await launchApp();
    const { page } = app;
    const other = path.join(app.dir, 'other.iso');
    fs.copyFileSync(ISO, other);
    await createViaWizard(page, { media: 'iso', path: ISO, name: 'cd', memoryMiB: 64, customize: true });
    await contextMenu(page, 'cd', 'Run');
    await waitVmState(page, 'cd', ['running']);

    await contextMenu(page, 'cd', 'Details');
    const dlg = page.getByRole('dialog', { name: 'Details of cd' });
    await dlg.getByRole('tab', { name: 'Disks' }).click();
    const row = dlg.getByRole('group', { name: 'CD-ROM 1' });
    const status = row.getByTestId('cdrom-live-status');
    await status.waitFor();
    expect(await row.getByLabel('ISO image', { exact: true }).inputValue()).toBe(ISO);

    // Eject: the engine ejects now, the definition's drive becomes empty.
    await row.getByRole('button', { name: 'Eject', exact: true }).click();
    await expect.poll(() => status.textContent()).toBe('Ejected now');
    expect(cdOf(app, 'cd')).toBe('');
    expect(await row.getByLabel('ISO image', { exact: true }).inputValue()).toBe('');
    expect(await dlg.getAttribute('data-dirty')).toBe('no');

    // A missing ISO: the error shows on the Change… field; nothing changes.
    await row.getByRole('button', { name: 'Change…' }).click();
    const field = row.getByLabel('Insert this ISO image now');
    const missing = path.join(app.dir, 'missing.iso');
    await field.fill(missing);
    await row.getByRole('button', { name: 'Insert' }).click();
    await expect.poll(() => row.locator('#d-disk-0-change-error').textContent()).toBe(`${missing} does not exist.`);
    expect(await field.getAttribute('aria-invalid')).toBe('true');
    expect(cdOf(app, 'cd')).toBe('');

    // Another ISO: inserted now, saved in the definition.
    await field.fill(other);
    await row.getByRole('button', { name: 'Insert' }).click();
    await expect.poll(() => status.textContent()).toBe('Inserted now');
    expect(cdOf(app, 'cd')).toBe(other);
    expect(await row.getByLabel('ISO image', { exact: true }).inputValue()).toBe(other);
    expect(await page.getByRole('option', { name: 'cd', exact: true }).getAttribute('data-state')).toBe('running');

    await dlg.getByRole('button', { name: 'Close' }).click();
    await contextMenu(page, 'cd', 'Force Off');
    await waitVmState(page, 'cd', ['shutoff']);
  }, 120000);
});
