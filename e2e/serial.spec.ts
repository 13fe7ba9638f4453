// Serial console against the lead's echo guest (native/guests/echo.asm, a multiboot
// kernel), created through the wizard's direct kernel boot, run from the context
// menu, typed into through xterm.js in the console window.
import { afterEach, describe, expect, it } from 'vitest';
import { type App, buildGuest, createViaWizard, contextMenu, distReady, engineCapability, launchApp, openConsole, terminalText, waitVmState } from './harness';

const why = distReady() ?? engineCapability();
if (why) console.log(`SKIP serial console e2e: ${why}`);
let app: App | undefined;

describe.skipIf(!!why)('serial console', () => {
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('echo guest: output arrives in xterm, typed keys come back', async (ctx) => {
    app = await launchApp();
    const echo = buildGuest('echo', app.dir);
    if (!echo) return ctx.skip('nasm is not installed: cannot build the echo guest');
    await createViaWizard(app.page, { media: 'kernel', path: echo, name: 'echo', memoryMiB: 32, customize: true });
    await contextMenu(app.page, 'echo', 'Run');
    await waitVmState(app.page, 'echo', ['running', 'crashed', 'shutoff']);
    const con = await openConsole(app, 'echo');
    await con.getByRole('tab', { name: 'Serial' }).click();
    await expect.poll(() => terminalText(con), { timeout: 30000 }).toContain('echo ready');
    await con.locator('.xterm-helper-textarea').focus();
    // One input event (as a paste would be): on this host's kvm_pvm the guest's IRET
    // after its UART interrupt is not emulated, so the guest lives for one interrupt.
    await con.keyboard.insertText('vireo');
    await expect.poll(() => terminalText(con), { timeout: 15000 }).toMatch(/echo ready.*vireo/);
    const state = await con.getByTestId('console-state').textContent();
    if (state === 'crashed') console.log('NOTE echo guest crashed after echoing (engine: IRET emulation on kvm_pvm)');
    // Every byte the terminal took was acked after xterm parsed it.
    expect(Number(await con.locator('.serial').getAttribute('data-bytes'))).toBeGreaterThanOrEqual('echo ready\r\nvireo'.length);
  });
});
