// A VM's life (issue 12): Shut Down presses the power button and waits (no kill, a hint
// after the timeout), a guest without ACPI is told so instead of killed, Force Off asks
// the engine to stop (flushing) before any SIGKILL, quitting SIGTERMs every host and waits,
// Reset and Reboot are different requests. The engine host side runs with the fake addon.
import { describe, expect, it } from 'vitest';
import type { ExitReason } from '../../common/contracts/vm';
import type { FromHost, ToHost } from '../../common/contracts/engine-host';
import { EngineHost } from '../../engine-host/host-core';
import { type HostChannel, SHUTDOWN_HINT, Supervisor } from '../supervisor';
import { FakeMachine, fakeAddon } from './fake-engine';

const UUID = '00000000-0000-4000-8000-000000000001';
const UUID2 = '00000000-0000-4000-8000-000000000002';
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

/** A host channel the test drives by hand; `exitOn` says which signals end it. */
function manualHost(exitOn: string[] = ['SIGKILL', 'SIGTERM']) {
  let onMsg: (m: unknown) => void = () => undefined;
  let onExit: (code: number | null, sig: string | null) => void = () => undefined;
  const sent: ToHost[] = [];
  const kills: string[] = [];
  const ch: HostChannel = {
    pid: 4242,
    send: (m) => sent.push(m),
    onMessage: (cb) => (onMsg = cb),
    onExit: (cb) => (onExit = cb),
    kill: (sig) => {
      kills.push(sig);
      // SIGTERM: a host stops its machine gracefully and exits 0 by itself.
      if (exitOn.includes(sig)) setTimeout(() => (sig === 'SIGTERM' ? (onMsg({ t: 'state', state: 'stopped', reason: { kind: 'stopped', message: 'stopped by the host' } }), onExit(0, null)) : onExit(null, sig)), 1);
    },
  };
  return { ch, sent, kills, msg: (m: unknown) => onMsg(m), exit: (code: number | null, sig: string | null) => onExit(code, sig) };
}

function supervised(hosts: Array<ReturnType<typeof manualHost>>, opts: ConstructorParameters<typeof Supervisor>[2] = {}) {
  const states: Array<{ uuid: string; state: string; exit?: ExitReason }> = [];
  const notices: Array<string | null> = [];
  let i = 0;
  const sup = new Supervisor(
    () => hosts[i++]!.ch,
    { state: (uuid, state, exit) => states.push({ uuid, state, ...(exit ? { exit } : {}) }), stats: () => undefined, notice: (_u, m) => notices.push(m) },
    opts,
  );
  return { states, notices, sup };
}

async function running(sup: Supervisor, host: ReturnType<typeof manualHost>, uuid = UUID) {
  const p = sup.start(uuid, { memoryMiB: 16, cpus: 1 });
  host.msg({ t: 'state', state: 'running' });
  await p;
}

describe('Shut Down waits for the guest', () => {
  it('presses the power button, shows Shutting down, never kills, hints after the timeout, ends when the guest powers off', async () => {
    const host = manualHost();
    const { states, notices, sup } = supervised([host], { shutdownHintMs: 30 });
    await running(sup, host);
    const done = sup.shutdown(UUID);
    expect(host.sent.at(-1)).toEqual({ t: 'powerButton' });
    host.msg({ t: 'acpi', accepted: true });
    await done;
    expect(sup.stateOf(UUID)).toBe('shuttingdown');
    expect(states.at(-1)).toEqual({ uuid: UUID, state: 'shuttingdown' });
    await tick(80);
    expect(notices).toEqual([SHUTDOWN_HINT]);
    expect(host.kills).toEqual([]); // still running: nothing killed
    expect(sup.isRunning(UUID)).toBe(true);
    expect(host.sent.some((m) => m.t === 'stop')).toBe(false);
    // The guest powers off by itself.
    host.msg({ t: 'state', state: 'stopped', reason: { kind: 'poweroff', message: 'ACPI S5' } });
    host.exit(0, null);
    expect(states.at(-1)).toEqual({ uuid: UUID, state: 'shutoff', exit: { kind: 'shutdown', detail: 'the guest powered off' } });
  });

  it('a guest that never enabled ACPI gets a clear message, keeps running, and is not killed', async () => {
    const host = manualHost();
    const { states, sup } = supervised([host]);
    await running(sup, host);
    const done = sup.shutdown(UUID);
    host.msg({ t: 'acpi', accepted: false, message: 'the guest has not enabled ACPI' });
    await expect(done).rejects.toThrow(/has not enabled ACPI.*Force Off/);
    expect(sup.stateOf(UUID)).toBe('running');
    expect(states.at(-1)!.state).toBe('running');
    await tick(20);
    expect(host.kills).toEqual([]);
    expect(sup.isRunning(UUID)).toBe(true);
  });

  it('a paused VM is not shut down (the guest could not react)', async () => {
    const host = manualHost();
    const { sup } = supervised([host]);
    await running(sup, host);
    host.msg({ t: 'state', state: 'paused' });
    await expect(sup.shutdown(UUID)).rejects.toThrow(/paused/);
    expect(host.sent.some((m) => m.t === 'powerButton')).toBe(false);
  });
});

