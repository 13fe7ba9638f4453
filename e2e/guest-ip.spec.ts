// A running VM's guest IP in the manager (issue 11), from a real DHCP exchange:
// a real `vireo serve`, Debian's Chromium, the real engine. The wizard makes a
// direct-kernel VM whose kernel is native/guests/dhcp.asm (a multiboot kernel
// with its own polled e1000 and virtio-net drivers: DISCOVER, OFFER, REQUEST,
// ACK with the `default` NAT network's DHCP server, libslirp's); Details makes
// its NIC an e1000 (kvm_nic_test covers virtio-net). Once it runs, the engine's lease table has 10.0.2.15 for its MAC: the
// manager row shows it under the name, Details → NIC shows it, and
// `vireo domifaddr` against the same service prints it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS, ROOT, buildGuest, contextMenu, createViaWizard, distReady, engineCapability, startServe, waitVmState, runVireo } from './harness';

const why = distReady() ?? engineCapability() ?? (fs.existsSync('/usr/share/seabios/bios.bin') ? null : 'SeaBIOS is missing (apt-get install seabios)');
if (why) console.log(`SKIP guest IP e2e: ${why}`);
let cleanup: Array<() => Promise<void> | void> = [];

const vireo = runVireo;

describe.skipIf(!!why)('guest IP in the manager', () => {
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c();
    cleanup = [];
  });

  it('a kernel VM that gets a DHCP lease on `default`: the row, Details and domifaddr show 10.0.2.15', { timeout: 240000 }, async (ctx) => {
    const srv = await startServe();
    cleanup.push(() => srv.stop());
    const kernel = buildGuest('dhcp', srv.dir);
    if (!kernel) return ctx.skip('nasm is not installed: cannot build the dhcp guest');
    const browser: BrowserContext = await chromium.launchPersistentContext(path.join(srv.dir, 'chromium'), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 800 },
    });
    cleanup.push(() => Promise.race([browser.close().catch(() => undefined), new Promise<void>((r) => setTimeout(r, 10000))]));
    const page: Page = browser.pages()[0] ?? (await browser.newPage());
    page.on('pageerror', (e) => console.error('[page error]', e.message));
    await page.goto(srv.url);
    await page.waitForFunction(() => document.documentElement.dataset.vireoReady === 'manager');

    // The wizard: direct kernel boot, the wizard's NIC on `default`; Details makes it an e1000.
    await createViaWizard(page, { media: 'kernel', path: kernel, name: 'dhcp', memoryMiB: 64, customize: true, keepDetails: true });
    const details = page.getByRole('dialog', { name: 'Details of dhcp' });
    await details.getByRole('tab', { name: 'NIC' }).click();
    expect(await details.getByLabel('Network', { exact: true }).inputValue()).toBe('default');
    await details.getByLabel('Device model').selectOption('e1000');
    await details.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => details.getByTestId('details-status').textContent()).toBe('Saved.');
    await details.getByRole('button', { name: 'Close', exact: true }).click();
    await details.waitFor({ state: 'detached' });
    const def = fs
      .readdirSync(path.join(srv.configDir, 'vms'))
      .map((f) => JSON.parse(fs.readFileSync(path.join(srv.configDir, 'vms', f), 'utf8')))
      .find((d) => d.name === 'dhcp');
    expect(def.nics).toEqual([{ mac: expect.stringMatching(/^52:54:00(:[0-9a-f]{2}){3}$/), network: 'default', model: 'e1000' }]);
    const mac: string = def.nics[0].mac;

    const row = page.getByRole('option', { name: 'dhcp', exact: true });
    // Shut off: no address under the name.
    expect(await row.locator('.addresses').count()).toBe(0);
    await contextMenu(page, 'dhcp', 'Run');
    const state = await waitVmState(page, 'dhcp', ['running', 'crashed'], 60000);
    expect(state, srv.output()).toBe('running');
    // The guest's lease reaches the row by the service's vm.changed (SeaBIOS + the exchange: a few seconds here).
    const addr = row.locator('.addresses');
    await expect.poll(async () => ((await addr.count()) ? addr.textContent() : ''), { timeout: 90000, interval: 500 }).toBe('IP 10.0.2.15');

    // Details → NIC: the live line names the lease (the guest's host name, option 12, too).
    await contextMenu(page, 'dhcp', 'Details');
    await details.getByRole('tab', { name: 'NIC' }).click();
    const live = details.getByRole('status', { name: 'NIC 1 now' });
    await expect.poll(() => live.textContent(), { timeout: 15000 }).toMatch(/^Link up Unplug cable · IP 10\.0\.2\.15\/24 \(vireo-dhcp\) from DHCP · received [1-9]\d* packets/);
    await details.getByRole('button', { name: 'Close', exact: true }).click();
    await details.waitFor({ state: 'detached' });

    // The CLI against the same service.
    const r = await vireo(srv.env, ['domifaddr', 'dhcp']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`^ net0\\s+${mac}\\s+ipv4\\s+10\\.0\\.2\\.15/24$`, 'm'));

    // Still shown a while later (no flicker from the periodic look), and gone once it is off.
    await page.waitForTimeout(3500);
    expect(await addr.textContent()).toBe('IP 10.0.2.15');
    await contextMenu(page, 'dhcp', 'Force Off');
    await waitVmState(page, 'dhcp', ['shutoff']);
    await expect.poll(() => row.locator('.addresses').count()).toBe(0);
  });
});
