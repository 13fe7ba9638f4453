// libvirt domain XML and OS detection in the real UI (vireo serve + Chromium):
// export a VM as XML, re-import it under a new name and find the same hardware;
// pick an ISO in the wizard and see the OS osinfo-db names for its volume label,
// with that OS's defaults. docs/libvirt-xml.md.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type App, createViaWizard, distReady, launchApp, skipReason } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const notBuilt = skipReason(distReady(), 'libvirt XML e2e');
const noIso = skipReason(fs.existsSync(ISO) ? null : `${ISO} missing (Debian grub-rescue-pc)`, 'libvirt XML e2e');
const noDetect = skipReason(
  spawnSync('sh', ['-c', 'command -v xorriso']).status !== 0 ? 'xorriso missing (Debian xorriso)' : !fs.existsSync('/usr/share/osinfo/os') ? 'osinfo-db missing (Debian osinfo-db)' : null,
  'OS detection e2e',
);
let app: App;

const defs = (a: App) => {
  const d = path.join(a.configDir, 'vms');
  return fs.readdirSync(d).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(fs.readFileSync(path.join(d, f), 'utf8')));
};

describe.skipIf(!!notBuilt || !!noIso)('libvirt domain XML and OS detection', () => {
  beforeEach(async () => {
    app = await launchApp();
  });
  afterEach(async () => {
    await app?.close();
  });

  it('exports a VM as XML and re-imports it under a new name with the same hardware', async () => {
    const { page } = app;
    await createViaWizard(page, { media: 'iso', path: ISO, diskGiB: 1, diskFormat: 'qcow2', name: 'orig', memoryMiB: 320, customize: true });
    await page.getByRole('option', { name: 'orig', exact: true }).click();
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export XML' }).click()]);
    expect(download.suggestedFilename()).toBe('orig.xml');
    const xmlFile = path.join(app.dir, 'orig.xml');
    await download.saveAs(xmlFile);
    const xml = fs.readFileSync(xmlFile, 'utf8');
    expect(xml).toContain('<name>orig</name>');
    expect(xml).toContain("<memory unit='KiB'>327680</memory>");
    expect(xml).toContain(`<source file='${ISO}'/>`);

    // Same name: an error on the name field, nothing defined.
    await page.getByRole('button', { name: 'Import XML…' }).click();
    const dlg = page.getByRole('dialog', { name: 'Import libvirt XML' });
    await dlg.getByLabel('Domain XML file').setInputFiles(xmlFile);
    await expect.poll(() => dlg.getByLabel('Domain XML', { exact: true }).inputValue()).toContain('<name>orig</name>');
    await dlg.getByRole('button', { name: 'Import' }).click();
    await expect.poll(() => dlg.locator('#xml-name-error').textContent()).toContain("A VM named 'orig' already exists");
    expect(defs(app)).toHaveLength(1);

    await dlg.getByLabel('Name (optional)').fill('orig-copy');
    await dlg.getByRole('button', { name: 'Import' }).click();
    await expect.poll(() => dlg.getByRole('status').textContent()).toBe('Imported orig-copy.');
    // What was not taken over is shown, by path (the clashing UUID and MAC were replaced).
    expect(await dlg.getByRole('list', { name: 'Ignored XML' }).textContent()).toContain('/domain/uuid');
    await dlg.getByRole('button', { name: 'Close' }).click();
    await page.getByRole('option', { name: 'orig-copy', exact: true }).waitFor();

    const all = defs(app);
    expect(all).toHaveLength(2);
    const a = all.find((d) => d.name === 'orig');
    const b = all.find((d) => d.name === 'orig-copy');
    expect(b.uuid).not.toBe(a.uuid);
    expect(b.nics[0].mac).not.toBe(a.nics[0].mac);
    for (const k of ['memoryMiB', 'cpus', 'os', 'boot', 'disks'] as const) expect(b[k]).toEqual(a[k]);
    expect(b.nics.map((n: { model: string; network: string }) => [n.model, n.network])).toEqual(a.nics.map((n: { model: string; network: string }) => [n.model, n.network]));

    // Bad XML: an error on the XML field.
    await page.getByRole('button', { name: 'Import XML…' }).click();
    const dlg2 = page.getByRole('dialog', { name: 'Import libvirt XML' });
    await dlg2.getByLabel('Domain XML', { exact: true }).fill("<domain type='kvm'><name>x</name><memory unit='GiB'>1</memory>");
    await dlg2.getByRole('button', { name: 'Import' }).click();
    await expect.poll(() => dlg2.locator('#xml-text-error').textContent()).toContain('is not closed');
    expect(defs(app)).toHaveLength(2);
  });

  it.skipIf(!!noDetect)('the wizard names the OS on the medium (osinfo-db) and takes its defaults; unknown media say so', async () => {
    const { page } = app;
    // An ISO with the volume label Debian's netinst media carry (osinfo-db: "Debian 11.\d+.\d+ amd64 n").
    const root = path.join(app.dir, 'isoroot');
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, 'README.TXT'), 'test medium\n');
    const iso = path.join(app.dir, 'netinst.iso');
    const r = spawnSync('xorriso', ['-as', 'mkisofs', '-quiet', '-o', iso, '-V', 'Debian 11.5.0 amd64 n', '-publisher', 'Debian Project', root], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);

    await page.getByRole('button', { name: 'New VM' }).click();
    const dlg = page.getByRole('dialog', { name: 'New VM' });
    await dlg.getByLabel('ISO image path').fill(iso);
    await dlg.getByRole('button', { name: 'Forward' }).click();
    const status = dlg.getByRole('status', { name: 'OS detection' });
    await expect.poll(() => status.textContent()).toBe("Detected: Debian 11 (from the medium's volume label)");
    expect(await dlg.getByLabel('Operating system').inputValue()).toBe('debian11');
    expect(await dlg.getByLabel('OS defaults').textContent()).toMatch(/Defaults for Debian 11: \d+ MiB memory, 20 GiB disk, 1 CPU, VirtIO disk/);
    await dlg.getByRole('button', { name: 'Forward' }).click();
    await dlg.locator('form[data-step="3"]').waitFor();
    // osinfo-db recommends 1 GiB for Debian 11 (bounded by this host's memory, the field's max).
    const maxMem = Number(await dlg.getByLabel('Memory (MiB)').getAttribute('max'));
    expect(Number(await dlg.getByLabel('Memory (MiB)').inputValue())).toBe(Math.min(1024, maxMem));
    await dlg.getByRole('button', { name: 'Forward' }).click();
    await dlg.locator('form[data-step="4"]').waitFor();
    expect(await dlg.getByLabel('Disk size (GiB)').inputValue()).toBe('20');
    expect(await dlg.getByLabel('Disk bus').inputValue()).toBe('virtio');

    // Override: search the OS list and pick another.
    await dlg.getByRole('button', { name: 'Back' }).click();
    await dlg.getByRole('button', { name: 'Back' }).click();
    await dlg.locator('form[data-step="2"]').waitFor();
    await dlg.getByLabel('Find an OS').fill('freedos');
    await expect.poll(async () => (await dlg.getByLabel('Operating system').locator('option').allTextContents()).join('|')).toContain('FreeDOS');
    await dlg.getByLabel('Operating system').selectOption('freedos');
    await expect.poll(() => dlg.getByLabel('OS defaults').textContent()).toContain('Defaults for FreeDOS: 64 MiB memory, 1 GiB disk');

    // The GRUB rescue CD: unknown, and said so.
    await dlg.getByRole('button', { name: 'Back' }).click();
    await dlg.getByLabel('ISO image path').fill(ISO);
    await dlg.getByRole('button', { name: 'Forward' }).click();
    await expect.poll(() => status.textContent()).toMatch(/^Unknown medium: no osinfo-db entry matches its volume label/);
  });
});
