// Shut Down end to end with a guest that handles the ACPI power button (native/guests/acpi_off.asm,
// a boot sector SeaBIOS loads from the IDE disk): the manager shows "Shutting down" for the guest's
// delay, then "Shut off" by itself, nothing killed (the last exit says the guest powered off). While
// it runs, a second VM given the same disk is refused with a message naming the first; once the first
// is off, the second starts. A second test gives the guest 20 s and a qcow2 disk: Shut Down from
// the manager and then `vireo shutdown` (which returns at once): "Shutting down" / `in shutdown`
// the whole time, then Shut off by the guest's own S5, and qemu-img finds the image clean.
// (Shut Down of a guest without ACPI and Force Off: lifecycle.spec.ts.)
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, ROOT, apiCall, buildGuest, contextMenu, distReady, engineCapability, launchApp, runVireo, waitVmState } from './harness';

const notBuilt = distReady();
const noEngine = engineCapability();
let app: App | undefined;

const DELAY_S = 4; // the guest's wait between the button and SLP_EN (offset 509 of the sector)
const SLOW_DELAY_S = 20; // the slow guest's
const qemuImg = spawnSync('qemu-img', ['--version']).status === 0;

/** A 1 MiB raw disk whose boot sector is acpi_off.bin with its delay byte (offset 509) set to `delay` seconds. */
function acpiDisk(dir: string, delay = DELAY_S, name = 'acpi-off.img'): string | null {
  const built = path.join(ROOT, 'native', 'out', 'core', 'guests', 'acpi_off.bin');
  const bin = fs.existsSync(built) ? built : buildGuest('acpi_off', dir);
  if (!bin) return null;
  const sector = fs.readFileSync(bin);
  sector[509] = delay;
  const disk = Buffer.alloc(1024 * 1024);
  sector.copy(disk, 0);
  const out = path.join(dir, name);
  fs.writeFileSync(out, disk);
  return out;
}

