// Virtual networks: the service's validation, persistence, the default network,
// old 'user' NICs read as 'default', and what the engine is given for each NIC.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type NetworkDef, defaultIpv4 } from '../../common/contracts/network';
import { type VmDefinition, editOf } from '../../common/contracts/vm';
import type { VireoService } from '../app';
import { toMachineConfig } from '../machine-config';
import { NetworkService, defaultNetwork, hostPortFree } from '../networks';
import { FakeMachine, newVmRequest, testService } from './fake-engine';

let tmp: string;
let svc: VireoService;
let iso: string;

const fw = { bios: '/b', vgaBios: '/v' };
const isolated = (name = 'lab', address = '192.168.100.0'): NetworkDef => ({ name, mode: 'isolated', ipv4: defaultIpv4(address, 24), forwards: [], autostart: false });
const nat = (name: string, address: string, over: Partial<NetworkDef> = {}): NetworkDef => ({ name, mode: 'nat', ipv4: defaultIpv4(address, 24), forwards: [], autostart: true, ...over });
const fields = (errors: Array<{ field: string; message: string }>) => Object.fromEntries(errors.map((e) => [e.field, e.message]));

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-net-'));
  iso = path.join(tmp, 'media.iso');
  await fsp.writeFile(iso, Buffer.alloc(4096, 1));
  svc = await testService(tmp);
});

