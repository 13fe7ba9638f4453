// The manager's guest addresses (issue 11): AddressWatch looks at a running VM's
// leases at most every interval, on the engine's stats ticks, and reports only
// changes; the service puts them in the VM's summary and sends vm.changed.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { VmSummary } from '../../common/contracts/vm';
import { VmSummarySchema } from '../../common/contracts/vm';
import { AddressWatch } from '../vm-addresses';
import { FakeMachine, newVmRequest, testService } from './fake-engine';

describe('AddressWatch', () => {
  it('looks at most every interval, reports changes only, and forgets a stopped VM', async () => {
    let now = 0;
    let leased: string[] | undefined = [];
    const looks: string[] = [];
    const changes: string[] = [];
    const w = new AddressWatch({
      look: async (uuid) => {
        looks.push(uuid);
        return leased;
      },
      onChange: (uuid) => changes.push(uuid),
      intervalMs: 3000,
      now: () => now,
    });
    await w.tick('a'); // the first tick looks at once
    expect(looks).toEqual(['a']);
    expect(changes).toEqual([]); // nothing known before, nothing now
    leased = ['10.0.2.15'];
    now = 1000;
    await w.tick('a'); // too soon
    expect(looks.length).toBe(1);
    expect(w.get('a')).toEqual([]);
    now = 3000;
    await w.tick('a');
    expect(w.get('a')).toEqual(['10.0.2.15']);
    expect(changes).toEqual(['a']);
    now = 6000;
    await w.tick('a'); // the same lease: no change
    expect(looks.length).toBe(3);
    expect(changes).toEqual(['a']);
    leased = ['10.0.2.15', '192.168.100.10', '10.0.2.15']; // a second NIC; duplicates once
    now = 9000;
    await w.tick('a');
    expect(w.get('a')).toEqual(['10.0.2.15', '192.168.100.10']);
    expect(changes).toEqual(['a', 'a']);
    w.drop('a');
    expect(w.get('a')).toEqual([]);
    // A failed look keeps what was known; no NICs (undefined) is none.
    const failing = new AddressWatch({ look: () => Promise.reject(new Error('engine gone')), onChange: () => changes.push('x'), now: () => now });
    await failing.tick('b');
    expect(failing.get('b')).toEqual([]);
    leased = undefined;
    now = 20000;
    await w.tick('c');
    expect(w.get('c')).toEqual([]);
    expect(changes).toEqual(['a', 'a']);
  });

  it('does not look twice at once, and drops an answer for a VM that stopped meanwhile', async () => {
    let release!: (v: string[]) => void;
    let looks = 0;
    const changes: string[] = [];
    let now = 0;
    const w = new AddressWatch({ look: () => (looks++, new Promise<string[]>((r) => (release = r))), onChange: (u) => changes.push(u), intervalMs: 10, now: () => now });
    const first = w.tick('a');
    now = 100;
    await w.tick('a'); // still asking
    expect(looks).toBe(1);
    w.drop('a');
    release(['10.0.2.15']);
    await first;
    expect(w.get('a')).toEqual([]);
    expect(changes).toEqual([]);
  });
});

describe('the manager summary', () => {
  let tmp: string | undefined;
  afterEach(async () => {
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  it("a running VM's summary gets the NAT lease of its NIC by vm.changed, and loses it when it stops", async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-addr-'));
    const iso = path.join(tmp, 'media.iso');
    await fsp.writeFile(iso, Buffer.alloc(4096, 1));
    const svc = await testService(tmp);
    try {
      const seen: VmSummary[] = [];
      svc.onEvent((name, p) => {
        if (name === 'vm.changed') seen.push((p as { vm: VmSummary }).vm);
      });
      const { vm } = await svc['vm.create'](newVmRequest(iso, { name: 'addr', network: 'default', storage: { kind: 'none' } }));
      const mac = vm!.nics[0]!.mac;
      await svc['vm.action']({ uuid: vm!.uuid, action: 'start' });
      const expires = Math.floor(Date.now() / 1000) + 3600;
      // Before the first stats tick (1 s): the engine's NAT saw this MAC's lease, and another MAC's.
      FakeMachine.last!.nicLeases = [[{ mac, ip: '10.0.2.15', expires }, { mac: '52:54:00:99:99:99', ip: '10.0.2.16', expires }]];
      await vi.waitFor(() => expect(seen.some((v) => v.addresses?.[0] === '10.0.2.15')).toBe(true), { timeout: 5000, interval: 100 });
      const withIp = seen.find((v) => v.addresses)!;
      expect(withIp.addresses).toEqual(['10.0.2.15']);
      expect(VmSummarySchema.parse(withIp)).toBeTruthy();
      expect((await svc['vm.list']({})).find((v) => v.uuid === vm!.uuid)!.addresses).toEqual(['10.0.2.15']);
      await svc['vm.action']({ uuid: vm!.uuid, action: 'forceoff' });
      await vi.waitFor(async () => expect((await svc['vm.list']({})).find((v) => v.uuid === vm!.uuid)!.state).toBe('shutoff'), { timeout: 5000 });
      expect((await svc['vm.list']({})).find((v) => v.uuid === vm!.uuid)!.addresses).toBeUndefined();
    } finally {
      await svc.shutdown();
    }
  });
});
