// Screenshots of the real app in a real (headful) Chromium window under Xvfb,
// captured from the X server (xwd), not from the page. Writes docs/screenshots/
// when VIREO_UPDATE_SCREENSHOTS=1, else a temp dir; either way checks each picture
// shows the window (OCR finds the expected words).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS, ROOT, XVFB, type Xvfb, apiCall, buildGuest, contextMenu, createViaWizard, distReady, engineCapability, startServe, startXvfb, terminalText, waitVmState } from './harness';

const missing = [XVFB, '/usr/bin/xwd', '/usr/bin/convert'].find((f) => !fs.existsSync(f));
const why = distReady() ?? (missing ? `${missing} is missing (apt-get install xvfb x11-apps imagemagick)` : null);
if (why) console.log(`SKIP screenshots: ${why}`);

const W = 1280;
const H = 800;
let xvfb: Xvfb | undefined;

afterAll(() => {
  xvfb?.stop();
});

function grab(display: string, file: string): void {
  const xwd = spawnSync('/usr/bin/xwd', ['-root', '-silent', '-display', display], { maxBuffer: 64 << 20 });
  if (xwd.status !== 0) throw new Error(`xwd failed: ${xwd.stderr}`);
  const cv = spawnSync('/usr/bin/convert', ['xwd:-', file], { input: xwd.stdout });
  if (cv.status !== 0) throw new Error(`convert failed: ${cv.stderr}`);
}

