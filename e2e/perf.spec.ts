// Live graphs from the engine (issue 14): a VM boots the GRUB rescue CD (SeaBIOS and
// GRUB read it over ATAPI), and Details → Performance shows non-zero disk read bytes
// counted by the engine's block layer and a CPU graph with points from the vCPU
// threads' CPU time. Real engine, real service, real browser. Skips, saying why,
// only where the machine cannot run it (no /dev/kvm, no built app, no ISO).
import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, apiCall, contextMenu, distReady, engineCapability, launchApp, waitVmState } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const why = distReady() ?? engineCapability() ?? (fs.existsSync(ISO) ? null : `${ISO} is missing (apt-get install grub-rescue-pc)`);
if (why) console.log(`SKIP performance e2e: ${why}`);
let app: App | undefined;

describe.skipIf(!!why)('Details → Performance', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('shows disk read bytes once the guest reads its CD, and a CPU graph with points', async () => {
    app = await launchApp();
    const { page } = app;
    const r = await apiCall(app, 'vm.create', {
      media: { kind: 'iso', path: ISO },
      os: 'generic',
      memoryMiB: 64,
      cpus: 1,
      storage: { kind: 'none' },
      name: 'perf',
      network: 'none',
    });
    expect(r.errors).toEqual([]);
    await page.getByRole('option', { name: 'perf', exact: true }).waitFor();
    await contextMenu(page, 'perf', 'Run');
    await waitVmState(page, 'perf', ['running']);
    await contextMenu(page, 'perf', 'Details');
    const dlg = page.getByRole('dialog', { name: 'Details of perf' });
    await dlg.getByRole('tab', { name: 'Performance' }).click();
    const readBytes = async () => Number((await dlg.getByTestId('perf-disk-read-bytes').getAttribute('data-bytes', { timeout: 1000 }).catch(() => null)) ?? 0);
    // SeaBIOS reads the CD's boot catalog and GRUB's core image over ATAPI within the first seconds.
    await expect.poll(readBytes, { timeout: 120000, interval: 1000 }).toBeGreaterThan(0);
    const cpuPoints = async () => Number((await dlg.locator('[data-testid=perf-cpu] polyline').getAttribute('data-points', { timeout: 1000 }).catch(() => null)) ?? 0);
    await expect.poll(cpuPoints, { timeout: 30000, interval: 1000 }).toBeGreaterThanOrEqual(3);
    expect(await dlg.getByTestId('perf-cpu-now').textContent()).toMatch(/^\d+(\.\d)? %$/);
    expect(await dlg.getByTestId('perf-memory-now').textContent()).toMatch(/^[1-9]\d* MiB of 64 MiB$/);
    // A Details window opened later gets the history the service kept.
    const hist = await apiCall(app, 'vm.statsHistory', { uuid: r.vm.uuid });
    console.log(`[perf] last point: ${JSON.stringify(hist.points.at(-1))}`);
    if (process.env.VIREO_E2E_ARTIFACTS) await dlg.screenshot({ path: `${process.env.VIREO_E2E_ARTIFACTS}/performance-tab.png` });
    expect(hist.points.length).toBeGreaterThanOrEqual(3);
    expect(hist.points.at(-1).diskReadBytes).toBeGreaterThan(0);
    expect(hist.points.some((p: { cpuPercent: number }) => p.cpuPercent > 0)).toBe(true);
    // The manager's sparklines show the same guest numbers.
    await expect.poll(async () => (await page.getByRole('option', { name: 'perf', exact: true }).getByRole('img', { name: /^CPU \d/ }).count()), { timeout: 10000 }).toBe(1);
  }, 240000);
});
