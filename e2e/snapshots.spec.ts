// Snapshots end to end (virsh snapshot-create-as / snapshot-revert / snapshot-delete; the
// Details → Snapshots tab), real engine, real qcow2 disk, real browser: a VM with a qcow2
// disk boots the GRUB rescue CD; at its menu (countdown stopped) a disk + RAM snapshot is
// taken from the tab (a name with "/" is refused on the field first); `c` opens GRUB's
// command line; Revert warns that the VM will be forced off, then the VM runs again and
// its first screen is the menu (no command line, no reboot); `qemu-img snapshot -l` lists
// the snapshot on the disk; Delete removes it from the tab and the disk; `qemu-img check`
// is clean. A VM with a raw disk: the tab says why snapshots need qcow2.
// Chromium runs under Xvfb (the console captures the keyboard with a pointer lock).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, type Xvfb, XVFB, apiCall, contextMenu, distReady, engineCapability, launchApp, ocr, openConsole, startXvfb, waitVmState } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const qemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const why =
  distReady() ??
  engineCapability() ??
  (fs.existsSync(ISO) ? null : `${ISO} is missing (apt-get install grub-rescue-pc)`) ??
  (fs.existsSync(XVFB) ? null : `${XVFB} is missing (apt-get install xvfb)`) ??
  (qemuImg ? null : 'qemu-img is missing (apt-get install qemu-utils): the test checks the image with it') ??
  (fs.existsSync('/usr/bin/tesseract') ? null : 'tesseract is missing (apt-get install tesseract-ocr): the test reads the screen');
if (why) console.log(`SKIP snapshots e2e: ${why}`);
let app: App | undefined;
let x: Xvfb | undefined;

