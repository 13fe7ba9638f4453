// Quitting the desktop app with VMs running (quit-plan.ts) against a real service
// socket: the service's own host (service-host.ts) in a temp XDG_RUNTIME_DIR over the
// fake engine, as service-bridge.test.ts does. The questions are a scripted QuitUi
// that records what it was shown; each choice is checked in the service afterwards.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { VmSummary } from '../../common/contracts/vm';
import type { VireoService } from '../../services/app';
import { FakeMachine, newVmRequest, testService } from '../../services/__tests__/fake-engine';
import type { RpcClient } from '../../services/rpc-socket';
import { type ServiceHost, ensureService, hostService, serviceLocation } from '../../services/service-host';
import { type QuitChoice, type QuitUi, describeOutcome, quitFlow } from '../quit-plan';
import { startServiceBridge } from '../service-bridge';
import { fakeIpc } from './bridge-stand-ins';

let dir: string;
let env: NodeJS.ProcessEnv;
let svc: VireoService;
let host: ServiceHost;
let client: RpcClient;
const OPTS = { pollMs: 20, stopTimeoutMs: 5000 };

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-quit-'));
  env = { HOME: dir, XDG_RUNTIME_DIR: path.join(dir, 'run'), XDG_CONFIG_HOME: path.join(dir, 'cfg'), XDG_DATA_HOME: path.join(dir, 'data') };
  svc = await testService(dir);
  host = await hostService({ service: svc, location: serviceLocation(env), peerCheck: () => null, log: () => undefined });
  client = await ensureService({ env, noStart: true });
});
afterEach(async () => {
  client.close();
  await host.stop('test');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A VM made and started through the socket; its fake machine. */
async function running(name: string): Promise<{ uuid: string; m: FakeMachine }> {
  const iso = path.join(dir, 'boot.iso');
  fs.writeFileSync(iso, Buffer.alloc(4096));
  const { vm } = await client.request('vm.create', newVmRequest(iso, { name, storage: { kind: 'none' } as never }));
  await client.request('vm.action', { uuid: vm!.uuid, action: 'start' });
  return { uuid: vm!.uuid, m: FakeMachine.last! };
}

/** The VM's summary as the manager shows it (vm.list). */
const get = async (uuid: string) => (await client.request('vm.list', {})).find((v) => v.uuid === uuid)!;
const state = async (uuid: string) => (await get(uuid)).state;

/** A scripted user: the answers to give, and a record of what was asked. */
function user(a: {
  all?: QuitChoice | 'each' | 'cancel';
  each?: Record<string, QuitChoice | 'cancel'>;
  /** Called each time the Shut Down progress shows; the answer (or wait for the plan to close it). */
  waiting?: (pending: string[], n: number) => 'forceoff' | 'cancel' | undefined;
  failed?: 'quit' | 'stay';
}) {
  const asked = { all: [] as string[][], one: [] as string[], waiting: [] as string[][], failed: [] as string[][] };
  const ui: QuitUi = {
    chooseAll: async (vms) => {
      asked.all.push(vms.map((v) => `${v.name}:${v.state}`));
      return a.all ?? 'cancel';
    },
    chooseOne: async (vm: VmSummary) => {
      asked.one.push(vm.name);
      return a.each?.[vm.name] ?? 'cancel';
    },
    waiting: (pending, signal) => {
      asked.waiting.push(pending.map((v) => v.name));
      const r = a.waiting?.(pending.map((v) => v.name), asked.waiting.length);
      if (r) return Promise.resolve(r);
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve('closed')));
    },
    failed: async (outcomes) => {
      asked.failed.push(outcomes.map(describeOutcome));
      return a.failed ?? 'stay';
    },
  };
  return { ui, asked };
}

