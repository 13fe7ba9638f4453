// virsh autostart with the real per-user service, CLI and engine: `vireo autostart NAME` marks
// a VM, `dominfo` says "Autostart: enable", and the next service started on the configuration
// starts it by itself; `--disable` unmarks it and the service after that leaves it shut off.
// The guest is the echo guest (direct kernel boot: runs at once).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../electron/services/rpc-socket';
import { ROOT, apiCall, buildGuest, contextMenu, distReady, engineCapability, launchApp, servicePid, stopServiceAndWait, isolatedEnv, runVireo } from './harness';

const why = distReady() ?? engineCapability();
if (why) console.log(`SKIP vireo autostart e2e: ${why}`);

const { dir, env } = isolatedEnv('vireo-autostart-');

const vireo = (args: string[], timeoutMs = 30000) => runVireo(env, args, timeoutMs);

async function stateAfterServiceStarts(): Promise<string> {
  // The first verb starts a service; autostart runs right after it listens, so poll a little.
  let last = '';
  for (let i = 0; i < 20; i++) {
    const r = await vireo(['domstate', 'echo']);
    expect(r.code, r.err).toBe(0);
    last = r.out.trim();
    if (last === 'running') return last;
    await new Promise((res) => setTimeout(res, 250));
  }
  return last;
}

afterAll(async () => {
  await stopServiceAndWait(env);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!!why)('vireo autostart', () => {
  it('marked: the next service starts it; --disable: the one after leaves it shut off', async (ctx) => {
    const echo = buildGuest('echo', dir);
    if (!echo) return ctx.skip('nasm is not installed: cannot build the echo guest');
    expect((await vireo(['list', '--all'])).code).toBe(0);
    const c = await RpcClient.connect(path.join(dir, 'run', 'vireo', 'service.sock'));
    const created = await c.request('vm.create', { media: { kind: 'kernel', kernel: echo }, os: 'generic', memoryMiB: 32, cpus: 1, storage: { kind: 'none' }, name: 'echo', network: 'none' });
    c.close();
    expect(created.errors).toEqual([]);

    let r = await vireo(['dominfo', 'echo']);
    expect(r.out).toMatch(/^Autostart:\s+disable$/m);
    r = await vireo(['autostart', 'echo']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe("Domain 'echo' marked as autostarted\n\n");
    r = await vireo(['dominfo', 'echo']);
    expect(r.out).toMatch(/^Autostart:\s+enable$/m);
    expect(JSON.parse((await vireo(['dominfo', 'echo', '--output', 'json'])).out).autostart).toBe(true);
    expect((await vireo(['domstate', 'echo'])).out.trim()).toBe('shut off'); // marking does not start it

    // A new service on the same configuration starts it.
    const first = servicePid(env);
    await stopServiceAndWait(env);
    expect(await stateAfterServiceStarts()).toBe('running');
    expect(servicePid(env)).not.toBe(first);
    const log = fs.readFileSync(path.join(dir, 'data', 'vireo', 'logs', 'service.log'), 'utf8');
    expect(log).toMatch(/vireo service: autostart echo: started/);

    r = await vireo(['autostart', '--disable', 'echo']);
    expect(r.out).toBe("Domain 'echo' unmarked as autostarted\n\n");
    expect((await vireo(['dominfo', 'echo'])).out).toMatch(/^Autostart:\s+disable$/m);
    r = await vireo(['autostart', 'nosuch']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/nosuch/);

    await stopServiceAndWait(env);
    expect((await vireo(['domstate', 'echo'])).out.trim()).toBe('shut off');
    await new Promise((res) => setTimeout(res, 1500));
    expect((await vireo(['domstate', 'echo'])).out.trim()).toBe('shut off');
  }, 90000);
});

describe.skipIf(!!distReady())('Details → Boot options autostart', () => {
  it('the checkbox writes the flag, and reads it back', async () => {
    const app = await launchApp();
    try {
      const iso = path.join(app.dir, 'm.iso');
      fs.writeFileSync(iso, Buffer.alloc(4096));
      const r = await apiCall(app, 'vm.create', { media: { kind: 'iso', path: iso }, os: 'generic', memoryMiB: 32, cpus: 1, storage: { kind: 'none' }, name: 'auto', network: 'none' });
      expect(r.errors).toEqual([]);
      await app.page.getByRole('option', { name: 'auto', exact: true }).waitFor();
      await contextMenu(app.page, 'auto', 'Details');
      const dlg = app.page.getByRole('dialog', { name: 'Details of auto' });
      await dlg.getByRole('tab', { name: 'Boot options' }).click();
      const box = dlg.getByLabel('Start when the Vireo service starts');
      expect(await box.isChecked()).toBe(false);
      await box.check();
      await dlg.getByRole('button', { name: 'Apply' }).click();
      await expect.poll(() => dlg.getByTestId('details-status').textContent()).toBe('Saved.');
      expect((await apiCall(app, 'vm.get', { uuid: r.vm.uuid })).autostart).toBe(true);
      await dlg.getByRole('button', { name: 'Close', exact: true }).click();
      await apiCall(app, 'vm.setAutostart', { uuid: r.vm.uuid, enabled: false });
      await contextMenu(app.page, 'auto', 'Details');
      await dlg.getByRole('tab', { name: 'Boot options' }).click();
      expect(await dlg.getByLabel('Start when the Vireo service starts').isChecked()).toBe(false);
    } finally {
      await app.close();
    }
  }, 60000);
});