const MENU = /GNU\/Linux|GNU \(aka|Use the|highlighted/;
const qemu = (...args: string[]) => spawnSync('qemu-img', args, { encoding: 'utf8' });

describe.skipIf(!!why)('snapshots', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
    x?.stop();
    x = undefined;
  });

  it('disk + RAM snapshot at the GRUB menu; keys; Revert → the menu is back; qemu-img lists it; Delete → gone; raw disks say why not', async () => {
    const t0 = Date.now();
    const step = (what: string) => console.log(`[snapshots +${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);
    x = await startXvfb();
    app = await launchApp({ display: x.display });
    const a = app;
    const { page } = a;
    const r = await apiCall(a, 'vm.create', { media: { kind: 'iso', path: ISO }, os: 'generic', memoryMiB: 128, cpus: 1, storage: { kind: 'create', sizeGiB: 1, format: 'qcow2' }, name: 'grub', network: 'none' });
    expect(r.errors).toEqual([]);
    const uuid: string = r.vm.uuid;
    const disk: string = (await apiCall(a, 'vm.get', { uuid })).disks.find((d: { media: string }) => d.media === 'disk').path;
    expect(disk).toMatch(/\.qcow2$/);
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

    await page.getByRole('option', { name: 'grub', exact: true }).waitFor();
    await contextMenu(page, 'grub', 'Run');
    await waitVmState(page, 'grub', ['running']);
    let con = await openConsole(a, 'grub');
    await capture(con);
    await waitScreen(/executed automatically/, 240000);
    step('menu shown; pressing Down');
    await con.keyboard.press('ArrowDown');
    await waitScreen(new RegExp(`^(?![\\s\\S]*executed automatically)[\\s\\S]*(${MENU.source})`), 60000);
    step('countdown stopped');
    await con.close().catch(() => undefined);

    // Details → Snapshots → Take: a bad name is refused on the field, then "menu" is taken live.
    await contextMenu(page, 'grub', 'Details');
    const dlg = page.getByRole('dialog', { name: 'Details of grub' });
    await dlg.getByRole('tab', { name: 'Snapshots' }).click();
    await dlg.getByText('No snapshots yet.').waitFor();
    await dlg.getByRole('button', { name: 'Take snapshot…' }).click();
    const take = page.getByRole('dialog', { name: 'Take a snapshot of grub' });
    await take.getByLabel('Name').fill('a/b');
    await take.getByRole('button', { name: 'Take snapshot', exact: true }).click();
    await expect.poll(() => take.locator('#snap-name-error').textContent()).toMatch(/cannot contain "\/"/);
    await take.getByLabel('Name').fill('menu');
    await take.getByLabel('Description').fill('GRUB menu, countdown stopped');
    await take.getByRole('button', { name: 'Take snapshot', exact: true }).click();
    await expect.poll(() => dlg.getByTestId('snapshot-note').textContent(), { timeout: 120000 }).toMatch(/Snapshot 'menu' taken \(disk and memory\)/);
    step('snapshot taken');
    const snapRow = dlg.locator('tr[data-snapshot="menu"]');
    expect(await snapRow.getByTestId('snapshot-kind').textContent()).toBe('Disk + memory (running)');
    expect(await snapRow.textContent()).toContain('(current)');
    expect(await snapRow.textContent()).toContain('GRUB menu, countdown stopped');
    await waitVmState(page, 'grub', ['running']); // it paused only for the capture
    const listed = qemu('snapshot', '-l', '-U', disk);
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/\bmenu\b/);
    const atSnapshot = await shot();
    await dlg.getByRole('button', { name: 'Close', exact: true }).click();

    // The guest goes on: `c` opens GRUB's command line.
    con = await openConsole(a, 'grub');
    await capture(con);
    await con.keyboard.press('c');
    await waitScreen(/grub>/, 60000);
    step('GRUB command line');

    // Revert: the warning says what is lost and that the running VM is forced off.
    await con.close().catch(() => undefined);
    await contextMenu(page, 'grub', 'Details');
    await dlg.getByRole('tab', { name: 'Snapshots' }).click();
    await snapRow.click();
    await dlg.getByRole('button', { name: 'Revert…' }).click();
    const rev = page.getByRole('dialog', { name: "Revert grub to 'menu'?" });
    expect(await rev.getByTestId('revert-warning').textContent()).toMatch(/is lost.*grub is running and will be forced off.*resumes from the moment the snapshot was taken/);
    await rev.getByRole('button', { name: 'Force off and revert' }).click();
    await expect.poll(() => dlg.getByTestId('snapshot-note').textContent(), { timeout: 120000 }).toMatch(/Reverted to 'menu': grub runs from that moment/);
    await waitVmState(page, 'grub', ['running']);
    const first = await shot();
    const firstText = ocr(first, a.dir) ?? '';
    step(`first screen after revert:\n${firstText}`);
    expect(firstText).toMatch(MENU);
    expect(firstText, 'the command line is what was lost').not.toMatch(/grub>/);
    expect(firstText, 'a fresh boot would show SeaBIOS').not.toMatch(/SeaBIOS|Booting from/);
    expect(first.equals(atSnapshot) || MENU.test(firstText)).toBe(true);

    // Delete: gone from the tab and from the disk; the disk stays and checks clean.
    await snapRow.click();
    await dlg.getByRole('button', { name: 'Delete…' }).click();
    await page.getByRole('dialog', { name: "Delete snapshot 'menu'?" }).getByRole('button', { name: 'Delete snapshot' }).click();
    await expect.poll(() => dlg.getByTestId('snapshot-note').textContent(), { timeout: 60000 }).toBe("Snapshot 'menu' deleted.");
    await dlg.getByText('No snapshots yet.').waitFor();
    await apiCall(a, 'vm.action', { uuid, action: 'forceoff' });
    await waitVmState(page, 'grub', ['shutoff']);
    expect(fs.existsSync(disk)).toBe(true);
    expect(qemu('snapshot', '-l', disk).stdout).not.toMatch(/\bmenu\b/);
    const check = qemu('check', disk);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    step('deleted; qemu-img check clean');
    await dlg.getByRole('button', { name: 'Close', exact: true }).click();

    // A raw disk: the tab says why, Take is off.
    const raw = await apiCall(a, 'vm.create', { media: { kind: 'iso', path: ISO }, os: 'generic', memoryMiB: 64, cpus: 1, storage: { kind: 'create', sizeGiB: 1, format: 'raw' }, name: 'rawvm', network: 'none' });
    expect(raw.errors).toEqual([]);
    await page.getByRole('option', { name: 'rawvm', exact: true }).waitFor();
    await contextMenu(page, 'rawvm', 'Details');
    const d2 = page.getByRole('dialog', { name: 'Details of rawvm' });
    await d2.getByRole('tab', { name: 'Snapshots' }).click();
    await expect.poll(() => d2.getByTestId('snapshot-problem').textContent()).toMatch(/snapshots need qcow2 disks: rawvm.*\.img.*inside qcow2 images/);
    expect(await d2.getByRole('button', { name: 'Take snapshot…' }).isDisabled()).toBe(true);
  }, 600000);
});
