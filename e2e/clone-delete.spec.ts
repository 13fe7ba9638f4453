// Right-click Clone… and Delete… with real files: the clone gets its own disk copy
// (sparse, same bytes), a new UUID and MACs, and boots; Delete with storage removes
// the files; a disk another VM uses is never pre-checked; a disk outside Vireo's pool is
// never pre-checked, and deleting it shows its path and sends the confirmation naming it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type App,
  apiCall,
  buildGuest,
  contextMenu,
  createViaWizard,
  distReady,
  engineCapability,
  launchApp,
  openConsole,
  terminalText,
  waitVmState,
} from './harness';

const notBuilt = distReady();
let app: App | undefined;

const defs = (a: App) =>
  fs
    .readdirSync(path.join(a.configDir, 'vms'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(fs.readFileSync(path.join(a.configDir, 'vms', f), 'utf8')));

describe.skipIf(!!notBuilt)('clone and delete', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('clones a VM with its own disk, boots the clone, deletes it with its storage', async (ctx) => {
    app = await launchApp();
    const { page } = app;
    const echo = buildGuest('echo', app.dir);
    if (!echo) return ctx.skip('nasm is not installed: cannot build the echo guest');
    await createViaWizard(page, { media: 'kernel', path: echo, diskGiB: 1, name: 'echo', memoryMiB: 32, customize: true });
    const disk = path.join(app.poolDir, 'echo.img');
    // Real bytes at both ends of the disk: the copy must keep them, and keep the holes.
    const fh = fs.openSync(disk, 'r+');
    fs.writeSync(fh, Buffer.from('VIREO-START'), 0, 11, 0);
    fs.writeSync(fh, Buffer.from('VIREO-END'), 0, 9, 1024 ** 3 - 9);
    fs.closeSync(fh);

    await contextMenu(page, 'echo', 'Clone…');
    const dlg = page.getByRole('dialog', { name: 'Clone echo' });
    await expect.poll(() => dlg.getByLabel('Name for the clone').inputValue()).toBe('echo-clone');
    await dlg.getByRole('button', { name: 'Clone', exact: true }).click();
    await dlg.waitFor({ state: 'detached', timeout: 60000 });
    await page.getByRole('option', { name: 'echo-clone', exact: true }).waitFor();

    const copy = path.join(app.poolDir, 'echo-clone.img');
    const st = fs.statSync(copy);
    expect(st.size).toBe(1024 ** 3);
    expect(st.blocks * 512).toBeLessThan(8 * 1024 * 1024); // holes stayed holes
    const cfd = fs.openSync(copy, 'r');
    const head = Buffer.alloc(11);
    const tail = Buffer.alloc(9);
    fs.readSync(cfd, head, 0, 11, 0);
    fs.readSync(cfd, tail, 0, 9, 1024 ** 3 - 9);
    fs.closeSync(cfd);
    expect([head.toString(), tail.toString()]).toEqual(['VIREO-START', 'VIREO-END']);
    const [a, b] = [defs(app).find((d) => d.name === 'echo'), defs(app).find((d) => d.name === 'echo-clone')];
    expect(b.uuid).not.toBe(a.uuid);
    expect(b.disks[0].path).toBe(copy);
    expect(a.disks[0].path).toBe(disk);

    // The clone boots (the echo guest greets on its serial port).
    const why = engineCapability();
    if (why) console.log(`SKIP clone boot: ${why}`);
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
    }

    // Delete… the clone: its own disk is pre-checked; deleting removes file and definition.
    await contextMenu(page, 'echo-clone', 'Delete…');
    const del = page.getByRole('dialog', { name: 'Delete echo-clone' });
    const box = del.getByLabel(`Delete ${copy}`);
    await expect.poll(() => box.isChecked()).toBe(true);
    await del.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('option', { name: 'echo-clone', exact: true }).waitFor({ state: 'detached' });
    expect(fs.existsSync(copy)).toBe(false);
    expect(fs.existsSync(disk)).toBe(true);
    expect(defs(app).map((d) => d.name)).toEqual(['echo']);
  });

  it('a disk another VM uses is never pre-checked for deletion', async () => {
    app = await launchApp();
    const { page } = app;
    const iso = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
    await createViaWizard(page, { media: 'iso', path: iso, diskGiB: 1, name: 'a', customize: true });
    await createViaWizard(page, { media: 'iso', path: iso, name: 'b', customize: true });
    await contextMenu(page, 'b', 'Delete…');
    const del = page.getByRole('dialog', { name: 'Delete b' });
    const box = del.getByLabel(`Delete ${iso}`);
    await box.waitFor();
    expect(await box.isChecked()).toBe(false);
    await del.getByText('also used by a').waitFor();
    await del.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('option', { name: 'b', exact: true }).waitFor({ state: 'detached' });
    expect(fs.existsSync(iso)).toBe(true);
    expect(fs.existsSync(path.join(app.poolDir, 'a.img'))).toBe(true);
  });

  it('a disk outside the pool is never pre-checked; ticking it shows its path, and Delete sends the confirmation naming it', async () => {
    app = await launchApp();
    const { page } = app;
    const outside = path.join(app.dir, 'mine.img');
    fs.writeFileSync(outside, Buffer.alloc(1024 * 1024, 5));
    const r = await apiCall(app, 'vm.create', { media: { kind: 'import', path: outside }, os: 'generic', memoryMiB: 32, cpus: 1, storage: { kind: 'none' }, name: 'imp', network: 'none' });
    expect(r.errors).toEqual([]);
    await page.getByRole('option', { name: 'imp', exact: true }).waitFor();
    await contextMenu(page, 'imp', 'Delete…');
    const del = page.getByRole('dialog', { name: 'Delete imp' });
    const box = del.getByLabel(`Delete ${outside}`);
    await box.waitFor();
    expect(await box.isChecked()).toBe(false);
    await del.getByText("outside Vireo's storage pool").first().waitFor();
    expect(await del.getByTestId('delete-outside').count()).toBe(0);
    await box.check();
    await expect.poll(() => del.getByTestId('delete-outside').textContent()).toContain(outside);
    await del.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('option', { name: 'imp', exact: true }).waitFor({ state: 'detached' });
    expect(fs.existsSync(outside)).toBe(false);
  });
});