afterEach(async () => {
  svc.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('networks', () => {
  it('makes an active, autostart `default` NAT network on 10.0.2.0/24 on first start, stored as a file', async () => {
    const list = await svc['network.list']({});
    expect(list.map((n) => [n.name, n.mode, n.active, n.autostart, n.isDefault])).toEqual([['default', 'nat', true, true, true]]);
    expect(list[0]!.ipv4).toEqual({ address: '10.0.2.0', prefix: 24, gateway: '10.0.2.2', dns: '10.0.2.3', dhcpStart: '10.0.2.15', dhcpEnd: '10.0.2.30' });
    const file = path.join(svc.paths.config, 'networks', 'default.json');
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ version: 1, name: 'default', mode: 'nat' });
    // It can't be removed.
    await expect(svc['network.undefine']({ name: 'default' })).rejects.toThrow(/default network can't be removed/);
  });

  it('defines, persists across a restart, starts only autostart networks, and writes atomically', async () => {
    const r = await svc['network.define']({ def: isolated('lab'), start: true });
    expect(r.errors).toEqual([]);
    expect(r.network).toMatchObject({ name: 'lab', mode: 'isolated', active: true, autostart: false });
    expect(r.network!.engineProblem).toBe(null);
    // Its switch runs: a socket only this user reaches, in a 0700 directory.
    const sock = svc.switches.socketPath('lab');
    expect(fs.statSync(sock).isSocket()).toBe(true);
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(sock)).mode & 0o777).toBe(0o700);
    await svc['network.stop']({ name: 'lab' });
    expect(fs.existsSync(sock)).toBe(false);
    await svc['network.start']({ name: 'lab' });
    expect(svc.switches.isRunning('lab')).toBe(true);
    await svc['network.autostart']({ name: 'lab', autostart: false });
    expect(fs.readdirSync(path.join(svc.paths.config, 'networks')).sort()).toEqual(['default.json', 'lab.json']);
    svc.shutdown();
    svc = await testService(tmp);
    const list = await svc['network.list']({});
    expect(list.map((n) => [n.name, n.active])).toEqual([['default', true], ['lab', false]]);
    await svc['network.autostart']({ name: 'lab', autostart: true });
    svc.shutdown();
    svc = await testService(tmp);
    expect((await svc['network.list']({})).find((n) => n.name === 'lab')!.active).toBe(true);
  });

  it('refuses bad names, duplicates, overlapping subnets and addresses outside the subnet, on the field', async () => {
    const bad = async (def: NetworkDef) => fields((await svc['network.define']({ def, dryRun: true })).errors);
    expect((await bad(isolated('-x')))['name']).toMatch(/letters, digits/);
    expect((await bad(isolated('DEFAULT')))['name']).toMatch(/'default' already exists/);
    expect((await bad(isolated('none')))['name']).toMatch(/no network/);
    expect((await bad(isolated('lab', '10.0.0.0')))['ipv4.address']).toBe(undefined); // 10.0.0.0/24 does not overlap 10.0.2.0/24
    expect((await bad({ ...isolated('lab', '10.0.0.0'), ipv4: { ...defaultIpv4('10.0.0.0', 16) } }))['ipv4.address']).toMatch(/overlaps network 'default'/);
    expect((await bad({ ...isolated('lab'), ipv4: { ...defaultIpv4('192.168.100.0'), address: '192.168.100.7' } }))['ipv4.address']).toMatch(/host bits/);
    const range = await bad({ ...isolated('lab'), ipv4: { ...defaultIpv4('192.168.100.0'), dhcpStart: '192.168.101.10', dhcpEnd: '192.168.100.255' } });
    expect(range['ipv4.dhcpStart']).toMatch(/outside 192.168.100.0\/24/);
    expect(range['ipv4.dhcpEnd']).toMatch(/broadcast/);
    const order = await bad({ ...isolated('lab'), ipv4: { ...defaultIpv4('192.168.100.0'), dhcpStart: '192.168.100.50', dhcpEnd: '192.168.100.20' } });
    expect(order['ipv4.dhcpEnd']).toMatch(/ends before it starts/);
    const gwIn = await bad({ ...isolated('lab'), ipv4: { ...defaultIpv4('192.168.100.0'), gateway: '192.168.100.20' } });
    expect(gwIn['ipv4.gateway']).toMatch(/inside the DHCP range/);
    expect((await bad({ ...isolated('lab'), ipv4: { ...defaultIpv4('192.168.100.0'), prefix: 31 } }))['ipv4.prefix']).toMatch(/\/8 and \/29/);
    expect((await bad({ ...isolated('lab'), ipv4: { ...defaultIpv4('192.168.100.0'), gateway: '192.168.1000.1' } }))['ipv4.gateway']).toMatch(/not an IPv4/);
    expect((await bad({ ...isolated('br'), mode: 'bridge' }))['bridge']).toMatch(/Name the host bridge/);
    expect((await bad({ ...isolated('br'), mode: 'bridge', bridge: 'br 0;' }))['bridge']).toMatch(/not a network interface name/);
    expect(await bad({ ...isolated('br'), mode: 'bridge', bridge: 'br0' })).toEqual({});
    expect((await bad({ ...isolated('lab'), bridge: 'br0' }))['bridge']).toMatch(/Only a bridged network/);
    expect((await bad({ ...isolated('lab'), forwards: [{ proto: 'tcp', hostAddress: '', hostPort: 2222, guestPort: 22 }] }))['forwards']).toMatch(/Only NAT/);
    // Nothing was written.
    expect(fs.readdirSync(path.join(svc.paths.config, 'networks'))).toEqual(['default.json']);
  });

  it('refuses a host port another network forwards, one bound on the host, and a forward to an unknown VM', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen({ host: '127.0.0.1', port: 0 }, r));
    const busyPort = (taken.address() as net.AddressInfo).port;
    try {
      expect(await hostPortFree('tcp', '127.0.0.1', busyPort)).toBe(false);
      const a = await svc['network.define']({ def: nat('nat2', '192.168.50.0', { forwards: [{ proto: 'tcp', hostAddress: '', hostPort: 0xf00d, guestPort: 22 }] }), dryRun: true });
      // dry run of a port that is (almost certainly) free: no errors
      expect(a.errors).toEqual([]);
      await svc['network.edit']({ name: 'default', def: { ...defaultNetwork(), forwards: [{ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 0xf00d, guestPort: 22 }] } });
      const clash = await svc['network.define']({ def: nat('nat2', '192.168.50.0', { forwards: [{ proto: 'tcp', hostAddress: '', hostPort: 0xf00d, guestPort: 80 }] }) });
      expect(fields(clash.errors)['forwards.0.hostPort']).toMatch(/already forwarded by network 'default'/);
      // Same port over UDP is another socket: fine.
      const udp = await svc['network.define']({ def: nat('nat2', '192.168.50.0', { forwards: [{ proto: 'udp', hostAddress: '', hostPort: 0xf00d, guestPort: 53 }] }), dryRun: true });
      expect(udp.errors).toEqual([]);
      const bound = await svc['network.define']({ def: nat('nat3', '192.168.51.0', { forwards: [{ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: busyPort, guestPort: 22 }] }) });
      expect(fields(bound.errors)['forwards.0.hostPort']).toMatch(new RegExp(`${busyPort} is already in use on this host`));
      const novm = await svc['network.define']({ def: nat('nat3', '192.168.51.0', { forwards: [{ proto: 'tcp', hostAddress: '', hostPort: 0xf00e, guestPort: 22, vm: 'ghost' }] }) });
      expect(fields(novm.errors)['forwards.0.vm']).toMatch(/No VM named 'ghost'/);
      // Editing `default` again keeps its own forward (bound by its running VMs) without a host-port error.
      const again = await svc['network.edit']({ name: 'default', def: { ...defaultNetwork(), forwards: [{ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 0xf00d, guestPort: 2222 }] }, dryRun: true });
      expect(again.errors).toEqual([]);
    } finally {
      taken.close();
    }
  });

  it('puts the wizard NIC on default with the OS model; refuses undefine of a used network naming the VMs; refuses stop while they run', async () => {
    const { vm } = await svc['vm.create'](newVmRequest(iso, { name: 'a', network: 'default', storage: { kind: 'none' } }));
    expect(vm!.nics).toEqual([{ mac: expect.stringMatching(/^52:54:00:/), network: 'default', model: 'virtio' }]);
    const { vm: dos } = await svc['vm.create'](newVmRequest(iso, { name: 'dos', os: 'freedos', memoryMiB: 64, network: 'user', storage: { kind: 'none' } }));
    expect(dos!.nics[0]).toMatchObject({ network: 'default', model: 'e1000' });
    const none = await svc['vm.create'](newVmRequest(iso, { name: 'z', network: 'nowhere', storage: { kind: 'none' } }));
    expect(fields(none.errors)['network']).toMatch(/No network named 'nowhere'/);

    await svc['network.define']({ def: isolated('lab'), start: true });
    const def = (await svc['vm.get']({ uuid: vm!.uuid })) as VmDefinition;
    const edit = editOf(def);
    const up = await svc['vm.update']({ uuid: vm!.uuid, edit: { ...edit, nics: [...edit.nics, { mac: '52:54:00:00:00:42', network: 'lab', model: 'e1000' }] } });
    expect(up.errors).toEqual([]);
    const badNet = await svc['vm.update']({ uuid: vm!.uuid, edit: { ...edit, nics: [{ ...edit.nics[0]!, network: 'ghost' }] } });
    expect(fields(badNet.errors)['nics.0.network']).toMatch(/No network named 'ghost'/);
    // MAC used by another VM: error on the field.
    const clash = await svc['vm.update']({ uuid: dos!.uuid, edit: { ...editOf((await svc['vm.get']({ uuid: dos!.uuid })) as VmDefinition), nics: [{ mac: '52:54:00:00:00:42', network: 'default', model: 'virtio' }] } });
    expect(fields(clash.errors)['nics.0.mac']).toMatch(/used by a/);

    await expect(svc['network.undefine']({ name: 'lab' })).rejects.toThrow(/'lab' is used by a: move its NIC/);
    const lab = (await svc['network.list']({})).find((n) => n.name === 'lab')!;
    expect(lab.usedBy).toEqual([{ name: 'a', running: false }]);

    // A VM on an isolated network starts: its NIC there is a port of the network's switch.
    await svc['vm.action']({ uuid: vm!.uuid, action: 'start' });
    expect(FakeMachine.last!.config.nics![1]).toEqual({ model: 'e1000', mac: '52:54:00:00:00:42', backend: 'switch', socket: svc.switches.socketPath('lab') });
    // The switch can't be stopped under it; its addresses can't change while it runs.
    await expect(svc['network.stop']({ name: 'lab' })).rejects.toThrow(/'lab' is in use by running VM a: shut it down first/);
    expect(svc.switches.isRunning('lab')).toBe(true);
    const moved = await svc['network.edit']({ name: 'lab', def: isolated('lab', '192.168.101.0') });
    expect(fields(moved.errors)['mode']).toMatch(/Running VM a is on this isolated network's switch/);
    expect(await svc['network.leases']({ name: 'lab' })).toEqual([]);
    await svc['vm.action']({ uuid: vm!.uuid, action: 'forceoff' });
    await expect.poll(() => svc.supervisor.isRunning(vm!.uuid)).toBe(false);

    // Back to default only: it starts; default can't be stopped while it runs.
    await svc['vm.update']({ uuid: vm!.uuid, edit });
    await svc['vm.action']({ uuid: vm!.uuid, action: 'start' });
    await expect(svc['network.stop']({ name: 'default' })).rejects.toThrow(/in use by running VM a/);
    await svc['network.undefine']({ name: 'lab' });
    expect((await svc['network.list']({})).map((n) => n.name)).toEqual(['default']);
  });

  it('a VM on a stopped network does not start until the network is started', async () => {
    await svc['network.define']({ def: nat('nat2', '192.168.50.0', { autostart: false }) });
    const { vm } = await svc['vm.create'](newVmRequest(iso, { name: 'b', network: 'nat2', storage: { kind: 'none' } }));
    await expect(svc['vm.action']({ uuid: vm!.uuid, action: 'start' })).rejects.toThrow(/NIC 1 is on network 'nat2', which is not active. Start it under Networks/);
    await svc['network.start']({ name: 'nat2' });
    await svc['vm.action']({ uuid: vm!.uuid, action: 'start' });
    const nic = FakeMachine.last!.config.nics![0]!;
    expect(nic).toMatchObject({ backend: 'user', model: 'virtio', net: '192.168.50.0/24', host: '192.168.50.2', dhcpStart: '192.168.50.15', dns: '192.168.50.3' });
    const pci = (await svc['vm.devices']({ uuid: vm!.uuid })).pci;
    expect(pci.map((p) => [p.slot, p.vendorId, p.deviceId])).toEqual([[3, 0x1af4, 0x1041]]);
  });

  it("lists a VM's interfaces with the NAT's leases, counters and link, and plugs and pulls the cable (domifaddr, domif-setlink)", async () => {
    const { vm } = await svc['vm.create'](newVmRequest(iso, { name: 'c', network: 'default', storage: { kind: 'none' } }));
    const mac = vm!.nics[0]!.mac;
    // Shut off: the definition's NIC, nothing live.
    const off = await svc['vm.interfaces']({ uuid: vm!.uuid });
    expect(off.running).toBe(false);
    expect(off.interfaces).toEqual([{ name: 'net0', mac, model: 'virtio', network: 'default', mode: 'nat', addresses: [] }]);
    await expect(svc['vm.setLink']({ uuid: vm!.uuid, iface: 'net0', up: false })).rejects.toThrow(/c is not running/);
    await svc['vm.action']({ uuid: vm!.uuid, action: 'start' });
    const m = FakeMachine.last!;
    const expires = Math.floor(Date.now() / 1000) + 3600;
    // The engine's NAT saw its DHCP lease this MAC 10.0.2.15; a lease for another MAC or outside 10.0.2.0/24 is not this NIC's.
    m.nicLeases = [[
      { mac: mac.toUpperCase(), ip: '10.0.2.15', expires, hostname: 'guest' },
      { mac: '52:54:00:99:99:99', ip: '10.0.2.16', expires },
      { mac, ip: '192.168.7.9', expires },
    ]];
    const on = await svc['vm.interfaces']({ uuid: vm!.uuid });
    expect(on.running).toBe(true);
    expect(on.interfaces[0]).toMatchObject({ name: 'net0', linkUp: true, addresses: [{ ip: '10.0.2.15', prefix: 24, source: 'lease', expires, hostname: 'guest' }] });
    expect(on.interfaces[0]!.counters).toEqual({ rxPackets: 0, rxBytes: 0, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0, errors: 0 });
    // The cable, by name and by MAC: the engine's link changes.
    expect((await svc['vm.setLink']({ uuid: vm!.uuid, iface: 'net0', up: false })).linkUp).toBe(false);
    expect(m.nicLinks).toEqual([false]);
    expect((await svc['vm.setLink']({ uuid: vm!.uuid, iface: mac.toUpperCase(), up: true })).linkUp).toBe(true);
    expect(m.nicLinks).toEqual([true]);
    await expect(svc['vm.setLink']({ uuid: vm!.uuid, iface: 'net3', up: true })).rejects.toThrow(/c has no network interface 'net3': it has net0 \(52:54:00/);
  });

  it("reads old definitions' 'user' NICs as 'default' and makes an 'isolated' network for old 'isolated' NICs", async () => {
    svc.shutdown();
    const vms = path.join(tmp, 'cfg', 'vireo', 'vms');
    const uuid = '11111111-2222-4333-8444-555555555555';
    const old = {
      version: 1, uuid, name: 'old', os: 'generic', memoryMiB: 64, cpus: 1, boot: { kind: 'firmware', order: 'c' }, disks: [],
      nics: [{ mac: '52:54:00:01:02:03', network: 'user', model: 'e1000' }, { mac: '52:54:00:01:02:04', network: 'isolated', model: 'virtio' }],
      createdAt: '2025-01-01T00:00:00Z',
    };
    await fsp.writeFile(path.join(vms, `${uuid}.json`), JSON.stringify(old));
    svc = await testService(tmp);
    expect(svc.store.broken).toEqual([]);
    expect(svc.store.get(uuid)!.nics.map((n) => n.network)).toEqual(['default', 'isolated']);
    const list = await svc['network.list']({});
    expect(list.map((n) => [n.name, n.mode])).toEqual([['default', 'nat'], ['isolated', 'isolated']]);
    expect(list[1]!.ipv4.address).toBe('192.168.100.0');
  });

  it('a broken network file is reported, never overwritten, and the rest load', async () => {
    const dir = path.join(svc.paths.config, 'networks');
    await fsp.writeFile(path.join(dir, 'junk.json'), '{"version":1,"name":"junk"');
    const ns = new NetworkService({ dir, usage: () => [] });
    await ns.init();
    expect(ns.broken.map((b) => path.basename(b.file))).toEqual(['junk.json']);
    expect(ns.list().map((n) => n.name)).toEqual(['default']);
    expect(fs.readFileSync(path.join(dir, 'junk.json'), 'utf8')).toBe('{"version":1,"name":"junk"');
  });

  it('renames and edits a network no VM uses; refuses a rename while VMs use it', async () => {
    await svc['network.define']({ def: isolated('lab') });
    const r = await svc['network.edit']({ name: 'lab', def: isolated('lab2', '192.168.101.0') });
    expect(r.errors).toEqual([]);
    expect(fs.readdirSync(path.join(svc.paths.config, 'networks')).sort()).toEqual(['default.json', 'lab2.json']);
    await svc['vm.create'](newVmRequest(iso, { name: 'c', network: 'lab2', storage: { kind: 'none' } }));
    const re = await svc['network.edit']({ name: 'lab2', def: isolated('lab3', '192.168.101.0') });
    expect(fields(re.errors)['name']).toMatch(/c has a NIC on 'lab2'/);
  });
});

