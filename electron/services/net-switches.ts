// The switches of isolated networks (the engine's net/switch.h, run in this
// service through the addon's NetSwitch): one per active isolated network, a
// UNIX SOCK_SEQPACKET socket <runtime dir>/networks/<name>.sock (the directory
// 0700, the socket 0600, and the switch only takes peers of this UID). Every
// engine host with a NIC on the network connects to it (NIC backend 'switch'),
// so VMs on one isolated network reach each other and nothing else. The switch
// answers DHCP from the network's range with the gateway address as its own;
// no router or DNS option (nothing is behind it). Leases are read from it for
// the manager (network.leases). Switches live as long as this service: when it
// exits they go, and the VMs' NICs lose their link partner with it (they are
// the service's children and stop with it anyway).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NetworkDef } from '../common/contracts/network';
import type { NativeSwitch, NetSwitchOptions, NicLease } from '../common/engine-api';

/** A lease the switch's DHCP server handed out: the shape the engine's NAT leases have. */
export type SwitchLease = NicLease;

export interface SwitchServiceOptions {
  /** Where the sockets go (made 0700). */
  dir: string;
  /** The addon's NetSwitch constructor (loaded on first use), or why there is none. */
  factory: () => (new (o: NetSwitchOptions) => NativeSwitch) | string;
}

export class SwitchService {
  private readonly running = new Map<string, NativeSwitch>();

  constructor(private readonly opts: SwitchServiceOptions) {}

  socketPath(name: string): string {
    return path.join(this.opts.dir, `${name}.sock`);
  }

  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  /** Starts the switch of an isolated network (a no-op for other modes). Throws with a message for the user. */
  start(def: NetworkDef): void {
    if (def.mode !== 'isolated' || this.running.has(def.name)) return;
    const Ctor = this.opts.factory();
    if (typeof Ctor === 'string') throw new Error(`Network '${def.name}' can't start: its switch runs in the Vireo engine, and ${Ctor}`);
    fs.mkdirSync(this.opts.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.opts.dir, 0o700);
    const ip = def.ipv4;
    try {
      this.running.set(def.name, new Ctor({ path: this.socketPath(def.name), dhcp: { server: ip.gateway, prefix: ip.prefix, start: ip.dhcpStart, end: ip.dhcpEnd } }));
    } catch (e) {
      throw new Error(`Network '${def.name}' can't start its switch: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  stop(name: string): void {
    this.running.get(name)?.stop();
    this.running.delete(name);
  }

  stopAll(): void {
    for (const name of [...this.running.keys()]) this.stop(name);
  }

  leases(name: string): SwitchLease[] {
    const now = Date.now() / 1000;
    return (this.running.get(name)?.leases() ?? []).filter((l) => l.expires > now);
  }

  counters(name: string): Record<string, number> | null {
    return this.running.get(name)?.counters() ?? null;
  }
}
