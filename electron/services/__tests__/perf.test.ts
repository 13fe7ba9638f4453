// Live graphs (issue 14): the engine host samples machine.perfStats() once a
// second, the supervisor forwards it, the service turns counters into rates in
// vm.stats and keeps the last minutes for vm.statsHistory. Fake engine here;
// the real one in e2e/perf.spec.ts.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventPayload } from '../../common/contracts/api';
import { parseEvent, parseResult } from '../../common/contracts/api';
import type { VireoService } from '../app';
import { VmPerf } from '../vm-perf';
import { FakeMachine, newVmRequest, testService } from './fake-engine';

let tmp: string;
let svc: VireoService;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-perf-'));
  svc = await testService(tmp);
});
afterEach(async () => {
  svc.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

const sample = (at: number, readBytes: number, rx = 0) => ({
  at,
  vcpus: 1,
  ramMiB: 256,
  disks: [{ readBytes, readOps: readBytes / 512, writeBytes: 0, writeOps: 0 }],
  nics: [{ rxBytes: rx, rxPackets: 0, txBytes: 0, txPackets: 0 }],
});

describe('VmPerf', () => {
  it('turns cumulative counters into per-second rates, keeps a bounded history, drops it on stop', () => {
    const p = new VmPerf(3);
    const a = p.ingest('u', 12, 40, sample(1000, 0));
    expect(a.diskReadBps).toBe(0); // no previous sample: no rate
    const b = p.ingest('u', 50, 41, sample(3000, 4096, 1000));
    expect(b.diskReadBps).toBe(2048); // 4096 bytes over 2 s
    expect(b.diskReadOps).toBe(4);
    expect(b.netRxBps).toBe(500);
    expect(b.diskReadBytes).toBe(4096);
    expect(b.cpuPercent).toBe(50);
    // An engine restarted from 0 gives no negative rate.
    const c = p.ingest('u', 500, 42, sample(4000, 0));
    expect(c.diskReadBps).toBe(0);
    expect(c.cpuPercent).toBe(100); // clamped to 0–100
    p.ingest('u', 1, 43, sample(5000, 512));
    expect(p.history('u').map((x) => x.t)).toEqual([3000, 4000, 5000]);
    p.drop('u');
    expect(p.history('u')).toEqual([]);
  });

  it('carries the input a guest did not take (totals), 0 where the engine has no such counters', () => {
    const p = new VmPerf();
    expect(p.ingest('u', 0, 0, sample(1000, 0)).inputDroppedKeys).toBe(0);
    const b = p.ingest('u', 0, 0, { ...sample(2000, 0), input: { droppedKeys: 37, mergedClicks: 2 } });
    expect([b.inputDroppedKeys, b.inputMergedClicks]).toEqual([37, 2]);
    expect(p.ingest('u', 0, 0, undefined, 3000).inputDroppedKeys).toBe(0);
  });
});

describe('vm.stats and vm.statsHistory', () => {
  it('reports the guest (vCPU time, touched RAM, disk bytes) from the engine, with history for a late window', async () => {
    const iso = path.join(tmp, 'x.iso');
    await fsp.writeFile(iso, Buffer.alloc(4096, 1));
    const { vm } = await svc['vm.create'](newVmRequest(iso, { network: 'none' }));
    const uuid = vm!.uuid;
    const got: EventPayload<'vm.stats'>[] = [];
    svc.onEvent((name, payload) => {
      if (name === 'vm.stats') got.push(parseEvent('vm.stats', payload));
    });
    await svc['vm.action']({ uuid, action: 'start' });
    const m = FakeMachine.last!;
    m.perf.residentBytes = 100 * 1024 * 1024;
    m.perf.droppedKeys = 5; // a guest that stopped reading its keyboard
    // Each second the "guest" reads 1 MiB and its vCPU runs 0.25 s.
    const timer = setInterval(() => {
      m.perf.readBytes += 1 << 20;
      m.perf.readOps += 8;
      m.perf.cpuNs += 250e6;
    }, 1000);
    try {
      await new Promise<void>((r) => {
        const poll = setInterval(() => got.length >= 3 && (clearInterval(poll), r()), 50);
      });
    } finally {
      clearInterval(timer);
    }
    const last = got.at(-1)!;
    expect(last.uuid).toBe(uuid);
    expect(last.point).toBeDefined();
    expect(last.memoryMiB).toBe(100); // touched guest RAM, not the host process
    expect(last.point!.ramMiB).toBe(256);
    expect(last.point!.diskReadBytes).toBeGreaterThan(0);
    expect(last.point!.inputDroppedKeys).toBe(5);
    expect(got.some((e) => e.point!.diskReadBps > 0)).toBe(true);
    expect(got.some((e) => e.cpuPercent > 0 && e.cpuPercent <= 100)).toBe(true);
    const h = parseResult('vm.statsHistory', await svc['vm.statsHistory']({ uuid }));
    expect(h.points.length).toBe(got.length);
    expect(h.points.at(-1)).toEqual(last.point);
    await svc['vm.action']({ uuid, action: 'forceoff' });
    await new Promise((r) => setTimeout(r, 50));
    expect((await svc['vm.statsHistory']({ uuid })).points).toEqual([]);
  }, 15000);
});
