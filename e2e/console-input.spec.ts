// The console's pointer, wheel and keyboard end to end (issue 14), checked by what the guest
// itself reports: the wizard makes a direct-kernel VM whose kernel is native/guests/input.asm
// (a multiboot kernel with its own polled UHCI driver for the USB tablet and an i8042 reader:
// every tablet report is a `PTR x= y= b= w= p=` line on COM1, every typed line a `KEY <text>`
// line). COM1 is logged to a file (Details → Serial) that the test reads. Clicks at known
// framebuffer pixels, in "Scale to fit" and in 1:1, must reach the guest as the tablet
// coordinates of those pixels (exact at 1:1, within one guest pixel when scaled); the wheel's
// direction arrives with its sign; a line of shifted symbols typed on the captured display and
// the console's "Type clipboard text" arrive exactly. Real `vireo serve`, engine and Chromium.
import * as fs from 'node:fs';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, buildGuest, contextMenu, createViaWizard, crashReason, distReady, engineCapability, launchApp, logCom1, openConsole, waitVmState } from './harness';

const why = distReady() ?? engineCapability() ?? (fs.existsSync('/usr/share/seabios/bios.bin') ? null : 'SeaBIOS is missing (apt-get install seabios)');
if (why) console.log(`SKIP console input e2e: ${why}`);
let app: App | undefined;

const MAX = 32767;
/** The tablet coordinate of framebuffer pixel p of n (the engine maps pixel 0 to 0 and the last to 32767). */
const tabletCoord = (p: number, n: number) => Math.round((p * MAX) / (n - 1));

interface Ptr {
  x: number;
  y: number;
  b: number;
  w: number;
  p: number;
}
const PTR = /^PTR x=(\d+) y=(\d+) b=(\d+) w=(-?\d+) p=(-?\d+)\r?$/;

/** The PTR reports in log text. */
function reports(text: string): Ptr[] {
  const out: Ptr[] = [];
  for (const line of text.split('\n')) {
    const m = PTR.exec(line);
    if (m) out.push({ x: +m[1]!, y: +m[2]!, b: +m[3]!, w: +m[4]!, p: +m[5]! });
  }
  return out;
}

