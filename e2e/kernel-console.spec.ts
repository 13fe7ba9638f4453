// A direct-kernel VM made in the wizard is the same PC as a firmware boot (issue 9):
// SeaBIOS loads the kernel through Vireo's option ROM, the disk the wizard made is
// attached, and what the kernel writes to VGA text memory shows on the console's
// canvas. The kernel is native/guests/vgabanner.asm (multiboot): it writes a banner
// to 0xb8000 and reports the IDE disk's model on COM1.
import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, apiCall, buildGuest, contextMenu, crashReason, createViaWizard, diffWithCanvas, distReady, engineCapability, launchApp, ocr, openConsole, terminalText, waitVmState } from './harness';

const why = distReady() ?? engineCapability() ?? (fs.existsSync('/usr/bin/tesseract') ? null : 'tesseract is missing (apt-get install tesseract-ocr)');
if (why) console.log(`SKIP kernel console e2e: ${why}`);
let app: App | undefined;

describe.skipIf(!!why)('direct kernel boot in the app', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('wizard kernel VM with a disk: the banner shows on the canvas and the guest sees the disk', async (ctx) => {
    app = await launchApp();
    const kernel = buildGuest('vgabanner', app.dir);
    if (!kernel) return ctx.skip('nasm is not installed: cannot build the vgabanner guest');
    await createViaWizard(app.page, { media: 'kernel', path: kernel, name: 'banner', memoryMiB: 64, diskGiB: 1, customize: true });
    await contextMenu(app.page, 'banner', 'Run');
    await waitVmState(app.page, 'banner', ['running']);
    const con = await openConsole(app, 'banner');
    const uuid = /#\/console\/([0-9a-f-]+)/.exec(con.url())![1]!;
    // The guest reports the IDE disk the wizard made (SeaBIOS, then the kernel, on the same PC).
    await con.getByRole('tab', { name: 'Serial' }).click();
    await expect.poll(() => terminalText(con), { timeout: 120000 }).toMatch(/disk: \S/);
    expect(await terminalText(con)).not.toContain('disk: none');
    await con.getByRole('tab', { name: 'Display' }).click();
    // The banner on the engine's screen, read back by OCR.
    let text = '';
    let png = Buffer.alloc(0);
    await expect
      .poll(
        async () => {
          const crashed = await crashReason(con);
          if (crashed) throw new Error(`the VM crashed: ${crashed}`);
          png = Buffer.from((await apiCall(app!, 'vm.screenshot', { uuid })).pngBase64, 'base64');
          text = ocr(png, app!.dir) ?? '';
          return text;
        },
        { timeout: 60000, interval: 1000 },
      )
      .toMatch(/Vireo multiboot guest on the PC board/);
    // And the canvas shows that same screen (the guest halts after writing it; a cursor may blink).
    await expect.poll(() => diffWithCanvas(con, png.toString('base64')), { timeout: 30000 }).toBeLessThan(0.01);
  });
});
