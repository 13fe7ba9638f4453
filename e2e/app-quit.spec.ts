// Quitting the desktop app with VMs running (issue 12), real service and real engine:
// the app's quit logic (electron/main/quit-plan.ts) over the bridge the app uses
// (service-bridge.ts, which starts the service with serviceCommand()), with a scripted
// answer where the app shows Electron's dialogs (no Electron binary runs on these hosts).
// Two echo guests, a choice per VM: Save state → Saved with its state file, and the
// next start restores it (the file goes); Force off → Shut off.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fakeIpc } from '../electron/main/__tests__/bridge-stand-ins';
import { type QuitUi, quitFlow } from '../electron/main/quit-plan';
import { serviceCommand, startServiceBridge } from '../electron/main/service-bridge';
import { ensureService } from '../electron/services/service-host';
import { ROOT, buildGuest, engineCapability, isolatedEnv, runVireo, servicePid, stopServiceAndWait } from './harness';

const built = ['dist/electron/cli/main.js', 'dist/electron/engine-host/main.js'].find((f) => !fs.existsSync(path.join(ROOT, f)));
const why = (built ? `${built} is missing: build first (npx tsc -p tsconfig.json)` : null) ?? engineCapability();
if (why) console.log(`SKIP app quit e2e: ${why}`);

const { dir, env } = isolatedEnv('vireo-appquit-');
const vireo = (args: string[], timeoutMs = 60000) => runVireo(env, args, timeoutMs);

afterAll(async () => {
  await stopServiceAndWait(env);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!!why)('quitting the desktop app with VMs running (real engine)', () => {
  it('a choice per VM: Save state leaves it Saved with a state file (restored at the next start), Force off leaves it Shut off', async (ctx) => {
    const echo = buildGuest('echo', dir);
    if (!echo) return ctx.skip('nasm is not installed: cannot build the echo guest');
    const bridge = await startServiceBridge({
      connect: () => ensureService({ env, command: serviceCommand(process.execPath, ROOT) }),
      ipc: fakeIpc(),
      newChannel: () => {
        throw new Error('not used');
      },
      windows: () => [],
      trusted: () => true,
      openConsole: () => undefined,
      log: (l) => console.log(l),
    });
    const pid = servicePid(env);
    try {
      const client = bridge.client()!;
      const uuids: Record<string, string> = {};
      for (const name of ['keeper', 'plug']) {
        const r = await client.request('vm.create', { media: { kind: 'kernel', kernel: echo }, os: 'generic', memoryMiB: 32, cpus: 1, storage: { kind: 'none' }, name, network: 'none' });
        expect(r.errors).toEqual([]);
        uuids[name] = r.vm!.uuid;
        await client.request('vm.action', { uuid: r.vm!.uuid, action: 'start' });
      }
      const stateFile = path.join((await client.request('host.info', {})).configPath, 'save', `${uuids.keeper}.vstate`);
      const asked: string[] = [];
      const ui: QuitUi = {
        chooseAll: async (vms) => (asked.push(...vms.map((v) => `${v.name}:${v.state}`)), 'each'),
        chooseOne: async (vm) => (vm.name === 'keeper' ? 'save' : 'forceoff'),
        waiting: async () => 'cancel',
        failed: async () => 'stay',
      };
      const r = await quitFlow(client, ui, { pollMs: 200, stopTimeoutMs: 60000 });
      expect(asked.sort()).toEqual(['keeper:running', 'plug:running']);
      expect(r.quit).toBe(true);
      expect(r.outcomes.map((o) => [o.name, o.choice, o.result, o.state, o.error ?? ''])).toEqual(
        expect.arrayContaining([
          ['keeper', 'save', 'done', 'saved', ''],
          ['plug', 'forceoff', 'done', 'shutoff', ''],
        ]),
      );
      expect(fs.readFileSync(stateFile).subarray(0, 8).toString('latin1')).toBe('VIREOST\0'); // the engine's state file (docs/state.md)
      bridge.close();

      // The app has gone; the service (same process) has both as chosen.
      expect(servicePid(env)).toBe(pid);
      expect((await vireo(['domstate', '--reason', 'plug'])).out).toMatch(/^shut off \(.*forced off/);
      expect((await vireo(['dominfo', 'keeper'])).out).toMatch(/State:\s+shut off[\s\S]*Managed save:\s+yes/);
      // The next start restores the saved one; its state file goes once it runs.
      const st = await vireo(['start', 'keeper']);
      expect(st.code, st.err).toBe(0);
      expect((await vireo(['domstate', 'keeper'])).out).toMatch(/^running/);
      expect(fs.existsSync(stateFile)).toBe(false);
      await vireo(['destroy', 'keeper']);
    } finally {
      bridge.close();
    }
  });
});
