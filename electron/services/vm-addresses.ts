// The guest addresses the manager list shows under each running VM's name
// (issue 11): what its NICs' networks leased to their MACs, as `vm.interfaces`
// / `vireo domifaddr` list them (InterfaceService). The engine host's stats tick
// (once a second per running VM) drives it, so nothing runs for a stopped VM and
// no client polls: at most every `intervalMs` it asks the engine for the NICs
// (one `nics` message; none for a VM without NICs) and, when the set of
// addresses differs from the last one, calls onChange so the service sends
// vm.changed with the summary's `addresses`. A VM that stops loses them.
export interface AddressWatchOptions {
  /** The running VM's addresses in NIC order, or undefined when it has no NICs (nothing to ask). */
  look: (uuid: string) => Promise<string[] | undefined>;
  onChange: (uuid: string) => void;
  /** How often one running VM is looked at; 3 s by default. */
  intervalMs?: number;
  now?: () => number;
}

interface Watched {
  addresses: string[];
  at: number;
  busy: boolean;
}

export const ADDRESS_INTERVAL_MS = 3000;

export class AddressWatch {
  private readonly vms = new Map<string, Watched>();
  private readonly interval: number;
  private readonly now: () => number;

  constructor(private readonly o: AddressWatchOptions) {
    this.interval = o.intervalMs ?? ADDRESS_INTERVAL_MS;
    this.now = o.now ?? Date.now;
  }

  /** What the last look found (none for a VM not running or not looked at yet). */
  get(uuid: string): string[] {
    return this.vms.get(uuid)?.addresses ?? [];
  }

  /** A stats tick from a running VM: look again once the last look is `intervalMs` old. Resolves when that look is done. */
  async tick(uuid: string): Promise<void> {
    let w = this.vms.get(uuid);
    const now = this.now();
    if (!w) this.vms.set(uuid, (w = { addresses: [], at: -Infinity, busy: false }));
    if (w.busy || now - w.at < this.interval) return;
    w.busy = true;
    w.at = now;
    let found: string[] | undefined;
    try {
      found = await this.o.look(uuid);
    } catch {
      return; // the engine is going away or busy: keep what was known, look again next time
    } finally {
      w.busy = false;
    }
    if (this.vms.get(uuid) !== w) return; // stopped while asking
    const next = [...new Set(found ?? [])];
    if (!sameList(next, w.addresses)) {
      w.addresses = next;
      this.o.onChange(uuid);
    }
  }

  /** The VM stopped: its addresses go (the caller sends the summary it changes anyway). */
  drop(uuid: string): void {
    this.vms.delete(uuid);
  }
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