/** qemu-img check's verdict on an image: its exit status and what it printed. */
function qemuImgCheck(img: string): { status: number | null; out: string } {
  const r = spawnSync('qemu-img', ['check', img], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Looks at a VM again and again (`pauseMs` apart) from Shut Down until a look no longer
 * says `shuttingDown`, or `limitS` seconds pass (an error). Returns what the last look
 * said, how many looks said `shuttingDown`, and how long after `pressed` the last of them was.
 */
async function whileShuttingDown(look: () => Promise<string | null>, shuttingDown: string, pressed: number, limitS: number, pauseMs = 1000) {
  let looks = 0;
  let lastS = 0;
  for (;;) {
    const now = await look();
    if (now !== shuttingDown) return { ended: now, looks, lastS };
    looks++;
    lastS = (Date.now() - pressed) / 1000;
    if (lastS > limitS) throw new Error(`still ${shuttingDown} ${lastS.toFixed(1)} s after Shut Down`);
    await sleep(pauseMs);
  }
}

/** Creates a VM on `disk` (import, as the wizard's "Import existing disk image"); COM1 is logged to `log` in Vireo's log directory. */
async function importVm(a: App, name: string, disk: string, log?: string, format: 'raw' | 'qcow2' = 'raw'): Promise<void> {
  const r = await apiCall(a, 'vm.create', {
    media: { kind: 'import', path: disk, format },
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
  it('a guest that takes 20 s (qcow2 disk): Shutting down / in shutdown all that time, Shut off by its own S5, from the manager and from vireo shutdown; qemu-img check is clean', async (ctx) => {
    if (noEngine) return ctx.skip(`no engine: ${noEngine}`);
    if (!qemuImg) return ctx.skip('qemu-img is missing (apt-get install qemu-utils)');
    app = await launchApp();
    const a = app;
    const { page } = a;
    const raw = acpiDisk(a.dir, SLOW_DELAY_S, 'slow.img');
    if (!raw) return ctx.skip('no acpi_off guest (nasm missing)');
    const disk = path.join(a.dir, 'slow.qcow2');
    const conv = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk], { encoding: 'utf8' });
    expect(conv.status, conv.stderr).toBe(0);
    await importVm(a, 'slow', disk, 'slow.log', 'qcow2');
    const logFile = path.join(a.dir, 'data', 'vireo', 'logs', 'slow.log');
    const com1 = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''); // appended to by each run
    const count = (line: string) => com1().split(line).length - 1;
    const vireo = (args: string[]) => runVireo(a.env, args);
    const row = page.getByRole('option', { name: 'slow', exact: true });
    const limitS = SLOW_DELAY_S + 40;

    // From the manager.
    await contextMenu(page, 'slow', 'Run');
    await waitVmState(page, 'slow', ['running']);
    await expect.poll(() => count('acpi ready'), { timeout: 90000, interval: 500 }).toBe(1);
    await contextMenu(page, 'slow', 'Shut Down');
    let pressed = Date.now();
    await waitVmState(page, 'slow', ['shuttingdown'], 10000);
    await expect.poll(() => count('power button'), { timeout: 10000 }).toBe(1);
    const ui = await whileShuttingDown(
      async () => {
        const st = await row.getAttribute('data-state');
        if (st === 'shuttingdown') expect(await row.locator('.state').textContent()).toMatch(/^Shutting down/);
        return st;
      },
      'shuttingdown',
      pressed,
      limitS,
    );
    let took = (Date.now() - pressed) / 1000;
    console.log(`slow acpi guest, manager: Shutting down in ${ui.looks} looks up to ${ui.lastS.toFixed(1)} s, Shut off ${took.toFixed(1)} s after Shut Down (guest delay ${SLOW_DELAY_S} s)`);
    expect(ui.ended).toBe('shutoff');
    expect(count('powering off')).toBe(1); // the guest's own S5: written before SLP_EN
    expect(ui.lastS).toBeGreaterThanOrEqual(SLOW_DELAY_S - 3);
    expect(took).toBeGreaterThanOrEqual(SLOW_DELAY_S - 1);
    let state = await row.locator('.state').textContent();
    expect(state).toMatch(/^Shut off/);
    expect(state).not.toMatch(/forced off|killed|crash/i);
    let vm = (await apiCall(a, 'vm.list', {})).find((v: any) => v.name === 'slow');
    expect(vm.lastExit).toEqual({ kind: 'shutdown', detail: 'the guest powered off' });
    let check = qemuImgCheck(disk);
    expect(check.status, check.out).toBe(0);

    // From the terminal: vireo shutdown returns at once (as virsh shutdown), list and domstate say
    // "in shutdown" until the guest is off, then "shut off" with the guest's reason; the manager agrees.
    let r = await vireo(['start', 'slow']);
    expect(r.code, r.err).toBe(0);
    await waitVmState(page, 'slow', ['running']);
    await expect.poll(() => count('acpi ready'), { timeout: 90000, interval: 500 }).toBe(2);
    pressed = Date.now();
    r = await vireo(['shutdown', 'slow']);
    const returnedS = (Date.now() - pressed) / 1000;
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe("Domain 'slow' is being shutdown\n\n");
    expect(count('powering off')).toBe(1); // returned before the guest powered off
    r = await vireo(['list']);
    expect(r.out).toMatch(/^ \d+\s+slow\s+in shutdown$/m);
    await waitVmState(page, 'slow', ['shuttingdown'], 10000);
    expect(await row.locator('.state').textContent()).toMatch(/^Shutting down/);
    await expect.poll(() => count('power button'), { timeout: 10000 }).toBe(2);
    const cli = await whileShuttingDown(async () => (await vireo(['domstate', 'slow'])).out.trim(), 'in shutdown', pressed, limitS, 500);
    took = (Date.now() - pressed) / 1000;
    console.log(`slow acpi guest, CLI: vireo shutdown returned in ${returnedS.toFixed(1)} s; domstate said in shutdown ${cli.looks} times up to ${cli.lastS.toFixed(1)} s, shut off by ${took.toFixed(1)} s`);
    expect(cli.ended).toBe('shut off');
    expect(count('powering off')).toBe(2);
    expect(cli.lastS).toBeGreaterThanOrEqual(SLOW_DELAY_S - 4);
    expect(took).toBeGreaterThanOrEqual(SLOW_DELAY_S - 1);
    expect((await vireo(['domstate', '--reason', 'slow'])).out).toBe('shut off (the guest powered off)\n\n');
    r = await vireo(['list', '--all']);
    expect(r.out).toMatch(/^ -\s+slow\s+shut off$/m);
    expect((await vireo(['list'])).out).not.toMatch(/slow/);
    await waitVmState(page, 'slow', ['shutoff'], 10000);
    state = await row.locator('.state').textContent();
    expect(state).toMatch(/^Shut off/);
    expect(state).not.toMatch(/forced off|killed|crash/i);
    vm = (await apiCall(a, 'vm.list', {})).find((v: any) => v.name === 'slow');
    expect(vm.lastExit).toEqual({ kind: 'shutdown', detail: 'the guest powered off' });
    check = qemuImgCheck(disk);
    expect(check.status, check.out).toBe(0);
  }, 400000);
});