describe('Force Off, Reset, Reboot, quit', () => {
  it('Force Off asks the engine to stop (it flushes) and reports forced off; no signal when it exits', async () => {
    const host = manualHost();
    const { states, sup } = supervised([host]);
    await running(sup, host);
    const off = sup.forceOff(UUID);
    expect(host.sent.at(-1)).toEqual({ t: 'stop' });
    host.msg({ t: 'state', state: 'stopped', reason: { kind: 'stopped', message: 'stopped by the host' } });
    host.exit(0, null);
    await off;
    expect(host.kills).toEqual([]);
    expect(states.at(-1)).toEqual({ uuid: UUID, state: 'shutoff', exit: { kind: 'shutdown', detail: 'forced off' } });
  });

  it('Force Off kills a host that does not stop within the grace period', async () => {
    const host = manualHost();
    const { states, sup } = supervised([host], { stopGraceMs: 20 });
    await running(sup, host);
    await sup.forceOff(UUID);
    expect(host.kills).toEqual(['SIGKILL']);
    expect(states.at(-1)!.exit).toEqual({ kind: 'killed', signal: 'SIGKILL' });
  });

  it('Reset and Reboot are separate requests', async () => {
    const host = manualHost();
    const { sup } = supervised([host]);
    await running(sup, host);
    sup.reset(UUID);
    sup.reboot(UUID);
    expect(host.sent.slice(-2)).toEqual([{ t: 'reset' }, { t: 'reboot' }]);
  });

  it('quit SIGTERMs every host, waits for them, and kills only one that does not exit', async () => {
    const good = manualHost(['SIGTERM', 'SIGKILL']);
    const stuck = manualHost(['SIGKILL']);
    const { states, sup } = supervised([good, stuck], { stopGraceMs: 40 });
    await running(sup, good, UUID);
    await running(sup, stuck, UUID2);
    const done = await sup.shutdownAll();
    expect(good.kills).toEqual(['SIGTERM']);
    expect(stuck.kills).toEqual(['SIGTERM', 'SIGKILL']);
    expect(done).toEqual([{ uuid: UUID, how: 'stopped' }, { uuid: UUID2, how: 'killed' }]);
    expect(states.find((s) => s.uuid === UUID && s.exit)!.exit).toEqual({ kind: 'shutdown', detail: 'stopped when Vireo quit' });
    expect(sup.isRunning(UUID) || sup.isRunning(UUID2)).toBe(false);
  });
});

describe('engine host', () => {
  function host() {
    const posted: FromHost[] = [];
    const exits: number[] = [];
    const h = new EngineHost(fakeAddon, (m) => posted.push(m), (c) => exits.push(c));
    h.handle({ t: 'start', config: { memoryMiB: 16, cpus: 1, bios: '/fw/bios.bin' } } as ToHost);
    return { h, posted, exits, m: FakeMachine.last! };
  }

  it('answers the power button: pressed when the guest enabled ACPI, else why not; it never stops the machine', () => {
    const a = host();
    a.h.handle({ t: 'powerButton' });
    expect(a.posted.at(-1)).toEqual({ t: 'acpi', accepted: false, message: expect.stringMatching(/not enabled ACPI/) });
    expect(a.m.state).toBe('running');
    a.m.acpiEnabled = true;
    a.h.handle({ t: 'powerButton' });
    expect(a.posted.at(-1)).toEqual({ t: 'acpi', accepted: true });
    expect(a.m.powerButtonPresses).toBe(2);
    expect(a.m.state).toBe('running');
  });

  it("'stop' (and SIGTERM, which main.ts maps to it) stops the machine and exits 0", async () => {
    const a = host();
    a.h.handle({ t: 'stop' });
    expect(a.m.state).toBe('stopped');
    expect(a.posted).toContainEqual({ t: 'state', state: 'stopped', reason: { kind: 'stopped', message: 'stopped by the host' } });
    await tick(40);
    expect(a.exits).toEqual([0]);
  });

  it("'reboot' sends ctrl-alt-del to the guest; 'reset' makes a fresh machine", () => {
    const a = host();
    a.h.handle({ t: 'reboot' });
    expect(a.m.keys).toContain('ctrl-alt-del');
    expect(FakeMachine.last).toBe(a.m);
    a.h.handle({ t: 'reset' });
    expect(FakeMachine.last).not.toBe(a.m);
    expect(a.m.state).toBe('stopped');
  });
});