/** Types `text` as a person does on a US keyboard: Shift held for the characters that need it. */
async function typeLikeAPerson(page: Page, text: string): Promise<void> {
  for (const ch of text) {
    const shifted = /[A-Z!@#$%^&*()_+{}|:"<>?~]/.test(ch);
    if (shifted) await page.keyboard.down('Shift');
    await page.keyboard.press(ch === ' ' ? 'Space' : ch);
    if (shifted) await page.keyboard.up('Shift');
  }
}

describe.skipIf(!!why)('console input reaches a test guest', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('clicks land on the guest pixel in fit and 1:1, the wheel has its sign, typed and clipboard lines arrive exactly', { timeout: 300000 }, async (ctx) => {
    app = await launchApp();
    const kernel = buildGuest('input', app.dir);
    if (!kernel) return ctx.skip('nasm is not installed: cannot build the input guest');
    await createViaWizard(app.page, { media: 'kernel', path: kernel, name: 'input', memoryMiB: 64, customize: true, keepDetails: true });
    const com1 = await logCom1(app, app.page.getByRole('dialog', { name: 'Details of input' }), 'input.log');

    await contextMenu(app.page, 'input', 'Run');
    await waitVmState(app.page, 'input', ['running']);
    const con = await openConsole(app, 'input');
    await expect
      .poll(
        async () => {
          const crashed = await crashReason(con);
          if (crashed) throw new Error(`the VM crashed: ${crashed}`);
          return com1();
        },
        { timeout: 120000, interval: 500 },
      )
      .toContain('INPUT ready');
    expect(com1()).toContain('USB device 1209:0001 on port 1');
    // The engine tells the console the guest drives the tablet: absolute positions, no grab.
    const canvas = con.locator('canvas');
    await con.waitForFunction(() => document.querySelector('canvas')?.dataset.tablet === 'yes', undefined, { timeout: 30000 });
    await con.waitForFunction(() => document.querySelector('canvas')!.width === 720, undefined, { timeout: 30000 });
    const geom = () => canvas.evaluate((c: HTMLCanvasElement) => ({ fbW: c.width, fbH: c.height, cw: c.clientWidth, ch: c.clientHeight }));

    /** Clicks framebuffer pixel (fx, fy) (its centre, from the canvas's geometry); the guest's report of the press. */
    const clickPixel = async (fx: number, fy: number, contain: boolean): Promise<Ptr> => {
      const g = await geom();
      let sx = g.cw / g.fbW;
      let sy = g.ch / g.fbH;
      let left = 0;
      let top = 0;
      if (contain) {
        sx = sy = Math.min(sx, sy);
        left = (g.cw - g.fbW * sx) / 2;
        top = (g.ch - g.fbH * sy) / 2;
      }
      const before = com1().length;
      await con.evaluate(() => {
        const w = window as any;
        w.__ev = [];
        if (!w.__hooked) {
          w.__hooked = true;
          for (const t of ['mousedown', 'mouseup', 'mousemove'])
            document.addEventListener(t, (e: any) => w.__ev.push([t, (e.target as Element).tagName, e.offsetX, e.offsetY, e.buttons, document.querySelector('canvas')!.dataset.tablet]), true);
        }
      });
      // Chromium rounds mouse coordinates to whole CSS pixels (and the canvas may sit at a
      // fractional offset): click the whole page pixel nearest the guest pixel's centre,
      // which lies inside that guest pixel at every scale of 1 or more.
      const bb = (await canvas.boundingBox())!;
      const px = Math.ceil(bb.x + left + (fx + 0.5) * sx - 0.5);
      const py = Math.ceil(bb.y + top + (fy + 0.5) * sy - 0.5);
      await con.mouse.click(px, py);
      let press: Ptr | undefined;
      const released = () => {
        const r = reports(com1().slice(before));
        press = r.find((p) => p.b === 1);
        // The release follows the press at the same spot.
        return !!press && r.slice(r.indexOf(press)).some((p) => p.b === 0 && p.x === press!.x && p.y === press!.y);
      };
      await expect.poll(released, { timeout: 30000, interval: 200 }).toBe(true).catch(async () => {
        const seen = await con.evaluate(() => JSON.stringify((window as any).__ev ?? []));
        throw new Error(`no press and release reported for pixel ${fx},${fy}; events ${seen} COM1 since the click:\n${com1().slice(before)}`);
      });
      return press!;
    };

    const spots = (fbW: number, fbH: number) => [
      [0, 0],
      [fbW - 1, fbH - 1],
      [fbW - 1, 0],
      [100, 37],
      [Math.floor(fbW / 2), Math.floor(fbH / 2)],
      [613, 389],
    ];

    // Scale to fit: the picture is scaled into the window. Enlarged (the window is larger than
    // 720x400), a page pixel lies inside one guest pixel: exact. Were it shrunk, within one.
    const fit = await geom();
    const s = Math.min(fit.cw / fit.fbW, fit.ch / fit.fbH);
    expect(s).not.toBe(1); // really scaled
    const guestPixel = (v: number, n: number) => (v * (n - 1)) / MAX;
    for (const [fx, fy] of spots(fit.fbW, fit.fbH)) {
      const r = await clickPixel(fx!, fy!, true);
      const what = `fit (x${s.toFixed(3)}): pixel ${fx},${fy} reported ${r.x},${r.y}`;
      if (s >= 1) expect({ x: r.x, y: r.y }, what).toEqual({ x: tabletCoord(fx!, fit.fbW), y: tabletCoord(fy!, fit.fbH) });
      else {
        expect(Math.abs(guestPixel(r.x, fit.fbW) - fx!), what).toBeLessThanOrEqual(1);
        expect(Math.abs(guestPixel(r.y, fit.fbH) - fy!), what).toBeLessThanOrEqual(1);
      }
    }

    // 1:1: one CSS pixel per guest pixel; exact.
    await con.getByLabel('Scale').selectOption('1:1');
    await expect.poll(async () => (await geom()).cw).toBe(fit.fbW);
    const one = await geom();
    expect(one.ch).toBe(one.fbH);
    for (const [fx, fy] of spots(one.fbW, one.fbH)) {
      const r = await clickPixel(fx!, fy!, false);
      expect({ x: r.x, y: r.y }, `1:1: pixel ${fx},${fy}`).toEqual({ x: tabletCoord(fx!, one.fbW), y: tabletCoord(fy!, one.fbH) });
    }

    // The wheel: up (away from the user) is positive, down negative; sideways is AC Pan.
    const wheelReport = async (dx: number, dy: number) => {
      const before = com1().length;
      await con.mouse.wheel(dx, dy);
      let r: Ptr | undefined;
      await expect
        .poll(() => (r = reports(com1().slice(before)).find((p) => p.w !== 0 || p.p !== 0)), { timeout: 30000, interval: 200 })
        .toBeTruthy();
      return r!;
    };
    const box = (await canvas.boundingBox())!;
    await con.mouse.move(box.x + 50, box.y + 50);
    const up = await wheelReport(0, -100);
    expect(up.w).toBeGreaterThan(0);
    expect(up.p).toBe(0);
    const down = await wheelReport(0, 300);
    expect(down.w).toBeLessThan(0);
    const right = await wheelReport(100, 0);
    expect(right.p).toBeGreaterThan(0);
    expect(right.w).toBe(0);

    // The keyboard (the clicks captured it): shifted symbols arrive exactly.
    await expect.poll(() => con.getByRole('status').filter({ hasText: 'Keyboard captured' }).count()).toBe(1);
    const line = 'Hello, World! @#$%^&*()_+{}|:"<>?~';
    await typeLikeAPerson(con, line);
    await con.keyboard.press('Enter');
    await expect.poll(com1, { timeout: 30000, interval: 200 }).toContain(`KEY ${line}\r\n`);
    await typeLikeAPerson(con, "plain -=[]\\;',./` 0123456789");
    await con.keyboard.press('Enter');
    await expect.poll(com1, { timeout: 30000, interval: 200 }).toContain("KEY plain -=[]\\;',./` 0123456789\r\n");

    // Send Key → Type clipboard text: the host clipboard's line as keystrokes.
    await app.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(con.url()).origin });
    const clip = 'Clipboard: Vireo {1+1=2} <ok> ~$HOME|"x"?';
    await con.evaluate((t) => navigator.clipboard.writeText(t), `${clip}\n`);
    await con.getByRole('button', { name: /Send Key/ }).click();
    await con.getByRole('menuitem', { name: 'Type clipboard text' }).click();
    await expect.poll(com1, { timeout: 30000, interval: 200 }).toContain(`KEY ${clip}\r\n`);
    expect(com1()).not.toMatch(/INPUT failed|PTR error/);
    await waitVmState(app.page, 'input', ['running']);
  });
});
