// VM lifecycle against the real engine: Details (customize before install), Reboot,
// Shut Down refused without ACPI (nothing killed), Force Off with its reason (echo guest: fast); Pause/Resume and
// Ctrl+Alt+Del from the Send Key menu on one GRUB boot; Cancel mid-clone; keyboard-only
// navigation of the list and its context menu.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, ROOT, apiCall, buildGuest, contextMenu, createViaWizard, distReady, engineCapability, launchApp, terminalText, waitVmState } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const notBuilt = distReady();
const noEngine = engineCapability();
let app: App | undefined;

const defs = (a: App) =>
  fs
    .readdirSync(path.join(a.configDir, 'vms'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(fs.readFileSync(path.join(a.configDir, 'vms', f), 'utf8')));
const defOf = (a: App, name: string) => defs(a).find((d) => d.name === name);

function echoGuest(dir: string): string | null {
  const built = path.join(ROOT, 'native', 'out', 'core', 'guests', 'echo.bin');
  return fs.existsSync(built) ? built : buildGuest('echo', dir);
}

function ocr(png: Buffer, dir: string): string {
  const f = path.join(dir, 'screen.png');
  fs.writeFileSync(f, png);
  const r = spawnSync('tesseract', [f, 'stdout'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

const count = (s: string, sub: string) => s.split(sub).length - 1;

describe.skipIf(!!notBuilt)('VM lifecycle', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('Customize before install opens Details: errors on the field, Apply writes the definition, Begin Installation boots it', async (ctx) => {
    app = await launchApp();
    const { page } = app;
    const echo = echoGuest(app.dir);
    if (!echo) return ctx.skip('no echo guest (nasm missing)');
    await createViaWizard(page, { media: 'kernel', path: echo, name: 'echo', memoryMiB: 32, customize: true, keepDetails: true });
    const dlg = page.getByRole('dialog', { name: 'Details of echo' });
    await dlg.getByRole('tab', { name: 'Overview' }).waitFor();
    // A bad value: the error shows on the Memory field, the section is marked, nothing is written.
    await dlg.getByRole('tab', { name: 'Memory' }).click();
    await dlg.getByLabel('Memory (MiB)').fill('999999');
    await dlg.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => dlg.locator('#d-memory-error').textContent()).toMatch(/Memory must be a whole number of MiB between 16 and \d+/);
    expect(await dlg.getByLabel('Memory (MiB)').getAttribute('aria-invalid')).toBe('true');
    expect(defOf(app, 'echo').memoryMiB).toBe(32);
    // Good values in three sections, one Apply.
    await dlg.getByLabel('Memory (MiB)').fill('48');
    await dlg.getByRole('tab', { name: 'Serial' }).click();
    // A file name: serial logs live in Vireo's log directory (a path elsewhere is refused on the field).
    await dlg.getByLabel('Also log COM1 output to a file').fill(path.join(app.dir, 'com1.log'));
    await dlg.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => dlg.locator('#d-serial-log-error').textContent()).toMatch(/Serial logs are kept in Vireo's log directory/);
    const log = path.join(app.dir, 'data', 'vireo', 'logs', 'com1.log');
    await dlg.getByLabel('Also log COM1 output to a file').fill('com1.log');
    await dlg.getByRole('tab', { name: 'Disks' }).click();
    const extra = path.join(app.dir, 'extra.img');
    fs.writeFileSync(extra, Buffer.alloc(1024 * 1024));
    await dlg.getByLabel('Path of the image').fill(extra);
    await dlg.getByRole('button', { name: 'Add', exact: true }).click();
    await dlg.getByRole('group', { name: 'Disk 1' }).waitFor();
    await dlg.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => dlg.getByTestId('details-status').textContent()).toBe('Saved.');
    const def = defOf(app, 'echo');
    expect(def).toMatchObject({ memoryMiB: 48, serial: { logFile: log }, disks: [{ path: extra, media: 'disk', bus: 'ide', format: 'raw' }] });
    expect(await page.getByRole('option', { name: 'echo', exact: true }).textContent()).toContain('48 MiB');
    if (noEngine) return ctx.skip(`no engine: ${noEngine}`);
    // Begin Installation: the console opens and the VM runs with the edited definition (COM1 goes to the log file too).
    const popup = app.context.waitForEvent('page');
    await dlg.getByRole('button', { name: 'Begin Installation' }).click();
    const con = await popup;
    await con.waitForFunction(() => document.documentElement.dataset.vireoReady === 'console');
    await waitVmState(page, 'echo', ['running']);
    await expect.poll(() => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''), { timeout: 30000 }).toContain('echo ready');
    // Editing a running VM: saved now, applies on the next start, and the dialog says so.
    await contextMenu(page, 'echo', 'Details');
    const live = page.getByRole('dialog', { name: 'Details of echo' });
    await live.getByRole('note').filter({ hasText: 'apply the next time it starts' }).waitFor();
    await live.getByRole('tab', { name: 'CPUs' }).click();
    await live.getByLabel('Virtual CPUs').fill('1');
    await live.getByRole('tab', { name: 'Memory' }).click();
    await live.getByLabel('Memory (MiB)').fill('64');
    await live.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => live.getByTestId('details-status').textContent()).toMatch(/running: the changes apply the next time it starts/);
    expect(defOf(app, 'echo').memoryMiB).toBe(64);
    await live.getByRole('button', { name: 'Close' }).click();
    await con.close();
    await contextMenu(page, 'echo', 'Force Off');
    await waitVmState(page, 'echo', ['shutoff']);
  }, 120000);

  it('echo guest: Reset comes back, Shut Down without ACPI is refused and nothing is killed, Force Off shows its reason', async (ctx) => {
    if (noEngine) return ctx.skip(`no engine: ${noEngine}`);
    app = await launchApp();
    const { page } = app;
    const echo = echoGuest(app.dir);
    if (!echo) return ctx.skip('no echo guest (nasm missing)');
    await createViaWizard(page, { media: 'kernel', path: echo, name: 'echo', memoryMiB: 32, customize: true });
    const row = page.getByRole('option', { name: 'echo', exact: true });
    await contextMenu(page, 'echo', 'Run');
    await waitVmState(page, 'echo', ['running']);
    const popup = app.context.waitForEvent('page');
    await contextMenu(page, 'echo', 'Open');
    const con = await popup;
    await con.waitForFunction(() => document.documentElement.dataset.vireoReady === 'console');
    await con.getByRole('tab', { name: 'Serial' }).click();
    await expect.poll(() => terminalText(con), { timeout: 30000 }).toContain('echo ready');
    expect(count(await terminalText(con), 'echo ready')).toBe(1);
    // Reset: a hard reset of the board in the same engine host; the guest boots again and greets a
    // second time. (Reboot asks the guest with Ctrl+Alt+Del, which the echo guest ignores.)
    await contextMenu(page, 'echo', 'Reset');
    await expect.poll(async () => count(await terminalText(con), 'echo ready'), { timeout: 30000 }).toBe(2);
    expect(await row.getAttribute('data-state')).toBe('running');
    // Shut Down: the echo guest has no ACPI: the user is told so and the VM keeps running.
    await contextMenu(page, 'echo', 'Shut Down');
    await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/echo was not shut down: the guest has not enabled ACPI.*Force Off/);
    expect(await row.getAttribute('data-state')).toBe('running');
    // Force Off: the engine stops it now, and the row says so.
    await contextMenu(page, 'echo', 'Force Off');
    await waitVmState(page, 'echo', ['shutoff', 'crashed']);
    await expect.poll(() => row.locator('.state').textContent()).toMatch(/forced off/);
    expect(await row.locator('.state').textContent()).toMatch(/^Shut off/);
  }, 90000);

  it('GRUB at its menu: Pause freezes the console, Resume goes on, Send Key Ctrl+Alt+Del reboots to SeaBIOS/GRUB', async (ctx) => {
    if (noEngine) return ctx.skip(`no engine: ${noEngine}`);
    if (!fs.existsSync(ISO)) return ctx.skip(`${ISO} is missing`);
    app = await launchApp();
    const { page } = app;
    await page.getByRole('button', { name: 'New VM' }).click();
    const wiz = page.getByRole('dialog', { name: 'New VM' });
    await wiz.getByLabel('ISO image path').fill(ISO);
    for (let step = 2; step <= 5; step++) {
      await wiz.getByRole('button', { name: 'Forward' }).click();
      await wiz.locator(`form[data-step="${step}"]`).waitFor();
    }
    await wiz.getByLabel('Create a disk image for the virtual machine').uncheck().catch(() => undefined);
    await wiz.getByLabel('Name', { exact: true }).fill('grub');
    const popup = app.context.waitForEvent('page');
    await wiz.getByRole('button', { name: 'Finish' }).click();
    const con = await popup;
    await con.waitForFunction(() => document.documentElement.dataset.vireoReady === 'console');
    const uuid = /#\/console\/([0-9a-f-]+)/.exec(con.url())![1]!;
    const shot = async () => Buffer.from((await apiCall(app!, 'vm.screenshot', { uuid })).pngBase64, 'base64');
    const frames = async () => Number((await con.locator('canvas').first().getAttribute('data-frames')) ?? 0);
    const waitText = async (re: RegExp, ms: number) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const png = await shot();
        const text = ocr(png, app!.dir);
        if (re.test(text)) return { png, text };
        if (Date.now() > deadline) throw new Error(`the screen never matched ${re}; last read:\n${text}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    // GRUB's menu counts down once a second ("...executed automatically in 27s.").
    await waitText(/executed automatically/, 150000);
    await page.getByRole('option', { name: 'grub', exact: true }).click();
    await page.getByRole('toolbar', { name: 'Virtual machine actions' }).getByRole('button', { name: 'Pause' }).click();
    await waitVmState(page, 'grub', ['paused']);
    await con.getByTestId('console-state').filter({ hasText: 'paused' }).waitFor();
    const f0 = await frames();
    const p0 = await shot();
    await new Promise((r) => setTimeout(r, 2500)); // the countdown would have ticked twice
    expect(await frames(), 'no new frames while paused').toBe(f0);
    expect((await shot()).equals(p0), 'the engine screen is frozen while paused').toBe(true);
    await page.getByRole('toolbar', { name: 'Virtual machine actions' }).getByRole('button', { name: 'Resume' }).click();
    await waitVmState(page, 'grub', ['running']);
    await expect.poll(async () => (await shot()).equals(p0), { timeout: 10000 }).toBe(false);
    await expect.poll(frames, { timeout: 10000 }).toBeGreaterThan(f0);
    // Send Key → Ctrl+Alt+Del: SeaBIOS's keyboard handler resets the machine; the BIOS/GRUB boot text shows again.
    await con.getByRole('button', { name: /Send Key/ }).click();
    await con.getByRole('menu', { name: 'Send key' }).getByRole('menuitem', { name: /Ctrl\+Alt\+Del/i }).click();
    const again = await waitText(/SeaBIOS|Booting from|Welcome to GRUB/, 60000);
    expect(again.text).not.toMatch(/executed automatically/);
    expect(await page.getByRole('option', { name: 'grub', exact: true }).getAttribute('data-state')).toBe('running');
    await contextMenu(page, 'grub', 'Force Off');
    await waitVmState(page, 'grub', ['shutoff']);
  }, 240000);

  it('Cancel clone mid-copy leaves no partial files', async () => {
    app = await launchApp();
    const { page } = app;
    await createViaWizard(page, { media: 'iso', path: ISO, diskGiB: 16, name: 'big', customize: true });
    const disk = defOf(app, 'big').disks.find((d: any) => d.media === 'disk').path as string;
    // 1.5 GiB of real data in 24 MiB regions spread over the 16 GiB sparse disk.
    const fd = fs.openSync(disk, 'r+');
    const chunk = Buffer.alloc(24 * 1024 * 1024, 0xa5);
    for (let i = 0; i < 64; i++) fs.writeSync(fd, chunk, 0, chunk.length, i * 256 * 1024 * 1024);
    fs.closeSync(fd);
    const before = fs.readdirSync(app.poolDir).sort();
    await contextMenu(page, 'big', 'Clone…');
    const dlg = page.getByRole('dialog', { name: 'Clone big' });
    await expect.poll(() => dlg.getByLabel('Name for the clone').inputValue()).toBe('big-clone');
    await dlg.getByRole('button', { name: 'Clone', exact: true }).click();
    await dlg.getByRole('button', { name: 'Cancel clone' }).click();
    await dlg.getByText('Cancelled: the partial copies were removed.').waitFor({ timeout: 30000 });
    expect(fs.readdirSync(app.poolDir).sort()).toEqual(before);
    expect(defs(app).map((d) => d.name)).toEqual(['big']);
    expect(await page.getByRole('option', { name: 'big-clone', exact: true }).count()).toBe(0);
  }, 120000);

  it('keyboard only: arrows move the selection, Shift+F10 / ContextMenu open the menu, Enter picks, Escape closes', async () => {
    app = await launchApp();
    const { page } = app;
    for (const name of ['alpha', 'beta', 'gamma']) await createViaWizard(page, { media: 'iso', path: ISO, name, customize: true });
    const list = page.getByRole('listbox', { name: 'Virtual machines' });
    const selected = () => list.locator('[aria-selected=true]').getAttribute('aria-label');
    await list.focus();
    await page.keyboard.press('Home');
    expect(await selected()).toBe('alpha');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    expect(await selected()).toBe('gamma');
    await page.keyboard.press('ArrowDown'); // stays at the end
    expect(await selected()).toBe('gamma');
    await page.keyboard.press('ArrowUp');
    expect(await selected()).toBe('beta');
    // Shift+F10 opens the menu on the selected VM with the first item focused; Escape closes it and focus returns.
    await page.keyboard.press('Shift+F10');
    const menu = page.getByRole('menu', { name: 'Actions for beta' });
    await menu.waitFor();
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Open');
    await page.keyboard.press('ArrowDown');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Details');
    await page.keyboard.press('Escape');
    await menu.waitFor({ state: 'detached' });
    expect(await page.evaluate(() => document.activeElement?.getAttribute('role'))).toBe('listbox');
    // The ContextMenu key; arrows skip disabled items (Pause, Shut Down, Reboot, Force Off on a shut-off VM).
    await page.keyboard.press('ContextMenu');
    await menu.waitFor();
    const focusedAfter = async (key: string) => (await page.keyboard.press(key), page.evaluate(() => document.activeElement?.textContent));
    expect(await focusedAfter('ArrowDown')).toBe('Details');
    expect(await focusedAfter('ArrowDown')).toBe('Run');
    expect(await focusedAfter('ArrowDown')).toBe('Run with temporary changes');
    expect(await focusedAfter('ArrowDown')).toBe('Clone…');
    expect(await focusedAfter('ArrowUp')).toBe('Run with temporary changes');
    expect(await focusedAfter('ArrowUp')).toBe('Run');
    expect(await focusedAfter('ArrowUp')).toBe('Details');
    await page.keyboard.press('Enter');
    const details = page.getByRole('dialog', { name: 'Details of beta' });
    await details.waitFor();
    // Inside Details the section list is keyboard-driven too (Overview, Performance, CPUs, ... as virt-manager orders them).
    await page.keyboard.press('ArrowDown');
    expect(await details.getByRole('tab', { name: 'Performance' }).getAttribute('aria-selected')).toBe('true');
    await page.keyboard.press('ArrowDown');
    expect(await details.getByRole('tab', { name: 'CPUs' }).getAttribute('aria-selected')).toBe('true');
    await page.keyboard.press('Escape');
    await details.waitFor({ state: 'detached' });
    // Enter on the list opens the console of the selected VM.
    await list.focus();
    const popup = app.context.waitForEvent('page');
    await page.keyboard.press('Enter');
    const con = await popup;
    await con.waitForFunction(() => document.documentElement.dataset.vireoReady === 'console');
    expect(await con.locator('.toolbar').textContent()).toContain('beta');
  }, 90000);
});