describe('toMachineConfig with NICs', () => {
  const base: VmDefinition = {
    version: 1, uuid: '11111111-2222-4333-8444-555555555555', name: 'web', os: 'linux', memoryMiB: 256, cpus: 1,
    boot: { kind: 'firmware', order: 'c' }, disks: [], createdAt: 'x',
    nics: [
      { mac: '52:54:00:aa:00:01', network: 'default', model: 'virtio' },
      { mac: '52:54:00:aa:00:02', network: 'default', model: 'e1000' },
    ],
  };
  const dflt: NetworkDef = {
    ...defaultNetwork(),
    forwards: [
      { proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80, vm: 'web' },
      { proto: 'udp', hostAddress: '', hostPort: 5353, guestPort: 53, guestAddress: '10.0.2.16' },
      { proto: 'tcp', hostAddress: '', hostPort: 2200, guestPort: 22, vm: 'other' },
    ],
  };
  it('gives each NIC its network, model and MAC; the forwards for this VM go on its first NIC there', () => {
    const cfg = toMachineConfig(base, fw, (n) => (n === 'default' ? dflt : undefined));
    expect(cfg.nics).toEqual([
      { model: 'virtio', mac: '52:54:00:aa:00:01', backend: 'user', net: '10.0.2.0/24', host: '10.0.2.2', dhcpStart: '10.0.2.15', dns: '10.0.2.3', hostfwd: ['tcp:127.0.0.1:8080-:80', 'udp::5353-10.0.2.16:53'] },
      { model: 'e1000', mac: '52:54:00:aa:00:02', backend: 'user', net: '10.0.2.0/24', host: '10.0.2.2', dhcpStart: '10.0.2.15', dns: '10.0.2.3' },
    ]);
  });
  it('no NICs: no nics key; an unknown or isolated network is an error naming it, never a card without a backend', () => {
    expect(toMachineConfig({ ...base, nics: [] }, fw).nics).toBeUndefined();
    expect(() => toMachineConfig(base, fw, () => undefined)).toThrow(/NIC 1 of web: no network named 'default'/);
    const iso: NetworkDef = { ...defaultNetwork(), name: 'lab', mode: 'isolated' };
    const onLab = { ...base, nics: [{ ...base.nics[0]!, network: 'lab' }] };
    expect(() => toMachineConfig(onLab, fw, () => iso)).toThrow(/NIC 1 of web is on isolated network 'lab', whose switch is not running: start the network/);
    expect(toMachineConfig(onLab, fw, () => iso, (n) => `/run/x/${n}.sock`).nics).toEqual([{ model: 'virtio', mac: '52:54:00:aa:00:01', backend: 'switch', socket: '/run/x/lab.sock' }]);
    const br: NetworkDef = { ...defaultNetwork(), name: 'lan', mode: 'bridge', bridge: 'br0' };
    expect(toMachineConfig(onLab, fw, () => br).nics).toEqual([{ model: 'virtio', mac: '52:54:00:aa:00:01', backend: 'tap', bridge: 'br0' }]);
  });
});
