// Shut Down end to end with a guest that handles the ACPI power button (native/guests/acpi_off.asm,
// a boot sector SeaBIOS loads from the IDE disk): the manager shows "Shutting down" for the guest's
// delay, then "Shut off" by itself, nothing killed (the last exit says the guest powered off). While
// it runs, a second VM given the same disk is refused with a message naming the first; once the first
// is off, the second starts. (Shut Down of a guest without ACPI and Force Off: lifecycle.spec.ts.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, ROOT, apiCall, buildGuest, contextMenu, distReady, engineCapability, launchApp, waitVmState } from './harness';

const notBuilt = distReady();
const noEngine = engineCapability();
let app: App | undefined;

const DELAY_S = 4; // the guest's wait between the button and SLP_EN (offset 509 of the sector)

/** A 1 MiB raw disk whose boot sector is acpi_off.bin with its delay byte set. */
function acpiDisk(dir: string): string | null {
  const built = path.join(ROOT, 'native', 'out', 'core', 'guests', 'acpi_off.bin');
  const bin = fs.existsSync(built) ? built : buildGuest('acpi_off', dir);
  if (!bin) return null;
  const sector = fs.readFileSync(bin);
  sector[509] = DELAY_S;
  const disk = Buffer.alloc(1024 * 1024);
  sector.copy(disk, 0);
  const out = path.join(dir, 'acpi-off.img');
  fs.writeFileSync(out, disk);
  return out;
}

/** Creates a VM on `disk` (import, as the wizard's "Import existing disk image"); COM1 is logged to `log` in Vireo's log directory. */
async function importVm(a: App, name: string, disk: string, log?: string): Promise<void> {
  const r = await apiCall(a, 'vm.create', {
    media: { kind: 'import', path: disk, format: 'raw' },
    os: 'generic',
    memoryMiB: 32,
    cpus: 1,
    storage: { kind: 'none' },
    name,
    network: 'none',
  });
  expect(r.errors).toEqual([]);
  if (log) {
    const def = await apiCall(a, 'vm.get', { uuid: r.vm.uuid });
    const edit = { name, os: def.os, memoryMiB: def.memoryMiB, cpus: def.cpus, boot: def.boot, disks: def.disks, nics: [], serial: { logFile: log } };
    expect((await apiCall(a, 'vm.update', { uuid: r.vm.uuid, edit })).errors).toEqual([]);
  }
  await a.page.getByRole('option', { name, exact: true }).waitFor();
}

describe.skipIf(!!notBuilt)('Shut Down with an ACPI guest', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('Shutting down for the guest’s seconds, then Shut off by itself; a second VM on the same disk is refused naming the first', async (ctx) => {
    if (noEngine) return ctx.skip(`no engine: ${noEngine}`);
    app = await launchApp();
    const { page } = app;
    const disk = acpiDisk(app.dir);
    if (!disk) return ctx.skip('no acpi_off guest (nasm missing)');
    await importVm(app, 'acpi', disk, 'acpi.log');
    const logFile = path.join(app.dir, 'data', 'vireo', 'logs', 'acpi.log');
    const com1 = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');
    await importVm(app, 'other', disk);
    const row = page.getByRole('option', { name: 'acpi', exact: true });
    const otherRow = page.getByRole('option', { name: 'other', exact: true });

    await contextMenu(page, 'acpi', 'Run');
    await waitVmState(page, 'acpi', ['running']);
    // SeaBIOS boots the sector; the guest has switched to ACPI mode and enabled the power button.
    await expect.poll(com1, { timeout: 90000, interval: 500 }).toContain('acpi ready');

    // Two writers: the second VM's start is refused, the message names the running one, nothing starts.
    await contextMenu(page, 'other', 'Run');
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toMatch(new RegExp(`other can't start: its disk ${disk.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use: the running VM "acpi" uses it`));
    expect(await otherRow.getAttribute('data-state')).toBe('shutoff');
    expect(await row.getAttribute('data-state')).toBe('running');

    // Shut Down: the power button; the row says Shutting down while the guest waits, then Shut off.
    await contextMenu(page, 'acpi', 'Shut Down');
    const pressed = Date.now();
    await waitVmState(page, 'acpi', ['shuttingdown'], 10000);
    expect(await row.locator('.state').textContent()).toMatch(/^Shutting down/);
    await expect.poll(com1, { timeout: 10000 }).toContain('power button');
    expect(com1()).not.toContain('powering off');
    await waitVmState(page, 'acpi', ['shutoff'], (DELAY_S + 30) * 1000);
    const took = (Date.now() - pressed) / 1000;
    console.log(`acpi guest: Shut off ${took.toFixed(1)} s after Shut Down (guest delay ${DELAY_S} s)`);
    expect(took).toBeGreaterThanOrEqual(DELAY_S - 1);
    expect(com1()).toContain('powering off'); // written before SLP_EN, drained before the stop is reported
    const state = await row.locator('.state').textContent();
    expect(state).toMatch(/^Shut off/);
    expect(state).not.toMatch(/forced off|killed|crash/i);
    const vms = await apiCall(app, 'vm.list', {});
    expect(vms.find((v: any) => v.name === 'acpi').lastExit).toEqual({ kind: 'shutdown', detail: 'the guest powered off' });

    // The lock went with the engine: the second VM starts now.
    await contextMenu(page, 'other', 'Run');
    await waitVmState(page, 'other', ['running']);
    await contextMenu(page, 'other', 'Force Off');
    await waitVmState(page, 'other', ['shutoff']);
  }, 180000);
});