describe('quitting the app with VMs running', () => {
  it('quits without asking when no VM runs (or no service can be asked)', async () => {
    const iso = path.join(dir, 'boot.iso');
    fs.writeFileSync(iso, Buffer.alloc(4096));
    await client.request('vm.create', newVmRequest(iso, { name: 'off', storage: { kind: 'none' } as never }));
    const u = user({ all: 'forceoff' });
    expect(await quitFlow(client, u.ui, OPTS)).toEqual({ quit: true, outcomes: [] });
    expect(await quitFlow(null, u.ui, OPTS)).toEqual({ quit: true, outcomes: [] });
    expect(u.asked.all).toEqual([]);
  });

  it('Save state: the VM is Saved with a state file, and the app quits', async () => {
    const a = await running('alpha');
    const u = user({ all: 'save' });
    const r = await quitFlow(client, u.ui, OPTS);
    expect(u.asked.all).toEqual([['alpha:running']]);
    expect(r).toEqual({ quit: true, outcomes: [{ uuid: a.uuid, name: 'alpha', choice: 'save', result: 'done', state: 'saved' }] });
    expect(await get(a.uuid)).toMatchObject({ state: 'saved', hasManagedSave: true });
    expect(svc.supervisor.isRunning(a.uuid)).toBe(false);
    expect(fs.readFileSync(svc.saves.pathOf(a.uuid), 'latin1')).toMatch(/^FAKEVST\n/);
  });

  it('Shut down (a paused VM resumed first): the power button is pressed, the app waits (showing which VMs are left) until the guest powers off; nothing is killed', async () => {
    const a = await running('alpha');
    const b = await running('beta');
    a.m.acpiEnabled = true;
    b.m.acpiEnabled = true;
    await client.request('vm.action', { uuid: b.uuid, action: 'pause' }); // resumed first, so its guest can react
    const u = user({ all: 'shutdown' });
    const flow = quitFlow(client, u.ui, OPTS);
    await vi.waitFor(() => expect(u.asked.waiting).toEqual([['alpha', 'beta']]));
    expect(u.asked.all).toEqual([['alpha:running', 'beta:paused']]);
    expect(await state(b.uuid)).toBe('shuttingdown');
    expect(await state(a.uuid)).toBe('shuttingdown');
    expect(a.m.powerButtonPresses).toBe(1);
    a.m.powerOff(); // the first guest powers off: the progress shows only the other
    await vi.waitFor(() => expect(u.asked.waiting).toEqual([['alpha', 'beta'], ['beta']]));
    let settled = false;
    void flow.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false); // still waiting for beta
    b.m.powerOff();
    const r = await flow;
    expect(r.quit).toBe(true);
    expect(r.outcomes).toEqual([
      { uuid: a.uuid, name: 'alpha', choice: 'shutdown', result: 'done', state: 'shutoff' },
      { uuid: b.uuid, name: 'beta', choice: 'shutdown', result: 'done', state: 'shutoff' },
    ]);
    // The guests powered off by themselves: not forced, not killed.
    for (const x of [a, b]) expect(await get(x.uuid)).toMatchObject({ state: 'shutoff', lastExit: { kind: 'shutdown', detail: 'the guest powered off' } });
    expect(b.m.powerButtonPresses).toBe(1);
  });

  it('Shut down, then Force off the guest that does not power off', async () => {
    const a = await running('alpha');
    a.m.acpiEnabled = true; // it takes the button but never powers off
    const u = user({ all: 'shutdown', waiting: (_p, n) => (n === 1 ? 'forceoff' : undefined) });
    const r = await quitFlow(client, u.ui, OPTS);
    expect(r).toEqual({ quit: true, outcomes: [{ uuid: a.uuid, name: 'alpha', choice: 'forceoff', result: 'done', state: 'shutoff' }] });
    expect(await get(a.uuid)).toMatchObject({ state: 'shutoff', lastExit: { kind: 'shutdown', detail: 'forced off' } });
  });

  it('Shut down, then Cancel while waiting: the quit is called off, the guest goes on shutting down', async () => {
    const a = await running('alpha');
    a.m.acpiEnabled = true;
    const u = user({ all: 'shutdown', waiting: () => 'cancel' });
    expect(await quitFlow(client, u.ui, OPTS)).toEqual({ quit: false, outcomes: [], why: 'cancel' });
    expect(await state(a.uuid)).toBe('shuttingdown');
    a.m.powerOff();
    await vi.waitFor(async () => expect(await state(a.uuid)).toBe('shutoff'));
  });

  it('Shut down a guest that has not enabled ACPI: reported, and the quit is not completed silently', async () => {
    const a = await running('alpha'); // acpiEnabled false, like firmware
    const u = user({ all: 'shutdown', failed: 'stay' });
    const r = await quitFlow(client, u.ui, OPTS);
    expect(r).toMatchObject({ quit: false, why: 'failed', outcomes: [{ name: 'alpha', choice: 'shutdown', result: 'failed', state: 'running', error: expect.stringMatching(/not shut down.*Force Off/) }] });
    expect(u.asked.failed).toEqual([[expect.stringMatching(/^alpha: Shut down failed: .*\(it is running\)$/)]]);
    expect(u.asked.waiting).toEqual([]);
    expect(await state(a.uuid)).toBe('running');
  });

  it('Force off: the VM is Shut off at once', async () => {
    const a = await running('alpha');
    const r = await quitFlow(client, user({ all: 'forceoff' }).ui, OPTS);
    expect(r).toEqual({ quit: true, outcomes: [{ uuid: a.uuid, name: 'alpha', choice: 'forceoff', result: 'done', state: 'shutoff' }] });
    expect(await get(a.uuid)).toMatchObject({ state: 'shutoff', lastExit: { kind: 'shutdown', detail: 'forced off' } });
  });

  it('Keep running: nothing is done, and the VM still runs after the app (its bridge) has gone', async () => {
    const a = await running('alpha');
    const action = vi.spyOn(svc, 'vm.action');
    const ipc = fakeIpc();
    const bridge = await startServiceBridge({ connect: () => ensureService({ env, noStart: true }), ipc, newChannel: () => { throw new Error('unused'); }, windows: () => [], trusted: () => true, openConsole: () => undefined, log: () => undefined });
    const r = await quitFlow(bridge.client(), user({ all: 'keep' }).ui, OPTS);
    expect(r).toEqual({ quit: true, outcomes: [{ uuid: a.uuid, name: 'alpha', choice: 'keep', result: 'done', state: 'running' }] });
    bridge.close();
    await new Promise((res) => setTimeout(res, 100));
    expect(action).not.toHaveBeenCalled();
    expect(svc.supervisor.isRunning(a.uuid)).toBe(true);
    expect(await state(a.uuid)).toBe('running');
  });

  it('Cancel: nothing happens and the quit is called off', async () => {
    const a = await running('alpha');
    const action = vi.spyOn(svc, 'vm.action');
    const u = user({ all: 'cancel' });
    expect(await quitFlow(client, u.ui, OPTS)).toEqual({ quit: false, outcomes: [], why: 'cancel' });
    expect(action).not.toHaveBeenCalled();
    expect(await state(a.uuid)).toBe('running');
  });

  it('a choice per VM: each does its own; Cancel at any VM does nothing to any', async () => {
    const a = await running('alpha');
    const b = await running('beta');
    const c = await running('gamma');
    await client.request('vm.action', { uuid: b.uuid, action: 'pause' });
    const action = vi.spyOn(svc, 'vm.action');
    // Cancelled at the second question: none was touched.
    const u0 = user({ all: 'each', each: { alpha: 'save' } });
    expect(await quitFlow(client, u0.ui, OPTS)).toEqual({ quit: false, outcomes: [], why: 'cancel' });
    expect(u0.asked.one).toEqual(['alpha', 'beta']);
    expect(action).not.toHaveBeenCalled();

    const u = user({ all: 'each', each: { alpha: 'save', beta: 'forceoff', gamma: 'keep' } });
    const r = await quitFlow(client, u.ui, OPTS);
    expect(u.asked.all).toEqual([['alpha:running', 'beta:paused', 'gamma:running']]);
    expect(r.quit).toBe(true);
    expect(r.outcomes.map((o) => [o.name, o.choice, o.result, o.state])).toEqual([
      ['alpha', 'save', 'done', 'saved'],
      ['beta', 'forceoff', 'done', 'shutoff'],
      ['gamma', 'keep', 'done', 'running'],
    ]);
    expect(await state(a.uuid)).toBe('saved');
    expect(fs.existsSync(svc.saves.pathOf(a.uuid))).toBe(true);
    expect(await state(b.uuid)).toBe('shutoff');
    expect(fs.existsSync(svc.saves.pathOf(b.uuid))).toBe(false);
    expect(await state(c.uuid)).toBe('running');
  });

  it('a VM whose save fails is reported; the user stays (nothing quits) or quits anyway', async () => {
    const a = await running('alpha');
    const b = await running('beta');
    a.m.saveError = 'No space left on device';
    const u = user({ all: 'save', failed: 'stay' });
    const r = await quitFlow(client, u.ui, OPTS);
    expect(r.quit).toBe(false);
    expect(r.why).toBe('failed');
    expect(r.outcomes).toEqual([
      { uuid: a.uuid, name: 'alpha', choice: 'save', result: 'failed', state: 'running', error: expect.stringMatching(/alpha was not saved: .*No space left on device.*still running/) },
      { uuid: b.uuid, name: 'beta', choice: 'save', result: 'done', state: 'saved' },
    ]);
    expect(u.asked.failed).toEqual([[expect.stringMatching(/^alpha: Save state failed: .*No space left/), 'beta: Save state — done (saved)']]);
    expect(await state(a.uuid)).toBe('running');
    expect(fs.existsSync(svc.saves.pathOf(a.uuid))).toBe(false);
    expect(await state(b.uuid)).toBe('saved');

    // Asked again, the user quits anyway: the failed VM stays as it is (running).
    const again = await quitFlow(client, user({ all: 'save', failed: 'quit' }).ui, OPTS);
    expect(again).toMatchObject({ quit: true, outcomes: [{ name: 'alpha', result: 'failed' }] });
    expect(await state(a.uuid)).toBe('running');
  });
});