function ocr(file: string): string {
  const r = spawnSync('tesseract', [file, 'stdout'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

describe.skipIf(!!why)('screenshots', () => {
  it('captures the manager, each wizard step, the dialogs and the console from a real window', { timeout: 420000 }, async () => {
    const outDir = process.env.VIREO_UPDATE_SCREENSHOTS === '1' ? path.join(ROOT, 'docs', 'screenshots') : fs.mkdtempSync('/tmp/vireo-shots-');
    fs.mkdirSync(outDir, { recursive: true });
    xvfb = await startXvfb(W, H);
    const { display } = xvfb;
    const srv = await startServe();
    const ctx = await chromium.launchPersistentContext(path.join(srv.dir, 'chromium'), {
      executablePath: CHROMIUM,
      headless: false,
      args: [...CHROMIUM_ARGS, '--test-type', `--window-size=${W},${H}`, '--window-position=0,0', `--app=${srv.url}`],
      viewport: null,
      env: { ...process.env, DISPLAY: display },
    });
    const shots: Array<[string, RegExp]> = [];
    try {
      const page = ctx.pages()[0] ?? (await ctx.waitForEvent('page'));
      await page.waitForFunction(() => document.documentElement.dataset.vireoReady === 'manager');
      const shot = async (name: string, expectText: RegExp) => {
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        const f = path.join(outDir, `${name}.png`);
        grab(display, f);
        shots.push([f, expectText]);
      };
      const iso = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
      // A few VMs so the list looks like a list.
      const echo = buildGuest('echo', srv.dir);
      await createViaWizard(page, { media: 'iso', path: iso, diskGiB: 2, name: 'grub-rescue', memoryMiB: 256, customize: true });
      await createViaWizard(page, { media: 'iso', path: iso, diskGiB: 20, name: 'debian-12', memoryMiB: 2048, customize: true });
      if (echo) await createViaWizard(page, { media: 'kernel', path: echo, name: 'echo-guest', memoryMiB: 32, customize: true });

      // The wizard, step by step.
      await page.getByRole('button', { name: 'New VM' }).click();
      const dlg = page.getByRole('dialog', { name: 'New VM' });
      await dlg.getByLabel('ISO image path').fill(iso);
      await shot('wizard-1-media', /install media/i);
      for (let s = 2; s <= 5; s++) {
        await dlg.getByRole('button', { name: 'Forward' }).click();
        await dlg.locator(`form[data-step="${s}"]`).waitFor();
        if (s === 5) await dlg.getByLabel('Name', { exact: true }).fill('grub-rescue');
        await shot(`wizard-${s}-${['', '', 'os', 'memory', 'storage', 'name'][s]}`, [/./, /./, /Operating/i, /Memory/i, /Storage|disk/i, /Name/i][s]!);
      }
      await dlg.getByRole('button', { name: 'Finish' }).click();
      await dlg.locator('#vm-name-error').waitFor();
      await shot('wizard-error-duplicate-name', /Name and review/i);
      await dlg.getByRole('button', { name: 'Cancel' }).click();

      let consolePage;
      if (echo && !engineCapability()) {
        await contextMenu(page, 'echo-guest', 'Run');
        await waitVmState(page, 'echo-guest', ['running', 'crashed', 'shutoff']);
        // Live CPU and memory sparklines (stats come once a second from the engine host).
        await page.getByRole('option', { name: 'echo-guest', exact: true }).locator('polyline').nth(1).waitFor({ timeout: 15000 }).catch(() => undefined);
      }
      await page.getByRole('option', { name: 'grub-rescue', exact: true }).click({ button: 'right' });
      await page.getByRole('menu').waitFor();
      await shot('manager-context-menu', /Open|Run|Delete/);
      await page.keyboard.press('Escape');
      await shot('manager', /Vireo/);
      await contextMenu(page, 'grub-rescue', 'Clone…');
      await page.getByRole('dialog').getByLabel('Name for the clone').waitFor();
      await shot('clone', /Clone/);
      await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
      await contextMenu(page, 'grub-rescue', 'Delete…');
      await page.getByRole('dialog').getByRole('checkbox').first().waitFor();
      await shot('delete', /Delete/);
      await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
      // The hardware details editor, on its Disks section (a disk and the install CD).
      await contextMenu(page, 'grub-rescue', 'Details');
      const details = page.getByRole('dialog', { name: 'Details of grub-rescue' });
      await details.getByRole('tab', { name: 'Disks' }).click();
      await details.getByRole('group', { name: 'CD-ROM 2' }).waitFor();
      await shot('details', /Details|Disks|CD-ROM/);
      await details.getByRole('button', { name: 'Close', exact: true }).click();

      if (echo && !engineCapability()) {
        // The console window, serial tab: the echo guest's greeting.
        await page.goto(`${srv.url}#/console/${await page.getByRole('option', { name: 'echo-guest', exact: true }).getAttribute('data-uuid')}`);
        consolePage = page;
        await page.waitForFunction(() => document.documentElement.dataset.vireoReady === 'console');
        await page.getByRole('tab', { name: 'Serial' }).click();
        if ((await page.getByTestId('console-state').textContent()) !== 'shutoff') {
          await expect.poll(() => terminalText(page), { timeout: 20000 }).toContain('echo ready');
        }
        await shot('console-serial', /echo ready|Serial/);
        await page.getByRole('tab', { name: 'Display' }).click();
        await page.getByRole('button', { name: /Send Key/ }).click().catch(() => undefined);
        await shot('console-display', /Ctrl|Display|Send Key/);
      }
      void consolePage;

      if (!engineCapability() && process.env.VIREO_UPDATE_SCREENSHOTS === '1' && process.env.VIREO_SCREENSHOT_GRUB !== '0') {
        // The graphical console: the GRUB rescue CD's menu (about 35 s to boot on a kvm_pvm host).
        await page.goto(srv.url);
        await page.waitForFunction(() => document.documentElement.dataset.vireoReady === 'manager');
        const grubUuid = (await page.getByRole('option', { name: 'grub-rescue', exact: true }).getAttribute('data-uuid'))!;
        await contextMenu(page, 'grub-rescue', 'Run');
        await waitVmState(page, 'grub-rescue', ['running']);
        await page.goto(`${srv.url}#/console/${grubUuid}`);
        await page.waitForFunction(() => document.documentElement.dataset.vireoReady === 'console');
        const deadline = Date.now() + 240000;
        for (;;) {
          const png = Buffer.from((await apiCall(srv, 'vm.screenshot', { uuid: grubUuid })).pngBase64, 'base64');
          const f = path.join(srv.dir, 'grub.png');
          fs.writeFileSync(f, png);
          // Wait for the whole menu (its help text is drawn last), not the first line.
          if (/Use the|automatically/.test(ocr(f)) || Date.now() > deadline) break;
          const n = Number(await page.locator('canvas').getAttribute('data-frames'));
          await page.waitForFunction((k) => Number(document.querySelector('canvas')!.dataset.frames) > k, n, { timeout: 60000 });
        }
        await shot('console-grub', /GNU GRUB|GRUB/);
      }
    } finally {
      await ctx.close();
      await srv.stop();
    }
    for (const [f, re] of shots) {
      expect(fs.statSync(f).size, f).toBeGreaterThan(10000);
      const text = ocr(f);
      expect(text, `${path.basename(f)} should show ${re}`).toMatch(re);
    }
    console.log(`screenshots in ${outDir}: ${shots.map(([f]) => path.basename(f)).join(', ')}`);
  });
});
